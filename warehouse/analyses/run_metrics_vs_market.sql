-- Each training run's test metrics per symbol next to what the symbol itself did over the test sessions
-- (buy and hold from the mart's closes). `make train` tests on the last walk-forward fold's test range.
-- ml.* is written by the training job (role trainer); analysts read it and the marts.
with last_fold_test as (
    select bars.symbol, bars.session_date, bars.target_log_return_next
    from marts.walk_forward_fold_rows as fold_rows
    inner join marts.training_bars as bars using (symbol, session_date)
    where fold_rows.role = 'test'
      and fold_rows.fold_id = (select max(fold_id) from marts.walk_forward_folds)
),

test_prices as (
    select
        symbol,
        min(session_date) as first_test_session,
        max(session_date) as last_test_session,
        count(*) as test_sessions,
        exp(sum(target_log_return_next)) - 1 as buy_and_hold_return
    from last_fold_test
    group by symbol
),

run_metrics as (
    select
        metrics.run_id,
        metrics.symbol,
        metrics.policy,
        metrics.metric,
        metrics.value
    from ml.evaluation_metrics as metrics
    where metrics.split = 'test'
)

select
    runs.run_id,
    run_metrics.symbol,
    run_metrics.policy,
    run_metrics.metric,
    run_metrics.value,
    test_prices.test_sessions,
    test_prices.buy_and_hold_return
from run_metrics
inner join ml.training_runs as runs using (run_id)
left join test_prices using (symbol)
order by runs.run_id, run_metrics.symbol, run_metrics.policy, run_metrics.metric
