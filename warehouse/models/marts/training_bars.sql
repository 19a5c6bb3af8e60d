{{
    config(
        materialized='incremental',
        incremental_strategy='replace_intervals',
        unique_key=['symbol', 'session_date'],
        on_schema_change='fail',
        pre_hook=["{{ set_work_mem() }}", "{{ training_bars_rebuild_scope() }}"],
        indexes=[
            {'columns': ['symbol', 'session_date'], 'unique': true},
            {'columns': ['split', 'session_date']},
            {'columns': ['dbt_loaded_at']},
        ],
    )
}}

{#-
    One row per symbol and session for the bar settings in vars bar_size / what_to_show / use_rth, ready
    for training: every feature present (warm-up rows and rows with a null feature are left out), a
    target (the last session of a symbol is left out), and a split; embargo sessions are left out.
-#}

{%- set features_list = training_feature_columns() %}

with

{% if is_incremental() %}

scope as (

    select * from {{ rebuild_scope_relation(this) }}

),

rows_in_scope as (

    -- Sessions whose split may have moved, for every symbol...
    select features.*
    from scope
    cross join lateral (
        select *
        from {{ ref('int_bars_featurized') }} as features
        where {{ is_training_bar_settings('features') }}
          and features.session_date >= scope.from_date
          and features.session_date < scope.to_date
        offset 0  -- an index range scan per scope row, never a scan of every bar
    ) as features
    where scope.symbol is null

    union all

    -- ...and each recomputed symbol from its first recomputed session on.
    select features.*
    from scope
    cross join lateral (
        select *
        from {{ ref('int_bars_featurized') }} as features
        where {{ is_training_bar_settings('features') }}
          and features.symbol = scope.symbol
          and features.session_date >= scope.from_date
          and features.session_date < scope.to_date
        offset 0
    ) as features
    where scope.symbol is not null

),

features as (

    -- Scope intervals may overlap: each row once.
    select distinct on (symbol, session_date) *
    from rows_in_scope
    order by symbol, session_date

),

{% else %}

features as (

    select *
    from {{ ref('int_bars_featurized') }}
    where {{ is_training_bar_settings() }}

),

{% endif %}

splits as (

    select * from {{ ref('training_splits') }}

),

labelled as (

    select
        features.*,
        {{ split_label('features.session_date', 'splits') }} as split

    from features
    cross join splits

),

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
        split,
        current_timestamp as dbt_loaded_at

    from labelled
    where split is not null
      and session_number > {{ var('warmup_sessions') | int }}
      and target_log_return_next is not null
      {%- for feature in features_list %}
      and {{ feature }} is not null
      {%- endfor %}

)

select * from training_rows
