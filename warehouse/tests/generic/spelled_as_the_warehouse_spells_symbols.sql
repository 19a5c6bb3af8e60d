{#
    Fails for every row whose `column_name` is not a symbol as the warehouse spells it: what staging makes of a
    ticker (normalise_symbol: upper case, a class share with a space, BRK B not BRK.B) and a match for var
    symbol_pattern. For the files an administrator writes by hand (the seeds), so a row names a symbol the bars
    can have.
#}
{% test spelled_as_the_warehouse_spells_symbols(model, column_name) %}

select *
from {{ model }}
where not (
    {{ column_name }} = {{ normalise_symbol(column_name) }}
    and {{ column_name }} ~ '{{ var("symbol_pattern") }}'
)

{% endtest %}
