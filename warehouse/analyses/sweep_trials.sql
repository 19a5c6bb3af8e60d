-- Every trial of every sweep (python -m training.sweep), best first within its sweep: the values drawn, the validation
-- score of each fold it reached, how it ended (completed, pruned by ASHA, failed, interrupted) and which Ray node ran
-- it; beside it, whether it is the sweep's choice and what the choice's walk-forward found on test sessions, charged
-- for the number of configurations tried. Trials are scored on validation sessions only.
select
    sweeps.sweep_id,
    trials.trial_number,
    trials.state,
    round(trials.objective::numeric, 3) as objective,
    trials.folds_done,
    trials.fold_ids,
    trials.fold_scores,
    trials.params,
    trials.node,
    round(trials.wall_seconds::numeric, 1) as wall_seconds,
    trials.trial_number = sweeps.best_trial as chosen,
    sweeps.configurations_tried,
    runs.run_id as walk_forward_run_id,
    round(runs.deflated_sharpe::numeric, 3) as deflated_sharpe,
    runs.verdict
from ml.sweep_trials as trials
inner join ml.sweeps as sweeps using (sweep_id)
left join ml.walk_forward_runs as runs on runs.run_id = sweeps.final_run_id
order by sweeps.started_at desc, trials.objective desc nulls last, trials.trial_number
