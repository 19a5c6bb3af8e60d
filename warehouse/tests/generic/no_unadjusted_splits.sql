{#
    Fails for every day-over-day jump that looks like a split nobody re-adjusted: within one series
    (`partition_by`, in `order_by` order) the open gapped from the previous close by one of the usual split
    factors (1/k for a k-for-1 split, k for a 1-for-k reverse split, k in `ratios`) within `open_tolerance`, the
    close stayed within `close_tolerance` of the same factor (the day's own move on top), and the volume moved
    the other way by about k (between k / `volume_band` and k * `volume_band`). IBKR re-adjusts TRADES history after a split; a series that mixes units has this
    step in it. Each failure row names the series and the session, with the ratios that matched.
#}
{% test no_unadjusted_splits(
    model,
    partition_by,
    order_by='session_date',
    ratios=[1.5, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 25, 30, 40, 50, 100],
    open_tolerance=0.04,
    close_tolerance=0.12,
    volume_band=4
) %}

{%- set partition_csv = partition_by | join(', ') %}

with ordered as (

    select
        {{ partition_csv }},
        {{ order_by }} as session,
        lag({{ order_by }}) over series as previous_session,
        open,
        close,
        lag(close) over series as previous_close,
        volume,
        lag(volume) over series as previous_volume
    from {{ model }}
    window series as (partition by {{ partition_csv }} order by {{ order_by }})

),

jumps as (

    select
        *,
        open / previous_close as open_ratio,
        close / previous_close as close_ratio,
        volume / nullif(previous_volume, 0) as volume_ratio
    from ordered
    where previous_close > 0

),

split_factors as (

    -- price factor = new price / old price: 1/k after a k-for-1 split, k after a 1-for-k reverse split
    {% for ratio in ratios -%}
    select {{ ratio }}::float8 as split_ratio, 1.0 / {{ ratio }}::float8 as price_factor
    union all
    select 1.0 / {{ ratio }}::float8, {{ ratio }}::float8
    {%- if not loop.last %} union all {% endif %}
    {% endfor %}

),

matched as (

    select
        {{ partition_csv }},
        jumps.previous_session,
        jumps.session as session_date,
        jumps.previous_close,
        jumps.open,
        jumps.close,
        jumps.close_ratio,
        jumps.volume_ratio,
        split_factors.split_ratio as looks_like_split_ratio
    from jumps
    inner join split_factors
        on abs(jumps.open_ratio / split_factors.price_factor - 1) <= {{ open_tolerance }}
        and abs(jumps.close_ratio / split_factors.price_factor - 1) <= {{ close_tolerance }}
        and jumps.volume_ratio between split_factors.split_ratio / {{ volume_band }}
                                   and split_factors.split_ratio * {{ volume_band }}
        and (jumps.volume_ratio - 1) * (split_factors.split_ratio - 1) > 0

)

select * from matched

{% endtest %}
