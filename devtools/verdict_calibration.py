"""Is the walk-forward's verdict calibrated? Simulated walk-forwards with a known answer, no PPO.

When the agent has no edge over buy-and-hold, how often does ``training.statistics``'s verdict claim evidence (of
better or of worse)? When it has a real edge of a given size, how often does it find it? And how often does the 95%
interval of the Sharpe difference hold the true difference? This tool simulates many walk-forwards as
:class:`~training.statistics.FoldSample` s, feeds each straight into :func:`~training.statistics.compute_statistics`
(the code the walk-forward runs, guards and all) and counts:

    .venv/bin/python -m devtools.verdict_calibration --folds 4 --seeds 2 5 --sessions 121 --edges 0 1 2

**The market** (per fold, shared by every seed of the fold, as a test split is): buy-and-hold's daily return is
``mu + s * m[t]``, with ``mu`` = ``--drift`` / 252, ``s`` = ``--vol`` / sqrt(252) the daily volatility, and ``m`` a
standardised series (variance 1): AR(1) with coefficient ``--autocorrelation`` and Student-t innovations with
``--tail-dof`` degrees of freedom (normal by default).

**The agent** (per fold x seed): ``mu + (edge + a) * s / sqrt(252) + s * (rho * m[t] + sqrt(1 - rho^2) * e[t])``:
as volatile as buy-and-hold, correlated ``rho`` with it (``--correlation``), with its own noise ``e`` (same AR(1)
and tails, independent per seed) and a mean that differs by ``edge + a`` annualised units of Sharpe. ``a`` is the
seed's luck, drawn per fold x seed from N(0, ``--seed-sharpe-sd``^2): PPO's seeds differ by several units of Sharpe
on the same test split, and that spread is the largest source of variance in a real walk-forward. So the agent's
population Sharpe ratio exceeds buy-and-hold's by exactly ``edge + a``; ``edge`` 0 is the null.

``--first-fold-seed-sharpe-sd`` gives the first fold its own spread between seeds: one fold whose seeds differ far
more than the others' (a fold whose test split PPO finds hard) is the case the interval's degrees of freedom must
follow (Welch-Satterthwaite, :func:`training.statistics.welch_degrees_of_freedom`).

**The true difference** the 95% interval should hold is what the verdict's estimate (the mean over folds of the mean
over seeds of agent's Sharpe - buy-and-hold's on each test split) estimates: the expectation, over the market, the
seeds' luck and the sessions, of one fold x seed test split's sample Sharpe difference. It is ``edge`` up to the
small-sample bias of a Sharpe ratio estimated from ``sessions`` returns, so the tool computes it by Monte Carlo
(``--truth-windows`` fresh test splits; its standard error is printed beside it) rather than assume it. The seeds'
luck is left out of that Monte Carlo: a constant shift of the agent's mean, independent of the noise and of mean 0,
its part of the expectation is exactly 0, and drawing it made the estimate ten times noisier.

Bootstrap resamples: 500 by default (``--resamples``), a quarter of the walk-forward's 2,000; on the same simulated
walk-forwards 2,000 gave the same rates within a run or two in 1,000 (docs/training.md has the comparison).

Other baselines do not enter the verdict and are left out (the statistics run on the agent and buy-and-hold only),
which changes nothing in the verdict and saves most of the time. Exposure and turnover are constants.

Every number is seeded (``--seed``): the same command prints the same table. A walk-forward of a given shape and run
index sees the same market and noise whatever the edge (common random numbers), so the rows of one shape differ by
the edge alone.

Exit status: 0 with the table printed, 2 on a bad argument (one line on stderr).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as scipy_stats

from command_line import OneLineParser
from training.metrics import TRADING_DAYS_PER_YEAR, sharpe
from training.policies import AGENT, BUY_AND_HOLD
from training.statistics import FoldSample, compute_statistics

POLICIES = (AGENT, BUY_AND_HOLD)
BETTER = "evidence the agent beats buy-and-hold"
WORSE = "evidence the agent does worse than buy-and-hold"


@dataclass(frozen=True)
class Market:
    """How the simulated test splits move: the market (buy-and-hold) and the agent around it."""

    drift: float = 0.08
    """Buy-and-hold's expected return a year (arithmetic; the daily drift is this / 252)."""
    vol: float = 0.20
    """Annualised volatility of buy-and-hold and of the agent (0.20: 1.26% a day)."""
    autocorrelation: float = 0.0
    """AR(1) coefficient of the standardised daily noise, the market's and the agent's own (0: a random walk)."""
    tail_dof: float = math.inf
    """Degrees of freedom of the Student-t innovations (inf: normal; 3 to 5: fat tails like daily equity returns)."""
    correlation: float = 0.7
    """Correlation of the agent's daily return with buy-and-hold's (a long/flat agent long about half the time)."""
    seed_sharpe_sd: float = 1.0
    """Standard deviation, in annualised Sharpe, of each fold x seed's luck: the spread between PPO's seeds."""
    first_fold_seed_sharpe_sd: float | None = None
    """The first fold's own spread between seeds (None: ``seed_sharpe_sd`` like every other fold): one fold whose
    seeds differ far more than the others' leaves the verdict's interval fewer degrees of freedom than it has seeds."""

    def seed_spreads(self, folds: int) -> np.ndarray:
        """(folds,) each fold's spread between seeds, in annualised Sharpe."""
        spreads = np.full(folds, self.seed_sharpe_sd)
        if self.first_fold_seed_sharpe_sd is not None and folds:
            spreads[0] = self.first_fold_seed_sharpe_sd
        return spreads


