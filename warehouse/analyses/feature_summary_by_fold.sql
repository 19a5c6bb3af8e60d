-- Distribution of each feature and of the target per walk-forward fold and split: do train, validation
-- and test look alike, and does the market change from fold to fold?
select
    fold_rows.fold_id,
    fold_rows.split,
    count(*) as rows,
    count(distinct bars.symbol) as symbols,
    min(bars.session_date) as first_session,
    max(bars.session_date) as last_session,
    avg(bars.log_return_1) as mean_log_return_1,
    stddev_samp(bars.log_return_1) as sd_log_return_1,
    avg(bars.realized_vol_20) as mean_realized_vol_20,
    avg(bars.rsi_14) as mean_rsi_14,
    avg(bars.atr_14_to_close) as mean_atr_14_to_close,
    avg(bars.volume_zscore_20) as mean_volume_zscore_20,
    avg(bars.target_log_return_next) as mean_target,
    stddev_samp(bars.target_log_return_next) as sd_target
from marts.walk_forward_fold_rows as fold_rows
inner join marts.training_bars as bars using (symbol, session_date)
group by fold_rows.fold_id, fold_rows.split
order by fold_rows.fold_id, min(bars.session_date)
