with source as (

    select * from {{ source('ibkr', 'load_batches') }}

),

renamed as (

    select
        batch_id,
        load_id,
        source,
        {{ normalise_symbol('symbol') }} as symbol,
        bar_size,
        what_to_show,
        use_rth,
        requested_start,
        requested_end,
        status,
        row_count,
        error_code,
        error_message,
        request_reason,
        readjustment_factor,
        started_at,
        finished_at

    from source

)

select * from renamed
