"""The sweep's report page: runs/<sweep_id>/report.html, self-contained like the walk-forward's.

In this order: the chosen configuration and what its walk-forward found (the verdict, the deflated Sharpe ratio and
the number of configurations it was charged for); the score of every trial by trial number with the best so far;
the score of each trial on each fold; Optuna's parameter importance; the table of trials; the search space; what
ASHA saved; how to read it. Everything comes from the ml.sweeps / ml.sweep_trials rows, so the page of a resumed
sweep shows every trial, before and after the interruption.
"""

from __future__ import annotations

import html
import json
import math
import os
import shlex
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from training.report import _png, _table, html_page

STATE_STYLE = {
    "completed": {"marker": "o", "color": "tab:blue"},
    "pruned": {"marker": "o", "color": "tab:gray", "facecolors": "none"},
    "failed": {"marker": "x", "color": "tab:red"},
    "interrupted": {"marker": "s", "color": "tab:orange", "facecolors": "none"},
    "running": {"marker": "^", "color": "tab:green"},
}


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def score_by_trial_plot(trials: Sequence[Any]) -> str:
    """Each trial's objective by trial number (pruned: the mean of the folds it reached), and the best so far."""
    figure, axes = plt.subplots(figsize=(9, 3.8))
    scored = [t for t in trials if t.objective is not None and math.isfinite(t.objective)]
    floor = min((t.objective for t in scored), default=0.0)
    for state, style in STATE_STYLE.items():
        chosen = [t for t in trials if t.state == state]
        if not chosen:
            continue
        y = [t.objective if t.objective is not None else floor for t in chosen]
        axes.scatter([t.trial_number for t in chosen], y, s=30, label=f"{state} ({len(chosen)})", **style)
    best, line_x, line_y = -math.inf, [], []
    for t in sorted(trials, key=lambda t: t.trial_number):
        if t.state == "completed" and t.objective is not None:
            best = max(best, t.objective)
        if math.isfinite(best):
            line_x.append(t.trial_number)
            line_y.append(best)
    if line_x:
        axes.step(line_x, line_y, where="post", color="tab:blue", linewidth=1.2, label="best completed so far")
    axes.set_xlabel("trial")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("objective (mean validation Sharpe)")
    axes.set_title("Score by trial (validation sessions only)")
    axes.grid(alpha=0.3)
    if trials:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


def fold_scores_plot(trials: Sequence[Any], folds: Sequence[int]) -> str:
    """Validation score of every trial on every fold it reached: how much the folds disagree."""
    figure, axes = plt.subplots(figsize=(max(6, 1.5 * len(folds) + 3), 3.8))
    for t in trials:
        if not t.fold_ids:
            continue
        positions = [folds.index(f) for f in t.fold_ids if f in folds]
        style = STATE_STYLE.get(t.state, STATE_STYLE["completed"])
        axes.plot(positions, t.fold_scores[: len(positions)], color=style["color"], alpha=0.35, linewidth=0.8)
        axes.scatter(positions, t.fold_scores[: len(positions)], s=14, color=style["color"])
    axes.set_xticks(range(len(folds)), [f"fold {f}" for f in folds])
    axes.set_ylabel("validation Sharpe")
    axes.set_title("Validation score per fold (a line per trial)")
    axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return _png(figure)


def importance_plot(importance: dict[str, float]) -> str:
    names = list(importance)[::-1]
    figure, axes = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    axes.barh(names, [importance[name] for name in names], color="tab:blue")
    axes.set_xlabel("importance (sums to 1)")
    axes.set_title("Parameter importance (Optuna, PED-ANOVA)")
    figure.tight_layout()
    return _png(figure)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(json.dumps(value) if isinstance(value, list | dict) else str(value))