@dataclass(frozen=True)
class Shape:
    """The shape of one walk-forward: ``folds`` test splits, each replayed by ``seeds`` agents."""

    folds: int
    seeds: int
    sessions: int
    """Daily returns per test split (a 126-session split with a 5-session window has 121)."""


@dataclass(frozen=True)
class CalibrationConfig:
    """One calibration: every shape x edge, each simulated ``runs`` times."""

    shapes: tuple[Shape, ...] = (Shape(4, 2, 121), Shape(4, 5, 121))
    """Walk-forward shapes: ``make demo``'s 4 folds x 2 seeds and the default 4 x 5, on 126-session test splits."""
    edges: tuple[float, ...] = (0.0, 1.0, 2.0)
    """The agent's true Sharpe edge over buy-and-hold, annualised (0: the null)."""
    market: Market = field(default_factory=Market)
    """The simulated market and agent."""
    runs: int = 500
    """Simulated walk-forwards per shape x edge."""
    resamples: int = 500
    """Bootstrap resamples per walk-forward (the walk-forward's default is 2,000: see docs/training.md)."""
    block_sessions: int = 5
    """Bootstrap block length, as ``--block-sessions`` of the walk-forward."""
    confidence: float = 0.95
    """Confidence of the interval, as ``--confidence`` of the walk-forward."""
    truth_windows: int = 20000
    """Fresh fold x seed test splits the true difference is averaged over (Monte Carlo)."""
    seed: int = 0
    """Seeds every simulated market, agent and bootstrap."""


