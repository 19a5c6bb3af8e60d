{#
    Custom incremental strategy `replace_intervals`, for a table whose rows may also have to disappear
    (training_bars: a corrected bar can leave a session with a null feature, and then without a row).

    The model's pre-hook writes the temporary table `<model>__rebuild_scope` (symbol, from_date): every
    stored row of that symbol from that date on is replaced. The model selects every row that falls into
    the scope; this strategy deletes every stored row in the scope and inserts the new ones, so rows the
    model no longer produces inside the scope are gone afterwards.
#}
{% macro rebuild_scope_relation(model_relation) -%}
    {{ model_relation.identifier }}__rebuild_scope
{%- endmacro %}

{% macro get_incremental_replace_intervals_sql(arg_dict) %}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set scope = rebuild_scope_relation(target) -%}
    {%- set dest_cols_csv = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}

    -- Row ids first (an index range scan per scope row), then a TID scan: never a scan of the table.
    delete from {{ target }}
    where ctid = any(array(
        select stored.ctid
        from {{ scope }} as scope
        cross join lateral (
            select ctid
            from {{ target }} as stored
            where stored.symbol = scope.symbol
              and stored.session_date >= scope.from_date
            offset 0
        ) as stored
    ));

    insert into {{ target }} ({{ dest_cols_csv }})
    select {{ dest_cols_csv }}
    from {{ source }}
{% endmacro %}
