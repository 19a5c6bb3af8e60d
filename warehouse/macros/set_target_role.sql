{#
    `set role <profile role>;` (transformer), emitted before everything dbt creates.

    dbt-postgres applies the profile's `role` with a SET ROLE right after connecting, inside the
    connection's first transaction; when dbt then rolls that transaction back (it does, after listing
    relations on a fresh connection), the session silently falls back to the login user, and objects
    would be created and owned by it (a superuser on the embedded warehouse). Repeating SET ROLE in
    the run hooks and in every model's and seed's pre-hook makes the role stick.
#}
{% macro set_target_role() -%}
    {%- if target.get('role') -%}
    set role {{ adapter.quote(target.role) }};
    {%- endif -%}
{%- endmacro %}

{# Sorts and window functions of the big models get var model_work_mem (default 512MB) instead of 4MB. #}
{% macro set_work_mem() -%}
    set local work_mem = '{{ var("model_work_mem", "512MB") }}';
{%- endmacro %}
