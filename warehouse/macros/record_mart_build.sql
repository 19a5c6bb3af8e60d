{#
    Post-hook of marts.training_bars: which dbt invocation built the mart, recorded in marts.mart_builds (one row per
    model, replaced at every build) inside the model's own transaction, so the record commits with the rows it
    describes and a reader in one snapshot sees both or neither. Training reads it as trainer beside the mart;
    target/run_results.json could not tell this (`dbt test` overwrites it, and dbt may have run on another machine).

    Both ways training_bars is built run their inside-transaction post-hooks before the commit: the incremental
    path (changed sessions replaced, macros/incremental_replace_intervals.sql) and a first build or --full-refresh
    (dbt's swap). built_at is that transaction's start, dbt_run_started_at the invocation's.
    The table is created here if missing, owned by the role dbt runs as (set_target_role), readable by the roles the
    mart's own grants name (dbt_project.yml: trainer and analyst).
#}
{% macro record_mart_build() -%}
    {%- set builds = adapter.quote(this.schema) ~ ".mart_builds" -%}
    create table if not exists {{ builds }} (
        model               text primary key,
        dbt_invocation_id   text not null,
        dbt_run_started_at  timestamptz not null,
        built_at            timestamptz not null
    );
    {%- set grants = config.get('grants') %}
    {%- set readers = grants.get('select', []) if grants is mapping else [] %}
    {% if readers %}grant select on {{ builds }} to {{ readers | join(', ') }};{% endif %}
    comment on table {{ builds }} is
        'Which dbt invocation last built each mart that records it (training_bars), committed with its rows.';
    comment on column {{ builds }}.model is 'The mart (a model in this schema).';
    comment on column {{ builds }}.dbt_invocation_id is
        'invocation_id of the dbt run or build that last built it (its run_results.json and logs name the same id).';
    comment on column {{ builds }}.dbt_run_started_at is 'When that dbt invocation started.';
    comment on column {{ builds }}.built_at is 'When the transaction that wrote the mart''s rows (and this row) began.';
    insert into {{ builds }} (model, dbt_invocation_id, dbt_run_started_at, built_at)
    values (
        '{{ this.identifier }}',
        '{{ invocation_id }}',
        '{{ run_started_at.isoformat() }}',
        now()
    )
    on conflict (model) do update set
        dbt_invocation_id = excluded.dbt_invocation_id,
        dbt_run_started_at = excluded.dbt_run_started_at,
        built_at = excluded.built_at;
{%- endmacro %}
