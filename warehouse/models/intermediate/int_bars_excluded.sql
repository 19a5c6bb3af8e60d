-- Raw rows that the bar models downstream do not use, each with the reason: nothing is dropped silently.

with bars as (

    select * from {{ ref('stg_ibkr__bars') }}

),

excluded as (

    select
        symbol,
        bar_size,
        what_to_show,
        use_rth,
        bar_time,
        session_date,
        open,
        high,
        low,
        close,
        volume,
        source,
        load_id,
        batch_id,
        ingested_at,
        case
            when not is_valid_symbol then 'symbol does not match the symbol pattern'
            when not is_daily then 'bar size is not daily'
            else 'landed before its session ended (not final)'
        end as exclusion_reason

    from bars
    where not (is_valid_symbol and is_daily and is_final)

)

select * from excluded
