-- Which configurations beat buy-and-hold, and how sure is each run? One row per run: the Sharpe difference to
-- buy-and-hold over all folds x seeds with its confidence interval, P(agent better), the deflated Sharpe ratio
-- and the verdict in words. `ci_low > 0` is evidence; an interval around 0 is none, and so is any interval from
-- one seed per fold (it leaves out how far the agent moves between seeds), from fewer than 6 fold x seed test
-- splits, or from splits under two bootstrap blocks: the verdict (training/statistics.py) is the one place that decides, and
-- evidence_of_beating_buy_and_hold reads it.
select
    runs.config_hash,
    runs.run_id,
    runs.kind,
    runs.finished_at,
    comparisons.folds,
    comparisons.seeds,
    comparisons.sessions as test_sessions,
    round(comparisons.difference::numeric, 3) as sharpe_difference,
    round(comparisons.ci_low::numeric, 3) as ci_low,
    round(comparisons.ci_high::numeric, 3) as ci_high,
    round(comparisons.p_agent_better::numeric, 2) as p_agent_better,
    runs.configurations_tried,
    round(runs.deflated_sharpe::numeric, 3) as deflated_sharpe,
    runs.verdict like 'evidence the agent beats%' as evidence_of_beating_buy_and_hold,
    runs.verdict
from ml.walk_forward_comparisons as comparisons
inner join ml.walk_forward_runs as runs using (run_id)
where comparisons.fold_id is null
  and comparisons.baseline = 'buy_and_hold'
  and comparisons.metric = 'sharpe'
order by comparisons.ci_low desc nulls last, runs.finished_at desc
