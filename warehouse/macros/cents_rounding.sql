{#
    The rounding no_bad_ticks and no_bad_intraday_prices allow `price` (a SQL expression): `rounding` (half a
    cent) when it is a whole number of cents, as a CSV file in cents states every price; none when it is not, since
    0.0042 or 1.2345 was not rounded to cents. Below half a cent the allowance would otherwise hide every fall
    (the price less half a cent is negative) and most rises (0.004 to 0.04 is 10x; 0.035 is not 5x 0.009).
    numeric: a double precision price is read as its 15 significant digits, 0.07 as 0.07.
#}
{% macro cents_rounding(price, rounding) -%}
    (case when mod(({{ price }})::numeric, {{ 2 * rounding }}) = 0 then {{ rounding }} else 0 end)
{%- endmacro %}

{#- The least and the greatest value `price` may stand for (a cents price less or plus half a cent). -#}
{% macro cents_low(price, rounding) -%}
    ({{ price }} - {{ cents_rounding(price, rounding) }})
{%- endmacro %}

{% macro cents_high(price, rounding) -%}
    ({{ price }} + {{ cents_rounding(price, rounding) }})
{%- endmacro %}
