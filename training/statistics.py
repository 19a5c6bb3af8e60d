"""How sure we are: the statistics of a walk-forward over folds x seeds, and its verdict in words.

The sample is every fold x seed task's test split, per policy (the agent and the baselines, replayed on the same
sessions). A metric is computed per fold x seed, then aggregated two ways: the **mean** (over folds of the mean over
the fold's seeds, so every test split weighs the same) and the **interquartile mean** (IQM: the mean of the middle
50% of all fold x seed values, robust to a few outliers, as rliable recommends).

**Confidence intervals** come from a bootstrap stratified by fold: each resample keeps every fold, draws n - 1 of the
fold's n seeds with replacement (:func:`seed_indices`), and rebuilds the fold's test split from blocks of
``block_sessions`` consecutive sessions drawn with replacement (circular blocks, so serial correlation within a
block survives). The same sessions and seeds are drawn for every policy, so differences between policies are
paired. The interval is the percentile interval of the aggregate over the resamples, its tails widened for few
seeds (:func:`interval_tail`): PPO's seeds are the largest source of variance and the smallest sample. The interval
of a difference between policies (the verdict's) is moreover never narrower than the point ± that many standard
deviations of the resamples (:func:`_difference_interval`): with 2 seeds per fold the resamples take few distinct
values, the widened tails land on the most extreme of them, and when seeds differ more than sessions do, simulated
walk-forwards of 4 folds x 2 seeds without an edge claimed evidence 8% of the time (95% CI 7-10%) instead of at most
5% (``python -m devtools.verdict_calibration``; docs/training.md has the table). A difference's tails and that floor
take the difference's own degrees of freedom (Welch-Satterthwaite over the folds' spreads between seeds,
:func:`welch_degrees_of_freedom`), not the pooled sum of each fold's seeds - 1 the per-policy intervals keep: when one
fold's seeds spread far more than the others', the uncertainty rests on that fold's few seeds.

**P(agent beats a baseline)** is the share of fold x seed pairs in which the agent's metric exceeds the baseline's
on the same test split (ties count one half), with its bootstrap interval. It is a share of test splits, not a
p-value, and the verdict says so in words.

**The deflated Sharpe ratio** (Bailey & López de Prado, 2014) is the probability that the agent's true Sharpe ratio
is above zero after charging for the number of configurations tried: the track record is the agent's daily test
returns, averaged over seeds, over all folds' test splits in date order.

The **verdict** compares the agent with buy-and-hold on the Sharpe ratio: evidence of better (the interval of the
difference lies above 0), evidence of worse (below 0), or no evidence either way; never evidence from one seed per
fold or two seeds of one fold, whose interval cannot hold the spread between seeds, nor from fewer fold x seed test
splits than a sign test needs (6 at 95%), nor from test splits under two bootstrap blocks, whose resamples are little
more than the split itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from training.metrics import TRADING_DAYS_PER_YEAR, max_drawdown, sharpe, sortino, total_return, varies
from training.policies import AGENT, BUY_AND_HOLD, POLICIES

EULER_MASCHERONI = 0.5772156649015329

STATISTIC_METRICS = ("sharpe", "sortino", "total_return", "max_drawdown", "exposure", "turnover")
"""Metrics with confidence intervals (those a resample of sessions can recompute)."""
COMPARISON_METRICS = ("sharpe", "total_return")
"""Metrics on which the agent is compared with each baseline."""
ANNUALISED = frozenset({"sharpe", "sortino"})
VERDICT_BASELINE = BUY_AND_HOLD
VERDICT_METRIC = "sharpe"


@dataclass(frozen=True)
class FoldSample:
    """One fold's test split: per seed and policy, the pooled book's daily numbers."""

    fold_id: int
    seeds: tuple[int, ...]
    dates: np.ndarray
    """datetime64[D] of the sessions with a return (the window's closes after the first)."""
    returns: np.ndarray
    """(seeds, policies, sessions) daily returns of the pooled book."""
    exposure: np.ndarray
    """(seeds, policies, sessions) fraction of the symbols long during each session."""
    turnover: np.ndarray
    """(seeds, policies, sessions) fraction of the symbols that changed position at each session's open."""
    symbols: int

    @property
    def sessions(self) -> int:
        return self.returns.shape[-1]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class SampleSize:
    folds: int
    seeds: int
    """Seeds per fold (the largest; a fold whose task failed has fewer: see fewest_seeds and tasks)."""
    tasks: int
    """Fold x seed pairs in the sample."""
    sessions: int
    """Test sessions over all folds."""
    symbols: int
    """Symbols traded in the test splits (the largest fold)."""
    fewest_seeds: int
    """Seeds of the fold with the fewest (below ``seeds`` where a fold's task failed)."""


def seeds_per_fold(size: SampleSize) -> str:
    """'2 seeds', or '1–2 seeds' where folds have different numbers (a task failed): "2 folds × 2 seeds" beside 3 test
    splits would be arithmetic that does not hold."""
    if size.fewest_seeds == size.seeds:
        return counted(size.seeds, "seed")
    return f"{size.fewest_seeds}–{size.seeds} seeds"


@dataclass(frozen=True)
class PolicyStatistic:
    fold_id: int | None
    """None: all folds."""
    policy: str
    metric: str
    mean: Interval
    iqm: Interval
    size: SampleSize
    annualised_from: int | None
    """Sessions per window an annualised metric was computed on (None: not annualised)."""


@dataclass(frozen=True)
class Comparison:
    fold_id: int | None
    baseline: str
    metric: str
    difference: Interval
    """Mean over folds (of the mean over seeds) of agent - baseline."""
    p_agent_better: Interval
    size: SampleSize


@dataclass(frozen=True)
class DeflatedSharpe:
    value: float
    """P(true Sharpe > 0) after charging for ``trials`` configurations."""
    sharpe: float
    """Annualised Sharpe ratio of the track record."""
    benchmark_sharpe: float
    """Annualised Sharpe ratio the best of ``trials`` skill-less configurations would be expected to reach."""
    trials: int
    sessions: int
    skewness: float
    kurtosis: float


@dataclass(frozen=True)
class RunStatistics:
    policies: list[PolicyStatistic]
    comparisons: list[Comparison]
    deflated_sharpe: DeflatedSharpe
    size: SampleSize
    confidence: float
    block_sessions: int
    """Length of the blocks of consecutive sessions the bootstrap drew."""
    agent_total_losses: int
    """Fold x seed test splits on which the agent lost the whole book (total return -100%)."""
    agent_never_invested: int
    """Fold x seed test splits on which the agent never held a position (exposure 0: all cash, like ``flat``)."""
    verdict: str

    def policy(self, policy: str, metric: str, fold_id: int | None = None) -> PolicyStatistic:
        return next(s for s in self.policies if (s.policy, s.metric, s.fold_id) == (policy, metric, fold_id))

    def comparison(self, baseline: str, metric: str, fold_id: int | None = None) -> Comparison:
        return next(c for c in self.comparisons if (c.baseline, c.metric, c.fold_id) == (baseline, metric, fold_id))


# --- per-window metrics on (..., sessions) arrays ------------------------------------------------------------------


def window_metrics(returns: np.ndarray, exposure: np.ndarray, turnover: np.ndarray) -> dict[str, np.ndarray]:
    """STATISTIC_METRICS of every window along the last axis."""
    return {
        "sharpe": sharpe(returns),
        "sortino": sortino(returns),
        "total_return": total_return(returns),
        "max_drawdown": max_drawdown(returns),
        "exposure": exposure.mean(axis=-1),
        "turnover": turnover.mean(axis=-1),
    }


def block_indices(rng: np.random.Generator, resamples: int, sessions: int, block: int) -> np.ndarray:
    """(resamples, sessions) indices made of circular blocks of ``block`` consecutive sessions."""
    block = max(1, min(block, sessions))
    blocks = math.ceil(sessions / block)
    starts = rng.integers(0, sessions, size=(resamples, blocks))
    indices = (starts[:, :, None] + np.arange(block)) % sessions
    return indices.reshape(resamples, blocks * block)[:, :sessions]


def seed_indices(rng: np.random.Generator, resamples: int, seeds: int) -> np.ndarray:
    """(resamples, draws) indices of a fold's seeds drawn with replacement: ``seeds - 1`` draws of the ``seeds``.

    The mean of n draws from n seeds varies by only (n - 1) / n of the seed mean's sampling variance (half of it with
    2 seeds), so intervals would be too narrow exactly where seeds are few; n - 1 draws make it unbiased (Rao & Wu's
    rescaling bootstrap for small strata, 1988). One seed is drawn once: its spread cannot be measured.
    """
    return rng.integers(0, seeds, size=(resamples, max(seeds - 1, 1)))


def interquartile_mean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the middle 50% along ``axis`` (NaNs ignored; NaN when nothing is defined)."""
    values = np.sort(np.where(np.isnan(values), np.inf, values), axis=axis)
    counts = np.sum(np.isfinite(values), axis=axis, keepdims=True)
    ranks = np.arange(values.shape[axis]).reshape([-1 if i == axis % values.ndim else 1 for i in range(values.ndim)])
    low, high = np.floor(counts * 0.25), np.ceil(counts * 0.75)
    inside = (ranks >= low) & (ranks < high) & np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.where(inside, values, 0.0), axis=axis) / np.sum(inside, axis=axis)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    defined = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.where(defined, values, 0.0), axis=axis) / np.sum(defined, axis=axis)


def interval_tail(confidence: float, seed_degrees_of_freedom: float) -> float:
    """The share of the resamples left out on each side of a ``confidence`` interval, widened when seeds are few.

    A percentile interval is as narrow as a normal one (mean ± 1.96 standard errors at 95%), but a mean over few
    seeds has the wider tails of Student's t: with one fold of 5 seeds, ±1.96 standard errors hold the truth only 88%
    of the time. So each tail is the normal probability of t's quantile with the seeds' degrees of freedom (each
    fold's seeds - 1, summed; a difference's own, :func:`welch_degrees_of_freedom`): Hesterberg's expanded
    percentile interval (2015). At 95%, 4 folds x 5 seeds leave out 1.7% on each side instead of 2.5%, one fold x 5
    seeds 0.3%. With one seed per fold it stays nominal.
    """
    # scipy.stats here and in three more functions, not at the top: half a second that a command's --help and its
    # one-line errors (they import this module through the report) need not wait for.
    from scipy import stats as scipy_stats

    nominal = (1.0 - confidence) / 2.0
    if seed_degrees_of_freedom < 1:
        return nominal
    return float(scipy_stats.norm.cdf(-interval_quantile(confidence, seed_degrees_of_freedom)))


def interval_quantile(confidence: float, seed_degrees_of_freedom: float) -> float:
    """How many standard errors each side of the estimate a ``confidence`` interval reaches: Student's t quantile
    for the seeds' degrees of freedom (the normal one with none), the z that :func:`interval_tail` is the normal tail
    of. Taken from t itself, not back from that tail: at 99% with one degree of freedom t's 63.7 leaves a normal
    tail under the smallest double, 0, whose quantile is infinite.
    """
    from scipy import stats as scipy_stats

    nominal = (1.0 - confidence) / 2.0
    if seed_degrees_of_freedom < 1:
        return float(-scipy_stats.norm.ppf(nominal))
    return float(-scipy_stats.t.ppf(nominal, seed_degrees_of_freedom))


def welch_degrees_of_freedom(per_fold: Sequence[np.ndarray]) -> float:
    """The seeds' effective degrees of freedom of a mean over folds of each fold's mean over its seeds
    (Welch-Satterthwaite), from each fold's values per seed (any shape, seeds along the last axis; NaNs left out).

    The aggregate's variance is (1/F^2) sum_f a_f with a_f = s_f^2 / n_f, s_f^2 the variance between the fold's n_f
    seeds; df = (sum a_f)^2 / sum (a_f^2 / (n_f - 1)), clamped to [min (n_f - 1), sum (n_f - 1)] over the folds with two
    seeds or more. Equal spreads give the pooled sum (n_f - 1); one fold that carries most of the variance gives about
    its own n_f - 1, as few seeds as that fold has. With no fold of two seeds, or no spread at all (or an undefined
    one), the pooled sum (n_f - 1) over every fold.

    Why not the pooled degrees of freedom: on simulated walk-forwards of 4 folds x 2 seeds x 121 sessions without an
    edge, the first fold's seeds spread by 6 units of Sharpe and the others' by 0.3 (``python -m
    devtools.verdict_calibration --seeds 2 --first-fold-seed-sharpe-sd 6 --seed-sharpe-sd 0.3 --correlation 0.99``),
    nearly all the uncertainty is that fold's two seeds, one degree of freedom (t's quantile 12.7 at 95%), and the
    pooled 4 (2.78) claimed evidence in 18.3% of 1,000 runs, the interval holding the truth in 81.7%. With Welch's
    degrees of freedom: 6.5% and 93.7%. Not quite 5%: each fold's spread is itself measured from its two seeds, so
    when the wide fold's seeds happen to land close together its share, and the degrees of freedom, come out too
    small and too many. The price is power where it is so: an edge of 2 units of Sharpe was found in 15.8% of those
    runs instead of 45.3%. With equal true spreads they are never more than the pooled ones and fewer whenever the
    measured spreads differ by chance (with 2 seeds a fold, they always do), so the verdict there is more cautious
    than before too; docs/training.md has the rates. Per-policy intervals (and P(agent better)) keep the
    pooled degrees of freedom: no verdict reads them.
    """
    pooled = sum(max(np.asarray(values).shape[-1] - 1, 0) for values in per_fold)
    shares, degrees = [], []
    for values in per_fold:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if len(values) < 2:
            continue
        shares.append(float(values.var(ddof=1)) / len(values))
        degrees.append(len(values) - 1)
    if not degrees:
        return float(pooled)
    share, degree = np.array(shares), np.array(degrees, dtype=np.float64)
    total, spread = float(share.sum()), float(np.sum(share * share / degree))
    if not (math.isfinite(total) and math.isfinite(spread) and total > 0 and spread > 0):
        return float(pooled)
    return float(min(max(total * total / spread, degree.min()), degree.sum()))


def _interval(point: float, resampled: np.ndarray, tail: float) -> Interval:
    """The percentile interval leaving out ``tail`` of the resamples on each side."""
    resampled = resampled[np.isfinite(resampled)]
    if len(resampled) == 0 or not np.isfinite(point):
        return Interval(float(point), float("nan"), float("nan"))
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return Interval(float(point), float(low), float(high))


def _difference_interval(point: float, resampled: np.ndarray, tail: float, quantile: float) -> Interval:
    """The percentile interval of a difference between policies, never narrower than ``point`` ± ``quantile``
    standard deviations of the resamples, ``quantile`` the one the tails were taken at (:func:`interval_quantile`:
    Student's t for the difference's Welch-Satterthwaite degrees of freedom, :func:`welch_degrees_of_freedom`).

    With few seeds the resamples are lumpy, not normal: 4 folds x 2 seeds give 2^4 = 16 combinations of seeds, the
    most extreme each drawn 1/16 of the time, so a tail of 0.3% lands on those extremes, and an interval spanning the
    best and the worst combination holds the truth only about 90% of the time when seeds differ more than sessions
    do. Their standard deviation is still the standard error (n - 1 draws of n seeds), and with t's quantile it gives
    the interval the tails were meant to give. On smooth resamples the percentile interval is the wider one and stays
    as it was. Only differences get the floor: the verdict reads them, and they have no bounds a symmetric interval
    could cross (an exposure or a drawdown has).
    """
    interval = _interval(point, resampled, tail)
    resampled = resampled[np.isfinite(resampled)]
    if len(resampled) < 2 or not np.isfinite(interval.low):
        return interval
    half_width = quantile * float(resampled.std(ddof=1))
    return Interval(interval.estimate, min(interval.low, point - half_width), max(interval.high, point + half_width))


# --- the bootstrap ---------------------------------------------------------------------------------------------------


def _fold_values(fold: FoldSample, seed_index: np.ndarray, session_index: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of resampled windows: (resamples, seeds, policies) per metric."""
    take = session_index[:, None, None, :]

    def gather(array: np.ndarray) -> np.ndarray:
        return np.take_along_axis(array[seed_index], take, axis=-1)

    return window_metrics(gather(fold.returns), gather(fold.exposure), gather(fold.turnover))


