"""A realistic stand-in for ``marts.training_bars`` and its walk-forward folds, for tests and benchmarks without dbt.

Prices are a seeded geometric random walk per symbol on real exchange sessions (XNYS). The features are the mart's
(the list and lookbacks come from warehouse/models/marts/training_bars.yml, the values from
devtools/reference_features.py, the pandas twin of the dbt SQL), after the same warm-up (dbt var
``warmup_sessions``, read from dbt_project.yml). Like the dbt mart, every session after the warm-up is a row and each
symbol's last session has a null target.

The folds are a test double too: :func:`lay_out_folds` places them the way warehouse/models/marts/
walk_forward_folds.sql does (test splits tiling the latest sessions, purge + embargo before validation and test),
in a few lines of Python, and tests/test_dbt_build.py checks that both agree. Tests may also pass folds of their
own. ``write_mart`` creates ``marts.training_bars``, ``marts.walk_forward_folds`` and ``marts.walk_forward_plan``
the way dbt would (schema ``marts`` owned by transformer, SELECT granted to trainer and analyst), and
``write_mart_yaml`` writes a dbt schema YAML in the format training/features.py reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import yaml
from psycopg import sql

from devtools.dbt_harness import dbt_project_var
from devtools.reference_features import TARGET, reference_features
from devtools.scratch_database import scratch_database
from market_calendar import sessions_in_range, sessions_until
from training.features import DEFAULT_MART_YAML, KEY_COLUMNS, read_mart_schema
from training.folds import FOLDS_TABLE, SPLITS, DateRange, Fold
from warehouse_db import connect, schemas
from warehouse_db.provision import provision
from warehouse_db.settings import ConnectionSettings

MART_TABLE = "training_bars"
PLAN_TABLE = "walk_forward_plan"
WARMUP_SESSIONS = int(dbt_project_var("warmup_sessions"))
"""Sessions generated before the first mart row so that every feature has its full lookback (dbt var)."""

_MART_SCHEMA = read_mart_schema(DEFAULT_MART_YAML)
FEATURE_LOOKBACKS: dict[str, int] = {
    feature.name: int(feature.lookback_sessions or 1) for feature in _MART_SCHEMA.features
}
"""The mart's features in column order, with their lookbacks (from training_bars.yml)."""
TARGET_HORIZON_SESSIONS = _MART_SCHEMA.target_horizon_sessions
PRICE_COLUMNS = _MART_SCHEMA.price_columns
"""The mart's price columns (meta.role = price in training_bars.yml)."""
MART_COLUMNS = (*KEY_COLUMNS, *PRICE_COLUMNS, *FEATURE_LOOKBACKS, TARGET)


def session_dates(count: int, end: str = "2025-06-30") -> pd.DatetimeIndex:
    """The last ``count`` XNYS sessions up to ``end``."""
    return sessions_until(end, count)


def symbol_names(count: int) -> list[str]:
    """Distinct ticker-like names: SYM000, SYM001, ... (sorted order = creation order)."""
    return [f"SYM{index:03d}" for index in range(count)]


