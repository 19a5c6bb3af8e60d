{#
    Fails for every row whose `column_name` is not the number of NYSE sessions from `start_column` to
    `end_column`, both inclusive.
#}
{% test counts_sessions(model, column_name, start_column, end_column) %}

with

checked as (

    select
        model_rows.*,
        through_end.sessions_through_date - before_start.sessions_through_date as sessions_in_range

    from {{ model }} as model_rows
    left join {{ ref('int_calendar_days_numbered') }} as through_end
        on through_end.calendar_date = model_rows.{{ end_column }}
    left join {{ ref('int_calendar_days_numbered') }} as before_start
        on before_start.calendar_date = model_rows.{{ start_column }} - 1

)

select *
from checked
where sessions_in_range is distinct from {{ column_name }}

{% endtest %}
