{#
    Fails for every row with fewer than `at_least` (an SQL expression over the row, e.g. a column) NYSE
    sessions strictly between the dates in `earlier_column` and `later_column`: the sessions that belong
    to neither of two ranges (walk-forward folds: the purge and the embargo).
#}
{% test sessions_between(model, earlier_column, later_column, at_least) %}

with

checked as (

    select
        model_rows.*,
        before_later.sessions_through_date - through_earlier.sessions_through_date as sessions_between

    from {{ model }} as model_rows
    left join {{ ref('int_calendar_days_numbered') }} as through_earlier
        on through_earlier.calendar_date = model_rows.{{ earlier_column }}
    left join {{ ref('int_calendar_days_numbered') }} as before_later
        on before_later.calendar_date = model_rows.{{ later_column }} - 1

)

select *
from checked
where coalesce(sessions_between < ({{ at_least }}), true)

{% endtest %}
