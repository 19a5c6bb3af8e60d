{{ config(materialized='table') }}

-- Every calendar day of the seed's range with running session counts, so that "how many sessions lie
-- between two dates" and "the session n sessions before this one" are equality joins, not range scans.

with sessions as (

    select * from {{ ref('xnys_sessions') }}

),

days as (

    -- Dates plus whole days, never timestamps: generate_series over dates steps a timestamptz through the session's
    -- TimeZone, where a day can be missing (Pacific/Apia skipped 2011-12-30, an NYSE session).
    select first_day.session_date + day_offset as calendar_date
    from (select min(session_date) as session_date, max(session_date) as last_date from sessions) as first_day
    cross join generate_series(0, first_day.last_date - first_day.session_date) as day_offset

),

numbered as (

    select
        days.calendar_date,
        sessions.session_date is not null as is_session,
        coalesce(sessions.is_half_day, false) as is_half_day,
        count(sessions.session_date) over (order by days.calendar_date) as sessions_through_date

    from days
    left join sessions on sessions.session_date = days.calendar_date

),

calendar_days as (

    select
        calendar_date,
        is_session,
        is_half_day,
        sessions_through_date,
        case when is_session then sessions_through_date end as session_index

    from numbered

)

select * from calendar_days
