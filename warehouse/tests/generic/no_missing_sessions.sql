{#
    Fails for every series (one per combination of `partition_by`) that misses more than `threshold`
    exchange sessions between its first and last row. `calendar` holds one row per session in
    `calendar_column`. Each failure row names the series, how many sessions are missing and which.

    Set-based so that it stays fast on millions of rows: sessions are counted per series first, and
    the missing dates are listed only for the series that fail.
#}
{% test no_missing_sessions(model, column_name, calendar, partition_by, threshold=0, calendar_column='session_date') %}

{%- set partition_csv = partition_by | join(', ') %}

with sessions as (

    select distinct {{ calendar_column }} as session_date
    from {{ calendar }}

),

series as (

    select
        {{ partition_csv }},
        min(bars.{{ column_name }}) as first_session,
        max(bars.{{ column_name }}) as last_session,
        count(distinct sessions.session_date) as sessions_present
    from {{ model }} as bars
    left join sessions on sessions.session_date = bars.{{ column_name }}
    group by {{ partition_csv }}

),

counted as (

    select
        series.*,
        (
            select count(*)
            from sessions
            where sessions.session_date between series.first_session and series.last_session
        ) as sessions_expected
    from series

),

failing as (

    select *
    from counted
    where sessions_expected - sessions_present > {{ threshold }}

),

missing as (

    select
        {% for column in partition_by -%}
        failing.{{ column }},
        {% endfor -%}
        sessions.session_date
    from failing
    inner join sessions
        on sessions.session_date between failing.first_session and failing.last_session
    where not exists (
        select 1
        from {{ model }} as present
        where present.{{ column_name }} = sessions.session_date
        {%- for column in partition_by %}
          and present.{{ column }} = failing.{{ column }}
        {%- endfor %}
    )

)

select
    {{ partition_csv }},
    count(*) as missing_sessions,
    string_agg(session_date::text, ', ' order by session_date) as missing_session_dates
from missing
group by {{ partition_csv }}

{% endtest %}
