{#
    Fails for every row where `column_name` is null although it is not the last row of its partition in
    `order_by` order (training_bars: only a symbol's last session may lack its next-session target).
#}
{% test null_only_on_last_row(model, column_name, partition_by, order_by) %}

with

ranked as (

    select
        model_rows.*,
        row_number() over (partition by {{ partition_by }} order by {{ order_by }} desc) as rows_from_last

    from {{ model }} as model_rows

)

select *
from ranked
where {{ column_name }} is null
  and rows_from_last > 1

{% endtest %}
