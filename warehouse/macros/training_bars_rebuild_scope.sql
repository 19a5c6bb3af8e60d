{#
    Pre-hook of training_bars (incremental builds only): which stored rows to replace.

    1. Every symbol whose feature rows were recomputed since training_bars was last built, from its
       first recomputed session on (new bars, corrections, the previous row's now-known target).
    2. Every session whose split may have changed because the boundaries moved (derived boundaries move
       as data arrives): between where the stored rows put each boundary (last train row, first and last
       validation row, first test row) and where training_splits puts it now. When the stored rows do
       not show a boundary (e.g. an empty split), everything is rebuilt.
#}
{% macro training_bars_rebuild_scope() %}
    {%- if is_incremental() %}
    {%- set scope = rebuild_scope_relation(this) %}
    {{ set_target_role() }}
    drop table if exists {{ scope }};

    create temporary table {{ scope }} on commit drop as

    with stored_boundaries as (

        select
            (select max(session_date) from {{ this }} where split = 'train') + 1 as after_last_train,
            (select min(session_date) from {{ this }} where split = 'validation') as first_validation,
            (select max(session_date) from {{ this }} where split = 'validation') + 1 as after_last_validation,
            (select min(session_date) from {{ this }} where split = 'test') as first_test,
            (select coalesce(max(dbt_loaded_at), '-infinity'::timestamptz) from {{ this }}) as loaded_watermark

    ),

    boundary_pairs as (

        select stored.after_last_train as stored_at, splits.validation_embargo_start as current_at
        from stored_boundaries as stored cross join {{ ref('training_splits') }} as splits
        union all
        select stored.first_validation, splits.validation_start
        from stored_boundaries as stored cross join {{ ref('training_splits') }} as splits
        union all
        select stored.after_last_validation, splits.test_embargo_start
        from stored_boundaries as stored cross join {{ ref('training_splits') }} as splits
        union all
        select stored.first_test, splits.test_start
        from stored_boundaries as stored cross join {{ ref('training_splits') }} as splits

    ),

    moved_boundaries as (

        select
            null::text as symbol,
            case when stored_at is null or current_at is null then '-infinity'::date
                 else least(stored_at, current_at) end as from_date,
            case when stored_at is null or current_at is null then 'infinity'::date
                 else greatest(stored_at, current_at) end as to_date
        from boundary_pairs

    ),

    recomputed_symbols as (

        select
            symbol,
            min(session_date) as from_date,
            'infinity'::date as to_date
        from {{ ref('int_bars_featurized') }}
        where {{ is_training_bar_settings() }}
          and dbt_loaded_at > (select loaded_watermark from stored_boundaries)
        group by symbol

    )

    select * from moved_boundaries where from_date < to_date
    union all
    select * from recomputed_symbols;

    analyze {{ scope }};
    {%- else %}
    select 1
    {%- endif %}
{% endmacro %}
