"""The training jobs' configuration: dataclasses whose field docstrings are the command line's help (tyro).

* :class:`TrainConfig`: everything one configuration of the agent depends on: data, environment, PPO, model
  selection, baselines and statistics. A sweep (training/sweep.py) varies these fields.
* :class:`SingleRunConfig`: ``python -m training`` / ``make train``, one fold and one seed, in this process.
* :class:`WalkForwardConfig`: ``python -m training.walk_forward`` / ``make walk-forward``, every fold x N seeds on Ray.

Precedence: dataclass defaults < ``--config file.yaml`` < command-line flags. Each YAML value is checked against
its field's type in training/config_values.py; the flags are parsed in training/cli.py.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml

from command_line import path_is_file, user_path
from training.config_values import load_yaml, read_text, typed_fields
from training.features import DEFAULT_MART_YAML

EnvKind = Literal["native", "tensortrade"]
VecEnvKind = Literal["batched", "dummy", "subproc"]
SelectionMetric = Literal["sharpe", "sortino", "total_return"]
MAX_SEED = 2**31 - 1
"""The largest seed the ml tables hold (their seed columns are PostgreSQL integers; NumPy's generators, which the run
seeds with it, would take up to 2**32 - 1): a larger one trained the whole run and then failed to land ("integer out of
range")."""
MAX_RAY_CONNECT_TIMEOUT = 86_400.0
"""The longest wait for a Ray cluster to answer, in seconds (a day): the socket refuses one past its clock's range."""
TORCH_DEVICE = re.compile(r"auto|(cpu|cuda|mps|xpu)(:[0-9]+)?")
"""The devices PPO may be given (stable-baselines3 adds 'auto': cuda where there is one, else cpu)."""
MAX_INTEGER = 2**63 - 1
"""The largest value of any integer setting: the results land in the warehouse's bigint columns (and NumPy's int64)."""


@dataclass
class TrainConfig:
    """One configuration of the agent: what a fold x seed task trains, selects and evaluates with."""

    # --- run identity and output ---
    run_id: str | None = None
    """Name of the run: results go to <runs_dir>/<run_id>/ and ml.* rows carry it. Default: UTC time + random suffix."""
    runs_dir: Path = Path("runs")
    """Folder that holds one sub-folder per run."""
    seed: int = 42
    """Seeds Python, NumPy, torch, PPO, the environments' symbol sampling, the random baseline and the bootstrap (the walk-forward's seeds are seed, seed+1, ...)."""
    save_to_warehouse: bool = True
    """Write the ml.walk_forward_* tables at the end of the run (one transaction)."""
    progress_bar: bool = True
    """Show a progress bar (PPO steps for a single run, finished tasks for the walk-forward) where stderr is a
    terminal (never in a log file or a pipe)."""
    log_level: str = "INFO"
    """Python logging level of the job."""

    # --- data ---
    symbols: tuple[str, ...] = ()
    """Train and evaluate on these symbols only (space- or comma-separated). Empty: every symbol."""
    symbols_limit: int | None = None
    """Use only the first N symbols (alphabetical) of those selected. None: no limit."""
    mart_yaml: Path = DEFAULT_MART_YAML
    """dbt schema YAML of marts.training_bars: the single source of what each column is to the job (meta.role: key, price, feature or target)."""
    min_episode_steps: int = 5
    """A symbol needs at least window + this many sessions in a fold's split to be traded there; shorter ones are left out of that split (and said so in the log). The contract demands as many sessions in every split."""
    embargo_sessions: int | None = None
    """Contract: the fewest embargo sessions every fold must have after its purge. None: whatever dbt laid out."""

    # --- environment ---
    env: EnvKind = "native"
    """Training environment: 'native' (NumPy) or 'tensortrade' (tensortrade-ng), same semantics, tested parity. Evaluation replays always use the native one, batched."""
    window: int = 5
    """Sessions of features in one observation (the decision session and the window-1 before it)."""
    initial_cash: float = 10_000.0
    """Cash at the start of every episode (each episode trades one symbol)."""
    commission_bps: float = 1.0
    """Commission in basis points of the traded amount, on every buy and every sell (0 up to, not including, 10000)."""
    slippage_bps: float = 5.0
    """Slippage in basis points: buys fill at open*(1+s), sells at open*(1-s) (below 10000: a sale at 100% would fill at 0)."""
    observation_clip: float = 10.0
    """Standardised features are clipped to [-clip, clip], which are also the observation space's bounds."""

    # --- PPO (stable-baselines3) ---
    timesteps: int = 200_000
    """Environment steps to train for, per fold and seed."""
    n_envs: int = 8
    """Parallel environments (each samples its own symbol per episode)."""
    vec_env: VecEnvKind = "batched"
    """'batched' (the native environment, all copies stepped in one NumPy call), or SB3's 'dummy' (one process) or 'subproc' (one process per environment) over single environments of --env."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    n_steps: int = 256
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
    """torch device: cpu, cuda, cuda:N, mps or auto. CPU is what the determinism guarantee covers."""
    torch_threads: int = 1
    """torch intra-op threads; 1 is fastest for these small networks and keeps runs bit-reproducible."""

    # --- model selection (validation sessions only) ---
    eval_freq: int = 20_000
    """Score the policy on the fold's validation sessions every this many environment steps and at the end of training; the best-scoring weights are the model that is tested."""
    selection_metric: SelectionMetric = "sharpe"
    """Validation score that selects the checkpoint: pooled Sharpe, Sortino or total return of all symbols."""
    eval_deterministic: bool = True
    """Evaluate the agent with its most likely action instead of sampling."""

    # --- baselines ---
    random_draws: int = 100
    """Seeded draws of the random baseline (matched to the agent's exposure and turnover) that are averaged."""
    sma_fast: int = 10
    """Fast simple moving average (sessions) of the SMA crossover baseline."""
    sma_slow: int = 50
    """Slow simple moving average (sessions) of the SMA crossover baseline."""

    # --- statistics ---
    bootstrap_samples: int = 2000
    """Bootstrap resamples behind every confidence interval."""
    block_sessions: int = 5
    """Length of the blocks of consecutive test sessions the bootstrap resamples (keeps a week's serial correlation)."""
    confidence: float = 0.95
    """Confidence level of the intervals."""
    configurations_tried: int = 1
    """How many configurations were tried to arrive at this one (a sweep passes its trial count); the deflated Sharpe ratio charges for them."""

    def __post_init__(self) -> None:
        # Values from YAML arrive as strings/lists; normalise the types the rest of the job relies on.
        self.runs_dir = path_field("runs_dir", self.runs_dir)
        self.mart_yaml = path_field("mart_yaml", self.mart_yaml)
        self.symbols = _split_commas(self.symbols)
        self.net_arch = tuple(int(size) for size in self.net_arch)
        self.validate()

    def problems(self) -> list[str]:
        problems = []
        # inf or nan passes every "> 0" check below and ends in a traceback (or a NaN loss) minutes later.
        if not_finite := _not_finite_fields(self):
            problems.append(f"{', '.join(not_finite)} must be finite (not inf or nan)")
        # Accepted, it would fail only when the results are written, after the whole run.
        if too_large := _fields_past_64_bits(self):
            problems.append(f"{', '.join(too_large)} must be at most {MAX_INTEGER} (a 64-bit integer)")
        if not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed must be from 0 to {MAX_SEED} (the ml tables' seeds are integers)")
        for name in ("env", "vec_env", "selection_metric"):
            allowed = typing.get_args(typing.get_type_hints(type(self))[name])
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if self.vec_env == "batched" and self.env != "native":
            problems.append(
                "vec_env 'batched' steps the native environment only: use --vec-env dummy with --env tensortrade"
            )
        if self.window < 1:
            problems.append("window must be >= 1")
        if self.n_envs < 1 or self.timesteps < 1 or self.n_steps < 1 or self.batch_size < 1 or self.n_epochs < 1:
            problems.append("timesteps, n_envs, n_steps, n_epochs and batch_size must be >= 1")
        elif self.batch_size < 2 or self.n_steps * self.n_envs < 2:
            # PPO normalises advantages within a minibatch: one sample has no standard deviation (SB3 asserts it).
            problems.append("batch_size and n_steps x n_envs must be >= 2")
        if not (self.learning_rate > 0 and self.clip_range > 0 and self.max_grad_norm > 0):
            problems.append("learning_rate, clip_range and max_grad_norm must be > 0")
        if not (0 < self.gamma <= 1 and 0 < self.gae_lambda <= 1):
            problems.append("gamma and gae_lambda must be in (0, 1]")
        if self.ent_coef < 0 or self.vf_coef < 0:
            problems.append("ent_coef and vf_coef must be >= 0")
        if any(size < 1 for size in self.net_arch):
            problems.append("net_arch layer sizes must be >= 1")
        # At 10000 bps (100%) or more, a sale fills at a price of 0 or below: the book is worth nothing, or less.
        if not (0 <= self.commission_bps < 10_000 and 0 <= self.slippage_bps < 10_000):
            problems.append("commission_bps and slippage_bps must be >= 0 and < 10000 (100%)")
        if self.initial_cash <= 0 or self.observation_clip <= 0:
            problems.append("initial_cash and observation_clip must be > 0")
        if self.symbols_limit is not None and self.symbols_limit < 1:
            problems.append("symbols_limit must be >= 1 (or None)")
        if self.embargo_sessions is not None and self.embargo_sessions < 0:
            problems.append("embargo_sessions must be >= 0 (or None)")
        if not TORCH_DEVICE.fullmatch(str(self.device)):
            # torch would refuse it only when PPO is built, after the mart was read: a traceback.
            problems.append(f"device {self.device!r} is not a torch device: cpu, cuda, cuda:N, mps or auto")
        if self.torch_threads < 1 or self.min_episode_steps < 1 or self.eval_freq < 1:
            problems.append("torch_threads, min_episode_steps and eval_freq must be >= 1")
        if not 1 <= self.sma_fast < self.sma_slow:
            problems.append("sma_fast must be >= 1 and shorter than sma_slow")
        if self.random_draws < 1 or self.bootstrap_samples < 100 or self.block_sessions < 1:
            problems.append("random_draws and block_sessions must be >= 1, bootstrap_samples >= 100")
        if not 0.5 <= self.confidence < 1:
            problems.append("confidence must be in [0.5, 1)")
        if self.configurations_tried < 1:
            problems.append("configurations_tried must be >= 1")
        if self.run_id and (problem := folder_name_problem(self.run_id, "run_id")):
            problems.append(problem)
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            problems.append(f"log_level {self.log_level!r} is not a logging level")
        return problems

    def validate(self) -> None:
        if problems := self.problems():
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe values (paths as strings, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def task_config(self) -> TrainConfig:
        """The fields of the configuration proper (what a task needs), without the job's own."""
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{name: value for name, value in vars(self).items() if name in names})


@dataclass
class SingleRunConfig(TrainConfig):
    """``python -m training``: train on one fold with one seed in this process, select on validation, test once."""

    fold: int | None = None
    """Fold to train on (marts.walk_forward_folds.fold_id). None: the last fold (the most recent test split)."""
    checkpoint_freq: int = 0
    """Save a checkpoint every this many environment steps (0: never) under <run>/checkpoints/."""
    resume: Path | None = None
    """Continue training from this model zip (e.g. runs/<id>/checkpoints/ppo_100000_steps.zip)."""

    def __post_init__(self) -> None:
        self.resume = path_field("resume", self.resume) if self.resume not in (None, "") else None
        super().__post_init__()

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.checkpoint_freq < 0:
            problems.append("checkpoint_freq must be >= 0")
        if self.fold is not None and self.fold < 1:
            problems.append("fold must be >= 1 (or None: the latest fold)")
        if self.resume is not None and not path_is_file(self.resume):
            problems.append(f"resume: there is no model file {self.resume}")
        elif self.resume is not None and (problem := model_zip_problem(self.resume)):
            problems.append(f"resume: {problem}")
        return problems


@dataclass
class WalkForwardConfig(TrainConfig):
    """``python -m training.walk_forward``: every fold x seed as independent tasks on Ray, then the statistics."""

    folds: tuple[int, ...] = ()
    """Folds to run, by fold id (e.g. --folds 1 2). Empty: every fold of marts.walk_forward_folds."""
    seeds: int = 5
    """Seeds per fold: seed, seed+1, ..., seed+seeds-1."""
    ray_address: str | None = None
    """Ray cluster to run on (host:port of its head, ray://host:port, or 'auto'). None: $RAY_ADDRESS if set, else a local Ray started for this run."""
    ray_cpus: int | None = None
    """CPUs of the local Ray (one task per CPU). None: all of this machine's. Ignored on an existing cluster."""
    ray_connect_timeout: float = 15.0
    """Seconds to wait for the Ray cluster at --ray-address to answer before giving up (at most 86400, a day)."""
    task_retries: int = 1
    """Times a failed fold x seed task is retried before it is reported as failed (the others still land)."""

    def __post_init__(self) -> None:
        self.folds = tuple(int(fold) for fold in _split_commas(self.folds))  # YAML may say "1,2" or [1, 2]
        super().__post_init__()

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.seeds < 1:
            problems.append("seeds must be >= 1")
        elif 0 <= self.seed <= MAX_SEED < self.seed + self.seeds - 1:
            problems.append(f"seed + seeds - 1 must be at most {MAX_SEED} (the ml tables' seeds are integers)")
        if self.task_retries < 0 or not 0 < self.ray_connect_timeout <= MAX_RAY_CONNECT_TIMEOUT:
            # A timeout past what the socket takes (1e20) was an OverflowError's traceback when the run began.
            problems.append(f"task_retries must be >= 0 and ray_connect_timeout > 0 and <= {MAX_RAY_CONNECT_TIMEOUT:g}")
        if self.ray_cpus is not None and self.ray_cpus < 1:
            problems.append("ray_cpus must be >= 1 (or None)")
        if self.ray_address and (problem := ray_address_problem(self.ray_address)):
            problems.append(f"ray_address {problem}")
        return problems

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.seeds))


