-- Every NYSE session between each daily series' first and last bar, whether a bar arrived for it, and if not,
-- the reason warehouse/seeds/known_missing_sessions.csv records.

{%- set series_csv = bar_series_columns() | join(', ') %}

with

-- Not materialized: read twice, PostgreSQL would otherwise copy every bar into the CTE instead of reading the table.
bars as not materialized (

    select * from {{ ref('int_bars_deduplicated') }}

),

sessions as (

    select session_date from {{ ref('xnys_sessions') }}

),

known_missing_sessions as (

    select symbol, session_date, reason from {{ ref('known_missing_sessions') }}

),

series as (

    select
        {{ series_csv }},
        min(session_date) as first_session,
        max(session_date) as last_session
    from bars
    group by {{ series_csv }}

),

expected as (

    select
        series.symbol,
        series.bar_size,
        series.what_to_show,
        series.use_rth,
        sessions.session_date
    from series
    inner join sessions
        on sessions.session_date between series.first_session and series.last_session

),

matched as (

    select
        expected.*,
        bars.session_date is not null as has_bar,
        known.reason as known_missing_reason
    from expected
    left join bars
        using ({{ series_csv }}, session_date)
    left join known_missing_sessions as known
        on known.symbol = expected.symbol
       and known.session_date = expected.session_date
       and bars.session_date is null

)

select * from matched
