{# Column lists shared by the bar models, so that the key is spelled in one place. #}

{% macro bar_series_columns() -%}
    {{ return(['symbol', 'bar_size', 'what_to_show', 'use_rth']) }}
{%- endmacro %}

{% macro bar_key_columns() -%}
    {{ return(bar_series_columns() + ['session_date']) }}
{%- endmacro %}

{# The values a re-delivery may disagree on; lineage columns (source, load_id, ...) are not values. #}
{% macro bar_value_columns() -%}
    {{ return(['open', 'high', 'low', 'close', 'volume', 'wap', 'bar_count']) }}
{%- endmacro %}

{#
    True when the rows of `window_name` disagree on any of `columns`: min <> max, or some rows null and
    others not. Works as a window expression (no count(distinct) needed).
#}
{% macro values_disagree(columns, window_name) -%}
    (
    {%- for column in columns %}
        coalesce(min({{ column }}) over {{ window_name }} <> max({{ column }}) over {{ window_name }}, false)
        or count({{ column }}) over {{ window_name }} not in (0, count(*) over {{ window_name }})
        {%- if not loop.last %} or {% endif %}
    {%- endfor %}
    )
{%- endmacro %}

{# The bar settings the training mart is built for (vars daily_bar_size, what_to_show, use_rth). #}
{% macro is_training_bar_settings(relation_alias=none) -%}
    {%- set prefix = relation_alias ~ '.' if relation_alias else '' -%}
    {{ prefix }}bar_size = '{{ var("daily_bar_size") }}'
    and {{ prefix }}what_to_show = '{{ var("what_to_show") }}'
    and {{ prefix }}use_rth = {{ 'true' if var('use_rth') else 'false' }}
{%- endmacro %}

{# IBKR's quote views: their bars carry -1 for volume, wap and bar count ("not applicable"). #}
{% macro quote_what_to_show() -%}
    ('MIDPOINT', 'BID', 'ASK', 'BID_ASK')
{%- endmacro %}