@dataclass(frozen=True)
class Rate:
    count: int
    runs: int

    @property
    def share(self) -> float:
        return self.count / self.runs if self.runs else float("nan")

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Clopper-Pearson (exact) binomial interval of the share."""
        ci = scipy_stats.binomtest(self.count, self.runs).proportion_ci(confidence, method="exact")
        return float(ci.low), float(ci.high)

    def __str__(self) -> str:
        low, high = self.interval()
        return f"{self.share:.1%} ({low:.1%}–{high:.1%})"


@dataclass(frozen=True)
class CellResult:
    shape: Shape
    edge: float
    true_difference: float
    true_difference_se: float
    better: Rate
    worse: Rate
    covered: Rate
    """Runs whose 95% interval of the Sharpe difference held the true difference."""
    mean_width: float
    """Mean width of that interval, in annualised Sharpe."""


# --- the simulated process ---------------------------------------------------------------------------------------


def standardised_noise(rng: np.random.Generator, shape: tuple[int, ...], market: Market) -> np.ndarray:
    """Noise of variance 1 along the last axis: AR(1) with Student-t (or normal) innovations, started stationary."""
    if math.isinf(market.tail_dof):
        innovations = rng.standard_normal(shape)
    else:
        innovations = rng.standard_t(market.tail_dof, shape) * math.sqrt((market.tail_dof - 2) / market.tail_dof)
    phi = market.autocorrelation
    if phi == 0.0:
        return innovations
    noise = np.empty(shape)
    noise[..., 0] = innovations[..., 0]
    scale = math.sqrt(1.0 - phi * phi)
    for t in range(1, shape[-1]):
        noise[..., t] = phi * noise[..., t - 1] + scale * innovations[..., t]
    return noise


def simulate_returns(
    rng: np.random.Generator, market: Market, seeds: int, sessions: int, edge: float, count: int = 1
) -> np.ndarray:
    """(count, seeds, 2, sessions) daily returns of the agent (policy 0) and buy-and-hold (policy 1) on ``count``
    test splits, every seed of a split sharing its market; split 0 is the first fold (its own seed spread)."""
    daily_vol = market.vol / math.sqrt(TRADING_DAYS_PER_YEAR)
    drift = market.drift / TRADING_DAYS_PER_YEAR
    # The draws come in a fixed order and none depends on the edge: every edge sees the same market and noise.
    common = standardised_noise(rng, (count, 1, sessions), market)
    own = standardised_noise(rng, (count, seeds, sessions), market)
    luck = rng.standard_normal((count, seeds, 1)) * market.seed_spreads(count)[:, None, None]
    rho = market.correlation
    agent = (
        drift
        + (edge + luck) * daily_vol / math.sqrt(TRADING_DAYS_PER_YEAR)
        + daily_vol * (rho * common + math.sqrt(1.0 - rho * rho) * own)
    )
    buy_and_hold = np.broadcast_to(drift + daily_vol * common, agent.shape)
    return np.stack([agent, buy_and_hold], axis=2)


def true_difference(market: Market, sessions: int, edge: float, windows: int, seed: int) -> tuple[float, float]:
    """The expectation of one fold x seed test split's Sharpe difference (agent - buy-and-hold) and its Monte Carlo
    standard error, over ``windows`` fresh splits of ``sessions`` returns.

    The seeds' luck is left out (spread 0): it shifts the agent's daily mean by a constant independent of the noise
    and of mean 0, so its part of the expected sample Sharpe ratio is exactly 0, and drawing it only made the
    estimate about ten times noisier (standard error 0.069 instead of 0.007 over 2,000 splits at a spread of 3).
    """
    market = replace(market, seed_sharpe_sd=0.0, first_fold_seed_sharpe_sd=None)
    rng = np.random.default_rng([seed, sessions, 1])
    differences = []
    for start in range(0, windows, 5000):
        returns = simulate_returns(rng, market, 1, sessions, edge, count=min(5000, windows - start))
        ratios = sharpe(returns)
        differences.append((ratios[..., 0] - ratios[..., 1]).reshape(-1))
    values = np.concatenate(differences)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def simulated_walk_forward(market: Market, shape: Shape, edge: float, rng: np.random.Generator) -> list[FoldSample]:
    """One walk-forward's test splits, fold after fold in date order, as the statistics read them."""
    returns = simulate_returns(rng, market, shape.seeds, shape.sessions, edge, count=shape.folds)
    folds = []
    for fold in range(shape.folds):
        start = np.datetime64("2020-01-02") + fold * 2 * shape.sessions  # later folds test later sessions
        folds.append(
            FoldSample(
                fold_id=fold + 1,
                seeds=tuple(range(shape.seeds)),
                dates=start + np.arange(shape.sessions),
                returns=returns[fold],
                exposure=np.broadcast_to(np.array([0.5, 1.0])[None, :, None], returns[fold].shape),
                turnover=np.broadcast_to(np.array([0.1, 0.0])[None, :, None], returns[fold].shape),
                symbols=1,
            )
        )
    return folds


# --- counting verdicts ---------------------------------------------------------------------------------------------


