"""The run folder's human-facing outputs: statistics.json and a self-contained report.html that leads with the verdict.

The report shows, in this order: the verdict in words, the statistics over all folds x seeds with their intervals
and sample sizes, the agent against each baseline, the spread of the test Sharpe ratio across seeds per fold (strip
plot), every fold's test equity curves (one line per seed for the agent, the baselines beside it), per-fold tables,
the tasks and their model selection, and the definitions. Plots are embedded as base64 PNGs so the file can be
mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.folds import Fold
from training.metrics import METRIC_DEFINITIONS, TRADING_DAYS_PER_YEAR
from training.policies import AGENT, POLICIES, POLICY_DESCRIPTIONS
from training.statistics import STATISTIC_METRICS, Interval, RunStatistics, counted, seeds_per_fold

if TYPE_CHECKING:  # the run's modules (torch, stable-baselines3, Ray): a command's --help imports this one
    from training.fold_task import TaskResult
    from training.task_runners import TaskFailure

POLICY_COLOURS = {
    "agent": "tab:blue",
    "buy_and_hold": "tab:orange",
    "flat": "tab:gray",
    "sma_crossover": "tab:purple",
    "random": "tab:green",
}
PERCENT_METRICS = {"total_return", "cagr", "max_drawdown", "turnover", "exposure", "hit_rate"}

STATISTICS_TEXT = (
    "Each metric is computed per fold x seed on the fold's test split. Mean: over folds of the mean over the fold's "
    "seeds. IQM: interquartile mean of all fold x seed values. Intervals: percentile bootstrap, stratified by fold "
    "(n - 1 of the fold's n seeds drawn with replacement, sessions drawn in circular blocks of consecutive sessions; "
    "the same draws for every policy), tails at Student's t quantile for the seeds' degrees of freedom, so that few "
    "seeds give a wide interval. P(agent better): share of fold x seed pairs in which the agent beat the baseline "
    "on the same test split (ties count 1/2). Sharpe and Sortino are annualised (x sqrt(252)) from test splits of the "
    "stated length: from splits shorter than a year, a scale, not a forecast. CAGR and Calmar are not reported from "
    "test splits under 252 sessions."
)

PAGE_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 80rem; }
.verdict { font-size: 1.25rem; padding: 0.8rem 1rem; background: #f3f6fb; border-left: 4px solid #3b6fb6; }
.warning { color: #a33; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f4f4f4; } small { color: #666; } img { max-width: 100%; display: block; margin: 0.5rem 0; }
dt { font-weight: bold; } dd { margin: 0 0 0.4rem 1rem; }
</style>"""
"""The style of every HTML report (walk-forward and sweep), so that they read alike."""


def html_page(title: str, body: str) -> str:
    """A self-contained report page: the house style, the title as heading, then ``body`` (HTML)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
{PAGE_STYLE}</head><body>
<h1>{html.escape(title)}</h1>
{body}</body></html>
"""


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def statistics_document(
    summary: dict[str, Any], statistics: RunStatistics, results: Sequence[TaskResult], failures: Sequence[TaskFailure]
) -> dict[str, Any]:
    return _json_safe(
        {
            **summary,
            "verdict": statistics.verdict,
            "sample": asdict(statistics.size),
            "confidence": statistics.confidence,
            "deflated_sharpe": asdict(statistics.deflated_sharpe),
            "statistics": [asdict(s) for s in statistics.policies],
            "comparisons": [asdict(c) for c in statistics.comparisons],
            "tasks": [
                {
                    "fold_id": r.fold_id,
                    "seed": r.seed,
                    "status": "succeeded",
                    "attempts": r.attempts,
                    "selected_step": r.selected_step,
                    "validation_score": r.validation_score,
                    "selection_history": r.selection_history,
                    "steps_per_second": r.training.steps_per_second,
                    "wall_seconds": r.wall_seconds,
                    "node": r.node,
                    "symbols": r.symbols,
                    "metrics": {
                        split: {policy: replay.metrics() for policy, replay in replays.items()}
                        for split, replays in r.replays.items()
                    },
                }
                for r in results
            ]
            + [{**asdict(f), "status": "failed"} for f in failures],
            "metric_definitions": METRIC_DEFINITIONS,
            "policies": POLICY_DESCRIPTIONS,
        }
    )


def write_statistics_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")


# --- plots -----------------------------------------------------------------------------------------------------------


