"""The search space of a sweep: a YAML file of TrainConfig fields and the range or choices each one is drawn from.

Format (training/configs/sweep_space.yaml is the documented default)::

    learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}   # a range; log: sampled on a log scale (low > 0)
    gamma: {low: 0.9, high: 0.999}                          # floats or ints, as the field's type says
    n_epochs: {low: 4, high: 12, step: 4}                   # only low, low + step, ... (ints step by 1 by default)
    net_arch: {choices: [[32, 32], [64, 64]]}               # one of these values

Ranges are inclusive and must not be empty or inverted (low < high). Only the fields in :data:`SEARCHABLE` may be
searched: the costs, the data, the model-selection rule and the statistics describe the market and the measurement,
not the agent, so a sweep must not tune them. Every bound and every choice is checked against the training
configuration's own rules before anything runs. Errors name the file, the line and the field.

:func:`load_space` parses and validates a file; :meth:`SearchSpace.distributions` gives Optuna's distributions and
:meth:`SearchSpace.decode` turns the values Optuna suggests back into TrainConfig values.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from command_line import path_is_file
from training.config import TrainConfig
from training.config_values import FieldTypeError, field_value, load_yaml, read_text
from warehouse_db.settings import REPO_ROOT

DEFAULT_SPACE = REPO_ROOT / "training" / "configs" / "sweep_space.yaml"

SEARCHABLE = (
    "learning_rate",
    "n_steps",
    "batch_size",
    "n_epochs",
    "gamma",
    "gae_lambda",
    "clip_range",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "net_arch",
    "window",
    "n_envs",
    "observation_clip",
)
"""The TrainConfig fields a sweep may search: PPO's hyperparameters, the network and the observation window."""

RANGE_KEYS = frozenset({"low", "high", "log", "step"})
CHOICE_KEYS = frozenset({"choices"})


class SearchSpaceError(ValueError):
    """The search space file cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Parameter:
    """One searched field: a range (``low``, ``high``, ``log``, ``step``) or a list of ``choices``."""

    name: str
    kind: str
    """'float', 'int' or 'choice'."""
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choices": [_plain(choice) for choice in self.choices]}
        spec: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            spec["log"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec

    def distribution(self):
        import optuna.distributions as distributions

        if self.kind == "choice":
            return distributions.CategoricalDistribution([_encode(choice) for choice in self.choices])
        if self.kind == "int":
            return distributions.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return distributions.FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def decode(self, value: Any) -> Any:
        """Optuna's value -> the TrainConfig value (choices that are lists travel through Optuna as JSON text)."""
        if self.kind == "choice":
            by_code = {_encode(choice): choice for choice in self.choices}
            return by_code[value]
        return int(value) if self.kind == "int" else float(value)


@dataclass(frozen=True)
class SearchSpace:
    parameters: tuple[Parameter, ...]
    source: str
    """Where the space came from (a file name, or 'stored with sweep <id>')."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution() for p in self.parameters}

    def decode(self, suggested: dict[str, Any]) -> dict[str, Any]:
        """The TrainConfig values of one suggestion (Optuna's values, keyed by field name)."""
        by_name = {p.name: p for p in self.parameters}
        return {name: by_name[name].decode(value) for name, value in suggested.items()}

    def encode(self, values: dict[str, Any]) -> dict[str, Any]:
        """TrainConfig values -> the values Optuna knows (inverse of :meth:`decode`)."""
        by_name = {p.name: p for p in self.parameters}
        return {
            name: _encode(_normalise(value)) if by_name[name].kind == "choice" else value
            for name, value in values.items()
        }

    def apply(self, base: TrainConfig, suggested: dict[str, Any]) -> TrainConfig:
        """``base`` with the suggested values (in Optuna's encoding) put in."""
        return dataclasses.replace(base, **self.decode(suggested))

    def largest(self, name: str, default: int) -> int:
        """The largest value ``name`` can take in this space (``default`` when it is not searched)."""
        for p in self.parameters:
            if p.name == name:
                return int(max(p.choices) if p.kind == "choice" else p.high)
        return default

    def smallest(self, name: str, default: int) -> int:
        """The smallest value ``name`` can take in this space (``default`` when it is not searched)."""
        for p in self.parameters:
            if p.name == name:
                return int(min(p.choices) if p.kind == "choice" else p.low)
        return default

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.parameters}


def load_space(path: Path, base: TrainConfig | None = None) -> SearchSpace:
    """Parse and validate the search space in ``path`` against ``base`` (the configuration the trials vary)."""
    path = Path(path)
    if not path_is_file(path):
        raise SearchSpaceError(f"search space {path}: no such file")
    try:
        text = read_text(path, "search space ")
    except ValueError as error:
        raise SearchSpaceError(str(error)) from None
    try:
        loaded = load_yaml(text, f"search space {path}")
    except ValueError as error:
        raise SearchSpaceError(str(error)) from None
    root = yaml.compose(text)  # parsed once already: the node tree gives each hyperparameter's line
    if root is None or loaded is None:
        raise SearchSpaceError(
            f"search space {path} holds no hyperparameter: list at least one (see {DEFAULT_SPACE.name})"
        )
    if not isinstance(root, yaml.MappingNode) or not isinstance(loaded, dict):
        raise SearchSpaceError(
            f"search space {path} line {root.start_mark.line + 1}: expected a mapping of hyperparameter -> "
            "{low, high} or {choices}"
        )
    lines = {str(key_node.value): key_node.start_mark.line + 1 for key_node, _ in root.value}
    return space_from_dict(loaded, str(path), base, lines)