def _not_finite_fields(config: TrainConfig) -> list[str]:
    return [
        field.name
        for field in dataclasses.fields(config)
        if isinstance(value := getattr(config, field.name), float) and not math.isfinite(value)
    ]


def _fields_past_64_bits(config: TrainConfig) -> list[str]:
    """The fields holding an integer (alone or in a tuple, as net_arch) that a PostgreSQL bigint cannot store."""
    return [
        field.name
        for field in dataclasses.fields(config)
        if any(
            isinstance(number, int) and not isinstance(number, bool) and abs(number) > MAX_INTEGER
            for number in _numbers(getattr(config, field.name))
        )
    ]


def path_field(name: str, value: str | os.PathLike[str]) -> Path:
    """The path setting ``name`` with ``~`` expanded: a --config file, a stored configuration and ``--flag=~/x`` reach
    here with no shell having expanded it (a folder named ``~`` would be the result). A ``~user`` of no known user is
    a ``ValueError`` (status 2)."""
    if isinstance(value, str) and not value.strip():
        # Path("") is ".": runs_dir: "" (or --runs-dir "$DIR" with DIR unset) would fill the working directory.
        raise ValueError(f"invalid training configuration: {name} is empty: give a path")
    try:
        return user_path(value)
    except ValueError as error:
        raise ValueError(f"invalid training configuration: {name} {error}") from None


