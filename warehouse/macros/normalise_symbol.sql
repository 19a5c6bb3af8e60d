{#
    A raw symbol as the warehouse spells it, the SQL twin of ingest.symbols.normalize_symbol: trimmed, upper-case,
    class shares with a space as IBKR spells them (BRK.B, brk.b and ' BRK B ' all become BRK B). Whether the result
    is a ticker at all is var symbol_pattern's job (stg_ibkr__bars.is_valid_symbol).
#}
{% macro normalise_symbol(column) -%}
    replace(upper(btrim({{ column }})), '.', ' ')
{%- endmacro %}
