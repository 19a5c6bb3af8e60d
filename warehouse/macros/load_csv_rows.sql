{#
    How a seed's rows are inserted (dbt's seed materialization calls it): dbt's own default__load_csv_rows, the same
    statements and bindings, but with the placeholder (`%s`) looked up once instead of once per value. dbt's renders
    `get_binding_char()` (an adapter.dispatch) for every value of every row: for the 7,794 sessions of xnys_sessions
    that is 31,176 macro calls, about 1.5 s of Python on the path of every `dbt build` and `dbt seed` (every model
    that reads the calendar waits for it). Here the whole seed of the calendar, its file check included, costs about
    0.3 s of CPU.
#}
{% macro postgres__load_csv_rows(model, agate_table) %}

  {% set batch_size = get_batch_size() %}
  {% set cols_sql = get_seed_column_quoted_csv(model, agate_table.column_names) %}
  {% set row_sql = '(' ~ ([get_binding_char() | trim] * (agate_table.column_names | length)) | join(',') ~ ')' %}
  {% set statements = [] %}

  {% for chunk in agate_table.rows | batch(batch_size) %}
      {% set bindings = [] %}
      {% for row in chunk %}
          {% do bindings.extend(row) %}
      {% endfor %}

      {% set sql %}
          insert into {{ this.render() }} ({{ cols_sql }}) values
          {{ ([row_sql] * (chunk | length)) | join(',') }}
      {% endset %}

      {% do adapter.add_query(sql, bindings=bindings, abridge_sql_log=True) %}

      {% if loop.index0 == 0 %}
          {% do statements.append(sql) %}
      {% endif %}
  {% endfor %}

  {# Return SQL so we can render it out into the compiled files #}
  {{ return(statements[0]) }}
{% endmacro %}
