{#
    on-run-start: a build before anything was ingested, a `dbt run` / `dbt test` before the seeds were loaded, or a
    `dbt test` before `dbt run` built any model its tests read, stops with one clear error instead of a failure per
    model or test (dbt test on a fresh warehouse after make ingest: 123 errors, "relation ... does not exist").

    The raw tables are created by the loader on its first run (`make ingest`), not by `make db-up`, which only
    provisions roles and schemas and loads the seeds. Without this check `dbt run` reports
    `relation "raw.ibkr_bars" does not exist` somewhere among a hundred skipped nodes.

    The seeds are loaded by `make db-up`, `dbt seed` and `dbt build`, not by `dbt run` or `dbt test`. A warehouse
    built before a seed was added to the project (known_missing_sessions), and whose server kept running through the
    upgrade, lacks it: `dbt run && dbt test`, as typed, failed on the models and tests that read it with
    `relation "seeds.known_missing_sessions" does not exist`, and nothing said what to run. `dbt build` loads the seeds
    before any model, so it is not stopped (nor is `dbt seed`).
#}
{% macro require_ingested_sources() %}
    {%- if execute and flags.WHICH in ('run', 'build', 'test') -%}
        {%- for table in ('ibkr_bars', 'load_batches') -%}
            {%- set declared = source('ibkr', table) -%}
            {%- if adapter.get_relation(declared.database, declared.schema, declared.identifier) is none -%}
                {{ exceptions.raise_compiler_error(
                    declared.schema ~ "." ~ declared.identifier ~ " does not exist yet: nothing was ingested. "
                    ~ "Run `make ingest` (python -m ingest) first, then the dbt build."
                ) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if execute and flags.WHICH in ('run', 'test') -%}
        {%- set missing = [] -%}
        {%- for node in graph.nodes.values() | selectattr('resource_type', 'equalto', 'seed') | sort(attribute='name') -%}
            {%- if adapter.get_relation(node.database, node.schema, node.alias) is none -%}
                {%- do missing.append(node.schema ~ "." ~ node.alias) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if missing -%}
            {{ exceptions.raise_compiler_error(
                (missing | join(", ")) ~ (" does" if missing | length == 1 else " do") ~ " not exist yet: the seeds "
                ~ "are not loaded (dbt run and dbt test do not load them). Run `make db-up` or `dbt seed` first, "
                ~ "then dbt run && dbt test (dbt build loads them itself)."
            ) }}
        {%- endif -%}
    {%- endif -%}
    {%- if execute and flags.WHICH == 'test' -%}
        {%- set read = {} -%}
        {%- for unique_id in selected_resources if unique_id in graph.nodes -%}
            {%- for parent in graph.nodes[unique_id].depends_on.nodes if parent in graph.nodes -%}
                {%- set node = graph.nodes[parent] -%}
                {%- if node.resource_type == 'model' and node.config.materialized != 'ephemeral' -%}
                    {%- do read.update({node.schema ~ "." ~ node.alias: node}) -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
        {%- set built = [] -%}
        {%- for name, node in read.items() if adapter.get_relation(node.database, node.schema, node.alias) is not none -%}
            {%- do built.append(name) -%}
        {%- endfor -%}
        {%- if read and not built -%}
            {{ exceptions.raise_compiler_error(
                "no model these tests read is built yet (" ~ (read.keys() | sort | list)[:3] | join(", ")
                ~ (", ..." if read | length > 3 else "") ~ "): dbt test tests what dbt run built. "
                ~ "Run `dbt run` first, then dbt test (or dbt build, which does both)."
            ) }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
