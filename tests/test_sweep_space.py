"""The sweep's search space file and its command line: bad input ends in one line naming the file, the line and the
field, with a documented exit status, and nothing is read or written (these are unit tests: any attempt to reach
PostgreSQL fails them)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import optuna
import pytest

from training import sweep
from training.config import TrainConfig, WalkForwardConfig
from training.exit_codes import ExitCode
from training.sweep import SweepConfig
from training.sweep_space import DEFAULT_SPACE, SEARCHABLE, SearchSpaceError, load_space
from training.sweep_trial import trial_resources
from warehouse_db.settings import REPO_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_default_space_loads_and_draws_valid_configurations() -> None:
    space = load_space(DEFAULT_SPACE)
    assert set(space.names) <= set(SEARCHABLE) and {"learning_rate", "net_arch", "window"} <= set(space.names)
    distributions = space.distributions()
    assert distributions["learning_rate"] == optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)
    assert distributions["window"] == optuna.distributions.IntDistribution(3, 20)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask(distributions)
        config = space.apply(TrainConfig(), trial.params)  # every draw is a valid TrainConfig
        assert isinstance(config.net_arch, tuple) and config.net_arch in {(32, 32), (64, 64), (128, 128)}
        assert 3 <= config.window <= 20 and isinstance(config.window, int)
        assert space.encode(space.decode(trial.params)) == trial.params  # lists travel through Optuna as text
    assert space.largest("window", 5) == 20 and space.largest("n_envs", 8) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate: {low: 1.0e-5, high: 1.0e-3}\nlerning_rate: {low: 1, high: 2}\n",
         "line 2: unknown hyperparameter 'lerning_rate' (did you mean 'learning_rate'?)"),
        ("commission_bps: {low: 0, high: 5}\n", "line 1: 'commission_bps' is not searchable"),
        ("gamma: {low: 0.95, high: 0.95}\n", "line 1: gamma: the range [0.95, 0.95] is empty"),
        ("gamma: {low: 0.99, high: 0.9}\n", "line 1: gamma: the range is inverted: low 0.99 is above high 0.9"),
        ("gamma: {low: 0.9, high: 1.5}\n", "gamma: the value 1.5 is not allowed: gamma and gae_lambda must be in (0, 1]"),
        ("ent_coef: {low: 0, high: 0.1, log: true}\n", "ent_coef: a log-scale range needs low > 0"),
        ("window: {low: 3.5, high: 10}\n", "window: an integer field needs integer bounds"),
        ("window: {low: 3}\n", "window: a range needs both low and high"),
        ("net_arch: {low: 1, high: 2}\n", "net_arch: a tuple field takes choices, not a range"),
        ("net_arch: {choices: []}\n", "net_arch: choices must be a non-empty list"),
        ("net_arch: {choices: [64, 64]}\n", "net_arch: every choice must be a list of integers"),
        ("ent_coef: {choices: [0.0, .nan]}\n", "ent_coef: every choice must be a number"),
        ("n_steps: {choices: [64, 64]}\n", "n_steps: choices [64, 64] repeat a value"),
        ("n_steps: {choices: [64], low: 1, high: 2}\n", "n_steps: give either low and high"),
        ("n_steps: 64\n", "n_steps: expected {low: .., high: ..} or {choices: [..]}"),
        ("gamma: {low: 0.9, high: 0.99}\ngamma: {low: 0.8, high: 0.9}\n", "line 2: 'gamma' appears twice"),
        ("gamma: {low: 0.9, high: 0.99,\n        low: 0.8}\n", "line 2: 'low' appears twice (first on line 1)"),
        ("learning_rate: {low: 1.0e-5, high: 1.0e-3\nwindow: {low: 3, high: 8}\n", "is not valid YAML"),
        ("- learning_rate\n", "expected a mapping of hyperparameter"),
        ("# nothing here\n", "holds no hyperparameter"),
    ],
)  # fmt: skip
def test_a_bad_space_file_is_refused_naming_the_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SearchSpaceError) as raised:
        load_space(path)
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_invalid_yaml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "learning_rate: {low: 1.0e-5, high: 1.0e-3\nwindow: {low: 3, high: 8}\n")
    with pytest.raises(SearchSpaceError, match=r"not valid YAML: .* \(line 2, column"):
        load_space(path)


def _no_ray_here() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--trials", "0"], "trials must be >= 1"),
        (["--max-concurrent", "0"], "max_concurrent must be >= 1"),
        (["--space", "no/such/space.yaml"], "search space no/such/space.yaml: no such file"),
        (["--trails", "3"], "--trails"),
        (["--no-save-to-warehouse"], "a sweep keeps its trials in the warehouse"),
        (["--sweep-id", "../beside-runs"], "sweep_id '../beside-runs' must name one folder"),
        (["--sweep-id", "s" * 201], "sweep_id must be at most 191 bytes long (UTF-8), not 201"),
        (["--sweep-id", "two\nlines"], "sweep_id 'two\\nlines' must be printable text"),
        # The final walk-forward in the sweep's own folder: the sweep page overwrote its report.html.
        (["--sweep-id", "s1", "--run-id", "s1"], "run_id 's1' names the sweep's own folder"),
        # --resume "$ID" with ID unset started a new sweep; bytes that are not UTF-8 were a codec's message.
        (["--resume", ""], "resume names no sweep: give the id of the sweep to continue"),
        (["--resume=  "], "resume names no sweep"),
        (["--resume", "\udcff"], "resume '\\udcff' must be printable text"),
    ],
)
def test_bad_flags_end_in_one_line_with_status_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    status = sweep.main([*arguments, "--runs-dir", str(tmp_path / "runs")])
    assert status == ExitCode.CONFIG == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error
    assert not (tmp_path / "runs").exists()


def test_the_longest_sweep_id_leaves_room_for_its_final_walk_forwards_run_id() -> None:
    """A 200-byte sweep id passed, and its final walk-forward's run id <sweep_id>-best failed the run id's 200-byte
    limit after the whole search (a traceback, again on every --resume)."""
    longest = "é" * 95 + "s"  # 191 bytes of UTF-8
    assert SweepConfig(sweep_id=longest).sweep_id == longest
    assert WalkForwardConfig(run_id=f"{longest}-best-999").run_id == f"{longest}-best-999"  # _free_run_id's names
    with pytest.raises(ValueError, match="sweep_id must be at most 191 bytes long"):
        SweepConfig(sweep_id="é" * 96)


def test_the_final_walk_forward_skips_a_name_a_file_has_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file <sweep_id>-best under --runs-dir was a NotADirectoryError traceback after the whole search."""
    monkeypatch.setattr("training.results_store.run_exists", lambda settings, run_id: False)  # no row has either name
    (tmp_path / "s1-best").write_text("not a run folder")
    assert sweep._free_run_id(tmp_path, "s1-best", settings=None) == "s1-best-2"