def calibrate_cell(config: CalibrationConfig, shape: Shape, edge: float) -> CellResult:
    """Simulate ``config.runs`` walk-forwards of ``shape`` with ``edge`` and count what their verdicts said."""
    truth, truth_se = true_difference(config.market, shape.sessions, edge, config.truth_windows, config.seed)
    better = worse = covered = 0
    widths = []
    for run in range(config.runs):
        # Seeded by the shape and the run, not the edge: common random numbers across edges.
        rng = np.random.default_rng([config.seed, shape.folds, shape.seeds, shape.sessions, run])
        folds = simulated_walk_forward(config.market, shape, edge, rng)
        statistics = compute_statistics(
            folds,
            POLICIES,
            resamples=config.resamples,
            block_sessions=config.block_sessions,
            confidence=config.confidence,
            seed=run,
        )
        difference = statistics.comparison(BUY_AND_HOLD, "sharpe").difference
        better += statistics.verdict.startswith(BETTER)
        worse += statistics.verdict.startswith(WORSE)
        covered += bool(difference.low <= truth <= difference.high)
        widths.append(difference.high - difference.low)
    runs = config.runs
    return CellResult(
        shape=shape,
        edge=edge,
        true_difference=truth,
        true_difference_se=truth_se,
        better=Rate(better, runs),
        worse=Rate(worse, runs),
        covered=Rate(covered, runs),
        mean_width=float(np.nanmean(widths)),
    )


