{#-
    enable_nestloop off: the planner cannot know how many keys landed since the last build (the threshold
    is only known at run time) and guesses a handful; a nested loop over every landed row then takes
    minutes (seen after two loads within var raw_lookback). Hash joins keep it well under a second.
-#}
{{
    config(
        materialized='incremental',
        unique_key=bar_key_columns(),
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook=[
            "{{ set_work_mem() }}",
            "set local enable_nestloop = off",
        ],
        indexes=[
            {'columns': bar_key_columns(), 'unique': true},
            {'columns': ['dbt_loaded_at']},
        ],
    )
}}

{#-
    One row per daily bar (symbol, bar settings, session): the latest landed final version wins (ingested_at,
    then load_id, then batch_id as tie-breaks); a version landed while its session was still trading is not final
    and never wins. Incremental: only keys that received rows since the previous build started (minus var
    raw_lookback) are rebuilt, from all their landed versions, so a rebuild is idempotent and versions_landed /
    has_corrections stay exact.

    No import CTE for stg_ibkr__bars: the incremental branch reads it twice, and PostgreSQL materializes a CTE read
    twice (every raw row, each build) where a direct read uses the raw index on bar_time.
-#}

-- depends_on: {{ ref('known_missing_sessions') }}
-- depends_on: {{ ref('verified_price_moves') }}
{#-
    The seeds above are not read here: each is a parent of a test on this model (known_missing_sessions of
    no_missing_sessions, verified_price_moves of no_bad_ticks and no_bad_intraday_prices), and dbt build skips a
    model's children after a failing test only when every parent of the test is upstream of them. Without it, a
    series that missed sessions failed that test and still reached int_bars_featurized and the mart.
-#}


{%- set key_csv = bar_key_columns() | join(', ') %}

with

{% if is_incremental() %}

landed_since_last_run as (

    select {{ key_csv }}
    from {{ ref('stg_ibkr__bars') }}
    -- Rows landed since the previous build started, and var raw_lookback before that: a load whose
    -- transaction was still open when the previous build took its snapshot is read now.
    where ingested_at > (
            select coalesce(max(dbt_loaded_at), '-infinity'::timestamptz) from {{ this }}
        ) - interval '{{ var("raw_lookback") }}'
      and is_daily
      and is_valid_symbol
      and is_final

),

keys_to_rebuild as (

    select distinct {{ key_csv }}
    from landed_since_last_run

),

versions as (

    select bars.*
    from {{ ref('stg_ibkr__bars') }} as bars
    inner join keys_to_rebuild using ({{ key_csv }})
    -- Cheap pre-filter on an indexed raw column: every version of a key has its bar_time on the key's session date.
    where bars.bar_time >= (
            select min(session_date)::timestamp at time zone '{{ var("exchange_timezone") }}' - interval '1 day'
            from keys_to_rebuild
        )
      and bars.is_daily
      and bars.is_valid_symbol
      and bars.is_final

),

{% else %}

versions as (

    select *
    from {{ ref('stg_ibkr__bars') }}
    where is_daily
      and is_valid_symbol
      and is_final

),

{% endif %}

ranked as (

    select
        versions.*,
        row_number() over latest_first as landing_rank,
        count(*) over key_rows as versions_landed,
        {{ values_disagree(bar_value_columns(), 'key_rows') }} as has_corrections

    from versions
    window
        key_rows as (partition by {{ key_csv }}),
        latest_first as (partition by {{ key_csv }} order by ingested_at desc, load_id desc, batch_id desc)

),

latest as (

    select
        symbol,
        bar_size,
        what_to_show,
        use_rth,
        session_date,
        bar_time,
        open,
        high,
        low,
        close,
        volume,
        wap,
        bar_count,
        con_id,
        exchange,
        currency,
        source,
        load_id,
        batch_id,
        ingested_at,
        versions_landed,
        has_corrections,
        current_timestamp as dbt_loaded_at

    from ranked
    where landing_rank = 1

)

{%- if is_incremental() %}

{#-
    Only the bars that come out different from the stored ones: a key re-read because its rows fall within
    var raw_lookback (every bar of a load made in the hour before the previous build, such as the first
    5 years of history) but given nothing new keeps its stored row and its dbt_loaded_at, so
    int_bars_featurized and training_bars do not recompute its series. Before, a build within the hour after a
    full load rewrote every bar, every feature and the whole mart, and took longer than the full build.
    A stored row equal in every column is exactly the row this build would write, so nothing else changes.
#}
{#- Every stored column but the key and dbt_loaded_at (on_schema_change='fail': the same columns as `latest`). -#}
{%- set compared = [] %}
{%- for column in adapter.get_columns_in_relation(this) %}
    {%- if column.name not in bar_key_columns() + ['dbt_loaded_at'] %}{% do compared.append(column.name) %}{% endif %}
{%- endfor %}

, changed as (

    select latest.*
    from latest
    where not exists (
        select
        from {{ this }} as stored
        where {% for column in bar_key_columns() %}stored.{{ column }} = latest.{{ column }} and {% endfor %}
              (stored.{{ compared | join(', stored.') }})
                  is not distinct from (latest.{{ compared | join(', latest.') }})
    )

)

select * from changed

{%- else %}

select * from latest

{%- endif %}