def _trials_table(trials: Sequence[Any], names: Sequence[str], best: int | None) -> str:
    rows = []
    for t in trials:
        scores = ", ".join(f"{f}: {_number(s, 2)}" for f, s in zip(t.fold_ids, t.fold_scores, strict=False))
        state = html.escape(t.state) + (f" <small>{html.escape(t.error)}</small>" if t.error else "")
        number = f"<b>{t.trial_number} (chosen)</b>" if t.trial_number == best else str(t.trial_number)
        rows.append(
            [
                number,
                state,
                _number(t.objective),
                scores or "–",
                *(_value(t.params.get(name)) for name in names),
                f"{t.trial_steps:,}",
                html.escape(t.node or "–"),
                "–" if t.wall_seconds is None else f"{t.wall_seconds:.0f} s",
            ]
        )
    return _table(["trial", "state", "objective", "fold: score", *names, "PPO steps", "Ray node", "time"], rows)


def sql_literal(text: str) -> str:
    """``text`` as an SQL string literal to copy into psql: a sweep id with a quote in it stays one literal."""
    return "'" + text.replace("'", "''") + "'"


def write_sweep_report(path: Path, sweep: Any, trials: Sequence[Any], space: Any, walk_forward: Any | None) -> None:
    """One HTML file with everything inline, the choice first."""
    names = list(space.names)
    body = f"""{_summary(sweep, trials)}
<h2>The chosen configuration</h2>
{_chosen_configuration(sweep, trials, names)}
{_final_walk_forward(path, sweep, walk_forward)}
<h2>Score by trial</h2>
<p>Objective: {html.escape(sweep.objective)}. Only validation sessions were scored; test sessions are touched once,
by the chosen configuration's walk-forward.</p>
{score_by_trial_plot(trials)}
{fold_scores_plot(trials, list(sweep.search_folds))}
{_steps_saved(sweep)}
<h2>Parameter importance</h2>
{_parameter_importance(sweep.parameter_importance)}
<h2>Trials</h2>
{_trials_table(trials, names, sweep.best_trial)}
<h2>Search space</h2>
{_search_space_table(space)}
<h2>How to read this</h2>
{_how_to_read(sweep.sweep_id)}
"""
    path.write_text(html_page(f"Sweep {sweep.sweep_id}", body), encoding="utf-8")


def _summary(sweep: Any, trials: Sequence[Any]) -> str:
    counts = {state: sum(t.state == state for t in trials) for state in STATE_STYLE}
    return f"""<p>Status: {html.escape(sweep.status)}. {len(trials)} trial(s) of {sweep.trials_requested} requested:
{counts["completed"]} completed, {counts["pruned"]} pruned by ASHA, {counts["failed"]} failed,
{counts["interrupted"]} interrupted. Trials scored on the validation splits of folds
{html.escape(str(sweep.search_folds))}; the walk-forward reports folds {html.escape(str(sweep.report_folds))}, whose
test splits start after every session a trial saw. Trial seeds
{html.escape(str(sweep.trial_seeds))}. Search: {html.escape(sweep.search_algorithm)}; early stopping:
{html.escape(sweep.scheduler)}. Ray: {html.escape(sweep.ray_address or "a local Ray")}
({sweep.ray_nodes or 1} node(s)).</p>"""


def _chosen_configuration(sweep: Any, trials: Sequence[Any], names: Sequence[str]) -> str:
    best = next((t for t in trials if t.trial_number == sweep.best_trial), None)
    if best is not None:
        return _table(["parameter", "value"], [[html.escape(n), _value(best.params.get(n))] for n in names]) + (
            f"<p>Trial {best.trial_number}: objective {_number(best.objective)} (mean validation Sharpe over "
            f"{best.folds_done} fold(s)); per fold: "
            + ", ".join(f"fold {f} {_number(s, 2)}" for f, s in zip(best.fold_ids, best.fold_scores, strict=False))
            + f". Configuration hash {html.escape(best.config_hash)}.</p>"
        )
    if any(t.state == "completed" for t in trials):  # the final walk-forward could run none of them
        return (
            "<p class='warning'>No completed trial can be walked forward: a report fold cannot trade the window each "
            "drew. Nothing is chosen.</p>"
        )
    return "<p class='warning'>No trial has scored every fold yet: nothing is chosen.</p>"


