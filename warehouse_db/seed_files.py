"""The dbt project's seed files (warehouse/seeds/*.csv) hold UTF-8 text, as dbt reads them, under the header the
project declares for them.

dbt reads every seed while it parses the project, before any command of it runs, and a byte that is not UTF-8 (a
spreadsheet that saved ``known_missing_sessions.csv`` in its own encoding, an ``é`` in a reason) ends every dbt
command, ``dbt run`` as well as ``dbt seed``, in a traceback that names no file: "'utf-8' codec can't decode byte 0xe9
in position 50". ``make db-up`` (so ``make dbt-build`` and ``make demo``) checks the seeds first and names the file
and the line instead. dbt itself, typed without make, still stops with its traceback.

A header other than the columns the seed's ``column_types`` name in dbt_project.yml (``sesion_date``, a column more)
is refused by ``dbt seed`` itself (warehouse/macros/check_seed_file.sql), but only after dbt has loaded the file, and
its CSV reader then prints a two-line RuntimeWarning ("... does not match the name of any column in this table") for
each missing column first. ``make db-up`` checks the header here, before dbt reads the file, with the macro's words.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from warehouse_db.errors import WarehouseError
from warehouse_db.settings import REPO_ROOT

SEEDS_DIR = REPO_ROOT / "warehouse" / "seeds"
DBT_PROJECT = REPO_ROOT / "dbt_project.yml"


class SeedFileError(WarehouseError):
    """A seed file dbt cannot read; the message names the file and the line."""


def declared_columns(project_file: Path | None = None) -> dict[str, list[str]]:
    """Each seed's columns as its ``+column_types`` in dbt_project.yml name them (the list check_seed_file.sql holds
    a seed's header to), by seed name; a seed without column_types is not in it. None at all when the file cannot be
    read as a mapping (not there, not UTF-8, not YAML): checking it is dbt's job, whose error names the line."""
    try:
        project = yaml.safe_load((project_file or DBT_PROJECT).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    seeds = project.get("seeds") if isinstance(project, dict) else None
    seeds = seeds.get(project.get("name")) if isinstance(seeds, dict) else None
    if not isinstance(seeds, dict):
        return {}
    return {
        name: list(config["+column_types"])
        for name, config in seeds.items()
        if isinstance(config, dict) and isinstance(config.get("+column_types"), dict)
    }


def _header_problem(text: str, expected: list[str]) -> str | None:
    """check_seed_file.sql's refusal of a header that names other columns than ``expected`` (in any order), or None."""
    header = next(csv.reader(text.lstrip("\ufeff").splitlines()[:1]), [])
    if sorted(header) == sorted(expected):
        return None
    unknown = ",".join(name for name in header if name not in expected) or "none"
    missing = ",".join(name for name in expected if name not in header) or "none"
    return (
        f"line 1: the header is '{','.join(header)}', expected the columns {','.join(expected)} (unknown: {unknown}; "
        f"missing: {missing}). Nothing was loaded; the previous rows stay."
    )


def check_seed_files(seeds_dir: Path | None = None, project_file: Path | None = None) -> None:
    """Raise :class:`SeedFileError` for the first seed in ``seeds_dir`` (the project's) that cannot be read, is not
    UTF-8 text, or whose header is not the columns dbt_project.yml declares for it."""
    columns = declared_columns(project_file)
    for path in sorted((seeds_dir or SEEDS_DIR).glob("*.csv")):
        shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        try:
            data = path.read_bytes()
        except OSError as error:  # no permission, a directory named *.csv, ...: dbt could not read it either
            raise SeedFileError(f"{shown} cannot be read: {error.strerror or error}") from None
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise SeedFileError(
                f"{shown} is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line}; save it as UTF-8 "
                "(dbt cannot parse the project until then, and nothing was loaded)"
            ) from None
        if path.stem in columns and (problem := _header_problem(data.decode("utf-8"), columns[path.stem])):
            raise SeedFileError(f"{shown} {problem}")
