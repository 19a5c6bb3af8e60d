"""The mart's feature list, read from the one place that defines it: the dbt YAML of ``marts.training_bars``.

Each column in that YAML carries ``meta: {role: feature, lookback_sessions: N}`` (a feature the agent may observe),
``meta: {role: target, horizon_sessions: H}`` (what the next H sessions did; never observed), ``meta: {role: price}``
(a session's prices and volume, read and checked but never observed), ``meta: {role: key}`` (symbol, session) or
``meta: {role: lineage}`` (not read). dbt 1.10+ also accepts ``config: {meta: ...}``; both spellings are read. The dbt
macro ``training_feature_columns`` reads the same feature list, so this YAML is the one place a column's role is
declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from command_line import path_exists
from training.config_values import load_yaml, read_text
from warehouse_db.settings import REPO_ROOT

MART_MODEL = "training_bars"
DEFAULT_MART_YAML = REPO_ROOT / "warehouse" / "models" / "marts" / "training_bars.yml"

KEY_COLUMNS = ("symbol", "session_date")
"""A mart row's key: one row per symbol and session."""
TRADED_PRICE_COLUMNS = ("open", "close")
"""The prices a task needs: fills at the open, marks at the close (envs/fill_rule.py); the SMA baseline uses closes.
Not MartSchema.price_columns, which is every price column the job reads and the contract checks."""

FEATURE_ROLE = "feature"
TARGET_ROLE = "target"
PRICE_ROLE = "price"
KEY_ROLE = "key"


@dataclass(frozen=True)
class FeatureSpec:
    """One observable column of the mart."""

    name: str
    lookback_sessions: int | None
    """How many sessions (including the current one) the feature looks back over, as the YAML states it."""


@dataclass(frozen=True)
class MartSchema:
    """What the training job needs to know about the mart's columns."""

    features: tuple[FeatureSpec, ...]
    target: str
    price_columns: tuple[str, ...]
    """The session's prices and volume the job reads and the data contract checks (meta.role = price), in order."""
    target_horizon_sessions: int
    """How many sessions past its own the target looks: the smallest purge a walk-forward fold may have."""
    source: Path

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def longest_lookback(self) -> int:
        """The longest feature lookback: the warm-up each symbol's history needs before its first mart row."""
        lookbacks = [feature.lookback_sessions for feature in self.features if feature.lookback_sessions is not None]
        return max(lookbacks, default=0)


class MartSchemaError(ValueError):
    """The mart YAML is missing or does not describe features and a target the way the contract needs."""


def _column_meta(path: Path, column: dict[str, Any]) -> dict[str, Any]:
    """The column's meta, dbt's ``config.meta`` over its top-level ``meta``; a part that is not a mapping is refused."""
    config = column.get("config") or {}
    parts = {"meta": column.get("meta") or {}, "config": config}
    if isinstance(config, dict):
        parts["config.meta"] = config.get("meta") or {}
    for name, part in parts.items():
        if not isinstance(part, dict):
            raise MartSchemaError(f"{path}: column {column['name']}: {name} is not a mapping")
    return {**parts["meta"], **parts["config.meta"]}


def _lookback(path: Path, column: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MartSchemaError(
            f"{path}: column {column}: meta.lookback_sessions must be a whole number of sessions, not {value!r}"
        ) from None


def read_mart_schema(path: Path = DEFAULT_MART_YAML, model: str = MART_MODEL) -> MartSchema:
    """Parse the feature and target columns of ``model`` from its dbt schema YAML, in the order listed."""
    path = Path(path)
    if not path_exists(path):
        raise MartSchemaError(
            f"{path} does not exist: the feature list of marts.{model} is read from its dbt YAML "
            "(build the warehouse project first, or pass --mart-yaml)"
        )
    try:  # a file that cannot be read, is not UTF-8 or not YAML: one line naming it, not a traceback mid-run
        document = load_yaml(read_text(path), str(path)) or {}
    except ValueError as error:
        raise MartSchemaError(str(error)) from None
    entries = document.get("models") if isinstance(document, dict) else None
    models = [e for e in entries if isinstance(e, dict) and e.get("name") == model] if isinstance(entries, list) else []
    if not models:
        raise MartSchemaError(f"{path} has no model named {model!r}")

    features: list[FeatureSpec] = []
    targets: list[tuple[str, Any]] = []
    prices: list[str] = []
    keys: list[str] = []
    columns = models[0].get("columns") or []
    if not isinstance(columns, list):
        raise MartSchemaError(f"{path}: the columns of {model} are not a list")
    for number, column in enumerate(columns, 1):
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            raise MartSchemaError(f"{path}: column {number} of {model} is not a mapping with a name")
        meta = _column_meta(path, column)
        role = meta.get("role")
        if role == PRICE_ROLE:
            prices.append(column["name"])
        elif role == KEY_ROLE:
            keys.append(column["name"])
        elif role == FEATURE_ROLE:
            lookback = _lookback(path, column["name"], meta.get("lookback_sessions"))
            features.append(FeatureSpec(name=column["name"], lookback_sessions=lookback))
        elif role == TARGET_ROLE:
            targets.append((column["name"], meta.get("horizon_sessions")))

    if not features:
        raise MartSchemaError(f"{path}: no column of {model} has meta.role = {FEATURE_ROLE!r}")
    if len(targets) != 1:
        names = [name for name, _ in targets]
        raise MartSchemaError(f"{path}: expected exactly one column with meta.role = {TARGET_ROLE!r}, found {names}")
    names = [feature.name for feature in features]
    if len(set(names)) != len(names):
        raise MartSchemaError(f"{path}: a feature column is listed twice: {names}")
    target, horizon = targets[0]
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise MartSchemaError(
            f"{path}: the target {target} needs meta.horizon_sessions, the sessions it looks ahead (>= 1), not {horizon!r}"
        )
    if missing := [name for name in TRADED_PRICE_COLUMNS if name not in prices]:
        raise MartSchemaError(
            f"{path}: the environments trade at {' and '.join(TRADED_PRICE_COLUMNS)}, but {', '.join(missing)} "
            f"has no meta.role = {PRICE_ROLE!r}"
        )
    # The job sorts, joins and fingerprints rows by these names, so the YAML must name the same key.
    if tuple(keys) != KEY_COLUMNS:
        raise MartSchemaError(
            f"{path}: the mart's key (meta.role = {KEY_ROLE!r}) must be {', '.join(KEY_COLUMNS)}, not {keys}"
        )
    return MartSchema(
        features=tuple(features),
        target=target,
        target_horizon_sessions=horizon,
        price_columns=tuple(prices),
        source=path,
    )
