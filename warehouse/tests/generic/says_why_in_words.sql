{#
    Fails for every row whose `column_name` has no word in it: an administrator's reason must say why in words, so
    "-", "?" or "x" fail (an empty or blank field is already null: dbt reads a seed so; pair this with not_null).
#}
{% test says_why_in_words(model, column_name) %}

select *
from {{ model }}
where {{ column_name }} !~ '[[:alpha:]]{2}'

{% endtest %}
