-- Distribution of each feature and of the target per split: do train, validation and test look alike?
select
    split,
    count(*) as rows,
    count(distinct symbol) as symbols,
    min(session_date) as first_session,
    max(session_date) as last_session,
    avg(log_return_1) as mean_log_return_1,
    stddev_samp(log_return_1) as sd_log_return_1,
    avg(realized_vol_20) as mean_realized_vol_20,
    avg(rsi_14) as mean_rsi_14,
    avg(atr_14_to_close) as mean_atr_14_to_close,
    avg(volume_zscore_20) as mean_volume_zscore_20,
    avg(target_log_return_next) as mean_target,
    stddev_samp(target_log_return_next) as sd_target
from marts.training_bars
group by split
order by min(session_date)
