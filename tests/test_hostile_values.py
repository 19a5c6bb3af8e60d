"""Hostile values a flag fuzz found ending in a traceback, a hang or real work: each now ends in one line.

Table-driven and parser-level (milliseconds each): the fuzz fed every flag and variable of every command '', ' ',
nan, inf, 1e20, a 5,000-character value, /dev/full, a folder, '[::1', 'a..b' and so on; these are the cases that
were wrong. A device (/dev/zero never ends) was read whole until the command ran out of memory; the tests that read
one run under a memory limit of their own, so that old code fails them instead of the machine.
"""

from __future__ import annotations

import math
import os
import resource
from datetime import UTC, datetime
from pathlib import Path

import pytest

from command_line import open_user_file, read_user_file
from gateway_simulator.__main__ import build_parser as simulator_parser
from ingest.csv_source import Problems, read_csv_bars
from ingest.sessions import FinalBars
from ingest.watchlist import WatchlistError, load_watchlist
from training.cli import parse_command_line
from training.config import SingleRunConfig, TrainConfig, WalkForwardConfig
from training.config_values import read_text
from training.features import MartSchemaError, read_mart_schema
from training.sweep import SweepConfig
from training.task_runners import BadRayAddress, check_ray_address
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


TRAINING_REFUSED = [
    # (configuration, argv, what the one line says)
    (SingleRunConfig, ["--runs-dir", ""], "--runs-dir is empty"),
    (SingleRunConfig, ["--runs-dir= "], "--runs-dir is empty"),
    (WalkForwardConfig, ["--mart-yaml", ""], "--mart-yaml is empty"),
    (SweepConfig, ["--space", " "], "--space is empty"),
    (SingleRunConfig, ["--resume", ""], "--resume is empty"),
    (SingleRunConfig, ["--resume", LONG], "there is no model file"),  # was OSError: File name too long
    (SingleRunConfig, ["--config", LONG], "no such file"),  # was OSError: File name too long
    (SingleRunConfig, ["--device", "nonsense"], "device 'nonsense' is not a torch device"),
    (WalkForwardConfig, ["--device", ""], "is not a torch device"),
    (WalkForwardConfig, ["--ray-address", "[::1"], "ray_address '[::1' is not host:port"),  # was 'Invalid IPv6 URL'
    (WalkForwardConfig, ["--ray-address", "a..b:6379"], "'a..b' is not a host name"),
    (WalkForwardConfig, ["--ray-address", "x" * 64 + ":6379"], "is not a host name"),
    (WalkForwardConfig, ["--ray-connect-timeout", "1e20"], "ray_connect_timeout > 0 and <= 86400"),
    (SweepConfig, ["--ray-connect-timeout", "99999999999999999999"], "ray_connect_timeout > 0 and <= 86400"),
]


@pytest.mark.parametrize(
    ("cls", "argv", "says"), TRAINING_REFUSED, ids=[" ".join(argv)[:40] for _, argv, _ in TRAINING_REFUSED]
)
def test_training_flags_refuse_hostile_values_in_one_line(cls, argv, says) -> None:
    with pytest.raises(ValueError) as refused:
        parse_command_line(cls, argv, "prog", "description")
    message = str(refused.value)
    assert says in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("cls", "argv", "field", "value"),
    [
        (SingleRunConfig, ["--runs-dir", "."], "runs_dir", Path(".")),  # a dot is a folder the user named
        (SingleRunConfig, ["--device", "cuda:1"], "device", "cuda:1"),
        (SingleRunConfig, ["--device", "auto"], "device", "auto"),
        (WalkForwardConfig, ["--ray-address", "[::1]:6379"], "ray_address", "[::1]:6379"),
        (WalkForwardConfig, ["--ray-connect-timeout", "86400"], "ray_connect_timeout", 86400.0),
    ],
)
def test_training_flags_still_take_good_values(cls, argv, field, value) -> None:
    assert getattr(parse_command_line(cls, argv, "prog", "description"), field) == value


def test_an_empty_path_in_a_config_file_is_refused() -> None:
    with pytest.raises(ValueError, match="runs_dir is empty"):
        TrainConfig(runs_dir="")


