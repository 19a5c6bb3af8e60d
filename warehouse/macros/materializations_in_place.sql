{#
    The view and table materializations, rebuilding a relation in place where its columns allow it.

    dbt's own (the global project's) rebuild a relation by swapping in a new one: create `x__dbt_tmp`, rename `x` to
    `x__dbt_backup` and the new one to `x`, commit, then `drop x__dbt_backup cascade`. The cascade drops every view
    that reads `x` (PostgreSQL binds a view to the relations it reads, not to their names): marts.bar_corrections,
    marts.symbol_coverage and marts.walk_forward_fold_rows vanished for seconds during every `dbt run` (an analyst
    querying them got "relation does not exist") and for good after `dbt run --select walk_forward_folds`, which does
    not rebuild them.

    Here an existing relation keeps its identity, so the views that read it stay:
      - a view whose definition and columns are unchanged is left as it is (no lock at all, so dbt does not wait for a
        reader of it); a changed one is replaced with `create or replace view`, which PostgreSQL allows when the
        existing columns keep their names, types and order (new ones may be added at the end);
      - a table whose columns are unchanged (names, types, order) gets its rows replaced in one transaction
        (`delete`, then `insert` from the new build): readers see the old rows or the new ones, never none, and
        wait for nothing (no lock stronger than a row writer's).
    Anything else (a new relation, a change of type or of columns, a table with `indexes` configured) takes dbt's swap,
    exactly as the default materializations do, and so does an incremental model's `--full-refresh` (dbt's own
    materialization), or the rebuild in full its build record asks for (macros/incremental_build_record.sql): then
    the views that read the relation are dropped and come back only when they are built
    (select them too: `--select training_bars+`), and the swap waits for every open transaction that read it.
#}

{% macro relation_column_signature(relation) %}
    {%- set query -%}
        select coalesce(string_agg(
            quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attcollation::text,
            ', ' order by a.attnum
        ), '')
        from pg_attribute as a
        where a.attrelid = '{{ relation }}'::regclass and a.attnum > 0 and not a.attisdropped
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{% endmacro %}

{% macro view_definition(relation) %}
    {%- set query -%}
        select pg_get_viewdef('{{ relation }}'::regclass)
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{% endmacro %}


{%- materialization view, adapter='postgres' -%}

  {%- set existing_relation = load_cached_relation(this) -%}
  {%- if existing_relation is none or existing_relation.type != 'view' -%}
    {{ return(dbt.materialization_view_default()) }}
  {%- endif -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation = make_backup_relation(target_relation, 'view') -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {% set grant_config = config.get('grants') %}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}

  -- `BEGIN` happens here:
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  -- The new definition, built beside the old one, to compare with it.
  {% call statement('main') -%}
    {{ get_create_view_as_sql(intermediate_relation, sql) }}
  {%- endcall %}

  {%- set old_columns = relation_column_signature(existing_relation) -%}
  {%- set new_columns = relation_column_signature(intermediate_relation) -%}
  {%- set swapped = false -%}
  {%- if old_columns == new_columns and view_definition(existing_relation) == view_definition(intermediate_relation) -%}
    {{ log("view " ~ target_relation ~ " unchanged: kept as it is", info=false) }}
    {% do adapter.drop_relation(intermediate_relation) %}
  {%- elif new_columns == old_columns or new_columns.startswith(old_columns ~ ', ') -%}
    {% do adapter.drop_relation(intermediate_relation) %}
    {% call statement('replace_in_place') -%}
      create or replace view {{ target_relation }} as (
        {{ sql }}
      );
    {%- endcall %}
  {%- else -%}
    {%- set swapped = true -%}
    {{ adapter.rename_relation(existing_relation, backup_relation) }}
    {{ adapter.rename_relation(intermediate_relation, target_relation) }}
  {%- endif -%}

  {% do apply_grants(target_relation, grant_config, should_revoke=true) %}
  {% do persist_docs(target_relation, model) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}

  {{ adapter.commit() }}

  {% if swapped %}
    {{ drop_relation_if_exists(backup_relation) }}
  {% endif %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{%- endmaterialization -%}


{% materialization table, adapter='postgres' %}

  {%- set existing_relation = load_cached_relation(this) -%}
  {%- if existing_relation is none or existing_relation.type != 'table' or config.get('indexes') -%}
    {{ return(dbt.materialization_table_default()) }}
  {%- endif -%}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation = make_backup_relation(target_relation, 'table') -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {% set grant_config = config.get('grants') %}

  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}

  -- `BEGIN` happens here:
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ get_create_table_as_sql(False, intermediate_relation, sql) }}
  {%- endcall %}

  {%- set swapped = relation_column_signature(existing_relation) != relation_column_signature(intermediate_relation) -%}
  {%- if swapped -%}
    {{ adapter.rename_relation(existing_relation, backup_relation) }}
    {{ adapter.rename_relation(intermediate_relation, target_relation) }}
  {%- else -%}
    {% call statement('replace_rows') -%}
      -- Another build replacing these rows at the same time waits here (readers do not): two deletes that both ran
      -- before either insert committed would leave both inserts' rows.
      lock table {{ target_relation }} in share row exclusive mode;
      delete from {{ target_relation }};
      insert into {{ target_relation }} select * from {{ intermediate_relation }};
    {%- endcall %}
    {% do adapter.drop_relation(intermediate_relation) %}
  {%- endif -%}

  {{ run_hooks(post_hooks, inside_transaction=True) }}

  {% do apply_grants(target_relation, grant_config, should_revoke=not swapped) %}
  {% do persist_docs(target_relation, model) %}

  -- `COMMIT` happens here
  {{ adapter.commit() }}

  {% if swapped %}
    {{ drop_relation_if_exists(backup_relation) }}
  {% endif %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{#
    A seed reloaded without --full-refresh has its rows deleted, not truncated: TRUNCATE waits for every reader of the
    table (an analyst's open transaction on a mart that reads the calendar held `dbt build` and `make db-up` for as
    long as it stayed open), a DELETE for none, and readers see the old rows until the new ones are committed.
    Unlike TRUNCATE, DELETE does not keep a second load out: the lock does (or both loads' rows would stay).
#}
{% macro postgres__reset_csv_table(model, full_refresh, old_relation, agate_table) %}
    {% if full_refresh %}
        {{ return(default__reset_csv_table(model, full_refresh, old_relation, agate_table)) }}
    {% endif %}
    {% set sql = "delete from " ~ old_relation.render() %}
    {% call statement('reset_seed_rows') -%}
      -- As in the table materialization above: a concurrent seed load waits here, readers do not.
      lock table {{ old_relation.render() }} in share row exclusive mode;
      {{ sql }}
    {%- endcall %}
    {{ return(sql) }}
{% endmacro %}


{#
    Pre-hook of every model (dbt_project.yml): an incremental build locks its table before it reads anything, so
    that a second `dbt run` at the same time waits for this one's model to commit and then adds to what it wrote.
    Without it both computed the same new rows and the second's insert failed with "duplicate key value violates
    unique constraint" (or, on a table without a unique key, both inserts stayed). Readers are not held back.
#}
{% macro lock_incremental_target() -%}
    {%- if is_incremental() -%}
    lock table {{ this }} in share row exclusive mode;
    {%- endif -%}
{%- endmacro %}
