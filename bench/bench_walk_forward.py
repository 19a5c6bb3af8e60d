"""The walk-forward's runner: fold x seed tasks on a local Ray vs the same tasks one after another, in one run.

1. the same tasks (default: 4 folds x 2 seeds of 100,000 PPO steps on a synthetic mart, about 20 s each on a quiet
   core) in this process, one after another, then on a local Ray with one worker per CPU, Ray's start-up included
   (target on 2 cores: >= 1.7x); the results must be identical;
2. Ray's overhead: the start of a local Ray, and the time per task of shipping the mart and a result through the
   object store (tasks that do no work), and what each task costs beyond its work in the run above.

With ``--full default`` (or ``--full demo``) it instead times the command users run: ``python -m training.walk_forward``
with its defaults (or training/configs/demo.yaml, what ``make demo`` runs) as a separate process, on a scratch
database holding a synthetic mart shaped like the demo's (150 symbols x 5 years) and dbt's default folds (4 x 126 test
sessions, 63 validation, purge 1, embargo 5). Targets on 2 cores: default under 20 minutes, demo's walk-forward a
part of make demo's 10.

    python bench/bench_walk_forward.py [--symbols 60] [--sessions 1000] [--timesteps 100000] [--cpus N]
    python bench/bench_walk_forward.py --full default [--symbols 150] [--sessions 1260]
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import _common
import numpy as np

from command_line import OneLineParser, positive_int
from devtools.synthetic_mart import FEATURE_LOOKBACKS, lay_out_folds, mart_database, synthetic_mart
from training.config import TrainConfig
from training.market_data import MarketData
from training.task_runners import InProcessRunner, RayRunner


def no_work(config, data, fold, seed):
    """A task that only receives the mart from the object store and sends back a small result."""
    return (fold.fold_id, seed, len(data.frame))


def full_run(kind: str, symbols: int, sessions: int) -> dict:
    """Wall time of `python -m training.walk_forward` (defaults, or the demo's config) on a scratch database."""
    import subprocess
    import sys
    import tempfile

    from devtools.synthetic_mart import write_mart_yaml
    from warehouse_db.settings import REPO_ROOT

    frame = synthetic_mart(symbols, sessions, seed=11)
    folds = lay_out_folds(frame["session_date"], folds=4, test_sessions=126, validation_sessions=63)
    with mart_database("bench_walk_forward", frame, folds) as settings, tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "training.walk_forward", "--runs-dir", folder, "--no-progress-bar",
                   "--mart-yaml", str(write_mart_yaml(Path(folder) / "training_bars.yml"))]  # fmt: skip
        if kind == "demo":
            command += ["--config", str(REPO_ROOT / "training" / "configs" / "demo.yaml")]
        started = time.perf_counter()
        process = subprocess.run(command, env={**os.environ, **settings.libpq_env()}, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"the walk-forward failed ({process.returncode}):\n{process.stderr[-4000:]}")
    verdict = process.stdout.splitlines()[0]
    target = 20 * 60 if kind == "default" else 10 * 60
    print(f"`python -m training.walk_forward` ({kind}) on {symbols} symbols x {sessions} sessions, 4 folds: "
          f"{seconds:,.0f} s = {seconds / 60:.1f} min; ratio to the {target // 60}-minute target {seconds / target:.2f}")  # fmt: skip
    print(f"verdict: {verdict}")
    return {"kind": kind, "symbols": symbols, "sessions": sessions, "wall_seconds": seconds, "verdict": verdict}


def main() -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=positive_int, default=60)
    parser.add_argument("--sessions", type=positive_int, default=1000)
    parser.add_argument("--folds", type=positive_int, default=4)
    parser.add_argument("--seeds", type=positive_int, default=2)
    parser.add_argument("--timesteps", type=positive_int, default=100_000)
    parser.add_argument("--cpus", type=positive_int, default=os.cpu_count())
    parser.add_argument("--full", choices=("default", "demo"), help="time the whole command instead (see above)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.full:
        symbols = 150 if args.symbols == parser.get_default("symbols") else args.symbols
        sessions = 1260 if args.sessions == parser.get_default("sessions") else args.sessions
        results = full_run(args.full, symbols, sessions)
        _common.write_results(f"bench_walk_forward_full_{args.full}", results)
        return

    frame = synthetic_mart(args.symbols, args.sessions, seed=5)
    folds = lay_out_folds(frame["session_date"], folds=args.folds, test_sessions=63, validation_sessions=63)
    data = MarketData.from_frame(frame, list(FEATURE_LOOKBACKS))
    config = TrainConfig(timesteps=args.timesteps, eval_freq=args.timesteps // 4, progress_bar=False)
    tasks = [(fold, seed) for fold in folds for seed in range(42, 42 + args.seeds)]
    print(f"{len(tasks)} tasks of {args.timesteps:,} PPO steps on {args.symbols} symbols x {args.sessions} sessions; "
          f"{args.cpus} CPUs")  # fmt: skip

    started = time.perf_counter()
    serial = InProcessRunner().run(config, data, tasks)
    serial_seconds = time.perf_counter() - started

    import ray

    started = time.perf_counter()
    on_ray = RayRunner(cpus=args.cpus, progress_bar=False).run(config, data, tasks)  # starts and stops its own Ray
    ray_seconds = time.perf_counter() - started
    identical = all(
        np.array_equal(a.replays["test"]["agent"].net_worth, b.replays["test"]["agent"].net_worth)
        for a, b in zip(
            sorted(serial.results, key=lambda r: (r.fold_id, r.seed)),
            sorted(on_ray.results, key=lambda r: (r.fold_id, r.seed)),
            strict=True,
        )
    )
    speedup = serial_seconds / ray_seconds
    print(f"one after another {serial_seconds:7.1f} s   on Ray {ray_seconds:7.1f} s   ratio {speedup:5.2f}x "
          f"(target >= 1.7x on 2 cores); identical results: {identical}")  # fmt: skip

    started = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False, _system_config={"worker_niceness": 0})  # fmt: skip
    ray_start = time.perf_counter() - started
    try:
        remote = ray.remote(num_cpus=1)(no_work)
        data_ref = ray.put(data)
        ray.get([remote.remote(config, data_ref, fold, seed) for fold, seed in tasks])  # start the workers
        count = 50
        started = time.perf_counter()
        ray.get([remote.remote(config, data_ref, folds[0], seed) for seed in range(count)])
        per_task = (time.perf_counter() - started) / count
    finally:
        ray.shutdown()
    work = serial_seconds / len(tasks)
    beyond = ray_seconds * min(args.cpus, len(tasks)) / len(tasks) - work
    print(f"Ray overhead: start {ray_start:.1f} s; {per_task * 1000:.1f} ms per task to ship the mart and a result; "
          f"{beyond:.1f} s per task beyond its {work:.1f} s of work in the run above (start-up and worker imports "
          f"included)")  # fmt: skip

    results = {
        "tasks": len(tasks),
        "timesteps": args.timesteps,
        "cpus": args.cpus,
        "serial_seconds": serial_seconds,
        "ray_seconds": ray_seconds,
        "ratio": speedup,
        "identical": identical,
        "ray_start_seconds": ray_start,
        "ray_seconds_per_empty_task": per_task,
        "ray_seconds_per_task_beyond_work": beyond,
    }
    _common.write_results("bench_walk_forward", results)


if __name__ == "__main__":
    main()
