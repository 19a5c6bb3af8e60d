"""The dbt project's seed files (warehouse/seeds/*.csv) hold UTF-8 text, as dbt reads them.

dbt reads every seed while it parses the project, before any command of it runs, and a byte that is not UTF-8 (a
spreadsheet that saved ``known_missing_sessions.csv`` in its own encoding, an ``é`` in a reason) ends every dbt
command, ``dbt run`` as well as ``dbt seed``, in a traceback that names no file: "'utf-8' codec can't decode byte 0xe9
in position 50". ``make db-up`` (so ``make dbt-build`` and ``make demo``) checks the seeds first and names the file
and the line instead. dbt itself, typed without make, still stops with its traceback.
"""

from __future__ import annotations

from pathlib import Path

from warehouse_db.errors import WarehouseError
from warehouse_db.settings import REPO_ROOT

SEEDS_DIR = REPO_ROOT / "warehouse" / "seeds"


class SeedFileError(WarehouseError):
    """A seed file dbt cannot read; the message names the file and the line."""


def check_seed_files(seeds_dir: Path | None = None) -> None:
    """Raise :class:`SeedFileError` for the first seed in ``seeds_dir`` (the project's) that cannot be read or is not
    UTF-8 text."""
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