def synthetic_mart(
    n_symbols: int = 5, n_sessions: int = 300, *, seed: int = 0, end: str = "2025-06-30"
) -> pd.DataFrame:
    """Rows of a mart with ``n_symbols`` symbols over the ``n_sessions`` sessions up to ``end`` (after the warm-up).

    Sorted by symbol then session_date, columns in ``MART_COLUMNS`` order; the last session's target is NaN.
    """
    rng = np.random.default_rng(seed)
    dates = session_dates(WARMUP_SESSIONS + n_sessions, end=end)
    frames = []
    for symbol in symbol_names(n_symbols):
        drift = rng.normal(0.0003, 0.0004)
        volatility = rng.uniform(0.01, 0.03)
        log_returns = rng.normal(drift, volatility, len(dates))
        close = 20.0 * np.exp(rng.uniform(0, 2)) * np.exp(np.cumsum(log_returns))
        gap = rng.normal(0.0, volatility / 3, len(dates))
        open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(gap)
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, volatility / 2, len(dates))))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, volatility / 2, len(dates))))
        volume = np.round(rng.lognormal(13.0, 0.4, len(dates)))
        bars = pd.DataFrame(
            {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
            index=pd.Index(dates, name="session_date"),
        )
        frame = pd.concat([bars, reference_features(bars)], axis=1).iloc[WARMUP_SESSIONS:].reset_index()
        frame.insert(0, "symbol", symbol)
        frames.append(frame)
    mart = pd.concat(frames, ignore_index=True)
    mart["session_date"] = pd.to_datetime(mart["session_date"]).dt.date
    return mart[list(MART_COLUMNS)].sort_values(["symbol", "session_date"], kind="mergesort").reset_index(drop=True)


def lay_out_folds(
    sessions: Sequence[date] | pd.Series | pd.DatetimeIndex,
    *,
    folds: int = 1,
    test_sessions: int | None = None,
    validation_sessions: int | None = None,
    purge_sessions: int = TARGET_HORIZON_SESSIONS,
    embargo_sessions: int = 5,
    train_sessions: int | None = None,
) -> tuple[Fold, ...]:
    """Folds over ``sessions`` (the mart's session dates; duplicates are fine), placed like dbt's walk_forward_folds.

    The test splits of ``folds`` folds tile the last sessions; before each test and each validation split lie
    ``purge_sessions + embargo_sessions`` sessions; train starts at the first session (expanding), or holds at most
    ``train_sessions`` sessions (rolling). Test and validation default to ``len(sessions) // (folds + 4)`` sessions
    each. Positions count the given sessions, which are exchange sessions when they come from a mart.
    """
    days = sorted(set(pd.to_datetime(pd.Series(sessions)).dt.date))
    test_sessions = test_sessions or len(days) // (folds + 4)
    validation_sessions = validation_sessions or len(days) // (folds + 4)
    gap = purge_sessions + embargo_sessions
    laid_out = []
    for position in range(folds, 0, -1):  # oldest first
        test_end = len(days) - 1 - (position - 1) * test_sessions
        test_start = test_end - test_sessions + 1
        validation_end = test_start - gap - 1
        validation_start = validation_end - validation_sessions + 1
        train_end = validation_start - gap - 1
        train_start = 0 if train_sessions is None else max(0, train_end - train_sessions + 1)
        if train_end < train_start:
            raise ValueError(f"{len(days)} sessions are too few for {folds} folds of {test_sessions} test sessions")
        laid_out.append(
            Fold(
                fold_id=folds - position + 1,
                train=DateRange(days[train_start], days[train_end]),
                validation=DateRange(days[validation_start], days[validation_end]),
                test=DateRange(days[test_start], days[test_end]),
                purge_sessions=purge_sessions,
                embargo_sessions=embargo_sessions,
            )
        )
    return tuple(laid_out)


def with_split(mart: pd.DataFrame, fold: Fold | None = None) -> pd.DataFrame:
    """The rows of ``mart`` in ``fold``'s splits (default: the one fold :func:`lay_out_folds` places) with a
    ``split`` column naming the split: what a test of one train / validation / test run needs."""
    fold = fold or lay_out_folds(mart["session_date"])[-1]
    return fold.labelled_rows(mart).reset_index(drop=True)


_SQL_TYPES = {"symbol": "text", "session_date": "date"}


def _sessions_between(first: date, last: date) -> int:
    return len(sessions_in_range(first, last))


def _fold_rows(folds: Sequence[Fold], scheme: str) -> pd.DataFrame:
    rows = []
    for fold in folds:
        row: dict = {"fold_id": fold.fold_id, "scheme": scheme}
        for split in SPLITS:
            row[f"{split}_start"], row[f"{split}_end"] = fold.dates(split).start, fold.dates(split).end
        for split in SPLITS:
            row[f"{split}_sessions"] = _sessions_between(fold.dates(split).start, fold.dates(split).end)
        row["purge_sessions"], row["embargo_sessions"] = fold.purge_sessions, fold.embargo_sessions
        rows.append(row)
    columns = ["fold_id", "scheme", *(f"{r}_{e}" for r in SPLITS for e in ("start", "end")),
               *(f"{r}_sessions" for r in SPLITS), "purge_sessions", "embargo_sessions"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _plan_row(mart: pd.DataFrame, fold_rows: pd.DataFrame, scheme: str, folds_planned: int) -> pd.DataFrame:
    """The one row of walk_forward_plan that describes ``fold_rows`` over ``mart`` (sizes of the latest fold)."""
    if fold_rows.empty:
        raise ValueError("write_mart needs at least one fold (pass folds_planned to pretend more were planned)")
    latest = fold_rows.iloc[-1]
    sizes = {name: int(latest[name]) for name in ("test_sessions", "validation_sessions", "purge_sessions",
                                                  "embargo_sessions")}  # fmt: skip
    min_train = int(fold_rows["train_sessions"].min())
    first, last = min(mart["session_date"]), max(mart["session_date"])
    gap = sizes["purge_sessions"] + sizes["embargo_sessions"]
    row = {
        "scheme": scheme,
        "folds_planned": folds_planned,
        "folds_laid_out": len(fold_rows),
        "test_sessions": sizes["test_sessions"],
        "validation_sessions": sizes["validation_sessions"],
        "train_sessions": None,
        "min_train_sessions": min_train,
        "purge_sessions": sizes["purge_sessions"],
        "embargo_sessions": sizes["embargo_sessions"],
        "warmup_sessions": WARMUP_SESSIONS,
        "first_session": first,
        "last_session": last,
        "history_sessions": _sessions_between(first, last),
        "sessions_needed": folds_planned * sizes["test_sessions"] + 2 * gap + sizes["validation_sessions"] + min_train,
    }
    return pd.DataFrame([row])


def _create_table(
    conn: psycopg.Connection, table: str, frame: pd.DataFrame, types: dict[str, str], other_columns: str
) -> None:
    """(Re)create ``marts.<table>`` holding ``frame``, as transformer, readable by trainer and analyst."""
    columns = list(frame.columns)
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(types.get(name, other_columns))) for name in columns
    )
    target = sql.Identifier(schemas.MARTS, table)
    readers = sql.SQL("{}, {}").format(sql.Identifier(schemas.TRAINER_ROLE), sql.Identifier(schemas.ANALYST_ROLE))
    conn.execute(sql.SQL("drop table if exists {}").format(target))
    conn.execute(sql.SQL("create table {} ({})").format(target, definitions))
    copy_statement = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor().copy(copy_statement) as copy:
        for row in frame.itertuples(index=False, name=None):
            copy.write_row([None if isinstance(value, float) and np.isnan(value) else value for value in row])
    conn.execute(sql.SQL("grant select on {} to {}").format(target, readers))


