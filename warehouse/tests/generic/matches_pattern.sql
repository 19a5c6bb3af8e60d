{# Fails for every non-null value of `column_name` that does not match the POSIX regular expression `pattern`. #}
{% test matches_pattern(model, column_name, pattern) %}

select {{ column_name }} as value, count(*) as occurrences
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} !~ '{{ pattern }}'
group by {{ column_name }}

{% endtest %}