def test_a_bad_space_file_on_the_command_line_is_status_2(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "gamma: {low: 0.99, high: 0.9}\n")
    assert sweep.main(["--space", str(path), "--runs-dir", str(tmp_path / "runs")]) == ExitCode.CONFIG
    assert "inverted" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_a_ray_address_that_does_not_answer_is_status_5_within_the_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    started = time.perf_counter()
    status = sweep.main(
        ["--ray-address", f"127.0.0.1:{_no_ray_here()}", "--ray-connect-timeout", "2", "--runs-dir", str(tmp_path)]
    )
    assert status == ExitCode.RAY == 5 and time.perf_counter() - started < 15
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "no Ray cluster answers at 127.0.0.1:" in errors[0]
    assert not any(tmp_path.iterdir())  # the warehouse was not touched (a unit test cannot reach it) nor a folder made


def test_a_port_that_listens_but_is_not_ray_fails_within_the_timeout_not_a_hang(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.perf_counter()
        status = sweep.main(["--ray-address", address, "--ray-connect-timeout", "2", "--runs-dir", str(tmp_path)])
    assert status == ExitCode.RAY and time.perf_counter() - started < 15
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "does not answer as Ray" in errors[0]
    assert not any(tmp_path.iterdir())


def test_help_lists_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--trials" in text and "--resume" in text and "130" in text and "--max-concurrent" in text


def test_the_walk_forward_reports_only_folds_whose_test_follows_every_session_the_search_saw() -> None:
    from devtools.synthetic_mart import lay_out_folds, session_dates
    from training.sweep import SweepError, split_folds

    folds = lay_out_folds(session_dates(600), folds=4, test_sessions=60, validation_sessions=30)
    # Why: folds tile the history, so fold 2's validation sessions lie inside fold 1's test split. Reporting fold 1
    # after searching on fold 2 would measure the choice on sessions that helped make it.
    assert folds[0].test.start <= folds[1].validation.start and folds[1].validation.end <= folds[0].test.end
    search, report = split_folds(folds, None)
    assert [f.fold_id for f in search] == [1, 2] and [f.fold_id for f in report] == [2, 3, 4]
    assert all(r.test.start > s.validation.end for r in report for s in search)
    search, report = split_folds(folds, 1)
    assert [f.fold_id for f in search] == [1] and [f.fold_id for f in report] == [1, 2, 3, 4]
    search, report = split_folds(folds, 4)
    assert [f.fold_id for f in report] == [4]
    with pytest.raises(SweepError, match="only 4 fold"):
        split_folds(folds, 5)


def test_a_space_or_config_file_that_is_not_utf8_is_status_2_naming_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(b"gamma: {low: 0.9, high: 0.99}\n# caf\xe9\n")
    assert sweep.main(["--space", str(path), "--runs-dir", str(tmp_path / "runs")]) == ExitCode.CONFIG
    assert capsys.readouterr().err.strip() == (
        f"error: search space {path} is not UTF-8 text: byte 0xe9 on line 2 (save it as UTF-8)"
    )
    assert sweep.main(["--config", str(path), "--runs-dir", str(tmp_path / "runs")]) == ExitCode.CONFIG
    assert capsys.readouterr().err.strip() == f"error: {path} is not UTF-8 text: byte 0xe9 on line 2 (save it as UTF-8)"
    assert not (tmp_path / "runs").exists()


def test_a_malformed_ray_address_is_status_2_not_5(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert sweep.main(["--ray-address", "garbage", "--runs-dir", str(tmp_path)]) == ExitCode.CONFIG == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "ray_address 'garbage' is not host:port, ray://host:port or 'auto'" in error
    assert not any(tmp_path.iterdir())


def test_space_values_convert_as_config_values_do(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-5 (no dot) as text: a float field's bounds and choices take it, as --config files do.
    space = load_space(
        write(tmp_path, "learning_rate: {low: 1e-5, high: 1e-3, log: true}\nclip_range: {choices: [1e-1, 2e-1]}\n")
    )
    assert space.to_dict() == {
        "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
        "clip_range": {"choices": [0.1, 0.2]},
    }
    with pytest.raises(SearchSpaceError, match="n_steps: every choice must be an integer, got 'many'"):
        load_space(write(tmp_path, "n_steps: {choices: [64, many]}\n"))
    with pytest.raises(
        SearchSpaceError, match=r"net_arch: every choice must be a list of integers such as \[64, 64\], got \[64, x\]"
    ):
        load_space(write(tmp_path, "net_arch: {choices: [[64, x]]}\n"))


def test_each_trial_asks_ray_for_the_memory_its_drawn_settings_need(tmp_path: Path) -> None:
    """A trial declares PPO's estimate for its own draw (larger n_envs, more memory), capped at the largest node's
    offer (a trial asking more would wait for ever), and nothing where nodes offer no memory resource."""
    from training.envs.spaces import observation_size
    from training.ppo import memory_needed

    space = load_space(write(tmp_path, "n_envs: {choices: [2, 64]}\n"))
    base, n_features = TrainConfig(), 13

    def declared(params: dict, offer: int) -> dict:
        resources = trial_resources(params, base=base, space=space, n_features=n_features, memory_offer=offer)
        return resources.bundles[0]

    small, large = ({"n_envs": n} for n in (2, 64))
    need = {
        n: memory_needed(space.apply(base, {"n_envs": n}), observation_size(base.window, n_features)) for n in (2, 64)
    }
    assert need[2] < need[64]
    assert declared(small, 10**12) == {"CPU": 1, "memory": need[2]}
    assert declared(large, 10**12) == {"CPU": 1, "memory": need[64]}
    assert declared(large, need[2]) == {"CPU": 1, "memory": need[2]}  # capped at the offer
    assert declared(large, 0) == {"CPU": 1}


def test_docs_sweeps_md_lists_exactly_the_searchable_fields() -> None:
    page = " ".join((REPO_ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8").split())
    listed = re.search(r"Searchable fields: `([^`]*)`", page)
    assert listed, "docs/sweeps.md no longer says 'Searchable fields: `...`'"
    assert [name.strip() for name in listed.group(1).split(",")] == list(SEARCHABLE), (
        "docs/sweeps.md's searchable fields must be training/sweep_space.py's SEARCHABLE, in order"
    )


@pytest.mark.parametrize("named", [True, False])
def test_ctrl_c_while_the_ray_cluster_is_asked_says_there_is_nothing_to_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, named: bool
) -> None:
    """Ctrl+C while a new sweep waits for --ray-address to answer (up to --ray-connect-timeout) or imports Ray: nothing
    is recorded yet, but the line said "continue with: training.sweep --resume <sweep_id>" (or the --sweep-id), a
    resume that fails with "no sweep ... to resume". It says to run the command again, as a Ctrl+C later before the
    sweep's row is written does."""
    from training import task_runners

    def pressed_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(task_runners, "check_ray_address", pressed_ctrl_c)
    arguments = ["--ray-address", f"127.0.0.1:{_no_ray_here()}", "--runs-dir", str(tmp_path / "runs")]
    status = sweep.main(arguments + (["--sweep-id", "cut-short"] if named else []))
    assert status == ExitCode.INTERRUPTED
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["interrupted before the sweep was recorded: nothing to resume; run the command again"], errors
    assert not (tmp_path / "runs").exists()
