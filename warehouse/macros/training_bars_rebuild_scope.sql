{#
    Pre-hook of training_bars (incremental builds only): which stored rows to replace. Every symbol whose
    feature rows were recomputed since training_bars was last built, from its first recomputed session on
    (new bars, corrections, and the previous last row, whose target is now known).
#}
{% macro training_bars_rebuild_scope() %}
    {%- if is_incremental() %}
    {%- set scope = rebuild_scope_relation(this) %}
    {{ set_target_role() }}
    drop table if exists {{ scope }};

    create temporary table {{ scope }} on commit drop as

    select
        symbol,
        min(session_date) as from_date
    from {{ ref('int_bars_featurized') }}
    where {{ is_training_bar_settings() }}
      and dbt_loaded_at > (select coalesce(max(dbt_loaded_at), '-infinity'::timestamptz) from {{ this }})
    group by symbol;

    analyze {{ scope }};
    {%- else %}
    select 1
    {%- endif %}
{% endmacro %}
