{#
    The observation features of marts.training_bars, in column order: the columns with meta.role = feature
    in warehouse/models/marts/training_bars.yml, the one list of features (the training job reads the same
    YAML). They are read from dbt's graph, which is filled when dbt executes; while dbt only parses the
    project the list is empty, which changes no dependency.
#}
{% macro training_feature_columns() -%}
    {%- set features = [] -%}
    {%- if execute -%}
        {%- set mart = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                                            | selectattr('name', 'equalto', 'training_bars') | first -%}
        {%- for column in mart.columns.values() -%}
            {%- set meta = column.meta or {} -%}
            {%- if (meta.role or (column.config.meta or {}).role) == 'feature' -%}
                {%- do features.append(column.name) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if not features -%}
            {{ exceptions.raise_compiler_error("training_bars.yml lists no column with meta.role = feature") }}
        {%- endif -%}
    {%- endif -%}
    {{ return(features) }}
{%- endmacro %}