def _pyplot():
    """matplotlib's pyplot, drawing to files only (never a window: CI, servers). Imported when a report is drawn, not
    with this module: it takes a second that a command's --help and its one-line errors need not wait for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> str:
    """The figure inline, its alt text its title and axes (what a reader without the image needs)."""
    from matplotlib.ticker import FixedLocator  # loaded with pyplot, which drew the figure

    axes = figure.axes[0]
    named = isinstance(axes.xaxis.get_major_locator(), FixedLocator)  # the folds' ticks; not a date axis's
    ticks = ", ".join(t.get_text().replace("\n", " ") for t in axes.get_xticklabels()) if named else ""
    lines = ", ".join(axes.get_legend_handles_labels()[1])
    alt = f"{axes.get_title()}; x: {axes.get_xlabel()}{f' ({ticks})' if ticks else ''}; y: {axes.get_ylabel()}"
    alt += f"; shown: {lines}" if lines else ""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # legends below the axes too
    _pyplot().close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='{html.escape(alt, quote=True)}' src='data:image/png;base64,{encoded}'>"


def sharpe_strip_plot(results: Sequence[TaskResult], policies: Sequence[str] = POLICIES) -> str:
    """Test Sharpe ratio per fold: a dot per seed for the agent and the random baseline, a mark for the others."""
    fold_ids = sorted({r.fold_id for r in results})
    figure, axes = _pyplot().subplots(figsize=(max(6, 1.6 * len(fold_ids) + 3), 4))
    width = 0.8 / len(policies)
    for index, policy in enumerate(policies):
        for position, fold_id in enumerate(fold_ids):
            values = [r.replays["test"][policy].metrics()["sharpe"] for r in results if r.fold_id == fold_id]
            x = position + (index - (len(policies) - 1) / 2) * width
            jitter = np.linspace(-width / 4, width / 4, len(values)) if len(values) > 1 else [0.0]
            axes.scatter(
                x + np.asarray(jitter),
                values,
                s=22,
                color=POLICY_COLOURS.get(policy),
                label=policy if position == 0 else None,
                alpha=0.85,
            )
    axes.axhline(0, color="black", linewidth=0.6)
    # A fold whose task failed has fewer dots: the tick says how many seeds it holds.
    seeds = [sum(r.fold_id == fold_id for r in results) for fold_id in fold_ids]
    axes.set_xticks(
        range(len(fold_ids)),
        [f"fold {fold_id}\n{counted(n, 'seed')}" for fold_id, n in zip(fold_ids, seeds, strict=True)],
    )
    axes.set_xlabel("fold (seeds in the statistics)")
    sessions = sorted({len(r.replays["test"][AGENT].dates) - 1 for r in results})
    length = f"{sessions[0]}" if len(sessions) == 1 else f"{sessions[0]}–{sessions[-1]}"
    axes.set_ylabel(f"test Sharpe ratio (annualised from {length} sessions)")
    axes.set_title("Spread across seeds: test Sharpe ratio per fold x seed")
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8, ncol=len(policies), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    figure.tight_layout()
    return _png(figure)


def _seeds_label(results: Sequence[TaskResult]) -> str:
    """'seed 43' or '2 seeds: 42, 43': which of the agent's seeds a fold's plot draws."""
    seeds = [str(r.seed) for r in results]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds: {', '.join(seeds)}"


def equity_plot(results: Sequence[TaskResult], fold_id: int, policies: Sequence[str] = POLICIES) -> str:
    """A fold's test split: growth of 1 for the agent (one line per seed) and the baselines (seed-averaged)."""
    fold_results = sorted((r for r in results if r.fold_id == fold_id), key=lambda r: r.seed)
    figure, axes = _pyplot().subplots(figsize=(9, 3.8))
    for policy in policies:
        replays = [r.replays["test"][policy] for r in fold_results]
        dates = replays[0].dates
        if policy == AGENT:
            for number, replay in enumerate(replays):
                axes.plot(
                    dates,
                    replay.net_worth / replay.net_worth[0],
                    color=POLICY_COLOURS[policy],
                    linewidth=1.0,
                    alpha=0.6,
                    label=f"agent ({_seeds_label(fold_results)})" if number == 0 else None,
                )
        else:
            growth = np.mean([replay.net_worth / replay.net_worth[0] for replay in replays], axis=0)
            axes.plot(dates, growth, color=POLICY_COLOURS.get(policy), linewidth=1.6, label=policy)
    axes.set_title(f"fold {fold_id}: test split, growth of 1 (all symbols, equal starting cash)")
    axes.set_xlabel("test session (exchange date)")
    axes.set_ylabel("net worth / net worth at the first close")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    return _png(figure)


