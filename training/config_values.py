"""Configuration values as YAML or JSON hands them over, checked against the type of the field they are for.

YAML guesses types (3988 is a number, ``ON`` is true, 2024-01-02 is a date, 3e-4 is text), and a dataclass checks
none: each value is converted here, or refused with a message that names the field and what it must be.
Used by training/config.py (``--config`` files, stored configurations) and training/sweep_space.py (search spaces),
which both read their files with :func:`load_yaml` (a key given twice is an error, not the last one winning).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from command_line import read_user_file

logger = logging.getLogger(__name__)


def read_text(path: Path, label: str = "") -> str:
    """The text of the UTF-8 file ``path``, or a one-line ``ValueError`` that names it (and the line of a byte that
    is not UTF-8)."""
    try:
        data = read_user_file(path)  # a device such as /dev/zero is refused: it never ends
    except OSError as error:
        raise ValueError(f"{label}{path}: cannot read it ({error.strerror or error})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{label}{path} is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line} (save it as UTF-8)"
        ) from None


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping, which YAML forbids (PyYAML would keep the last one silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader (plain data only), refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            with contextlib.suppress(TypeError):  # an unhashable key: the safe loader's own error names it
                line = key_node.start_mark.line + 1
                if key in first_lines:
                    message = f"line {line}: {shown(key)} appears twice (first on line {first_lines[key]})"
                    raise _DuplicateKey(problem=message)
                first_lines[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(text: str, source: str) -> Any:
    """The YAML document ``text`` from ``source`` (a file), or a one-line ``ValueError`` naming it and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except _DuplicateKey as error:
        raise ValueError(f"{source} is not valid YAML: {error.problem}") from None
    except RecursionError:  # PyYAML builds nested lists and mappings recursively: [[[[... a few thousand deep
        raise ValueError(f"{source} is not valid YAML: nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{source} is not valid YAML: {problem}{where}") from None


RETIRED_FIELDS = {
    "dbt_run_results": "the dbt invocation that built the mart is read from marts.mart_builds",
}
"""Settings earlier releases had, with why they are gone: a configuration they wrote (a run folder's config.yaml, a
stored sweep) still loads; the key is ignored, said in one info line."""


def typed_fields(cls: type, values: dict[Any, Any], where: str) -> dict[str, Any]:
    """``values`` (from YAML or JSON) as the types of ``cls``'s fields; an error names ``where``, the key and the
    expected type. Unknown keys are an error, except a retired one (:data:`RETIRED_FIELDS`), which is ignored."""
    for key in values:
        if not isinstance(key, str):
            raise ValueError(f"{where}key {shown(key)} is not a field name (python -m training --help lists them)")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(set(values) & (set(RETIRED_FIELDS) - known)):
        logger.info("%s%s is no longer a setting (%s): ignored", where, key, RETIRED_FIELDS[key])
    values = {key: value for key, value in values.items() if key in known or key not in RETIRED_FIELDS}
    if unknown := sorted(set(values) - known):
        where_ = f" in {where.removesuffix(': ')}" if where else ""
        raise ValueError(f"unknown configuration keys{where_}: {unknown} (python -m training --help lists them)")
    hints = typing.get_type_hints(cls)
    typed = {}
    for name, value in values.items():
        try:
            typed[name] = field_value(hints[name], value)
        except FieldTypeError as error:
            raise ValueError(f"{where}field {name!r} {error}") from None
    return typed


class FieldTypeError(ValueError):
    """A value is not of its field's type: the message reads 'must be an integer, got 'abc''."""


_INVALID = object()


def field_value(annotation: Any, value: Any) -> Any:
    """``value`` as a field of type ``annotation`` (int, float, bool, str, Path, Literal, tuple[T, ...], Optional).

    A float takes an integer, and text that is a finite number (YAML 1.1 reads 3e-4, without a dot, as text); an int
    takes 64.0 and "64"; text takes a number or a date (YAML reads 3988 and 2024-01-02 so); a tuple takes a list or
    one item (as the command line does), a tuple of integers also text such as "1,2". Only a bool takes true/false.
    Raises :class:`FieldTypeError` for anything else.
    """
    converted = _convert(annotation, value)
    if converted is _INVALID:
        quote = " (YAML reads yes, no, on and off as true or false: quote the value)" if _holds_bool(value) else ""
        raise FieldTypeError(f"must be {_expected(annotation)}, got {shown(value)}{quote}")
    return converted


def _holds_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value))


def _options(annotation: Any) -> tuple[list[Any], bool] | None:
    """(the types of a union, whether None is one of them), or None when ``annotation`` is not a union."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(annotation)
    return [arg for arg in args if arg is not type(None)], type(None) in args


def _convert(annotation: Any, value: Any) -> Any:
    if (union := _options(annotation)) is not None:
        options, optional = union
        if optional and (value is None or (value == "" and Path in options)):
            return None
        return next((c for c in (_convert(o, value) for o in options) if c is not _INVALID), _INVALID)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value if isinstance(value, str) and value in typing.get_args(annotation) else _INVALID
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if item is int and isinstance(value, str):
            items: list[Any] = value.replace(",", " ").split()
            items = [int(part) if re.fullmatch(r"-?\d+", part) else part for part in items]
        else:
            items = list(value) if isinstance(value, list | tuple) else [value]
        converted = [_convert(item, part) for part in items]
        return _INVALID if any(c is _INVALID for c in converted) else tuple(converted)
    if annotation is bool:
        return value if isinstance(value, bool) else _INVALID
    if isinstance(value, bool):  # YAML 1.1 also reads yes/no/on/off so: only a bool field takes one
        return _INVALID
    if annotation is int:
        if isinstance(value, float) and value.is_integer():  # 64.0
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):  # "64", as on the command line
            return int(value)
        return value if isinstance(value, int) else _INVALID
    if annotation is float:
        number = value
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as text
            with contextlib.suppress(ValueError):
                number = float(value)
        # nan and inf would pass every "must be >= 0" check and train on nonsense.
        return float(number) if isinstance(number, int | float) and math.isfinite(number) else _INVALID
    if annotation is str:
        if isinstance(value, int):  # a numeric ticker or run id: YAML read 3988 or 20240101 as a number
            return str(value)
        if isinstance(value, datetime.date):  # YAML read 2024-01-02 as a date
            return value.isoformat()
        return value if isinstance(value, str) else _INVALID
    if annotation is Path:
        return Path(value) if isinstance(value, str | os.PathLike) and str(value) != "" else _INVALID
    return value  # a type this function does not know: the dataclass checks it


def _expected(annotation: Any) -> str:
    if (union := _options(annotation)) is not None:
        options, optional = union
        return " or ".join([_expected(option) for option in options] + (["null"] if optional else []))
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return "a list of integers such as [64, 64]" if item is int else "a list of names such as [AAPL, MSFT]"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text", Path: "a file or folder name"}
    return names.get(annotation, str(annotation))


def shown(value: Any) -> str:
    """A value as YAML would write it ('abc' quoted), for messages."""
    if isinstance(value, str):
        return repr(value)
    try:
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()
    except yaml.YAMLError:
        return repr(value)