@pytest.mark.parametrize("address", ["[::1", "ray://[::1", "a..b:6379", "x" * 64 + ":6379"])
def test_a_bad_RAY_ADDRESS_is_one_line_not_a_traceback(address: str) -> None:
    # RAY_ADDRESS is read when the run begins: a ValueError or UnicodeError there was a traceback.
    with pytest.raises(BadRayAddress, match="^RAY_ADDRESS "):
        check_ray_address(address, 1.0, "RAY_ADDRESS")


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
    # A pipe, as `--watchlist <(grep ...)` gives one (/dev/fd/N): read to its end, not refused as a device.
    reads, writes = os.pipe()
    try:
        os.write(writes, b"symbol,primary_exchange\n")
        os.close(writes)
        assert read_user_file(f"/dev/fd/{reads}") == b"symbol,primary_exchange\n"
    finally:
        os.close(reads)


@pytest.mark.parametrize("path", ["folder", "not-yaml", "a-list"])
def test_a_mart_yaml_that_is_no_schema_is_one_line(tmp_path: Path, path: str) -> None:
    target = tmp_path / path
    if path == "folder":
        target.mkdir()
    else:
        target.write_text("models: [unclosed" if path == "not-yaml" else "- a\n- b\n", encoding="utf-8")
    with pytest.raises(MartSchemaError) as refused:
        read_mart_schema(target)
    assert str(refused.value).startswith(str(target)) and "\n" not in str(refused.value)


@pytest.mark.parametrize(("value", "says"), [(" ", "WAREHOUSE_DIR is blank"), (LONG, "File name too long")])
def test_a_hostile_WAREHOUSE_DIR_is_one_line(value: str, says: str) -> None:
    # ' ' made a warehouse in a folder named by a space that pg_ctl could not start (16 lines of its log); 5,000
    # characters were an OSError's traceback from `python -m warehouse_db status` and `down`.
    with pytest.raises(WarehouseConfigError, match=says):
        warehouse_dir({"WAREHOUSE_DIR": value})


@pytest.mark.integration  # the real psycopg.connect, which resolves the host name itself; no server is reached
@pytest.mark.parametrize("host", ["../../x", "a..b", "x" * 64])
def test_a_PGHOST_that_is_no_host_name_is_one_line(host: str) -> None:
    from warehouse_db.connection import connect
    from warehouse_db.settings import external_settings

    with pytest.raises(WarehouseConfigError, match="the host is not a host name"):
        connect(external_settings({"PGHOST": host, "PGPORT": "1", "PGCONNECT_TIMEOUT": "1"}))


@pytest.mark.parametrize("latency", ["1e20", "3601"])
def test_the_simulator_refuses_a_latency_that_never_answers(latency: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        simulator_parser().parse_args(["--port", "0", "--latency", latency])
    assert exit_.value.code == 2
    assert "expected a number of seconds from 0 to 3600" in capsys.readouterr().err


def test_a_search_space_file_name_too_long_is_one_line() -> None:
    from training.sweep_space import SearchSpaceError, load_space

    with pytest.raises(SearchSpaceError, match="no such file"):  # was OSError: File name too long
        load_space(Path(LONG))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--edges", "0", "nan"], "--edges must be finite"),  # printed a table of nan
        (["--vol", "inf"], "--vol must be finite"),
        (["--seed-sharpe-sd", "inf"], "--seed-sharpe-sd must be finite"),
        (["--folds", "99999999999999999999"], "--folds x --seeds x --sessions must be at most"),  # a traceback
        (["--sessions", "99999999999999999999"], "--sessions must be at most 2,520"),
        (["--sessions", "100000"], "--sessions must be at most 2,520"),  # MemoryError in the Monte Carlo truth
    ],
)
def test_verdict_calibration_refuses_values_that_print_nan_or_crash(argv: list[str], says: str, capsys) -> None:
    from devtools.verdict_calibration import parse_config

    with pytest.raises(SystemExit) as exit_:
        parse_config(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err
    assert err.count("\n") == 1


def test_verdict_calibration_still_takes_a_normal_tail() -> None:
    from devtools.verdict_calibration import parse_config

    assert math.isinf(parse_config(["--tail-dof", "inf"]).market.tail_dof)


@pytest.mark.parametrize(("watchlist", "says"), [("nope.csv", "watchlist file not found"), ("/dev/zero", "a device")])
def test_a_watchlist_named_beside_symbols_must_be_readable(memory_limit, watchlist: str, says: str) -> None:
    # It was ignored without a word (/dev/zero was read for ever): the symbols lost their primary exchanges.
    from ingest.watchlist import select_entries

    with pytest.raises(WatchlistError, match=says):
        select_entries(Path(watchlist), ["AAPL"], watchlist_given=True)


def test_the_default_watchlist_beside_symbols_may_be_missing(tmp_path: Path) -> None:
    from ingest.watchlist import select_entries

    assert [e.symbol for e in select_entries(tmp_path / "none.csv", ["AAPL"])] == ["AAPL"]


def test_ingest_names_an_unreadable_watchlist_given_beside_symbols(tmp_path: Path, capsys) -> None:
    from ingest.cli import main

    assert main(["--symbols", "AAPL", "--watchlist", str(tmp_path / "none.csv"), "--dry-run"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.csv'}: watchlist file not found\n"


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("../../x", "is not a host name or address"),  # was a UnicodeError traceback from the connection
        ("a..b", "a part between dots is empty"),
        ("x" * 64, "longer than 63 characters"),
        ("http://user:secret@gw", "give the host alone"),
    ],
)
def test_a_gateway_host_that_is_no_host_name_is_one_line_without_its_value(host: str, says: str) -> None:
    from ingest.ibkr.config import IbkrConfigError, IbkrSettings

    with pytest.raises(IbkrConfigError, match=says) as refused:
        IbkrSettings.from_config({"IBKR_HOST": host})
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "gw.example.com", "localhost"])
def test_a_gateway_host_that_is_a_host_is_taken(host: str) -> None:
    from ingest.ibkr.config import IbkrSettings

    assert IbkrSettings.from_config({"IBKR_HOST": host}).host == host


