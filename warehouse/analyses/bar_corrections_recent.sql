-- Bars corrected by a re-delivery, with every version side by side and how far the close moved.
with versions as (
    select * from marts.bar_corrections
),

current_close as (
    select symbol, bar_size, what_to_show, use_rth, session_date, close as current_close
    from versions
    where is_current
)

select
    versions.symbol,
    versions.session_date,
    versions.is_current,
    versions.open,
    versions.high,
    versions.low,
    versions.close,
    versions.volume,
    round((100 * (versions.close / current_close.current_close - 1))::numeric, 4) as close_vs_current_pct,
    versions.times_landed,
    versions.first_landed_at,
    versions.last_landed_at,
    versions.sources
from versions
inner join current_close using (symbol, bar_size, what_to_show, use_rth, session_date)
order by versions.last_landed_at desc, versions.symbol, versions.session_date, versions.is_current desc