def _final_walk_forward(path: Path, sweep: Any, walk_forward: Any | None) -> str:
    """The chosen configuration's walk-forward (its verdict and link), or why there is none yet."""
    if sweep.final_run_id:
        verdict = html.escape(sweep.verdict or "")
        link = "" if walk_forward is None else _walk_forward_link(path, walk_forward.report_path)
        return (
            f"<p class='verdict'>{verdict}</p><p>Walk-forward run <code>{html.escape(sweep.final_run_id)}</code>: folds "
            f"{html.escape(str(sweep.report_folds))} x every seed of the chosen configuration, test sessions included, "
            "touched once (only folds whose test split starts after every session a trial saw). Its deflated Sharpe ratio "
            f"{_number(sweep.deflated_sharpe, 2)} is charged for the {sweep.configurations_tried} trial(s) scored in this "
            f"sweep, plus any configurations tried before it (--configurations-tried).{link}</p>"
        )
    if sweep.status == "finished":
        return "<p>The final walk-forward was not run (--no-final-walk-forward).</p>"
    return (
        f"<p class='warning'>The sweep is {html.escape(sweep.status)}"
        + (f": {html.escape(sweep.error)}" if sweep.error else "")
        + f". Continue it with <code>python -m training.sweep --resume {html.escape(shlex.quote(sweep.sweep_id))}</code>.</p>"
    )


def _walk_forward_link(path: Path, report_path: Path) -> str:
    # A URL: a run id with '#', '?' or '%' would end the path or be read as an escape.
    relative = os.path.relpath(report_path.resolve(), path.parent.resolve())
    link = html.escape(urllib.parse.quote(Path(relative).as_posix()))
    return f" <a href='{link}'>The walk-forward's report</a>."


def _steps_saved(sweep: Any) -> str:
    """What early stopping saved, against every trial running every fold; nothing when that total is unknown."""
    if not sweep.trial_steps_without_early_stopping:
        return ""
    share = 1 - sweep.trial_steps_run / sweep.trial_steps_without_early_stopping
    return (
        f"<p>PPO steps: {sweep.trial_steps_run:,} run; {sweep.trial_steps_without_early_stopping:,} had every trial "
        f"run every fold. Early stopping saved {share:.0%} of the search's training.</p>"
    )


def _parameter_importance(importance: dict[str, float] | None) -> str:
    if not importance:
        return "<p>Not computed: it needs at least 3 scored trials that differ in their scores.</p>"
    return importance_plot(importance) + _table(
        ["parameter", "importance"], [[html.escape(n), f"{v:.3f}"] for n, v in importance.items()]
    )


def _search_space_table(space: Any) -> str:
    rows = [[html.escape(n), html.escape(json.dumps(spec))] for n, spec in space.to_dict().items()]
    return _table(["parameter", "range or choices"], rows)


def _how_to_read(sweep_id: str) -> str:
    return f"""<p>Every trial trains PPO on each fold's train sessions, keeps the checkpoint that scores best on the fold's
validation sessions and is scored there; the objective is the mean of those fold scores. That level is optimistic
(the checkpoint was chosen on the same sessions) and a best-of-N is more so: the chosen configuration's walk-forward
measures it on test sessions no trial saw, and its deflated Sharpe ratio charges for the number of trials tried.
Pruned trials stopped early because their mean so far trailed the others at the same fold; their objective is the
mean of the folds they reached. Parameter importance (Optuna's PED-ANOVA) says which parameters moved the objective
within this sweep's trials; with few trials it is a hint, not a finding.</p>
<p>In SQL: <code>select * from ml.sweep_trials where sweep_id = {html.escape(sql_literal(sweep_id))} order by
objective desc nulls last</code>.</p>"""