@pytest.mark.parametrize("host", ["postgresql://user:secret@db", "user:secret@db"])
def test_a_url_in_PGHOST_is_refused_without_its_password(host: str) -> None:
    # It was echoed as the host by every 'cannot connect to ...' line, password and all.
    from warehouse_db.settings import external_settings

    with pytest.raises(WarehouseConfigError, match="put a URL in DATABASE_URL") as refused:
        external_settings({"PGHOST": host})
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    "host",
    # A socket directory under a home named user@domain (SSSD and AD logins): `eval "$(python -m warehouse_db env)"`
    # exports such a PGHOST for the embedded warehouse of a clone there, and every command then took it for a URL.
    ["db.example.com", "/run/postgresql", "@abstract", "10.0.0.1", "/home/john@corp.example/tensor/.warehouse/pgdata"],
)
def test_PGHOST_still_takes_hosts_and_socket_directories(host: str) -> None:
    from warehouse_db.settings import external_settings

    assert external_settings({"PGHOST": host}).host == host


@pytest.mark.parametrize("address", ["http://user:secret@head:8265", "ray://user:secret@head:10001", "u:secret@h:1"])
def test_a_ray_address_with_a_password_is_refused_without_it(address: str) -> None:
    # It was echoed whole: "ray_address 'http://user:secret@head:8265' is not host:port ...".
    with pytest.raises(ValueError, match="holds a user") as refused:
        parse_command_line(WalkForwardConfig, ["--ray-address", address], "prog", "description")
    assert "secret" not in str(refused.value)
    with pytest.raises(BadRayAddress, match="^RAY_ADDRESS holds a user") as refused:
        check_ray_address(address, 1.0, "RAY_ADDRESS")
    assert "secret" not in str(refused.value)


BENCH_USAGE = [
    ("bench_landing.py", ["--repeats", "0"]),  # was min() of no timings: a traceback after the setup
    ("bench_csv.py", ["--rows", "-1"]),
    ("bench_ingest.py", ["--limit", "0"]),
    ("bench_sweep.py", ["--trials", "1.5"]),
    ("bench_training.py", ["--symbols", "0"]),
    ("bench_walk_forward.py", ["--seeds", "0"]),
    ("bench_dbt.py", ["--nope"]),  # argparse's usage block and error: two lines
]


@pytest.mark.parametrize(("script", "argv"), BENCH_USAGE, ids=[script for script, _ in BENCH_USAGE])
def test_a_bench_usage_error_is_one_line(script: str, argv: list[str]) -> None:
    import subprocess
    import sys

    bench = Path(__file__).resolve().parent.parent / "bench"
    result = subprocess.run(
        [sys.executable, str(bench / script), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
