-- Each run's test metrics per fold, seed, symbol and policy next to what the symbol itself did over that fold's
-- test split (its close-to-close move, from the mart). The folds' splits are the ones the run recorded.
-- ml.* is written by the training jobs (role trainer); analysts read it and the marts.
with test_prices as (
    select
        folds.run_id,
        folds.fold_id,
        bars.symbol,
        count(*) as test_sessions,
        exp(sum(ln(bars.close / bars.previous_close))) - 1 as symbol_return
    from ml.walk_forward_folds as folds
    inner join (
        select symbol, session_date, close, lag(close) over (partition by symbol order by session_date) as previous_close
        from marts.training_bars
    ) as bars on bars.session_date between folds.test_start and folds.test_end
    group by folds.run_id, folds.fold_id, bars.symbol
),

test_metrics as (
    select run_id, fold_id, seed, symbol, policy,
           max(value) filter (where metric = 'total_return') as total_return,
           max(value) filter (where metric = 'sharpe') as sharpe,
           max(value) filter (where metric = 'exposure') as exposure
    from ml.walk_forward_metrics
    where split = 'test' and symbol <> '__all__'
    group by run_id, fold_id, seed, symbol, policy
)

select
    runs.run_id,
    runs.config_hash,
    test_metrics.fold_id,
    test_metrics.seed,
    test_metrics.symbol,
    test_metrics.policy,
    test_metrics.total_return,
    test_metrics.sharpe,
    test_metrics.exposure,
    test_prices.test_sessions,
    test_prices.symbol_return
from test_metrics
inner join ml.walk_forward_runs as runs using (run_id)
left join test_prices using (run_id, fold_id, symbol)
order by runs.run_id, test_metrics.fold_id, test_metrics.seed, test_metrics.symbol, test_metrics.policy