_FOLD_TYPES = {"scheme": "text", **{f"{split}_{edge}": "date" for split in SPLITS for edge in ("start", "end")}}
_PLAN_TYPES = {"scheme": "text", "first_session": "date", "last_session": "date"}


def write_mart(
    conn: psycopg.Connection,
    mart: pd.DataFrame,
    folds: Sequence[Fold] | None = None,
    *,
    scheme: str = "expanding",
    folds_planned: int | None = None,
    table: str = MART_TABLE,
) -> None:
    """(Re)create ``marts.<table>``, ``marts.walk_forward_folds`` and ``marts.walk_forward_plan`` the way dbt would,
    and commit.

    ``folds`` default to the one fold :func:`lay_out_folds` places over the mart's sessions. ``folds_planned``
    (default: as many as given) lets a test pretend the history is too short for the planned folds. ``conn`` must be
    a provisioned database's owner connection (member of transformer).
    """
    folds = lay_out_folds(mart["session_date"]) if folds is None else tuple(folds)
    fold_rows = _fold_rows(folds, scheme)
    plan = _plan_row(mart, fold_rows, scheme, len(folds) if folds_planned is None else folds_planned)
    marts = sql.Identifier(schemas.MARTS)
    readers = sql.SQL("{}, {}").format(sql.Identifier(schemas.TRAINER_ROLE), sql.Identifier(schemas.ANALYST_ROLE))
    with conn.transaction():
        conn.execute(
            sql.SQL("create schema if not exists {} authorization {}").format(
                marts, sql.Identifier(schemas.TRANSFORMER_ROLE)
            )
        )
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(marts, readers))
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(schemas.TRANSFORMER_ROLE)))
        _create_table(conn, table, mart, _SQL_TYPES, "double precision")
        _create_table(conn, FOLDS_TABLE, fold_rows, _FOLD_TYPES, "integer")
        _create_table(conn, PLAN_TABLE, plan, _PLAN_TYPES, "integer")


@contextmanager
def mart_database(
    prefix: str, mart: pd.DataFrame, folds: Sequence[Fold] | None = None, cluster: ConnectionSettings | None = None
) -> Iterator[ConnectionSettings]:
    """A provisioned scratch database holding ``mart`` and its ``folds`` (see :func:`write_mart`), dropped after."""
    with scratch_database(prefix, cluster) as settings:
        with connect(settings) as conn:
            provision(conn)
            write_mart(conn, mart, folds)
        yield settings


def write_mart_yaml(path: Path, feature_lookbacks: dict[str, int] = FEATURE_LOOKBACKS) -> Path:
    """A dbt schema YAML for the synthetic mart, in the format of warehouse/models/marts/training_bars.yml."""
    columns = [
        *({"name": name, "description": f"Key {name}.", "meta": {"role": "key"}} for name in KEY_COLUMNS),
        *({"name": name, "description": f"Session {name}.", "meta": {"role": "price"}} for name in PRICE_COLUMNS),
        *(
            {
                "name": name,
                "description": f"Feature {name}.",
                "meta": {"role": "feature", "lookback_sessions": lookback},
            }
            for name, lookback in feature_lookbacks.items()
        ),
        {
            "name": TARGET,
            "description": "ln(close[t+1] / close[t]).",
            "meta": {"role": "target", "horizon_sessions": TARGET_HORIZON_SESSIONS},
        },
    ]
    document = {"version": 2, "models": [{"name": MART_TABLE, "description": "Synthetic mart.", "columns": columns}]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
