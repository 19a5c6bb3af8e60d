with source as (

    select * from {{ source('ibkr', 'ibkr_bars') }}

),

normalised as (

    select
        -- IBKR spells class shares with a space (BRK B); BRK.B, brk.b and ' BRK B ' all become BRK B.
        replace(upper(btrim(symbol)), '.', ' ') as symbol,
        con_id,
        exchange,
        currency,
        bar_size,
        what_to_show,
        use_rth,
        bar_time,
        -- The exchange session date, from bar_time in the exchange's time zone.
        (bar_time at time zone '{{ var("exchange_timezone") }}')::date as session_date,
        session_date as source_session_date,
        open,
        high,
        low,
        close,
        volume,
        wap,
        bar_count,
        source,
        load_id,
        batch_id,
        ingested_at

    from source

),

flagged as (

    select
        *,
        bar_size = '{{ var("daily_bar_size") }}' as is_daily,
        symbol ~ '{{ var("symbol_pattern") }}' as is_valid_symbol

    from normalised

)

select * from flagged
