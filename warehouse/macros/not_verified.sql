{#
    The condition no_bad_ticks and no_bad_intraday_prices add to keep a bar checked and found real out of their
    failures: no row of `verified` (a relation such as the verified_price_moves seed; none: nothing is exempt) for the
    same `verified_by` columns of `row` and the session `session` (a SQL expression of `row`'s session date).
#}
{% macro not_verified(verified, verified_by, row, session) -%}
    {%- if verified is not none %}
      and not exists (
        select 1
        from {{ verified }} as verified
        where verified.session_date = {{ session }}
        {%- for column in verified_by %}
          and verified.{{ column }} = {{ row }}.{{ column }}
        {%- endfor %}
    )
    {%- endif %}
{%- endmacro %}