def model_zip_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a stable-baselines3 model (a zip holding ``data`` and ``policy.pth``), or None.

    Checked before the mart is read: SB3 itself would fail only after it, with a traceback.
    """
    example = "such as runs/<run_id>/checkpoints/ppo_100000_steps.zip"
    try:
        if not zipfile.is_zipfile(path):
            return f"{path} is not a model zip (give a stable-baselines3 model {example})"
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile) as error:
        return f"cannot read the model zip {path}: {error}"
    if not {"data", "policy.pth"} <= names:
        return f"{path} is a zip file but not a stable-baselines3 model (it holds no data and policy.pth: give one {example})"
    return None


def ray_address_problem(address: str) -> str | None:
    """Why ``address`` is not a Ray address (host:port, ray://host:port, 'auto' or 'local'), or None."""
    if address in ("auto", "local"):
        return None
    if "@" in address:  # user:password@: no Ray address has one, and the message must not show a password
        return "holds a user (user@ or user:password@; not shown): give host:port, ray://host:port or 'auto'"
    try:
        parsed = urlsplit(address if "://" in address else f"ray://{address}")
    except ValueError:  # '[::1': an IPv6 bracket not closed
        return f"{address!r} is not host:port, ray://host:port or 'auto' (write an IPv6 host as [::1]:6379)"
    if parsed.scheme != "ray":
        # http://host:8265 is the dashboard's address, for `ray job submit`; ray.init takes no other scheme.
        return f"{address!r} is not host:port, ray://host:port or 'auto' (ray.init takes no {parsed.scheme}:// address)"
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:  # a port that is not a number, or out of range
        host, port = None, None
    if not host or not port:
        return f"{address!r} is not host:port, ray://host:port or 'auto'"
    try:
        host.encode("idna")  # what the connection does with it: an empty or 64+ letter label was a traceback there
    except UnicodeError:
        return f"{address!r}: {host!r} is not a host name (a part between dots is empty or longer than 63 characters)"
    return None


MAX_FOLDER_NAME_BYTES = 200
"""The longest run or sweep id, in UTF-8 bytes: file systems allow 255 per folder name, and a sweep names its final
walk-forward <sweep_id>-best (-2, -3, ... beside an unfinished one)."""


def folder_name_problem(name: str, field: str, max_bytes: int = MAX_FOLDER_NAME_BYTES) -> str | None:
    """Why ``name`` cannot be the run or sweep id ``field`` (a folder <runs_dir>/<name>/ and a key in ml.*), or None.

    It must name one folder inside another, never one elsewhere: no separator, not '.' or '..' (which, as
    <runs_dir>/<run_id>, would be the runs folder or its parent). Control characters (a newline, a NUL byte from a YAML
    "\\0") and bytes that are not UTF-8 (surrogates from the command line) are refused too: the folder, the log lines
    and PostgreSQL's text columns cannot all hold them. Checked before anything runs: a name too long for the file
    system was a traceback, and one PostgreSQL refuses would fail only when the results are written.
    """
    if name.strip() in ("", ".", "..") or "/" in name or "\\" in name:
        return f"{field} {name!r} must name one folder, <runs_dir>/<{field}>/: no '/', not '.' or '..'"
    if not name.isprintable():
        return f"{field} {name!r} must be printable text: no newline, tab, NUL or other control character"
    if len(name.encode("utf-8")) > max_bytes:
        return f"{field} must be at most {max_bytes} bytes long (UTF-8), not {len(name.encode('utf-8'))}"
    return None


def _split_commas(values: Any) -> tuple[str, ...]:
    """('A,B', 'C') -> ('A', 'B', 'C'): lists may be given space- or comma-separated."""
    if isinstance(values, str | int):
        values = [values]
    return tuple(part.strip() for value in values for part in str(value).split(",") if part.strip())


def _numbers(value: Any) -> tuple[Any, ...]:
    """A setting's value as a tuple of its items: net_arch's layer sizes, or the value itself."""
    return value if isinstance(value, tuple) else (value,)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


ConfigT = TypeVar("ConfigT", bound=TrainConfig)


def load_config(
    yaml_path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    cls: type[ConfigT] = SingleRunConfig,
    base: dict[str, Any] | None = None,
) -> ConfigT:
    """Defaults of ``cls`` (or ``base``, e.g. a stored configuration), then the YAML file's keys, then ``overrides``;
    unknown keys and values of the wrong type are an error that names the file and the field."""
    values = typed_fields(cls, base or {}, "stored configuration: ")
    if yaml_path is not None:
        loaded = load_yaml(read_text(Path(yaml_path)), str(yaml_path)) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{yaml_path} must hold a mapping of {cls.__name__} fields")
        values.update(typed_fields(cls, loaded, f"{yaml_path}: "))
    values.update(typed_fields(cls, overrides or {}, ""))
    try:
        return cls(**values)
    except TypeError as error:
        where = f" in {yaml_path}" if yaml_path is not None else ""
        raise ValueError(f"invalid configuration{where}: {error}") from None


def dump_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved configuration; ``--config`` on this file reproduces the run's settings."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


RUN_FIELDS = frozenset(
    {"run_id", "runs_dir", "seed", "save_to_warehouse", "progress_bar", "log_level", "mart_yaml",
     "configurations_tried"}
)  # fmt: skip
"""TrainConfig fields that name or steer a run but do not change the agent (left out of the configuration hash).
``configurations_tried`` is what led to a configuration, not part of it: a sweep's trial and the walk-forward of the
same configuration share their hash."""


def configuration_hash(config: TrainConfig) -> str:
    """SHA-256 of the fields that define the agent: runs with the same hash tried the same configuration."""
    import hashlib
    import json

    values = {name: value for name, value in config.task_config().to_dict().items() if name not in RUN_FIELDS}
    return "sha256:" + hashlib.sha256(json.dumps(values, sort_keys=True).encode("utf-8")).hexdigest()
