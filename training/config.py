"""The training job's configuration: one dataclass, each field documented by the string below it.

Precedence: dataclass defaults < ``--config file.yaml`` < command-line flags. The CLI's ``--help`` text is the field
docstrings, read from this file's source, so the explanation lives in exactly one place.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import logging
import textwrap
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from training.features import DEFAULT_MART_YAML
from training.folds import ROLES
from warehouse_db.settings import REPO_ROOT

EnvKind = Literal["native", "tensortrade"]
VecEnvKind = Literal["dummy", "subproc"]
SPLITS = ROLES
"""The ranges of a walk-forward fold, in time order."""


@dataclass
class TrainConfig:
    """Everything a run depends on besides the mart's rows (recorded in the run folder and ml.training_runs)."""

    # --- run identity and output ---
    run_id: str | None = None
    """Name of the run: results go to <runs_dir>/<run_id>/ and ml.* rows carry it. Default: UTC time + random suffix."""
    runs_dir: Path = Path("runs")
    """Folder that holds one sub-folder per run."""
    seed: int = 42
    """Seeds Python, NumPy, torch, PPO, the environments' symbol sampling and the random baseline policy."""
    save_to_warehouse: bool = True
    """Write ml.training_runs, ml.evaluation_metrics and ml.equity_curves at the end of the run."""
    progress_bar: bool = True
    """Show a tqdm progress bar while training."""
    log_level: str = "INFO"
    """Python logging level of the job."""

    # --- data ---
    symbols: tuple[str, ...] = ()
    """Train and evaluate on these symbols only (comma-separated on the command line). Empty: every symbol."""
    symbols_limit: int | None = None
    """Use only the first N symbols (alphabetical) of those selected. None: no limit."""
    mart_yaml: Path = DEFAULT_MART_YAML
    """dbt schema YAML of marts.training_bars: the single source of the feature list (meta.role = feature)."""
    dbt_run_results: Path = REPO_ROOT / "target" / "run_results.json"
    """dbt's run_results.json; its invocation id is recorded as the provenance of the mart (null if absent)."""
    fold: int | None = None
    """Walk-forward fold to train and evaluate on (fold_id in marts.walk_forward_folds). None: the latest fold."""
    embargo_sessions: int | None = None
    """Contract: the fewest embargo sessions every fold must have after its purge. None: whatever dbt laid out."""
    min_episode_steps: int = 5
    """Contract: every fold's ranges need at least window + this many sessions; symbols with fewer rows in a range
    are left out of that range."""

    # --- environment ---
    env: EnvKind = "native"
    """Environment implementation: 'native' (NumPy) or 'tensortrade' (tensortrade-ng). Same semantics, tested parity."""
    window: int = 5
    """Sessions of features in one observation (the decision session and the window-1 before it). The features
    already summarise up to 50 sessions."""
    initial_cash: float = 10_000.0
    """Cash at the start of every episode (each episode trades one symbol)."""
    commission_bps: float = 1.0
    """Commission in basis points of the traded amount, on every buy and every sell."""
    slippage_bps: float = 5.0
    """Slippage in basis points: buys fill at open*(1+s), sells at open*(1-s)."""
    observation_clip: float = 10.0
    """Standardised features are clipped to [-clip, clip], which are also the observation space's bounds."""

    # --- PPO (stable-baselines3) ---
    timesteps: int = 200_000
    """Environment steps to train for (added to the checkpoint's count when resuming)."""
    n_envs: int = 4
    """Parallel environments (each samples its own symbol per episode)."""
    vec_env: VecEnvKind = "dummy"
    """'dummy' (all envs in this process; fastest on 2 cores) or 'subproc' (one process per env)."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    n_steps: int = 512
    """Steps per environment per rollout (rollout size = n_steps * n_envs)."""
    batch_size: int = 256
    """Minibatch size of the PPO update."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clipping parameter."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient (keeps the policy from collapsing onto one action early)."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and value networks."""
    device: str = "cpu"
    """torch device. CPU is what the determinism guarantee covers."""
    torch_threads: int = 1
    """torch intra-op threads; 1 is fastest for these small networks and keeps runs bit-reproducible."""
    checkpoint_freq: int = 50_000
    """Save a checkpoint every this many environment steps (0: never) under <run>/checkpoints/."""
    resume: Path | None = None
    """Continue training from this model zip (e.g. runs/<id>/checkpoints/ppo_100000_steps.zip)."""

    # --- evaluation ---
    eval_splits: tuple[str, ...] = ("validation", "test")
    """Ranges of the fold replayed in full, per symbol, after training."""
    eval_deterministic: bool = True
    """Evaluate the agent with its most likely action instead of sampling."""

    def __post_init__(self) -> None:
        # Values from YAML or flags arrive as strings/lists; normalise the types the rest of the job relies on.
        self.runs_dir = Path(self.runs_dir)
        self.mart_yaml = Path(self.mart_yaml)
        self.dbt_run_results = Path(self.dbt_run_results)
        self.resume = Path(self.resume) if self.resume not in (None, "") else None
        self.symbols = tuple(self.symbols)
        self.net_arch = tuple(int(size) for size in self.net_arch)
        self.eval_splits = tuple(self.eval_splits)
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.env not in typing.get_args(EnvKind):
            problems.append(f"env must be one of {typing.get_args(EnvKind)}, not {self.env!r}")
        if self.vec_env not in typing.get_args(VecEnvKind):
            problems.append(f"vec_env must be one of {typing.get_args(VecEnvKind)}, not {self.vec_env!r}")
        if self.window < 1:
            problems.append("window must be >= 1")
        if self.n_envs < 1 or self.timesteps < 0 or self.n_steps < 1 or self.batch_size < 1:
            problems.append("n_envs, n_steps and batch_size must be >= 1 and timesteps >= 0")
        if self.commission_bps < 0 or self.slippage_bps < 0 or self.commission_bps >= 10_000:
            problems.append("commission_bps and slippage_bps must be >= 0 (and commission < 10000)")
        if self.initial_cash <= 0 or self.observation_clip <= 0:
            problems.append("initial_cash and observation_clip must be > 0")
        if unknown := set(self.eval_splits) - set(SPLITS):
            problems.append(f"eval_splits may only name {SPLITS}, not {sorted(unknown)}")
        if self.fold is not None and self.fold < 1:
            problems.append("fold must be >= 1 (or None: the latest fold)")
        if self.embargo_sessions is not None and self.embargo_sessions < 0:
            problems.append("embargo_sessions must be >= 0 (or None)")
        if self.symbols_limit is not None and self.symbols_limit < 1:
            problems.append("symbols_limit must be >= 1 (or None)")
        if self.torch_threads < 1 or self.checkpoint_freq < 0 or self.min_episode_steps < 1:
            problems.append("torch_threads and min_episode_steps must be >= 1, checkpoint_freq >= 0")
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            problems.append(f"log_level {self.log_level!r} is not a logging level")
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe values (paths as strings, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@cache
def field_docs(cls: type = TrainConfig) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source (how CleanRL/tyro document flags)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def field_types(cls: type = TrainConfig) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse_value(annotation: Any, text: str) -> Any:
    """Turn a command-line string into a value of the field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", ""):
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return parse_value(inner, text)
    if origin is Literal:
        if text not in args:
            raise ValueError(f"expected one of {args}, got {text!r}")
        return text
    if origin is tuple:
        item_type = args[0]
        return tuple(parse_value(item_type, item) for item in text.split(",") if item.strip() != "")
    if annotation is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if annotation is int:
        return int(text.replace("_", ""))
    if annotation is float:
        return float(text)
    if annotation is Path:
        return Path(text)
    return text


def load_config(yaml_path: Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file's keys, then ``overrides`` (already typed); unknown keys are an error."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        loaded = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{yaml_path} must hold a mapping of TrainConfig fields")
        values.update(loaded)
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown := sorted(set(values) - known):
        raise ValueError(f"unknown configuration keys: {unknown}")
    return TrainConfig(**values)


def dump_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved configuration; ``--config`` on this file reproduces the run's settings."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
