{#
    Fails for every row where `expression` is false (rows where it is null pass: say `coalesce` or
    `is not null` in the expression where null must fail). `where` restricts the rows checked.
#}
{% test expression_is_true(model, expression, where_clause=none, column_name=none) %}

select *
from {{ model }}
where not ({{ expression }})
{%- if where_clause %}
  and ({{ where_clause }})
{%- endif %}

{% endtest %}