def calibrate(config: CalibrationConfig, progress: bool = False) -> list[CellResult]:
    results = []
    for shape in config.shapes:
        for edge in config.edges:
            started = time.monotonic()
            results.append(calibrate_cell(config, shape, edge))
            if progress:
                print(
                    f"{shape.folds} folds x {shape.seeds} seeds x {shape.sessions} sessions, edge {edge:+g}: "
                    f"{time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def markdown_table(results: Sequence[CellResult]) -> str:
    """The results as a Markdown table; each rate with its 95% binomial (Clopper-Pearson) interval."""
    lines = [
        "| folds × seeds × sessions | true edge | true difference | runs | evidence of better | evidence of worse "
        "| CI holds the truth | mean CI width |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.shape
        lines.append(
            f"| {s.folds} × {s.seeds} × {s.sessions} | {r.edge:+.2f} | {r.true_difference:+.3f} ± "
            f"{r.true_difference_se:.3f} | {r.better.runs} | {r.better} | {r.worse} | {r.covered} | {r.mean_width:.2f} |"
        )
    return "\n".join(lines)


# --- the command line ----------------------------------------------------------------------------------------------


MAX_SESSIONS = 2_520
"""The longest test split --sessions takes: the Monte Carlo truth simulates 5,000 of them at once."""
MAX_RETURNS = 10_000_000
"""The most fold x seed x session returns of one simulated walk-forward (several arrays of this size are held)."""


def _shapes(folds: Sequence[int], seeds: Sequence[int], sessions: Sequence[int]) -> tuple[Shape, ...]:
    return tuple(Shape(f, s, n) for f in folds for s in seeds for n in sessions)


def parse_config(argv: Sequence[str] | None = None) -> CalibrationConfig:
    defaults, market = CalibrationConfig(), Market()
    parser = OneLineParser(
        prog="python -m devtools.verdict_calibration",
        description=__doc__.split("\n\n")[0] + " Prints a Markdown table.",
        epilog="Exit status: 0 with the table printed, 2 on a bad argument. See docs/training.md for a recorded run.",
    )
    parser.add_argument("--folds", type=int, nargs="+", default=[4], help="folds per walk-forward (default 4)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 5], help="seeds per fold (default 2 5)")
    parser.add_argument(
        "--sessions", type=int, nargs="+", default=[121], help="daily returns per test split (default 121)"
    )
    parser.add_argument(
        "--edges", type=float, nargs="+", default=list(defaults.edges), help="true Sharpe edges (default 0 1 2)"
    )
    parser.add_argument("--runs", type=int, default=defaults.runs, help=f"walk-forwards per row ({defaults.runs})")
    parser.add_argument(
        "--resamples", type=int, default=defaults.resamples, help=f"bootstrap resamples ({defaults.resamples})"
    )
    parser.add_argument("--block-sessions", type=int, default=defaults.block_sessions)
    parser.add_argument("--confidence", type=float, default=defaults.confidence)
    parser.add_argument("--drift", type=float, default=market.drift, help="annual drift (0.08)")
    parser.add_argument("--vol", type=float, default=market.vol, help="annualised volatility (0.20)")
    parser.add_argument("--autocorrelation", type=float, default=market.autocorrelation, help="AR(1) coefficient (0)")
    parser.add_argument("--tail-dof", type=float, default=market.tail_dof, help="Student-t dof, > 2 (inf: normal)")
    parser.add_argument(
        "--correlation", type=float, default=market.correlation, help="agent vs buy-and-hold daily correlation (0.7)"
    )
    parser.add_argument(
        "--seed-sharpe-sd", type=float, default=market.seed_sharpe_sd, help="spread between seeds, Sharpe units (1)"
    )
    parser.add_argument(
        "--first-fold-seed-sharpe-sd",
        type=float,
        default=None,
        help="the first fold's own spread between seeds (default: --seed-sharpe-sd, as every fold)",
    )
    parser.add_argument("--truth-windows", type=int, default=defaults.truth_windows)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    problems = [
        f"--{name.replace('_', '-')} must be at least {least}"
        for name, least in (("runs", 1), ("resamples", 1), ("block_sessions", 1), ("truth_windows", 2))
        if getattr(args, name) < least
    ]
    problems += ["--folds and --seeds must be at least 1" for v in args.folds + args.seeds if v < 1][:1]
    problems += ["--sessions must be at least 2" for v in args.sessions if v < 2][:1]
    if not 0 < args.confidence < 1:
        problems.append("--confidence must lie between 0 and 1")
    if not -1 < args.autocorrelation < 1:
        problems.append("--autocorrelation must lie strictly between -1 and 1")
    if not -1 <= args.correlation <= 1:
        problems.append("--correlation must lie between -1 and 1")
    if not args.tail_dof > 2:
        problems.append("--tail-dof must exceed 2 (the variance is infinite otherwise)")
    if not (args.vol > 0 and args.seed_sharpe_sd >= 0 and math.isfinite(args.drift)):
        problems.append("--vol must be positive and --seed-sharpe-sd not negative")
    if args.first_fold_seed_sharpe_sd is not None and not args.first_fold_seed_sharpe_sd >= 0:
        problems.append("--first-fold-seed-sharpe-sd must not be negative")
    if args.seed < 0:
        problems.append("--seed must not be negative")
    # nan or inf printed a table of nan (--tail-dof inf is the normal distribution, and stays allowed).
    not_finite = [
        f"--{name.replace('_', '-')}"
        for name in ("edges", "drift", "vol", "correlation", "seed_sharpe_sd", "first_fold_seed_sharpe_sd")
        if not all(math.isfinite(value) for value in np.atleast_1d(getattr(args, name) or 0.0))
    ]
    if not_finite:
        problems.append(f"{', '.join(dict.fromkeys(not_finite))} must be finite (not nan or inf)")
    # Past these, NumPy refused the arrays ('Maximum allowed dimension exceeded') or memory ran out: a traceback.
    if max(args.sessions) > MAX_SESSIONS:
        problems.append(f"--sessions must be at most {MAX_SESSIONS:,} (ten years of daily sessions per test split)")
    elif max(args.folds) * max(args.seeds) * max(args.sessions) > MAX_RETURNS:
        problems.append(f"--folds x --seeds x --sessions must be at most {MAX_RETURNS:,} returns per walk-forward")
    if problems:
        parser.error("; ".join(problems))
    return CalibrationConfig(
        shapes=_shapes(args.folds, args.seeds, args.sessions),
        edges=tuple(args.edges),
        market=replace(
            market,
            drift=args.drift,
            vol=args.vol,
            autocorrelation=args.autocorrelation,
            tail_dof=args.tail_dof,
            correlation=args.correlation,
            seed_sharpe_sd=args.seed_sharpe_sd,
            first_fold_seed_sharpe_sd=args.first_fold_seed_sharpe_sd,
        ),
        runs=args.runs,
        resamples=args.resamples,
        block_sessions=args.block_sessions,
        confidence=args.confidence,
        truth_windows=args.truth_windows,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    print(markdown_table(calibrate(config, progress=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
