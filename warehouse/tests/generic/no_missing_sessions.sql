{#
    Fails for every series (one per combination of `partition_by`) that misses more than `threshold`
    exchange sessions between its first and last row. `calendar` holds one row per session in
    `calendar_column`. Each failure row names the series, how many sessions are missing and which, and `advice`
    (a text the failure rows carry, so that whoever reads them learns the way out).

    `known_missing` (optional) is a relation of sessions known to be missing, one row per `known_missing_by`
    columns (a subset of `partition_by`) and `session_date`: those sessions are not gaps, wherever their series
    misses them. Any other missing session counts as before.

    Set-based so that it stays fast on millions of rows: sessions are counted per series first, and
    the missing dates are listed only for the series that fail.
#}
{% test no_missing_sessions(model, column_name, calendar, partition_by, threshold=0, calendar_column='session_date',
                            known_missing=none, known_missing_by=['symbol'], advice='') %}

{%- set partition_csv = partition_by | join(', ') %}

with sessions as (

    select distinct {{ calendar_column }} as session_date
    from {{ calendar }}

),

{% if known_missing is not none %}
known as (

    select distinct {{ known_missing_by | join(', ') }}, session_date
    from {{ known_missing }}

),
{% endif %}

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
        ) as sessions_expected,
        {% if known_missing is not none -%}
        (
            -- Recorded sessions of this series that it does miss (one that has a bar after all misses nothing).
            select count(*)
            from known
            inner join sessions on sessions.session_date = known.session_date
            where known.session_date between series.first_session and series.last_session
              {%- for column in known_missing_by %}
              and known.{{ column }} = series.{{ column }}
              {%- endfor %}
              and not exists (
                  select 1
                  from {{ model }} as present
                  where present.{{ column_name }} = known.session_date
                  {%- for column in partition_by %}
                    and present.{{ column }} = series.{{ column }}
                  {%- endfor %}
              )
        )
        {%- else -%}
        0
        {%- endif %} as sessions_known_missing
    from series

),

failing as (

    select *
    from counted
    where sessions_expected - sessions_present - sessions_known_missing > {{ threshold }}

),

missing as (

    select
        {% for column in partition_by -%}
        failing.{{ column }},
        {% endfor -%}
        failing.sessions_known_missing,
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
    {%- if known_missing is not none %}
      and not exists (
        select 1
        from known
        where known.session_date = sessions.session_date
        {%- for column in known_missing_by %}
          and known.{{ column }} = failing.{{ column }}
        {%- endfor %}
    )
    {%- endif %}

)

select
    {{ partition_csv }},
    count(*) as missing_sessions,
    string_agg(session_date::text, ', ' order by session_date) as missing_session_dates,
    max(sessions_known_missing) as known_missing_sessions,
    '{{ advice | replace("'", "''") }}'::text as what_to_do
from missing
group by {{ partition_csv }}

{% endtest %}
