{#
    An incremental model built by other SQL or other settings is rebuilt in full, not mixed.

    An incremental build recomputes only the series that received bars: rows an older release's SQL computed, or rows
    computed under another what_to_show / use_rth / warmup_sessions, stayed beside the new ones until someone ran
    --full-refresh. So every incremental model records what it was built with in intermediate.incremental_builds
    (one row per model: var build_version and the values of the vars its rows depend on), written by a post-hook
    inside the model's own transaction (it commits with the rows it describes). A build whose recorded values differ
    from the current ones, or that finds no record (a warehouse built before this guard), builds that model in full
    instead of incrementally, and says so in one log line naming the model and what changed.

    The mechanism: dbt's incremental materialization (and is_incremental(), which the models' SQL and pre-hooks
    call) ask should_full_refresh(); this root-project macro overrides dbt's and also answers true when the record
    differs. The record is only written by the post-hook, after every one of those calls, so they all agree.
    An explicit `full_refresh` config of a model still wins (false: never rebuilt in full, by this guard either).

    A rebuild in full swaps the table in (dbt's own materialization): for training_bars that drops the mart views that
    read it (bar_corrections does not; symbol_coverage and walk_forward_fold_rows do) until they are built again, as
    `make dbt-build` and `dbt run` do in the same command. `--select training_bars` alone leaves them missing: select
    `training_bars+`.
#}

{#- The vars each incremental model's rows depend on (besides build_version); a model not listed records none. -#}
{% macro incremental_build_vars(model_name) -%}
    {#- staging's session dates, is_daily, is_valid_symbol and is_final: every bar below depends on them -#}
    {%- set bars = ['exchange_timezone', 'extended_hours_end', 'symbol_pattern', 'daily_bar_size'] -%}
    {%- set by_model = {
        'int_bars_deduplicated': bars,
        'int_bars_featurized': bars,
        'training_bars': bars + ['what_to_show', 'use_rth', 'warmup_sessions'],
    } -%}
    {{ return(by_model.get(model_name, [])) }}
{%- endmacro %}

{% macro incremental_builds_relation() -%}
    {{ generate_schema_name('intermediate', none) }}.incremental_builds
{%- endmacro %}

{#- What this build would record for the model: {'build_version': int, 'vars': {name: value}}. -#}
{% macro current_incremental_build(model_name) %}
    {%- set values = {} -%}
    {%- for name in incremental_build_vars(model_name) -%}
        {%- do values.update({name: var(name)}) -%}
    {%- endfor -%}
    {{ return({'build_version': var('build_version') | int, 'vars': values}) }}
{% endmacro %}

{#- Created by on-run-start (create_warehouse_functions), owned by transformer, read by nobody else. -#}
{% macro create_incremental_builds_table() -%}
    {%- set builds = incremental_builds_relation() -%}
    {{ set_target_role() }}
    {{ take_turns_on_run_start() }}
    create schema if not exists {{ generate_schema_name('intermediate', none) }};
    create table if not exists {{ builds }} (
        model           text primary key,
        build_version   integer not null,
        vars            jsonb not null,
        built_at        timestamptz not null
    );
    comment on table {{ builds }} is
        'What each incremental model was last built with (macros/incremental_build_record.sql): a build that finds '
        'other values rebuilds the model in full. Written in the transaction that wrote the model''s rows.';
    comment on column {{ builds }}.model is 'The incremental model (intermediate.int_bars_deduplicated, marts.training_bars, ...).';
    comment on column {{ builds }}.build_version is 'var build_version (dbt_project.yml) the rows were computed under.';
    comment on column {{ builds }}.vars is 'The values of the vars the model''s rows depend on, as that build had them.';
    comment on column {{ builds }}.built_at is 'When the transaction that wrote the model''s rows (and this row) began.';
{%- endmacro %}

{#-
    What differs between the model's record and this build, one phrase per difference ([] when nothing does);
    none when there is nothing to compare (not executing, not incremental, or the table does not exist yet).
-#}
{% macro incremental_build_changes() %}
    {%- if not execute or model.resource_type != 'model' or model.config.materialized != 'incremental' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if adapter.get_relation(this.database, this.schema, this.identifier) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set builds = incremental_builds_relation() -%}
    {#- to_regclass first: a warehouse built before this guard has no table at all before on-run-start (dbt compile) -#}
    {%- set present = run_query("select to_regclass('" ~ builds ~ "') is not null").columns[0].values()[0] -%}
    {%- set rows = [] -%}
    {%- if present -%}
        {%- set rows = run_query("select build_version, vars::text from " ~ builds
                                 ~ " where model = '" ~ this.identifier ~ "'").rows -%}
    {%- endif -%}
    {%- if rows | length == 0 -%}
        {{ return(['no record of what it was built with (built before this release recorded it)']) }}
    {%- endif -%}
    {%- set now = current_incremental_build(this.identifier) -%}
    {%- set stored_vars = fromjson(rows[0][1]) -%}
    {%- set changes = [] -%}
    {%- if rows[0][0] != now['build_version'] -%}
        {%- do changes.append('build_version was ' ~ rows[0][0] ~ ', now ' ~ now['build_version']
                              ~ ' (this release changed how its rows are computed)') -%}
    {%- endif -%}
    {%- for name, value in now['vars'].items() -%}
        {%- if name not in stored_vars -%}
            {%- do changes.append(name ~ ' not recorded, now ' ~ tojson(value)) -%}
        {%- elif stored_vars[name] != value -%}
            {%- do changes.append(name ~ ' was ' ~ tojson(stored_vars[name]) ~ ', now ' ~ tojson(value)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(changes) }}
{% endmacro %}

{#- Overrides dbt's (global project, materializations/configs.sql): its answer, or true when the record differs. -#}
{% macro should_full_refresh() %}
    {%- set config_full_refresh = config.get('full_refresh') -%}
    {%- if config_full_refresh is not none -%}
        {{ return(config_full_refresh) }}
    {%- endif -%}
    {%- if flags.FULL_REFRESH -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set changes = incremental_build_changes() -%}
    {{ return(changes is not none and changes | length > 0) }}
{% endmacro %}

{#-
    Pre-hook of every model (dbt_project.yml): the one log line of a rebuild the record asked for. Pre-hooks are
    rendered once per build of a model, inside its materialization; should_full_refresh() runs several times.
-#}
{% macro log_incremental_build_changes() -%}
    {%- if execute and not flags.FULL_REFRESH and config.get('full_refresh') is none -%}
        {%- set changes = incremental_build_changes() -%}
        {%- if changes -%}
            {%- set unselected = [] -%}
            {%- for view in views_dropped_with(model.unique_id) if view.unique_id not in selected_resources -%}
                {%- do unselected.append(view.schema ~ '.' ~ view.alias) -%}
            {%- endfor -%}
            {%- set views_note = '' -%}
            {%- if unselected -%}
                {%- set views_note = '; its swap drops the views that read it, and ' ~ unselected | sort | join(', ')
                    ~ ' are not selected: they stay missing until built (select ' ~ this.identifier ~ '+)' -%}
            {%- endif -%}
            {{ log(this.identifier ~ ': rebuilt in full, not incrementally: ' ~ changes | join('; ') ~ views_note, info=True) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#-
    The view models PostgreSQL drops with a relation that is swapped out (`drop ... cascade`): those that read it,
    and the views that read those.
-#}
{% macro views_dropped_with(unique_id) %}
    {%- set reached = [unique_id] -%}
    {%- set views = [] -%}
    {%- for _ in range(6) -%}
        {%- for node in graph.nodes.values()
                if node.resource_type == 'model' and node.config.materialized == 'view'
                and node.unique_id not in reached -%}
            {%- if node.depends_on.nodes | select('in', reached) | list -%}
                {%- do reached.append(node.unique_id) -%}
                {%- do views.append(node) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(views) }}
{% endmacro %}

{#- Post-hook of every model (dbt_project.yml): an incremental model's record, in its own transaction. -#}
{% macro record_incremental_build() -%}
    {%- if execute and model.config.materialized == 'incremental' -%}
    {%- set now = current_incremental_build(this.identifier) -%}
    insert into {{ incremental_builds_relation() }} (model, build_version, vars, built_at)
    values ('{{ this.identifier }}', {{ now['build_version'] }}, '{{ tojson(now['vars']) | replace("'", "''") }}'::jsonb, now())
    on conflict (model) do update set
        build_version = excluded.build_version,
        vars = excluded.vars,
        built_at = excluded.built_at;
    {%- endif -%}
{%- endmacro %}
