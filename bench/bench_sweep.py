"""The sweep on Ray Tune: trials side by side vs one at a time, and what ASHA's early stopping saves, in one run.

On a synthetic mart in a scratch database of the embedded warehouse, with one local Ray for all runs:

1. the same search of --trials short trials (default 8) without early stopping, one trial at a time
   (--max-concurrent 1) and then --max-concurrent 2: the ratio of their wall times (target on 2 cores:
   >= 1.6x). The space searches only values that do not change a trial's cost (learning rate, gamma, GAE lambda,
   entropy coefficient, clip range), so both runs do the same work;
2. the same search with ASHA (--max-concurrent 2): PPO steps run against the steps the same trials would have
   run had every one gone through every search fold, and its wall time.

Trials are scored on validation only and the final walk-forward is skipped: this measures the search. A last line
says how many cores two busy loops got from the machine during the run: on a machine that others share, the ratio
is understated by about as much.

    python bench/bench_sweep.py [--trials 8] [--timesteps 30000] [--symbols 20] [--folds 4] [--cpus N]
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import _common

from command_line import OneLineParser, positive_int
from devtools.synthetic_mart import lay_out_folds, mart_database, synthetic_mart, write_mart_yaml
from training.features import read_mart_schema
from training.mart import read_mart
from training.sweep import SweepConfig, run_sweep

COST_NEUTRAL_SPACE = """
learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
gamma: {low: 0.9, high: 0.999}
gae_lambda: {low: 0.8, high: 0.99}
ent_coef: {low: 1.0e-4, high: 0.05, log: true}
clip_range: {low: 0.1, high: 0.3}
"""


def _spin(_: int) -> float:
    started = time.perf_counter()
    total = 0
    for number in range(20_000_000):
        total += number
    return time.perf_counter() - started


def free_cores() -> float:
    """How many cores this machine gives two busy processes right now (2.0 on a quiet 2-core machine)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool:
        alone = min(pool.map(_spin, [0, 1]))
    with ProcessPoolExecutor(2) as pool:
        together = max(pool.map(_spin, [0, 1]))
    return 2 * alone / together


def main() -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=positive_int, default=8)
    parser.add_argument("--timesteps", type=positive_int, default=30000)
    parser.add_argument("--symbols", type=positive_int, default=20)
    parser.add_argument("--sessions", type=positive_int, default=700)
    parser.add_argument("--folds", type=positive_int, default=4)
    parser.add_argument("--cpus", type=positive_int, default=os.cpu_count())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    (work / "space.yaml").write_text(COST_NEUTRAL_SPACE, encoding="utf-8")
    frame = synthetic_mart(args.symbols, args.sessions, seed=9)
    folds = lay_out_folds(frame["session_date"], folds=args.folds, test_sessions=63, validation_sessions=63)
    with mart_database("bench_sweep", frame, folds) as settings:
        mart_yaml = write_mart_yaml(work / "training_bars.yml")
        snapshot = read_mart(settings, read_mart_schema(mart_yaml))
        # Workers at nice 0, as the sweep's own local Ray runs them (Ray's default of 15 yields to any other work).
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, _system_config={"worker_niceness": 0})  # fmt: skip
        try:

            def sweep(name: str, max_concurrent: int, early_stopping: bool):
                config = SweepConfig(
                    sweep_id=f"bench-{name}", trials=args.trials, max_concurrent=max_concurrent,
                    early_stopping=early_stopping, timesteps=args.timesteps, eval_freq=args.timesteps // 2,
                    final_walk_forward=False, progress_bar=False, space=work / "space.yaml", runs_dir=work / "runs",
                    mart_yaml=mart_yaml,
                )  # fmt: skip
                started = time.perf_counter()
                result = run_sweep(config, settings, snapshot=snapshot)
                return time.perf_counter() - started, result.sweep

            search_folds = -(-args.folds // 2)
            print(f"{args.trials} trials of {args.timesteps:,} PPO steps x {search_folds} search folds on "
                  f"{args.symbols} symbols x {args.sessions} sessions; {args.cpus} CPUs")  # fmt: skip
            serial_seconds, serial = sweep("one-at-a-time", 1, early_stopping=False)
            parallel_seconds, parallel = sweep("two-at-a-time", 2, early_stopping=False)
            asha_seconds, asha = sweep("asha", 2, early_stopping=True)
        finally:
            ray.shutdown()

    ratio = serial_seconds / parallel_seconds
    cores = free_cores()
    saved = 1 - asha.trial_steps_run / asha.trial_steps_without_early_stopping
    print(f"one at a time {serial_seconds:7.1f} s   two at a time {parallel_seconds:7.1f} s   ratio {ratio:5.2f}x "
          f"(target >= 1.6x on 2 cores); PPO steps {serial.trial_steps_run:,} and {parallel.trial_steps_run:,}")  # fmt: skip
    print(f"machine check: two busy loops got {cores:.2f} cores (2.00 on a quiet 2-core machine; less means other "
          "work shares the CPUs and the ratio above is understated)")  # fmt: skip
    print(f"ASHA: {asha.trial_steps_run:,} PPO steps run of {asha.trial_steps_without_early_stopping:,} without early "
          f"stopping ({saved:.0%} saved; {asha.trials_pruned} of {args.trials} trials pruned); {asha_seconds:.1f} s "
          f"against {parallel_seconds:.1f} s without early stopping")  # fmt: skip
    results = {
        "trials": args.trials,
        "timesteps": args.timesteps,
        "search_folds": search_folds,
        "cpus": args.cpus,
        "serial_seconds": serial_seconds,
        "parallel_seconds": parallel_seconds,
        "ratio": ratio,
        "free_cores_measured": cores,
        "asha_seconds": asha_seconds,
        "asha_steps_run": asha.trial_steps_run,
        "asha_steps_without_early_stopping": asha.trial_steps_without_early_stopping,
        "asha_saved": saved,
        "asha_pruned": asha.trials_pruned,
    }
    _common.write_results("bench_sweep", results)


if __name__ == "__main__":
    main()
