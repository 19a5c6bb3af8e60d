{#
    on-run-start: a build before anything was ingested stops with one clear error instead of a failure per model.

    The raw tables are created by the loader on its first run (`make ingest`), not by `make db-up`, which only
    provisions roles and schemas and loads the seeds (so `dbt seed` is left alone here). Without this check
    `dbt run` reports `relation "raw.ibkr_bars" does not exist` somewhere among a hundred skipped nodes.
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
{% endmacro %}
