{#
    Fails for every value of `column_name` that is not clean text:
      - not NFC-normalised (composed) Unicode,
      - contains a control character (C0 U+0001-U+001F, DEL, C1 U+0080-U+009F),
      - contains U+FFFD, the replacement character a lossy decoder leaves behind,
      - starts or ends with whitespace.
    Nulls pass (pair it with not_null where a value is required). Needs a UTF8 database.
#}
{% test text_is_clean(model, column_name) %}

with checked as (

    select
        {{ column_name }} as value,
        case
            when not ({{ column_name }} is nfc normalized) then 'not NFC-normalised'
            when {{ column_name }} ~ '[\u0001-\u001f\u007f-\u009f]' then 'control character'
            when strpos({{ column_name }}, U&'\FFFD') > 0 then 'U+FFFD replacement character'
            when {{ column_name }} ~ '^\s|\s$' then 'leading or trailing whitespace'
        end as problem

    from {{ model }}
    where {{ column_name }} is not null

)

select value, problem, count(*) as occurrences
from checked
where problem is not null
group by value, problem

{% endtest %}
