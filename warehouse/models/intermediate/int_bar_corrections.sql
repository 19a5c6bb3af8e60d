-- Daily bars whose re-deliveries disagree: one row per bar and distinct version of its values.

{%- set key_csv = bar_key_columns() | join(', ') %}
{%- set value_csv = bar_value_columns() | join(', ') %}

with

deduplicated_bars as (

    select * from {{ ref('int_bars_deduplicated') }}

),

staged_bars as (

    select * from {{ ref('stg_ibkr__bars') }}

),

corrected_bars as (

    select
        {{ key_csv }},
        {%- for column in bar_value_columns() %}
        {{ column }} as current_{{ column }},
        {%- endfor %}
        versions_landed

    from deduplicated_bars
    where has_corrections

),

landed_versions as (

    select bars.*
    from staged_bars as bars
    inner join corrected_bars using ({{ key_csv }})
    where bars.is_daily
      and bars.is_valid_symbol
      and bars.is_final

),

distinct_versions as (

    select
        {{ key_csv }},
        {{ value_csv }},
        count(*) as times_landed,
        min(ingested_at) as first_landed_at,
        max(ingested_at) as last_landed_at,
        string_agg(distinct source, ', ') as sources

    from landed_versions
    group by {{ key_csv }}, {{ value_csv }}

),

compared as (

    select
        distinct_versions.*,
        count(*) over (partition by {{ key_csv }}) as distinct_version_count,
        corrected_bars.versions_landed,
        (
            {%- for column in bar_value_columns() %}
            distinct_versions.{{ column }} is not distinct from corrected_bars.current_{{ column }}
            {%- if not loop.last %} and {% endif %}
            {%- endfor %}
        ) as is_current

    from distinct_versions
    inner join corrected_bars using ({{ key_csv }})

)

select * from compared
