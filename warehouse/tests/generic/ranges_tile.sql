{#
    Fails for every pair of consecutive rows (in `order_by` order) whose date ranges [start_column,
    end_column] do not tile the NYSE sessions: the later range must start on the session right after the
    earlier one ends (an overlap, a gap or ranges out of order all fail).
#}
{% test ranges_tile(model, start_column, end_column, order_by) %}

with

sessions as (

    select session_index, calendar_date as session_date
    from {{ ref('int_calendar_days_numbered') }}
    where is_session

),

consecutive as (

    select
        {{ order_by }} as ordinal,
        {{ start_column }} as range_start,
        {{ end_column }} as range_end,
        lag({{ end_column }}) over (order by {{ order_by }}) as previous_range_end

    from {{ model }}

)

select consecutive.*
from consecutive
left join sessions as previous_end on previous_end.session_date = consecutive.previous_range_end
left join sessions as this_start on this_start.session_date = consecutive.range_start
where consecutive.previous_range_end is not null
  and this_start.session_index is distinct from previous_end.session_index + 1

{% endtest %}
