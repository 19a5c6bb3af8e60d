{#
    Custom schema names are used verbatim: models in models/staging land in `staging`, not
    `<target_schema>_staging` (dbt's default). Models without a custom schema use the target's schema.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