def _resampled_values(
    folds: Sequence[FoldSample], resamples: int, block: int, rng: np.random.Generator, chunk: int = 250
) -> list[dict[str, np.ndarray]]:
    """Per fold, per metric: (resamples, seeds, policies) metric values over bootstrap resamples."""
    out: list[dict[str, np.ndarray]] = []
    for fold in folds:
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, resamples, chunk):
            count = min(chunk, resamples - start)
            seed_index = seed_indices(rng, count, len(fold.seeds))
            session_index = block_indices(rng, count, fold.sessions, block)
            parts.append(_fold_values(fold, seed_index, session_index))
        out.append({metric: np.concatenate([p[metric] for p in parts]) for metric in parts[0]})
    return out


def _observed_values(folds: Sequence[FoldSample]) -> list[dict[str, np.ndarray]]:
    """Per fold, per metric: (1, seeds, policies), the windows as they happened."""
    return [
        {m: v[None] for m, v in window_metrics(fold.returns, fold.exposure, fold.turnover).items()} for fold in folds
    ]


def _aggregate_mean(per_fold: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over folds of the mean over each fold's seeds: (resamples, policies) from [(resamples, seeds, policies)]."""
    return _nanmean(np.stack([_nanmean(values, axis=1) for values in per_fold]), axis=0)


def _aggregate_iqm(per_fold: Sequence[np.ndarray]) -> np.ndarray:
    return interquartile_mean(np.concatenate(list(per_fold), axis=1), axis=1)


def _p_better(per_fold: Sequence[np.ndarray], agent: int, baseline: int) -> np.ndarray:
    """Share of fold x seed pairs with agent > baseline (ties 1/2): (resamples,)."""
    values = np.concatenate(list(per_fold), axis=1)
    a, b = values[:, :, agent], values[:, :, baseline]
    defined = np.isfinite(a) & np.isfinite(b)
    wins = np.where(defined, (a > b) + 0.5 * (a == b), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return wins.sum(axis=1) / defined.sum(axis=1)


def _size(folds: Sequence[FoldSample]) -> SampleSize:
    return SampleSize(
        folds=len(folds),
        seeds=max(len(f.seeds) for f in folds),
        tasks=sum(len(f.seeds) for f in folds),
        sessions=sum(f.sessions for f in folds),
        symbols=max(f.symbols for f in folds),
        fewest_seeds=min(len(f.seeds) for f in folds),
    )


def _statistics_for(
    folds: Sequence[FoldSample],
    fold_id: int | None,
    policies: Sequence[str],
    resamples: int,
    block: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[list[PolicyStatistic], list[Comparison]]:
    observed = _observed_values(folds)
    resampled = _resampled_values(folds, resamples, block, rng)
    size = _size(folds)
    shortest = min(f.sessions for f in folds)
    seed_degrees_of_freedom = sum(len(f.seeds) - 1 for f in folds)
    # Per-policy intervals and P(agent better) keep the pooled degrees of freedom; differences take Welch's
    # (_agent_comparisons).
    tail = interval_tail(confidence, seed_degrees_of_freedom)
    policy_statistics, comparisons = [], []
    for metric in STATISTIC_METRICS:
        seen = [values[metric] for values in observed]
        drawn = [values[metric] for values in resampled]
        policy_statistics += _policy_statistics(fold_id, policies, metric, seen, drawn, tail, size, shortest)
        if metric in COMPARISON_METRICS:
            comparisons += _agent_comparisons(fold_id, policies, metric, seen, drawn, tail, confidence, size)
    return policy_statistics, comparisons


def _policy_statistics(
    fold_id: int | None,
    policies: Sequence[str],
    metric: str,
    seen: list[np.ndarray],
    drawn: list[np.ndarray],
    tail: float,
    size: SampleSize,
    shortest: int,
) -> list[PolicyStatistic]:
    """Each policy's mean and IQM of ``metric``, with their intervals."""
    means, means_drawn = _aggregate_mean(seen)[0], _aggregate_mean(drawn)
    iqms, iqms_drawn = _aggregate_iqm(seen)[0], _aggregate_iqm(drawn)
    return [
        PolicyStatistic(
            fold_id=fold_id,
            policy=policy,
            metric=metric,
            mean=_interval(means[index], means_drawn[:, index], tail),
            iqm=_interval(iqms[index], iqms_drawn[:, index], tail),
            size=size,
            annualised_from=shortest if metric in ANNUALISED else None,
        )
        for index, policy in enumerate(policies)
    ]


def _agent_comparisons(
    fold_id: int | None,
    policies: Sequence[str],
    metric: str,
    seen: list[np.ndarray],
    drawn: list[np.ndarray],
    tail: float,
    confidence: float,
    size: SampleSize,
) -> list[Comparison]:
    """The agent against each baseline on ``metric``: the difference's interval and P(agent better)."""
    agent = policies.index(AGENT)
    comparisons = []
    for index, baseline in enumerate(policies):
        if index == agent:
            continue
        difference = [values[:, :, agent] - values[:, :, index] for values in seen]
        difference_drawn = [values[:, :, agent] - values[:, :, index] for values in drawn]
        point = _nanmean(np.stack([_nanmean(d, axis=1) for d in difference]), axis=0)[0]
        spread = _nanmean(np.stack([_nanmean(d, axis=1) for d in difference_drawn]), axis=0)
        # The difference's own degrees of freedom (Welch-Satterthwaite over the folds' spreads between seeds):
        # one fold whose seeds differ far more than the others' leaves about that fold's n - 1, not the sum.
        welch = welch_degrees_of_freedom(difference)
        comparisons.append(
            Comparison(
                fold_id=fold_id,
                baseline=baseline,
                metric=metric,
                difference=_difference_interval(
                    point, spread, interval_tail(confidence, welch), interval_quantile(confidence, welch)
                ),
                p_agent_better=_interval(_p_better(seen, agent, index)[0], _p_better(drawn, agent, index), tail),
                size=size,
            )
        )
    return comparisons


# --- the deflated Sharpe ratio ---------------------------------------------------------------------------------------


def expected_max_sharpe(trials: int, sharpe_variance: float) -> float:
    """SR0: the Sharpe ratio (per period) the best of ``trials`` skill-less configurations is expected to reach."""
    from scipy import stats as scipy_stats

    if trials <= 1:
        return 0.0
    normal = scipy_stats.norm
    return math.sqrt(sharpe_variance) * (
        (1.0 - EULER_MASCHERONI) * normal.ppf(1.0 - 1.0 / trials)
        + EULER_MASCHERONI * normal.ppf(1.0 - 1.0 / (trials * math.e))
    )


def deflated_sharpe_ratio(
    returns: np.ndarray, trials: int = 1, trial_sharpe_variance: float | None = None
) -> DeflatedSharpe:
    """Bailey & López de Prado's DSR of a daily return series given ``trials`` configurations tried.

    DSR = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2)), with SR the per-session Sharpe
    ratio, T the sessions, kurtosis not in excess, and SR0 = sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))
    (g: Euler-Mascheroni). V is the variance of the Sharpe ratios across the trials; when the caller does not know
    it, the sampling variance of a Sharpe ratio estimated from T sessions under the null, 1 / (T - 1), stands in.
    With one configuration SR0 = 0 and the DSR is the probabilistic Sharpe ratio against zero.
    """
    from scipy import stats as scipy_stats

    returns = np.asarray(returns, dtype=np.float64)
    sessions = len(returns)
    std = returns.std(ddof=1) if sessions > 1 else 0.0
    if sessions < 3 or not varies(std, returns.mean()):
        return DeflatedSharpe(float("nan"), float("nan"), float("nan"), trials, sessions, float("nan"), float("nan"))
    sr = returns.mean() / std
    skewness = float(scipy_stats.skew(returns))
    kurtosis = float(scipy_stats.kurtosis(returns, fisher=False))
    variance = trial_sharpe_variance if trial_sharpe_variance is not None else 1.0 / (sessions - 1)
    sr0 = expected_max_sharpe(trials, variance)
    denominator = 1.0 - skewness * sr + (kurtosis - 1.0) / 4.0 * sr**2
    value = float(scipy_stats.norm.cdf((sr - sr0) * math.sqrt(sessions - 1) / math.sqrt(max(denominator, 1e-12))))
    annualise = math.sqrt(TRADING_DAYS_PER_YEAR)
    return DeflatedSharpe(value, sr * annualise, sr0 * annualise, trials, sessions, skewness, kurtosis)


def agent_track_record(folds: Sequence[FoldSample], policies: Sequence[str]) -> np.ndarray:
    """The agent's daily test returns, averaged over seeds, all folds in date order."""
    agent = policies.index(AGENT)
    ordered = sorted(folds, key=lambda f: f.dates[0])
    return np.concatenate([fold.returns[:, agent, :].mean(axis=0) for fold in ordered])


# --- putting it together ---------------------------------------------------------------------------------------------


def compute_statistics(
    folds: Sequence[FoldSample],
    policies: Sequence[str] = POLICIES,
    *,
    resamples: int = 2000,
    block_sessions: int = 5,
    confidence: float = 0.95,
    configurations_tried: int = 1,
    trial_sharpe_variance: float | None = None,
    seed: int = 0,
) -> RunStatistics:
    """Every statistic of a walk-forward, all folds together and per fold, and the verdict."""
    if not folds:
        raise ValueError("no fold x seed task succeeded: there is nothing to measure")
    rng = np.random.default_rng(seed)
    policies = list(policies)
    policy_statistics, comparisons = _statistics_for(folds, None, policies, resamples, block_sessions, confidence, rng)
    for fold in sorted(folds, key=lambda f: f.fold_id):
        per_policy, per_comparison = _statistics_for(
            [fold], fold.fold_id, policies, resamples, block_sessions, confidence, rng
        )
        policy_statistics += per_policy
        comparisons += per_comparison
    dsr = deflated_sharpe_ratio(agent_track_record(folds, policies), configurations_tried, trial_sharpe_variance)
    size = _size(folds)
    agent = policies.index(AGENT)
    losses = sum(int(np.sum(total_return(fold.returns[:, agent, :]) <= -1.0)) for fold in folds)
    idle = sum(int(np.sum(np.all(fold.exposure[:, agent, :] == 0.0, axis=-1))) for fold in folds)
    statistics = RunStatistics(
        policy_statistics, comparisons, dsr, size, confidence, block_sessions, losses, idle, verdict=""
    )
    return replace(statistics, verdict=verdict(statistics))


def counted(count: int, noun: str) -> str:
    """'1 symbol', '2 symbols'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _signed(value: float) -> str:
    if not np.isfinite(value):
        return "undefined"  # not "+nan"
    return f"{value:+.2f}".replace("-", "−")


def fewest_test_splits(confidence: float) -> int:
    """The fewest fold x seed test splits that may be evidence at ``confidence``: all T of them land on one side of
    the truth by luck with probability 2^(1-T), which must be below 1 - confidence (6 at 95%)."""
    return math.ceil(1 + math.log2(1 / (1 - confidence)) - 1e-9)


def verdict(statistics: RunStatistics) -> str:
    """The result in words, evidence or not, with the interval and the sample size beside it."""
    comparison = statistics.comparison(VERDICT_BASELINE, VERDICT_METRIC)
    shortest = min(s.annualised_from or 0 for s in statistics.policies if s.metric == "sharpe" and s.fold_id is None)
    difference = comparison.difference
    head = _too_little_for_evidence(statistics, difference, shortest) or _what_the_interval_says(difference)
    sample = _interval_and_sample(statistics, comparison, shortest)
    books = _books_in_words(statistics)
    return f"{head}: {sample}{books} {_deflated_sharpe_sentence(statistics)}"


def _too_little_for_evidence(statistics: RunStatistics, difference: Interval, shortest: int) -> str | None:
    """Why this sample cannot be evidence either way, whatever its interval says; None when it can be."""
    size = statistics.size
    if not np.isfinite(difference.low):
        return "no evidence either way (the Sharpe difference is undefined on this sample)"
    if size.seeds < 2:
        # The interval resamples sessions only: how far PPO's result moves between seeds (often several units of
        # Sharpe) is not in it, so no interval from one seed can be evidence.
        return (
            "no evidence either way from one seed per fold (its interval leaves out how far the agent moves between "
            "seeds: walk forward with --seeds 2 or more)"
        )
    if size.tasks - size.folds < 2:
        # Two seeds of one fold: their spread is one difference, and no resample of two values reaches the tails
        # Student's t gives one degree of freedom (±12.7 standard errors). On a simulated random walk whose seeds'
        # Sharpe ratios spread by ~9 units, such intervals claimed evidence a quarter of the time. The difference's
        # interval now spans them (_difference_interval), but an interval resting on one difference stays no evidence.
        # Also a run of several folds whose tasks failed but for one second seed: say so, not "one fold".
        others = "" if size.folds == 1 else " and one seed of each other fold"
        return (
            f"no evidence either way from two seeds of one fold{others} (one difference between seeds cannot bound how "
            "far the agent moves between them: walk forward with more seeds or folds)"
        )
    if size.tasks < (fewest := fewest_test_splits(statistics.confidence)):
        # When seeds differ more than sessions do, no resample reaches beyond the best and the worst seed, and all
        # of T test splits land on one side of the truth by luck 2^(1-T) of the time (a sign test): one fold x 3
        # seeds claimed evidence 14% of the time on a simulated random walk.
        return (
            f"no evidence either way from {counted(size.tasks, 'fold × seed test split')} (fewer than {fewest}: all "
            f"of them beat, or all trail, buy-and-hold by luck alone {2.0 ** (1 - size.tasks):.0%} of the time: walk "
            "forward with more seeds or folds)"
        )
    if shortest < 2 * statistics.block_sessions:
        # Under two blocks, a resample is nearly the split itself rotated: the sessions' luck drops out of the
        # interval (simulated on a random walk: evidence 9% of the time instead of 5%).
        return (
            f"no evidence either way from {shortest}-session test splits (under two blocks of "
            f"{statistics.block_sessions} sessions, resampling them cannot tell luck from skill: test on longer splits)"
        )
    return None


def _what_the_interval_says(difference: Interval) -> str:
    if difference.low > 0:
        return "evidence the agent beats buy-and-hold"
    if difference.high < 0:
        return "evidence the agent does worse than buy-and-hold"
    return "no evidence the agent beats buy-and-hold"


def _interval_and_sample(statistics: RunStatistics, comparison: Comparison, shortest: int) -> str:
    difference, p, size = comparison.difference, comparison.p_agent_better, statistics.size
    # P is a share of test splits, not a p-value: "P = 0.03" beside "no evidence" would read as significance.
    won = f"{p.estimate:.0%}" if np.isfinite(p.estimate) else "an undefined share"
    return (
        f"{statistics.confidence:.0%} CI of the Sharpe difference {_signed(difference.low)} … "
        f"{_signed(difference.high)} (mean {_signed(difference.estimate)}); the agent's Sharpe ratio beat "
        f"buy-and-hold's in {won} of {counted(size.tasks, 'fold × seed test split')} ({counted(size.folds, 'fold')} × "
        f"{seeds_per_fold(size)}, {counted(size.sessions, 'test session')}, {counted(size.symbols, 'symbol')}; Sharpe "
        f"annualised from {shortest}-session test splits)."
    )


def _books_in_words(statistics: RunStatistics) -> str:
    """Test splits whose book the Sharpe comparison hides, said in words whatever it says. A total loss in a year-long
    split has a Sharpe ratio near -1, level with buy-and-hold in a bad year. PPO often learns to stay in cash, and cash
    beats buy-and-hold's Sharpe ratio in a falling market (or where the price never moved and buy-and-hold only paid
    for its first buy): a win that is no trading."""
    splits = counted(statistics.size.tasks, "fold × seed test split")
    said = [
        (statistics.agent_total_losses, "lost the whole book (total return −100%)"),
        (statistics.agent_never_invested, "never held a position (it stayed in cash, as the flat baseline does)"),
    ]
    return "".join(f" The agent {what} in {count} of {splits}." for count, what in said if count)


def _deflated_sharpe_sentence(statistics: RunStatistics) -> str:
    dsr = statistics.deflated_sharpe
    return (
        f"Deflated Sharpe ratio {f'{dsr.value:.2f}' if np.isfinite(dsr.value) else 'undefined'} with "
        f"{counted(dsr.trials, 'configuration')} tried (0.95 or more would be evidence "
        f"that these seeds' Sharpe ratio is positive; other seeds' spread is not in it)."
    )


def fold_sample(fold_id: int, replays_by_seed: dict[int, dict], policies: Sequence[str] = POLICIES) -> FoldSample:
    """A fold's test replays (seed -> policy -> PolicyReplay) as the arrays the statistics resample."""
    seeds = tuple(sorted(replays_by_seed))
    first = replays_by_seed[seeds[0]][policies[0]]
    for seed in seeds:
        for policy in policies:
            if not np.array_equal(replays_by_seed[seed][policy].dates, first.dates):
                raise ValueError(f"fold {fold_id}: the replays of seed {seed}, {policy} cover other sessions")

    def stack(attribute: str) -> np.ndarray:
        return np.stack(
            [np.stack([getattr(replays_by_seed[s][p], attribute) for p in policies]) for s in seeds]
        ).astype(np.float64)

    return FoldSample(
        fold_id=fold_id,
        seeds=seeds,
        dates=first.dates[1:],
        returns=stack("returns"),
        exposure=stack("exposure"),
        turnover=stack("turnover"),
        symbols=first.symbols,
    )
