with source as (

    select * from {{ source('ibkr', 'ibkr_bars') }}

),

sessions as (

    select * from {{ ref('xnys_sessions') }}

),

normalised as (

    select
        {{ normalise_symbol('symbol') }} as symbol,  -- BRK.B, brk.b and ' BRK B ' all become BRK B
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
        -- Quote bars (MIDPOINT, BID, ASK, BID_ASK) carry IBKR's -1 for "not applicable": null here. A TRADES
        -- bar's volume of -1 is no volume at all and fails its test; its WAP and trade count are optional in the
        -- TWS protocol, and -1 there (some servers send it for TRADES bars too) means "not sent": null as well.
        case when what_to_show in {{ quote_what_to_show() }} and volume = -1 then null else volume end as volume,
        nullif(wap, -1) as wap,
        nullif(bar_count, -1) as bar_count,
        source,
        load_id,
        batch_id,
        ingested_at

    from source

),

flagged as (

    select
        normalised.*,
        normalised.bar_size = '{{ var("daily_bar_size") }}' as is_daily,
        normalised.symbol ~ '{{ var("symbol_pattern") }}' as is_valid_symbol,
        -- A daily bar landed before its session ended is the session so far, not the final bar (IBKR answers
        -- a request during trading hours with today's bar to date). Sessions end at the close for
        -- regular-hours bars and at var extended_hours_end (exchange time) with after-hours trading.
        coalesce(
            normalised.ingested_at >= case
                when normalised.use_rth then sessions.close_at
                else (sessions.session_date + time '{{ var("extended_hours_end") }}') at time zone '{{ var("exchange_timezone") }}'
            end,
            true
        ) as is_final

    from normalised
    left join sessions
        on sessions.session_date = normalised.session_date
        and normalised.bar_size = '{{ var("daily_bar_size") }}'

)

select * from flagged
