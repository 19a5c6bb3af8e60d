{{
    config(
        materialized='incremental',
        incremental_strategy='replace_intervals',
        unique_key=['symbol', 'session_date'],
        on_schema_change='fail',
        pre_hook=["{{ set_work_mem() }}", "{{ training_bars_rebuild_scope() }}"],
        post_hook=["{{ record_mart_build() }}"],
        indexes=[
            {'columns': ['symbol', 'session_date'], 'unique': true},
            {'columns': ['session_date']},
            {'columns': ['dbt_loaded_at']},
        ],
    )
}}

{#-
    One row per symbol and session for the bar settings in vars daily_bar_size / what_to_show / use_rth, ready
    for training: every session after the symbol's warm-up (var warmup_sessions) with every feature present,
    and the target (null on the symbol's last session: its next session has not happened yet). No row is
    dropped for an evaluation split: the walk-forward folds are date ranges in walk_forward_folds.
-#}

{%- set features_list = training_feature_columns() %}

with

{% if is_incremental() %}

scope as (

    select * from {{ rebuild_scope_relation(this) }}

),

features as (

    -- Each recomputed symbol from its first recomputed session on.
    select features.*
    from scope
    cross join lateral (
        select *
        from {{ ref('int_bars_featurized') }} as features
        where {{ is_training_bar_settings('features') }}
          and features.symbol = scope.symbol
          and features.session_date >= scope.from_date
        offset 0  -- an index range scan per scope row, never a scan of every bar
    ) as features

),

{% else %}

features as (

    select *
    from {{ ref('int_bars_featurized') }}
    where {{ is_training_bar_settings() }}

),

{% endif %}

training_rows as (

    select
        symbol,
        session_date,
        open,
        high,
        low,
        close,
        volume,
        {%- for feature in features_list %}
        {{ feature }},
        {%- endfor %}
        target_log_return_next,
        current_timestamp as dbt_loaded_at

    from features
    where session_number > {{ var('warmup_sessions') | int }}
      {%- for feature in features_list %}
      and {{ feature }} is not null
      {%- endfor %}

)

select * from training_rows
