{{ config(materialized='view') }}

-- Per symbol and bar settings: what arrived, what is missing, what was corrected and what was left out.

{%- set series = bar_series_columns() %}
{%- set series_csv = series | join(', ') %}

with bars as (

    select * from {{ ref('int_bars_deduplicated') }}

),

days as (

    select * from {{ ref('int_calendar_days_numbered') }}

),

excluded_bars as (

    select * from {{ ref('int_bars_excluded') }}

),

load_batches as (

    select * from {{ ref('stg_ibkr__load_batches') }}

),

training_bars as (

    select symbol from {{ ref('training_bars') }}

),

known_missing_sessions as (

    select symbol, session_date from {{ ref('known_missing_sessions') }}

),

verified_price_moves as (

    select symbol, session_date from {{ ref('verified_price_moves') }}

),

excluded as (

    select
        {{ series_csv }},
        count(*) as excluded_rows,
        count(*) filter (where exclusion_reason like 'symbol%') as excluded_rows_bad_symbol,
        count(*) filter (where exclusion_reason like 'bar size%') as excluded_rows_not_daily,
        count(*) filter (where exclusion_reason like 'landed before%') as excluded_rows_not_final
    from excluded_bars
    group by {{ series_csv }}

),

readjustments as (

    -- Loads that found the source had re-adjusted the history (a split) and re-fetched the whole window.
    select
        {{ series_csv }},
        count(*) as readjustments,
        max(finished_at) as last_readjusted_at,
        (array_agg(readjustment_factor order by finished_at desc))[1] as last_readjustment_factor
    from load_batches
    where readjustment_factor is not null
      and status = 'ok'
    group by {{ series_csv }}

),

training_rows as (

    select symbol, count(*) as training_rows
    from training_bars
    group by symbol

),

arrived as (

    select
        {{ series_csv }},
        min(bars.session_date) as first_session,
        max(bars.session_date) as last_session,
        count(*) as bars_present,
        count(*) filter (where days.is_session) as sessions_present,
        count(*) filter (where not coalesce(days.is_session, false)) as bars_on_non_session_days,
        count(*) filter (where bars.has_corrections) as corrected_sessions,
        sum(bars.versions_landed) as rows_landed,
        sum(bars.versions_landed - 1) as rows_superseded,
        max(bars.ingested_at) as last_ingested_at

    from bars
    left join days on days.calendar_date = bars.session_date
    group by {{ series_csv }}

),

expected as (

    select
        arrived.*,
        through_last.sessions_through_date - coalesce(before_first.sessions_through_date, 0) as sessions_expected

    from arrived
    left join days as through_last on through_last.calendar_date = arrived.last_session
    left join days as before_first on before_first.calendar_date = arrived.first_session - 1

),

known_missing as (

    -- Sessions of warehouse/seeds/known_missing_sessions.csv between a series' first and last bar that it misses.
    select
        {% for column in series -%}
        expected.{{ column }},
        {% endfor -%}
        count(distinct known.session_date) as sessions_known_missing

    from expected
    inner join known_missing_sessions as known
        on known.symbol = expected.symbol
       and known.session_date between expected.first_session and expected.last_session
    inner join days on days.calendar_date = known.session_date and days.is_session
    where not exists (
        select 1
        from bars
        where {% for column in series %}bars.{{ column }} = expected.{{ column }} and {% endfor -%}
              bars.session_date = known.session_date
    )
    group by {% for column in series %}expected.{{ column }}{{ ', ' if not loop.last }}{% endfor %}

),

verified_moves as (

    -- Bars of warehouse/seeds/verified_price_moves.csv: checked against another source and found real, so the
    -- bad-price data tests pass them.
    select
        {% for column in series -%}
        bars.{{ column }},
        {% endfor -%}
        count(*) as sessions_verified_moves

    from bars
    inner join verified_price_moves as verified
        on verified.symbol = bars.symbol
       and verified.session_date = bars.session_date
    group by {% for column in series %}bars.{{ column }}{{ ', ' if not loop.last }}{% endfor %}

),

coverage as (

    select
        {% for column in series -%}
        coalesce(expected.{{ column }}, excluded.{{ column }}) as {{ column }},
        {% endfor -%}
        expected.first_session,
        expected.last_session,
        coalesce(expected.sessions_expected, 0) as sessions_expected,
        coalesce(expected.sessions_present, 0) as sessions_present,
        coalesce(expected.sessions_expected - expected.sessions_present, 0) as sessions_missing,
        coalesce(known_missing.sessions_known_missing, 0) as sessions_known_missing,
        coalesce(verified_moves.sessions_verified_moves, 0) as sessions_verified_moves,
        coalesce(expected.bars_on_non_session_days, 0) as bars_on_non_session_days,
        coalesce(expected.corrected_sessions, 0) as corrected_sessions,
        coalesce(expected.rows_landed, 0) as rows_landed,
        coalesce(expected.rows_superseded, 0) as rows_superseded,
        coalesce(excluded.excluded_rows, 0) as excluded_rows,
        coalesce(excluded.excluded_rows_bad_symbol, 0) as excluded_rows_bad_symbol,
        coalesce(excluded.excluded_rows_not_daily, 0) as excluded_rows_not_daily,
        coalesce(excluded.excluded_rows_not_final, 0) as excluded_rows_not_final,
        expected.last_ingested_at

    from expected
    full outer join excluded using ({{ series_csv }})
    left join known_missing using ({{ series_csv }})
    left join verified_moves using ({{ series_csv }})

),

with_readjustments as (

    select
        coverage.*,
        coalesce(readjustments.readjustments, 0) as readjustments,
        readjustments.last_readjusted_at,
        readjustments.last_readjustment_factor

    from coverage
    left join readjustments using ({{ series_csv }})

),

with_training as (

    select
        with_readjustments.*,
        coalesce(
            case when {{ is_training_bar_settings('with_readjustments') }} then training_rows.training_rows end, 0
        ) as training_rows

    from with_readjustments
    left join training_rows
        on training_rows.symbol = with_readjustments.symbol

)

select * from with_training
