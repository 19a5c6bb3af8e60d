"""The run folder's human-facing outputs: metrics.json, equity and drawdown PNGs, and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window (CI, servers)
import matplotlib.pyplot as plt
import pandas as pd

from training.evaluation import AGGREGATE_SYMBOL, POLICIES, Evaluation
from training.metrics import METRIC_DEFINITIONS, METRICS, drawdown

POLICY_COLOURS = {"agent": "tab:blue", "buy_and_hold": "tab:orange", "flat": "tab:gray", "random": "tab:green"}
PERCENT_METRICS = {"total_return", "cagr", "max_drawdown", "turnover", "exposure", "hit_rate"}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def metrics_document(evaluation: Evaluation) -> dict[str, Any]:
    """{split: {symbol: {policy: {metric: value}}}}, undefined values as null."""
    document: dict[str, Any] = {}
    for row in evaluation.metrics.itertuples(index=False):
        document.setdefault(row.split, {}).setdefault(row.symbol, {}).setdefault(row.policy, {})[row.metric] = row.value
    return _json_safe(document)


def write_metrics_json(path: Path, run_summary: dict[str, Any], evaluation: Evaluation) -> None:
    document = {**run_summary, "metric_definitions": METRIC_DEFINITIONS, "metrics": metrics_document(evaluation)}
    path.write_text(json.dumps(_json_safe(document), indent=2, default=str), encoding="utf-8")


def plot_split(evaluation: Evaluation, split: str, folder: Path) -> dict[str, Path]:
    """Equity (growth of 1) and drawdown of all symbols together, one line per policy."""
    curves = {policy: evaluation.combined_curve(split, policy) for policy in POLICIES}
    curves = {policy: curve for policy, curve in curves.items() if not curve.empty}
    paths = {"equity": folder / f"equity_{split}.png", "drawdown": folder / f"drawdown_{split}.png"}

    figure, axes = plt.subplots(figsize=(9, 4.5))
    for policy, curve in curves.items():
        axes.plot(curve.index, curve / curve.iloc[0], label=policy, color=POLICY_COLOURS.get(policy))
    axes.set_title(f"{split}: growth of 1, all symbols with equal starting cash")
    axes.set_ylabel("net worth / starting net worth")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(paths["equity"], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(9, 3.5))
    for policy, curve in curves.items():
        axes.fill_between(curve.index, drawdown(curve.to_numpy()), 0, alpha=0.25, color=POLICY_COLOURS.get(policy))
        axes.plot(curve.index, drawdown(curve.to_numpy()), label=policy, color=POLICY_COLOURS.get(policy))
    axes.set_title(f"{split}: drawdown, all symbols")
    axes.set_ylabel("drawdown")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(paths["drawdown"], dpi=100)
    plt.close(figure)
    return paths


def _format(metric: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric in PERCENT_METRICS:
        return f"{value:.2%}"
    if metric == "trades":
        return f"{value:.0f}"
    return f"{value:.3f}"


def _table(frame: pd.DataFrame, index_name: str) -> str:
    header = "".join(
        f"<th title='{html.escape(METRIC_DEFINITIONS.get(c, ''))}'>{html.escape(c)}</th>" for c in frame.columns
    )
    body = "".join(
        f"<tr><th>{html.escape(str(index))}</th>"
        + "".join(f"<td>{_format(column, value)}</td>" for column, value in row.items())
        + "</tr>"
        for index, row in frame.iterrows()
    )
    return f"<table><thead><tr><th>{html.escape(index_name)}</th>{header}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{encoded}'>"


def write_report_html(
    path: Path, run_summary: dict[str, Any], evaluation: Evaluation, plots: dict[str, dict[str, Path]]
) -> None:
    """One HTML file with everything inline (plots as base64), so it can be mailed or archived alone."""
    summary_rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in run_summary.items()
        if not isinstance(value, dict)
    )
    sections = []
    for split, split_plots in plots.items():
        per_symbol = evaluation.metrics[
            (evaluation.metrics["split"] == split)
            & (evaluation.metrics["symbol"] != AGGREGATE_SYMBOL)
            & (evaluation.metrics["metric"].isin(["total_return", "sharpe", "max_drawdown", "exposure"]))
        ]
        symbol_table = per_symbol.pivot_table(
            index="symbol", columns=["metric", "policy"], values="value", dropna=False
        )
        symbol_table.columns = [f"{metric} · {policy}" for metric, policy in symbol_table.columns]
        symbol_rows = "".join(
            f"<tr><th>{html.escape(symbol)}</th>"
            + "".join(f"<td>{_format(column.split(' · ')[0], value)}</td>" for column, value in row.items())
            + "</tr>"
            for symbol, row in symbol_table.iterrows()
        )
        symbol_header = "".join(f"<th>{html.escape(column)}</th>" for column in symbol_table.columns)
        sections.append(
            f"""<section><h2>{html.escape(split)}</h2>
            <h3>All symbols together</h3>{_table(evaluation.wide(split), "policy")}
            {_image(split_plots["equity"])}{_image(split_plots["drawdown"])}
            <details><summary>Per symbol ({symbol_table.shape[0]})</summary>
            <table><thead><tr><th>symbol</th>{symbol_header}</tr></thead><tbody>{symbol_rows}</tbody></table>
            </details></section>"""
        )
    definitions = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>" for name, text in METRIC_DEFINITIONS.items()
    )
    title = f"Training run {run_summary.get('run_id', '')}"
    path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
th {{ background: #f4f4f4; }} img {{ max-width: 100%; display: block; margin: 0.5rem 0; }}
dt {{ font-weight: bold; }} dd {{ margin: 0 0 0.4rem 1rem; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{summary_rows}</table>
{"".join(sections)}
<h2>Metric definitions</h2><dl>{definitions}</dl>
<p>Metrics for the policies: agent (the trained PPO policy), buy_and_hold (long from the first fill),
flat (cash only), random (long or flat with probability 1/2 each session, seeded). Columns: {", ".join(METRICS)}.</p>
</body></html>
""",
        encoding="utf-8",
    )
