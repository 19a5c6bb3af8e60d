{{
    config(
        materialized='incremental',
        unique_key=bar_key_columns(),
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ set_work_mem() }}",
        indexes=[
            {'columns': bar_key_columns(), 'unique': true},
            {'columns': ['dbt_loaded_at']},
            {'columns': ['session_date']},
        ],
    )
}}

{#-
    Point-in-time features per daily series (symbol, bar settings), rows ordered by session: the
    features of session t use bars of sessions <= t only; target_log_return_next (session t+1) is the
    one column that looks ahead, and it is a target, never an observation.

    Incremental builds recompute each series from the session before its first re-landed bar (that
    row's target changes), continuing the recursive averages exactly from the states stored with the
    last unchanged row and reading the preceding `lookback` bars for the windows and lags. A full
    refresh and any sequence of incremental builds give identical rows (tests/test_dbt_build.py).
-#}

{%- set series = bar_series_columns() %}
{%- set series_csv = series | join(', ') %}
{#- The longest window (SMA 50, var warmup_sessions); lags (20) and 20-session windows of returns need fewer rows. #}
{%- set lookback = var("warmup_sessions") | int %}
{%- set ema = ema_function() %}
{%- set running = 'rows between unbounded preceding and current row' %}
{%- set states = ['ema_12', 'ema_26', 'macd_signal_9', 'avg_gain_14', 'avg_loss_14', 'atr_14'] %}

{#-
    No import CTE for int_bars_deduplicated or {{ this }}: the incremental branch reads them in lateral subqueries,
    one index range scan per changed series, and a CTE read twice is materialized by PostgreSQL (every bar, each
    build). The full build reads int_bars_deduplicated once, through the import CTE `bars`.
-#}

with

{% if is_incremental() %}

changed_series as (

    -- Series with bars landed since this table was last built, and the first session that changed.

    select {{ series_csv }}, min(session_date) as first_changed_session
    from {{ ref('int_bars_deduplicated') }}
    where dbt_loaded_at > (select coalesce(max(dbt_loaded_at), '-infinity'::timestamptz) from {{ this }})
    group by {{ series_csv }}

),

recompute_starts as (

    select
        changed_series.*,
        coalesce(previous_row.session_date, changed_series.first_changed_session) as recompute_from

    from changed_series
    left join lateral (
        select stored.session_date
        from {{ this }} as stored
        where {% for column in series %}stored.{{ column }} = changed_series.{{ column }} and {% endfor -%}
              stored.session_date < changed_series.first_changed_session
        order by stored.session_date desc
        limit 1
    ) as previous_row on true

),

-- Materialized so that the lateral lookups into {{ this }} run once per changed series, not once per bar read.
carried_state as materialized (

    select
        recompute_starts.*,
        coalesce(last_stored.session_number, 0) as carried_session_number,
        {%- for state in states %}
        last_stored.{{ state }} as carried_{{ state }},
        {%- endfor %}
        context.context_from

    from recompute_starts
    left join lateral (
        select stored.*
        from {{ this }} as stored
        where {% for column in series %}stored.{{ column }} = recompute_starts.{{ column }} and {% endfor -%}
              stored.session_date < recompute_starts.recompute_from
        order by stored.session_date desc
        limit 1
    ) as last_stored on true
    left join lateral (
        select min(recent.session_date) as context_from
        from (
            select stored.session_date
            from {{ this }} as stored
            where {% for column in series %}stored.{{ column }} = recompute_starts.{{ column }} and {% endfor -%}
                  stored.session_date < recompute_starts.recompute_from
            order by stored.session_date desc
            limit {{ lookback }}
        ) as recent
    ) as context on true

),

input_bars as (

    select
        bars.{{ series | join(', bars.') }},
        bars.session_date,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        bars.session_date >= carried_state.recompute_from as is_recomputed,
        carried_state.carried_session_number,
        {%- for state in states %}
        carried_state.carried_{{ state }}{{ ',' if not loop.last }}
        {%- endfor %}

    from carried_state
    -- Lateral: an index range scan per changed series, never a scan of every bar.
    cross join lateral (
        select *
        from {{ ref('int_bars_deduplicated') }} as series_bars
        where {% for column in series %}series_bars.{{ column }} = carried_state.{{ column }} and {% endfor -%}
              series_bars.session_date >= coalesce(carried_state.context_from, carried_state.recompute_from)
        offset 0  -- keeps the planner from flattening the lateral into a join over every bar
    ) as bars

),

{% else %}

bars as (

    select * from {{ ref('int_bars_deduplicated') }}

),

input_bars as (

    select
        {{ series_csv }},
        session_date,
        open,
        high,
        low,
        close,
        volume,
        true as is_recomputed,
        0::bigint as carried_session_number,
        {%- for state in states %}
        null::double precision as carried_{{ state }}{{ ',' if not loop.last }}
        {%- endfor %}

    from bars

),

{% endif %}

close_windows as (

    -- Context rows (before recompute_from) feed the windows and lags only: the running count and the recursive
    -- averages skip them (filter where is_recomputed) and continue from the carried states instead.
    select
        input_bars.*,
        carried_session_number + count(*) filter (where is_recomputed) over (by_session {{ running }}) as session_number,
        lag(close) over by_session as previous_close,
        lag(close, 5) over by_session as close_5_sessions_back,
        lag(close, 20) over by_session as close_20_sessions_back,
        avg(close) over (by_session rows between 9 preceding and current row) as sma_10,
        count(close) over (by_session rows between 9 preceding and current row) as sma_10_count,
        avg(close) over (by_session rows between 49 preceding and current row) as sma_50,
        count(close) over (by_session rows between 49 preceding and current row) as sma_50_count,
        avg(volume) over (by_session rows between 19 preceding and current row) as volume_mean_20,
        stddev_samp(volume) over (by_session rows between 19 preceding and current row) as volume_stddev_20,
        count(volume) over (by_session rows between 19 preceding and current row) as volume_count_20,
        {{ ema }}(close, 2::double precision / 13, carried_ema_12)
            filter (where is_recomputed) over (by_session {{ running }}) as ema_12,
        {{ ema }}(close, 2::double precision / 27, carried_ema_26)
            filter (where is_recomputed) over (by_session {{ running }}) as ema_26

    from input_bars
    window by_session as (partition by {{ series_csv }} order by session_date)

),

session_moves as (

    -- One session's move: the return, true range, gain and loss the smoothed averages below run over.
    select
        close_windows.*,
        case when close > 0 and previous_close > 0 then ln(close / previous_close) end as log_return_1,
        case
            when previous_close is null then high - low
            else greatest(high - low, abs(high - previous_close), abs(low - previous_close))
        end as true_range,
        case when previous_close is not null then greatest(close - previous_close, 0) end as gain,
        case when previous_close is not null then greatest(previous_close - close, 0) end as loss,
        ema_12 - ema_26 as macd_line

    from close_windows

),

smoothed as (

    select
        session_moves.*,
        stddev_samp(log_return_1) over (by_session rows between 19 preceding and current row) as log_return_stddev_20,
        count(log_return_1) over (by_session rows between 19 preceding and current row) as log_return_count_20,
        {{ ema }}(macd_line, 2::double precision / 10, carried_macd_signal_9)
            filter (where is_recomputed) over (by_session {{ running }}) as macd_signal_9,
        {{ ema }}(gain, 1::double precision / 14, carried_avg_gain_14)
            filter (where is_recomputed) over (by_session {{ running }}) as avg_gain_14,
        {{ ema }}(loss, 1::double precision / 14, carried_avg_loss_14)
            filter (where is_recomputed) over (by_session {{ running }}) as avg_loss_14,
        {{ ema }}(true_range, 1::double precision / 14, carried_atr_14)
            filter (where is_recomputed) over (by_session {{ running }}) as atr_14,
        lead(close) over by_session as next_close

    from session_moves
    window by_session as (partition by {{ series_csv }} order by session_date)

),

features as (

    select
        {{ series_csv }},
        session_date,
        session_number,
        open,
        high,
        low,
        close,
        volume,
        log_return_1,
        case when close > 0 and close_5_sessions_back > 0 then ln(close / close_5_sessions_back) end as log_return_5,
        case when close > 0 and close_20_sessions_back > 0 then ln(close / close_20_sessions_back) end as log_return_20,
        case when log_return_count_20 = 20 then log_return_stddev_20 end as realized_vol_20,
        case when sma_10_count = 10 and sma_10 <> 0 then close / sma_10 - 1 end as close_to_sma_10,
        case when sma_50_count = 50 and sma_50 <> 0 then close / sma_50 - 1 end as close_to_sma_50,
        case
            -- 100 * (g / (g + l)) stays within 0..100 in floating point; (100 * g) / (g + l) may not.
            when avg_gain_14 + avg_loss_14 > 0 then 100 * (avg_gain_14 / (avg_gain_14 + avg_loss_14))
            when avg_gain_14 is not null and avg_loss_14 is not null then 50::double precision
        end as rsi_14,
        macd_line / nullif(close, 0) as macd_to_close,
        macd_signal_9 / nullif(close, 0) as macd_signal_to_close,
        (macd_line - macd_signal_9) / nullif(close, 0) as macd_hist_to_close,
        atr_14 / nullif(close, 0) as atr_14_to_close,
        case
            when volume_count_20 = 20 and volume_stddev_20 > 0 then (volume - volume_mean_20) / volume_stddev_20
            -- 20 equal volumes (weeks without a trade: IBKR serves volume 0): the volume is its mean, so 0, like
            -- RSI's 50 without gains or losses. Null would drop these sessions from the middle of the mart.
            when volume_count_20 = 20 then 0
        end as volume_zscore_20,
        (high - low) / nullif(close, 0) as high_low_range,
        case when close > 0 and next_close > 0 then ln(next_close / close) end as target_log_return_next,
        {{ states | join(',\n        ') }},
        current_timestamp as dbt_loaded_at

    from smoothed
    where is_recomputed

)

select * from features
