"""Hostile values a flag fuzz found ending in a traceback, a hang or real work: each now ends in one line.

Table-driven and parser-level (milliseconds each): the fuzz fed every flag and variable of every command '', ' ',
nan, inf, 1e20, a 5,000-character value, /dev/full, a folder, '[::1', 'a..b' and so on; these are the cases that
were wrong. A device (/dev/zero never ends) was read whole until the command ran out of memory; the tests that read
one run under a memory limit of their own, so that old code fails them instead of the machine.
"""

from __future__ import annotations

import resource
from datetime import UTC, datetime
from pathlib import Path

import pytest

from command_line import open_user_file, read_user_file
from ingest.csv_source import Problems, read_csv_bars
from ingest.sessions import FinalBars
from ingest.watchlist import WatchlistError, load_watchlist
from training.config_values import read_text
from training.features import MartSchemaError, read_mart_schema
from warehouse_db.errors import WarehouseConfigError
from warehouse_db.settings import service_parameters, warehouse_dir

LONG = "x" * 5000
DEVICE = Path("/dev/zero")


@pytest.fixture
def memory_limit():
    """Reading a device whole (the old code) fails with MemoryError within a second instead of filling the machine."""
    before = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (in_use + 512 * 2**20, before[1]))
    yield
    resource.setrlimit(resource.RLIMIT_AS, before)


READERS = [
    # (reader, the error it reports in one line)
    (lambda path: load_watchlist(path), WatchlistError),
    (lambda path: read_text(path), ValueError),
    (lambda path: read_mart_schema(path), MartSchemaError),
    (lambda path: service_parameters({"PGSERVICE": "x", "PGSERVICEFILE": str(path)}), WarehouseConfigError),
]


@pytest.mark.parametrize(("read", "error"), READERS)
def test_a_device_given_as_a_file_is_refused_not_read_for_ever(memory_limit, read, error) -> None:
    with pytest.raises(error, match="is a device, not a file"):
        read(DEVICE)


def test_a_device_given_as_a_csv_file_is_a_problem_not_a_hang(memory_limit) -> None:
    problems = Problems()
    assert list(read_csv_bars(DEVICE, problems, FinalBars(datetime.now(UTC)))) == []
    assert problems.kept == [f"{DEVICE}: cannot read it: is a device, not a file"]


def test_files_and_pipes_are_still_read(tmp_path: Path) -> None:
    file = tmp_path / "a.txt"
    file.write_bytes(b"abc")
    assert read_user_file(file) == b"abc"
    with open_user_file(file) as opened:
        assert opened.read() == b"abc"


@pytest.mark.parametrize("path", ["folder", "not-yaml", "a-list"])
def test_a_mart_yaml_that_is_no_schema_is_one_line(tmp_path: Path, path: str) -> None:
    target = tmp_path / path
    if path == "folder":
        target.mkdir()
    else:
        target.write_text("models: [unclosed" if path == "not-yaml" else "- a\n- b\n", encoding="utf-8")
    with pytest.raises(MartSchemaError, match="--mart-yaml"):
        read_mart_schema(target)


@pytest.mark.parametrize(("value", "says"), [(" ", "WAREHOUSE_DIR is blank"), (LONG, "File name too long")])
def test_a_hostile_WAREHOUSE_DIR_is_one_line(value: str, says: str) -> None:
    # ' ' made a warehouse in a folder named by a space that pg_ctl could not start (16 lines of its log); 5,000
    # characters were an OSError's traceback from `python -m warehouse_db status` and `down`.
    with pytest.raises(WarehouseConfigError, match=says):
        warehouse_dir({"WAREHOUSE_DIR": value})
