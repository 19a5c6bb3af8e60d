-- Every NYSE session between each daily series' first and last bar, whether a bar arrived for it, and if not,
-- the reason warehouse/seeds/known_missing_sessions.csv records.

{%- set series_csv = bar_series_columns() | join(', ') %}

with series as (

    select
        {{ series_csv }},
        min(session_date) as first_session,
        max(session_date) as last_session
    from {{ ref('int_bars_deduplicated') }}
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
    inner join {{ ref('xnys_sessions') }} as sessions
        on sessions.session_date between series.first_session and series.last_session

),

matched as (

    select
        expected.*,
        bars.session_date is not null as has_bar,
        known.reason as known_missing_reason
    from expected
    left join {{ ref('int_bars_deduplicated') }} as bars
        using ({{ series_csv }}, session_date)
    left join {{ ref('known_missing_sessions') }} as known
        on known.symbol = expected.symbol
       and known.session_date = expected.session_date
       and bars.session_date is null

)

select * from matched