def space_from_dict(
    specs: dict[str, Any], source: str, base: TrainConfig | None = None, lines: dict[str, int] | None = None
) -> SearchSpace:
    """Validate a space given as a mapping (from a file, or as stored with a sweep)."""
    base = base or TrainConfig()
    lines = lines or {}
    if not specs:
        raise SearchSpaceError(f"search space {source} holds no hyperparameter: list at least one")
    parameters = []
    for name, spec in specs.items():
        where = f"search space {source}" + (f" line {lines[name]}" if name in lines else "")
        try:
            parameters.append(_parameter(str(name), spec, base))
        except SearchSpaceError as error:
            raise SearchSpaceError(f"{where}: {error}") from None
    # One order whatever the file's (jsonb, which stores a resumed sweep's space, keeps no key order).
    parameters.sort(key=lambda p: SEARCHABLE.index(p.name))
    return SearchSpace(tuple(parameters), source)


def _parameter(name: str, spec: Any, base: TrainConfig) -> Parameter:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        close = difflib.get_close_matches(name, SEARCHABLE, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (searchable: {', '.join(SEARCHABLE)})"
        raise SearchSpaceError(f"unknown hyperparameter {name!r}{hint}")
    if name not in SEARCHABLE:
        raise SearchSpaceError(
            f"{name!r} is not searchable: a sweep tunes the agent, not the costs, data, model selection or "
            f"statistics (searchable: {', '.join(SEARCHABLE)})"
        )
    if not isinstance(spec, dict):
        raise SearchSpaceError(f"{name}: expected {{low: .., high: ..}} or {{choices: [..]}}, found {spec!r}")
    keys = set(spec)
    if keys & CHOICE_KEYS and keys & RANGE_KEYS or not keys or not keys <= RANGE_KEYS | CHOICE_KEYS:
        raise SearchSpaceError(
            f"{name}: give either low and high (with optional log and step) or choices, not {sorted(keys)}"
        )
    annotation = typing.get_type_hints(TrainConfig)[name]
    if "choices" in spec:
        parameter = _choices(name, spec["choices"], annotation)
    else:
        parameter = _range(name, spec, annotation)
    for value in parameter.choices if parameter.kind == "choice" else (parameter.low, parameter.high):
        try:
            dataclasses.replace(base, **{name: value})
        except (ValueError, TypeError) as error:
            reason = str(error).removeprefix("invalid training configuration: ")
            raise SearchSpaceError(f"{name}: the value {_plain(value)!r} is not allowed: {reason}") from None
    return parameter


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _range(name: str, spec: dict[str, Any], annotation: Any) -> Parameter:
    if "low" not in spec or "high" not in spec:
        raise SearchSpaceError(f"{name}: a range needs both low and high")
    if annotation not in (int, float):
        raise SearchSpaceError(
            f"{name}: a {getattr(annotation, '__name__', annotation)} field takes choices, not a range"
        )
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if annotation is float:  # YAML 1.1 reads 1e-5 (no dot) as text: a float field's bounds take it as --config does
        low, high, step = (_float_or_as_is(value) for value in (low, high, step))
    if not (_is_number(low) and _is_number(high)):
        raise SearchSpaceError(f"{name}: low and high must be numbers, found {low!r} and {high!r}")
    if annotation is int and not (isinstance(low, int) and isinstance(high, int)):
        raise SearchSpaceError(f"{name}: an integer field needs integer bounds, found {low!r} and {high!r}")
    if low == high:
        raise SearchSpaceError(f"{name}: the range [{low}, {high}] is empty (low must be below high)")
    if low > high:
        raise SearchSpaceError(f"{name}: the range is inverted: low {low} is above high {high}")
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{name}: log must be true or false, found {log!r}")
    if log and low <= 0:
        raise SearchSpaceError(f"{name}: a log-scale range needs low > 0, found {low}")
    if step is not None:
        if not _is_number(step) or step <= 0 or (annotation is int and not isinstance(step, int)):
            raise SearchSpaceError(f"{name}: step must be a positive {annotation.__name__}, found {step!r}")
        if log:
            raise SearchSpaceError(f"{name}: step and log cannot be combined (Optuna samples one or the other)")
        if step > high - low:
            raise SearchSpaceError(f"{name}: step {step} is larger than the range [{low}, {high}]")
    if annotation is int:
        return Parameter(name, "int", int(low), int(high), log, step)
    return Parameter(name, "float", float(low), float(high), log, None if step is None else float(step))


def _float_or_as_is(value: Any) -> Any:
    try:
        return field_value(float, value) if isinstance(value, str) else value
    except FieldTypeError:
        return value  # not a number: the checks below say so


def _choices(name: str, choices: Any, annotation: Any) -> Parameter:
    if not isinstance(choices, list) or not choices:
        raise SearchSpaceError(f"{name}: choices must be a non-empty list, found {choices!r}")
    values = tuple(_coerce(name, choice, annotation) for choice in choices)
    if len(set(map(_encode, values))) != len(values):
        raise SearchSpaceError(f"{name}: choices {choices} repeat a value")
    return Parameter(name, "choice", choices=values)


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """A choice as the field's type (the conversion of ``--config`` files), or an error that says what was expected.

    A choice of a tuple field must be a list: ``choices: [64, 64]`` is two integers, not one network.
    """
    if typing.get_origin(annotation) is tuple and (not isinstance(value, list) or not value):
        raise SearchSpaceError(f"{name}: every choice must be a list of integers such as [64, 64], found {value!r}")
    try:
        return field_value(annotation, value)
    except FieldTypeError as error:
        raise SearchSpaceError(f"{name}: every choice {error}") from None


def _normalise(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _encode(value: Any) -> Any:
    """Optuna's categorical choices must be scalars: lists and tuples travel as JSON text."""
    return json.dumps(list(value)) if isinstance(value, tuple | list) else value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
