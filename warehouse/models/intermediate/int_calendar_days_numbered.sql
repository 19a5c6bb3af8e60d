{{ config(materialized='table') }}

-- Every calendar day of the seed's range with running session counts, so that "how many sessions lie
-- between two dates" and "the session n sessions before this one" are equality joins, not range scans.

with sessions as (

    select * from {{ ref('xnys_sessions') }}

),

days as (

    select day::date as calendar_date
    from generate_series(
        (select min(session_date) from sessions),
        (select max(session_date) from sessions),
        interval '1 day'
    ) as day

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