# --- tables ----------------------------------------------------------------------------------------------------------


def _number(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if metric in PERCENT_METRICS:
        return f"{value:.2%}"
    return f"{value:.2f}"


def _interval(metric: str, interval: Interval) -> str:
    return (
        f"{_number(metric, interval.estimate)} <small>[{_number(metric, interval.low)} … "
        f"{_number(metric, interval.high)}]</small>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _statistics_table(statistics: RunStatistics, fold_id: int | None, estimator: str = "mean") -> str:
    rows = []
    for policy in POLICIES:
        cells = [html.escape(policy)]
        for metric in STATISTIC_METRICS:
            statistic = statistics.policy(policy, metric, fold_id)
            cells.append(_interval(metric, getattr(statistic, estimator)))
        rows.append(cells)
    return _table(["policy", *STATISTIC_METRICS], rows)


def _comparisons_table(statistics: RunStatistics, fold_id: int | None) -> str:
    rows = []
    for comparison in statistics.comparisons:
        if comparison.fold_id != fold_id:
            continue
        rows.append(
            [
                html.escape(comparison.baseline),
                html.escape(comparison.metric),
                _interval(comparison.metric, comparison.difference),
                _interval("p", comparison.p_agent_better),
            ]
        )
    return _table(["baseline", "metric", "agent − baseline [CI]", "P(agent better) [CI]"], rows)


def _tasks_table(results: Sequence[TaskResult], failures: Sequence[TaskFailure]) -> str:
    rows = [
        [
            str(r.fold_id),
            str(r.seed),
            "succeeded" + (f" ({r.attempts} attempts)" if r.attempts > 1 else ""),
            f"{r.selected_step:,}",
            f"{r.validation_score:.2f}",
            f"{r.training.steps_per_second:,.0f}",
            f"{r.wall_seconds:.0f} s",
            html.escape(r.node),
        ]
        for r in sorted(results, key=lambda r: (r.fold_id, r.seed))
    ]
    rows += [
        [
            str(f.fold_id),
            str(f.seed),
            f"<b>failed</b> ({f.attempts} attempts): {html.escape(f.error)}",
            "",
            "",
            "",
            "",
            "",
        ]
        for f in failures
    ]
    return _table(["fold", "seed", "status", "selected at step", "validation score", "steps/s", "time", "node"], rows)


def _folds_table(folds: Sequence[Fold]) -> str:
    return _table(
        ["fold", "train", "validation", "test", "purge + embargo"],
        [
            [
                str(f.fold_id),
                f"{f.train.start} … {f.train.end}",
                f"{f.validation.start} … {f.validation.end}",
                f"{f.test.start} … {f.test.end}",
                f"{f.purge_sessions} + {f.embargo_sessions} sessions",
            ]
            for f in folds
        ],
    )


def _annualised_line(statistics: RunStatistics) -> str:
    """What the annualised figures rest on: the test splits' length, and, under a year, that they are a scale."""
    lengths = sorted({s.annualised_from for s in statistics.policies if s.metric == "sharpe" and s.fold_id is not None})
    length = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}–{lengths[-1]}"
    caution = " (under a year: read them as a scale, not a forecast)" if lengths[0] < TRADING_DAYS_PER_YEAR else ""
    return f"Sharpe and Sortino are annualised (× √{TRADING_DAYS_PER_YEAR}) from test splits of {length} sessions{caution}."


def _summary_value(value: Any) -> str:
    """A run's setting as the Run table shows it: lists (folds, seeds) as their items, None as a dash."""
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return "–" if value is None else str(value)


def _failed_tasks(failures: Sequence[TaskFailure]) -> str:
    return ", ".join(f"fold {f.fold_id} seed {f.seed}" for f in sorted(failures, key=lambda f: (f.fold_id, f.seed)))


def _sample_line(statistics: RunStatistics, failures: Sequence[TaskFailure]) -> str:
    """The run's sample: folds x seeds and the fold x seed tasks in the statistics, and those that failed (a failed
    task leaves its fold with fewer seeds: '2 folds × 2 seeds = 3 tasks' would not add up)."""
    size = statistics.size
    tasks = counted(size.tasks, "fold x seed task")
    text = f"{counted(size.folds, 'fold')} × {seeds_per_fold(size)}"
    text += f" = {tasks}" if size.tasks == size.folds * size.seeds else f": {tasks}"
    if failures:
        verb = "is" if len(failures) == 1 else "are"
        text += f" ({len(failures)} more failed and {verb} left out: {_failed_tasks(failures)})"
    return (
        f"{text},\n{counted(size.sessions, 'test session')}, {counted(size.symbols, 'symbol')} (traded in the test "
        "splits, the most of any fold; symbols_read in the Run table counts those read from the mart)"
    )


def _fold_sample_line(
    statistics: RunStatistics, fold_id: int, results: Sequence[TaskResult], failures: Sequence[TaskFailure]
) -> str:
    """A fold's sample beside its tables: its seeds, test sessions (with their dates) and symbols."""
    size = statistics.policy(AGENT, "sharpe", fold_id).size
    fold_results = sorted((r for r in results if r.fold_id == fold_id), key=lambda r: r.seed)
    dates = fold_results[0].replays["test"][AGENT].dates
    seeds = ", ".join(str(r.seed) for r in fold_results)
    failed = sorted(f.seed for f in failures if f.fold_id == fold_id)
    left_out = (
        f"; {counted(len(failed), 'seed')} ({', '.join(map(str, failed))}) failed and {'is' if len(failed) == 1 else 'are'} left out"
        if failed
        else ""
    )
    level = f"{statistics.confidence:.0%}"
    return (
        f"<p>Sample: {counted(len(fold_results), 'seed')} ({seeds}) × {counted(size.sessions, 'test session')} "
        f"({dates[1]} … {dates[-1]}), {counted(size.symbols, 'symbol')}{left_out}. Mean over the seeds [{level} CI]; "
        f"Sharpe and Sortino annualised from {size.sessions} sessions.</p>"
    )


def write_report_html(
    path: Path,
    summary: dict[str, Any],
    statistics: RunStatistics,
    folds: Sequence[Fold],
    results: Sequence[TaskResult],
    failures: Sequence[TaskFailure],
) -> None:
    """One HTML file with everything inline, the verdict first."""
    fold_ids = sorted({r.fold_id for r in results})
    per_fold = "".join(
        f"<section><h3>Fold {fold_id}</h3>{_fold_sample_line(statistics, fold_id, results, failures)}"
        f"{equity_plot(results, fold_id)}{_statistics_table(statistics, fold_id)}{_comparisons_table(statistics, fold_id)}</section>"
        for fold_id in fold_ids
    )
    summary_rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_summary_value(value))}</td></tr>"
        for key, value in summary.items()
        if not isinstance(value, dict)
    )
    definitions = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>" for name, text in METRIC_DEFINITIONS.items()
    )
    policies = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>" for name, text in POLICY_DESCRIPTIONS.items()
    )
    failed = (
        f"<p class='warning'>{len(failures)} fold x seed task(s) failed after their retries and are not in the "
        "statistics; see the tasks table.</p>"
        if failures
        else ""
    )
    title = f"Walk-forward {summary.get('run_id', '')}"
    level = f"{statistics.confidence:.0%}"
    path.write_text(
        html_page(
            title,
            f"""<p class="verdict">{html.escape(statistics.verdict)}</p>
{failed}
<p>Sample: {_sample_line(statistics, failures)}. Intervals are {level} bootstrap intervals. {_annualised_line(statistics)}</p>
<h2>All folds: test splits, mean [{level} CI]</h2>
{_statistics_table(statistics, None)}
<h3>Interquartile mean [{level} CI]</h3>
{_statistics_table(statistics, None, "iqm")}
<h2>The agent against each baseline</h2>
{_comparisons_table(statistics, None)}
<h2>Spread across seeds</h2>
{sharpe_strip_plot(results)}
<h2>Per fold</h2>
{per_fold}
<h2>Tasks and model selection</h2>
{_tasks_table(results, failures)}
<h2>Folds</h2>
{_folds_table(folds)}
<h2>Run</h2>
<table>{summary_rows}</table>
<h2>How to read this</h2>
<p>{html.escape(STATISTICS_TEXT)}</p>
<p>Deflated Sharpe ratio: the probability that the agent's true Sharpe ratio is above zero, given
{counted(statistics.deflated_sharpe.trials, "configuration")} tried, from its seed-averaged daily test returns over all folds
({statistics.deflated_sharpe.sessions} sessions; Bailey &amp; López de Prado, 2014).</p>
<h3>Policies</h3><dl>{policies}</dl>
<h3>Metrics</h3><dl>{definitions}</dl>
""",
        ),
        encoding="utf-8",
    )
