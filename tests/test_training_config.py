"""The jobs' configuration (defaults, YAML, flags, help from field docstrings, exit codes) and the mart-YAML reader."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from stable_baselines3 import PPO

from devtools.documented_tables import documented_table
from devtools.synthetic_mart import FEATURE_LOOKBACKS, TARGET, write_mart_yaml
from training import cli, results_schema
from training.cli import parse_command_line
from training.config import (
    MAX_SEED,
    SingleRunConfig,
    TrainConfig,
    WalkForwardConfig,
    configuration_hash,
    dump_config,
    load_config,
)
from training.exit_codes import MEANINGS, TABLE_HEADER, ExitCode, markdown_table
from training.features import MartSchemaError, read_mart_schema
from training.ppo import ModelFileError, build_model, hyperparameters
from training.run_folder import RunFolderError, claim_run_folder, refuse_used_folder
from training.sweep import main as sweep_main
from training.sweep_space import SEARCHABLE
from training.task_runners import InProcessRunner, TaskFailure

COMMANDS = [
    (SingleRunConfig, cli.main, cli.TRAIN_PROG),
    (WalkForwardConfig, cli.walk_forward_main, cli.WALK_FORWARD_PROG),
]


def _help(main, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: its flag, its help, its default
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_the_documented_exit_statuses_are_the_enum() -> None:
    assert documented_table(TABLE_HEADER) == markdown_table(), (
        "docs/training.md's exit status table is not training/exit_codes.py's: paste the output of "
        'python -c "from training.exit_codes import markdown_table; print(markdown_table())" over it'
    )


def test_every_ppo_setting_of_the_configuration_reaches_ppo() -> None:
    """A new TrainConfig field is a flag and a YAML key by itself, but PPO gets only what training/ppo.py's
    hyperparameters() hands it: a field named for a setting of PPO's (target_kl, normalize_advantage, ...) left out
    there was accepted by make train, the walk-forward and the sweep, and changed nothing."""
    ppo_settings = set(inspect.signature(PPO.__init__).parameters) - {"self", "policy", "env"}
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    handed = set(hyperparameters(TrainConfig())) | {"device", "seed"}  # build_model passes these two by name
    assert sorted(fields & ppo_settings - handed) == [], "PPO never gets them: add them to ppo.hyperparameters()"
    # What a sweep searches reaches PPO, or the network, the environments and the observations.
    assert set(SEARCHABLE) - handed == {"net_arch", "n_envs", "window", "observation_clip"}


@pytest.mark.parametrize("cls, main, prog", COMMANDS)
def test_every_field_is_a_documented_flag_and_help_lists_the_exit_codes(
    cls, main, prog, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _help(main, capsys, monkeypatch)
    entries: dict[str, str] = {}  # flag -> its usage and help text
    for line in (line.strip(" │╭╮╰╯─") for line in text.splitlines()):
        if line.startswith("--"):
            flag = re.split(r"[\s,]", line, maxsplit=1)[0]
            entries[flag] = line
        elif entries and line:
            entries[flag] += " " + line
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        explanation = re.sub(r"\[?[A-Z]+( \[[A-Z]+ \.\.\.\]\])?\]?|\{[^}]*\}", "", entries[flag].split("(default")[0])
        assert len(re.sub(r"[^a-z]", "", explanation.lower())) > 10, f"{flag} has no explanation: {entries[flag]!r}"
    assert "--config FILE.yaml" in text
    for code in ExitCode:
        assert f"{int(code)} {MEANINGS[code][:40]}" in " ".join(text.split()), code


def test_defaults_are_seeded_native_batched_cpu_on_every_symbol() -> None:
    config = WalkForwardConfig()
    assert (config.seed, config.env, config.vec_env, config.device, config.symbols, config.seeds) == (
        42,
        "native",
        "batched",
        "cpu",
        (),
        5,
    )
    assert config.seed_list == (42, 43, 44, 45, 46) and config.folds == () and config.configurations_tried == 1
    assert SingleRunConfig().fold is None


def test_yaml_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"seed": 7, "window": 5, "timesteps": 1000, "net_arch": [32, 32], "folds": "1,3"}))
    config = parse_command_line(
        WalkForwardConfig,
        [
            "--config",
            str(path),
            "--timesteps",
            "2_000",
            "--symbols",
            "AAA,BBB",
            "CCC",
            "--env",
            "tensortrade",
            "--vec-env",
            "dummy",
            "--no-progress-bar",
            "--symbols-limit",
            "None",
            "--seeds",
            "2",
        ],  # fmt: skip
        "prog",
        "description",
    )
    assert (config.seed, config.window, config.timesteps, config.seeds) == (7, 5, 2000, 2)
    assert config.symbols == ("AAA", "BBB", "CCC") and config.env == "tensortrade" and config.progress_bar is False
    assert config.net_arch == (32, 32) and config.symbols_limit is None and config.folds == (1, 3)
    assert parse_command_line(WalkForwardConfig, ["--folds", "2", "4"], "p", "d").folds == (2, 4)


def _model_shaped_zip(path: Path) -> Path:
    """A zip with the names of a stable-baselines3 model, not its contents (passes the check before the mart)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", "{}")
        archive.writestr("policy.pth", b"junk")
    return path


def test_the_dumped_config_reproduces_the_settings(tmp_path: Path) -> None:
    _model_shaped_zip(tmp_path / "model.zip")
    config = load_config(None, {"seed": 3, "symbols": ("X",), "resume": str(tmp_path / "model.zip"), "fold": 2})
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_a_config_an_earlier_release_wrote_still_loads_without_its_retired_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run folder's config.yaml (or a stored sweep's settings) from before dbt_run_results was retired: the key is
    ignored, said in one info line; any other unknown key is still refused."""
    dump_config(load_config(None, {"seed": 3}), tmp_path / "config.yaml")
    older = tmp_path / "older.yaml"
    older.write_text((tmp_path / "config.yaml").read_text() + "dbt_run_results: target/run_results.json\n")
    with caplog.at_level("INFO", logger="training.config_values"):
        assert load_config(older) == load_config(tmp_path / "config.yaml")
    assert [(r.levelname, "dbt_run_results is no longer a setting" in r.getMessage()) for r in caplog.records] == [
        ("INFO", True)
    ]
    assert load_config(None, base={"seed": 3, "dbt_run_results": "x"}, cls=WalkForwardConfig).seed == 3


@pytest.mark.integration
@pytest.mark.parametrize("module", ["training", "training.sweep"])
def test_the_commands_say_that_an_earlier_releases_setting_is_ignored(tmp_path: Path, module: str) -> None:
    """docs/training.md: a dbt_run_results setting in an older configuration file is ignored, with an info line. The
    line was logged while the command line was read, before logging was set up, so Python dropped it: make train with
    --config on a week-old run folder's config.yaml (or --resume of a sweep an earlier release started) said nothing.
    A warehouse that refuses the connection ends the command right after it (status 4)."""
    older = tmp_path / "config.yaml"
    older.write_text("seed: 3\ndbt_run_results: target/run_results.json\n", encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/db"}
    command = [sys.executable, "-m", module, "--config", str(older), "--runs-dir", str(tmp_path / "runs")]
    said = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert said.returncode == ExitCode.WAREHOUSE, said.stderr
    assert re.search(
        r" INFO training\.config_values: .*config\.yaml: dbt_run_results is no longer a setting \(the dbt "
        r"invocation that built the mart is read from marts\.mart_builds\): ignored\n",
        said.stderr,
    ), said.stderr
    assert said.stderr.count("no longer a setting") == 1, said.stderr  # replayed once, not also where it was held
    quiet = subprocess.run([*command, "--log-level", "WARNING"], env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == ExitCode.WAREHOUSE and "no longer a setting" not in quiet.stderr, quiet.stderr


def test_the_configuration_hash_ignores_how_a_run_is_named_and_seeded(tmp_path: Path) -> None:
    base = WalkForwardConfig()
    renamed = WalkForwardConfig(run_id="x", runs_dir=tmp_path, seed=1, seeds=2, progress_bar=False)
    assert configuration_hash(base) == configuration_hash(renamed) == configuration_hash(TrainConfig())
    assert configuration_hash(base) != configuration_hash(WalkForwardConfig(learning_rate=1e-4))


def test_the_largest_seed_fits_every_seed_column_of_the_ml_tables() -> None:
    """A seed the configuration accepts but an ml column cannot hold fails only when the run lands, after training."""
    largest = {"integer": 2**31 - 1, "integer[]": 2**31 - 1, "bigint": 2**63 - 1, "bigint[]": 2**63 - 1}
    columns = re.findall(r"^\s*(\w*seeds?)\s+(\w+(?:\[\])?)", results_schema.DDL + results_schema.SWEEP_DDL, re.M)
    assert {name for name, _ in columns} >= {"seed", "seeds", "trial_seeds"}, columns
    for name, column_type in columns:
        assert largest[column_type] >= MAX_SEED, (name, column_type)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"windw": 3}, "unknown configuration keys"),
        ({"env": "gym"}, "field 'env' must be one of 'native', 'tensortrade', got 'gym'"),
        ({"env": "tensortrade"}, "use --vec-env dummy"),
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"sma_fast": 50}, "sma_fast"),
        ({"confidence": 1.0}, "confidence"),
        ({"batch_size": 1}, r"batch_size and n_steps x n_envs must be >= 2"),
        ({"n_steps": 1, "n_envs": 1, "batch_size": 2}, r"batch_size and n_steps x n_envs must be >= 2"),
        # <runs_dir>/<run_id> elsewhere: the runs folder's parent, or a folder beside it.
        ({"run_id": "../elsewhere"}, r"run_id '../elsewhere' must name one folder, <runs_dir>/<run_id>/"),
        ({"run_id": ".."}, r"run_id '..' must name one folder"),
        # Longer than a folder name may be (255 bytes): a traceback from the file system. Control characters: a folder,
        # log lines and ml.* keys that cannot all hold them (PostgreSQL refuses NUL only when the results are written).
        ({"run_id": "x" * 201}, r"run_id must be at most 200 bytes long \(UTF-8\), not 201"),
        ({"run_id": "é" * 101}, r"run_id must be at most 200 bytes long \(UTF-8\), not 202"),
        ({"run_id": "two\nlines"}, r"run_id 'two\\nlines' must be printable text: no newline, tab, NUL"),
        ({"run_id": "a\x00b"}, r"run_id 'a\\x00b' must be printable text"),
        # NumPy refuses these seeds with a traceback (status 1), minutes into a walk-forward.
        ({"seed": -5}, r"seed must be from 0 to 2147483647"),
        # NumPy takes seeds up to 2**32 - 1, but the ml tables' seed columns are integers: such a run trained to the
        # end and then failed to land ("integer out of range").
        ({"seed": 2**31}, r"seed must be from 0 to 2147483647 \(the ml tables' seeds are integers\)"),
        ({"seed": 2**31 - 1, "seeds": 2}, r"seed \+ seeds - 1 must be at most 2147483647"),
    ],
)
def test_bad_configuration_is_refused(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, values, cls=WalkForwardConfig)


# Each range rule of the configuration, one bad value at a time: the refusal is that rule's sentence and nothing else
# (a rule that stopped firing, or fired for a good value beside it, fails here).
@pytest.mark.parametrize(
    "cls, values, problem",
    [
        (WalkForwardConfig, {"window": 0}, "window must be >= 1"),
        (WalkForwardConfig, {"n_epochs": 0}, "timesteps, n_envs, n_steps, n_epochs and batch_size must be >= 1"),
        (WalkForwardConfig, {"learning_rate": 0.0}, "learning_rate, clip_range and max_grad_norm must be > 0"),
        (WalkForwardConfig, {"max_grad_norm": -1.0}, "learning_rate, clip_range and max_grad_norm must be > 0"),
        (WalkForwardConfig, {"gamma": 0.0}, "gamma and gae_lambda must be in (0, 1]"),
        (WalkForwardConfig, {"gae_lambda": 1.5}, "gamma and gae_lambda must be in (0, 1]"),
        (WalkForwardConfig, {"ent_coef": -0.01}, "ent_coef and vf_coef must be >= 0"),
        (WalkForwardConfig, {"net_arch": [64, 0]}, "net_arch layer sizes must be >= 1"),
        (
            WalkForwardConfig,
            {"commission_bps": -1.0},
            "commission_bps and slippage_bps must be >= 0 and < 10000 (100%)",
        ),
        (WalkForwardConfig, {"initial_cash": 0.0}, "initial_cash and observation_clip must be > 0"),
        (WalkForwardConfig, {"observation_clip": -5.0}, "initial_cash and observation_clip must be > 0"),
        (WalkForwardConfig, {"symbols_limit": 0}, "symbols_limit must be >= 1 (or None)"),
        (WalkForwardConfig, {"embargo_sessions": -1}, "embargo_sessions must be >= 0 (or None)"),
        (WalkForwardConfig, {"eval_freq": 0}, "torch_threads, min_episode_steps and eval_freq must be >= 1"),
        (WalkForwardConfig, {"sma_fast": 0}, "sma_fast must be >= 1 and shorter than sma_slow"),
        (
            WalkForwardConfig,
            {"random_draws": 0},
            "random_draws and block_sessions must be >= 1, bootstrap_samples >= 100",
        ),
        (
            WalkForwardConfig,
            {"bootstrap_samples": 99},
            "random_draws and block_sessions must be >= 1, bootstrap_samples >= 100",
        ),
        (WalkForwardConfig, {"confidence": 0.4}, "confidence must be in [0.5, 1)"),
        (WalkForwardConfig, {"configurations_tried": 0}, "configurations_tried must be >= 1"),
        (WalkForwardConfig, {"log_level": "loud"}, "log_level 'loud' is not a logging level"),
        (WalkForwardConfig, {"task_retries": -1}, "task_retries must be >= 0 and ray_connect_timeout > 0 and <= 86400"),
        (
            WalkForwardConfig,
            {"ray_connect_timeout": 0.0},
            "task_retries must be >= 0 and ray_connect_timeout > 0 and <= 86400",
        ),
        (WalkForwardConfig, {"ray_cpus": 0}, "ray_cpus must be >= 1 (or None)"),
        (SingleRunConfig, {"checkpoint_freq": -1}, "checkpoint_freq must be >= 0"),
        (SingleRunConfig, {"fold": 0}, "fold must be >= 1 (or None: the latest fold)"),
    ],
)
def test_each_range_rule_refuses_its_bad_value_alone(cls: type[TrainConfig], values: dict, problem: str) -> None:
    with pytest.raises(ValueError) as refused:
        load_config(None, values, cls=cls)
    assert str(refused.value) == f"invalid training configuration: {problem}"


def test_a_choice_outside_its_literal_is_refused_when_the_configuration_is_built_in_code() -> None:
    """The YAML and the flags refuse it while reading; a configuration built in Python (a bench, a notebook) here."""
    with pytest.raises(ValueError) as refused:
        WalkForwardConfig(selection_metric="profit")
    assert str(refused.value) == (
        "invalid training configuration: selection_metric must be one of "
        f"{typing.get_args(typing.get_type_hints(TrainConfig)['selection_metric'])}, not 'profit'"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "/nonexistent/run.yaml"], "no such file"),
        # tyro lists the unknown flag's value as an option too ("--seedz, 3"): only the flag is named.
        (["--seedz", "3"], "Unrecognized option: --seedz (did you mean --seed or --seeds?)"),
        (["--seedz", "3", "--lerning-rate", "0.1"], "Unrecognized options: --seedz, --lerning-rate; see"),
        # A negative value is a value, not a flag.
        (["--seedz", "-3"], "Unrecognized option: --seedz (did you mean --seed or --seeds?)"),
        (["--lerning-rate", "-1e-3", "--seedz", "3"], "Unrecognized options: --lerning-rate, --seedz; see"),
        # A true/false flag is suggested as its pair, not as "--progress-bar,".
        (["--no-progress"], "--no-progress (did you mean --progress-bar or --no-progress-bar?)"),
        (["--seeds", "many"], "Error parsing --seeds"),
        (["--timesteps", "0"], "timesteps"),
        # inf and nan passed every "> 0" check and ended in a traceback from torch (status 1), or a NaN loss.
        (["--learning-rate", "inf"], "learning_rate must be finite (not inf or nan)"),
        (["--ent-coef", "nan", "--vf-coef", "inf"], "ent_coef, vf_coef must be finite"),
        (["--seed", "-5"], "seed must be from 0 to 2147483647"),
        # Accepted, they failed only when the results were written (bigint), after the whole run.
        (
            ["--timesteps", str(10**23), "--net-arch", "64", str(2**64)],
            "timesteps, net_arch must be at most 9223372036854775807",
        ),
        (["--config"], "--config needs a file name"),
        # A sale at 100% slippage or more fills at a price of 0 or below: the book was worth nothing, or less.
        (["--slippage-bps", "10000"], "commission_bps and slippage_bps must be >= 0 and < 10000 (100%)"),
        (["--seeds"], "error: Missing value for argument '--seeds'; see python -m training.walk_forward --help"),
        # A flag an earlier release had (its make demo passed --dbt-run-results): 'Unrecognized option', and --help
        # does not list it.
        (
            ["--seeds", "2", "--dbt-run-results", "target/run_results.json"],
            "--dbt-run-results is no longer an option (the dbt invocation that built the mart is read from "
            "marts.mart_builds): leave it out",
        ),
        (["--dbt_run_results=target/run_results.json"], "--dbt-run-results is no longer an option"),
    ],
)
def test_a_bad_command_line_ends_in_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert cli.walk_forward_main(argv) == ExitCode.CONFIG == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert captured.out == ""


def test_a_missing_model_to_resume_ends_in_one_line_before_anything_runs(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--resume", "/nonexistent/model.zip"]) == ExitCode.CONFIG
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "resume: there is no model file /nonexistent/model.zip" in lines[0], captured.err
    assert captured.out == ""


def test_a_bad_yaml_file_ends_in_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("timesteps: [1,\n")
    assert cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not valid YAML" in err


@pytest.mark.parametrize("command", [cli.main, sweep_main])
def test_a_yaml_file_nested_too_deeply_for_the_parser_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture, command
) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("timesteps: " + "[" * 5000 + "]" * 5000 + "\n")
    assert command(["--config", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path} is not valid YAML: nested too deeply\n"


def test_a_key_given_twice_in_a_config_file_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """YAML forbids it, and PyYAML would silently keep the second value: a run would train with a setting the
    reader of the file may not see."""
    path = tmp_path / "run.yaml"
    path.write_text("timesteps: 1000\nseed: 3\ntimesteps: 2000\n")
    with pytest.raises(ValueError) as raised:
        load_config(path)
    assert str(raised.value) == f"{path} is not valid YAML: line 3: 'timesteps' appears twice (first on line 1)"


def test_mart_yaml_features_in_order_with_lookbacks(tmp_path: Path) -> None:
    schema = read_mart_schema(write_mart_yaml(tmp_path / "training_bars.yml"))
    assert schema.feature_names == list(FEATURE_LOOKBACKS)
    assert schema.target == TARGET and TARGET not in schema.feature_names
    assert schema.longest_lookback == 50 and schema.target_horizon_sessions == 1


def test_mart_yaml_reads_dbt_config_meta_too(tmp_path: Path) -> None:
    path = tmp_path / "marts.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 2,
                "models": [
                    {"name": "other", "columns": [{"name": "x", "meta": {"role": "feature"}}]},
                    {
                        "name": "training_bars",
                        "columns": [
                            {"name": "symbol", "meta": {"role": "key"}},
                            {"name": "session_date", "config": {"meta": {"role": "key"}}},
                            {"name": "open", "config": {"meta": {"role": "price"}}},
                            {"name": "close", "meta": {"role": "price"}},
                            {"name": "a", "config": {"meta": {"role": "feature", "lookback_sessions": 3}}},
                            {"name": "b", "meta": {"role": "feature"}},
                            {"name": "y", "config": {"meta": {"role": "target", "horizon_sessions": 2}}},
                        ],
                    },
                ],
            }
        )
    )
    schema = read_mart_schema(path)
    assert schema.feature_names == ["a", "b"] and schema.target == "y" and schema.longest_lookback == 3
    assert schema.target_horizon_sessions == 2 and schema.price_columns == ("open", "close")


KEYS = [{"name": "symbol", "meta": {"role": "key"}}, {"name": "session_date", "meta": {"role": "key"}}]
PRICES = [{"name": "open", "meta": {"role": "price"}}, {"name": "close", "meta": {"role": "price"}}]
FEATURE = {"name": "a", "meta": {"role": "feature"}}
TARGET_COLUMN = {"name": "y", "meta": {"role": "target", "horizon_sessions": 1}}


@pytest.mark.parametrize(
    "columns, message",
    [
        ([{"name": "y", "meta": {"role": "target"}}], "no column"),
        ([{"name": "a", "meta": {"role": "feature"}}], "exactly one column"),
        (
            [
                {"name": "a", "meta": {"role": "feature"}},
                {"name": "a", "meta": {"role": "feature"}},
                {"name": "y", "meta": {"role": "target"}},
            ],
            "listed twice",
        ),
        (
            [{"name": "a", "meta": {"role": "feature"}}, {"name": "y", "meta": {"role": "target"}}],
            "needs meta.horizon_sessions",
        ),
        (
            [
                {"name": "a", "meta": {"role": "feature"}},
                {"name": "y", "meta": {"role": "target", "horizon_sessions": 0}},
            ],
            "needs meta.horizon_sessions",
        ),
        (
            [*KEYS, {"name": "open", "meta": {"role": "price"}}, FEATURE, TARGET_COLUMN],
            "close has no meta.role = 'price'",
        ),
        (
            [{"name": "symbol", "meta": {"role": "key"}}, *PRICES, FEATURE, TARGET_COLUMN],
            "must be symbol, session_date",
        ),
    ],
)
def test_mart_yaml_without_a_usable_contract_is_refused(tmp_path: Path, columns: list, message: str) -> None:
    path = tmp_path / "marts.yml"
    path.write_text(yaml.safe_dump({"models": [{"name": "training_bars", "columns": columns}]}))
    with pytest.raises(MartSchemaError, match=message):
        read_mart_schema(path)


def test_missing_mart_yaml_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(MartSchemaError, match="does not exist"):
        read_mart_schema(tmp_path / "nope.yml")


@pytest.mark.parametrize(
    "content, says",
    [
        # --mart-yaml naming another file: each ended the run in a traceback (after its folder and ml tables).
        ("- training_bars\n", "{path} has no model named 'training_bars'"),
        ("models: [training_bars]\n", "{path} has no model named 'training_bars'"),
        ("models: training_bars\n", "{path} has no model named 'training_bars'"),
        ("models:\n  - name: symbol_coverage\n", "{path} has no model named 'training_bars'"),
        ("", "{path} has no model named 'training_bars'"),
        (
            "models: [\n",
            "{path} is not valid YAML: expected the node content, but found '<stream end>' (line 2, column 1)",
        ),
        (b"models: []\n# caf\xe9\n", "{path} is not UTF-8 text: byte 0xe9 on line 2 (save it as UTF-8)"),
        (None, "{path}: cannot read it (Is a directory)"),
    ],
)
def test_a_mart_yaml_that_is_not_a_dbt_yaml_is_one_line_and_status_2(tmp_path: Path, content, says: str) -> None:
    path = tmp_path / "marts.yml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(MartSchemaError) as refused:
        read_mart_schema(path)
    assert str(refused.value) == says.format(path=path)
    assert cli.user_error_status(refused.value) == ExitCode.CONFIG


@pytest.mark.parametrize(
    "model, says",
    [
        # Each ended the run in a traceback (AttributeError, ValueError, KeyError), not one line and status 2.
        ("  columns: training_bars\n", "{path}: the columns of training_bars are not a list"),
        ("  columns: [symbol]\n", "{path}: column 1 of training_bars is not a mapping with a name"),
        ("  columns:\n    - meta: {role: key}\n", "{path}: column 1 of training_bars is not a mapping with a name"),
        ("  columns:\n    - name: [a]\n", "{path}: column 1 of training_bars is not a mapping with a name"),
        ("  columns:\n    - name: symbol\n      meta: key\n", "{path}: column symbol: meta is not a mapping"),
        ("  columns:\n    - name: symbol\n      config: key\n", "{path}: column symbol: config is not a mapping"),
        (
            "  columns:\n    - name: symbol\n      config: {meta: key}\n",
            "{path}: column symbol: config.meta is not a mapping",
        ),
        (
            "  columns:\n    - name: ret_1\n      meta: {role: feature, lookback_sessions: one}\n",
            "{path}: column ret_1: meta.lookback_sessions must be a whole number of sessions, not 'one'",
        ),
    ],
)
def test_mart_yaml_columns_of_the_wrong_shape_are_one_line_and_status_2(tmp_path: Path, model: str, says) -> None:
    path = tmp_path / "marts.yml"
    path.write_text(f"models:\n- name: training_bars\n{model}", encoding="utf-8")
    with pytest.raises(MartSchemaError) as refused:
        read_mart_schema(path)
    assert str(refused.value) == says.format(path=path)
    assert cli.user_error_status(refused.value) == ExitCode.CONFIG


def test_the_real_mart_yaml_matches_the_synthetic_stand_in() -> None:
    """The dbt YAML the job reads by default lists the features the synthetic test mart is built with."""
    schema = read_mart_schema()
    assert schema.source == TrainConfig().mart_yaml
    assert {f.name: f.lookback_sessions for f in schema.features} == FEATURE_LOOKBACKS
    assert schema.target == TARGET


JOBS = [
    (cli.main, "training.single_run.run_training"),
    (cli.walk_forward_main, "training.walk_forward.run_walk_forward"),
]
"""Each training command and the job it runs."""


def _errors_when_the_job_raises(main, job: str, error: BaseException, monkeypatch, caplog) -> tuple[int, list[str]]:
    """Run ``main`` with its job raising ``error``: its exit status and the ERROR lines it logged."""

    def raising(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(job, raising)
    monkeypatch.setattr("warehouse_db.resolve_settings", lambda: None)  # the job never gets to connect
    status = main(["--no-progress-bar"] if main is cli.main else [])
    return status, [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]


@pytest.mark.parametrize("main, job", JOBS)
def test_ctrl_c_ends_in_one_line_and_status_130(
    main, job: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    status, errors = _errors_when_the_job_raises(main, job, KeyboardInterrupt(), monkeypatch, caplog)
    assert status == ExitCode.INTERRUPTED == 130
    assert errors == ["interrupted: no row of this run was written (a run lands in one transaction, at the end)"]


def test_a_walk_forward_whose_tasks_partly_failed_prints_its_verdict_and_names_them_with_status_6(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """The others landed: the verdict and the report are printed as for a whole run, the failed tasks are named on
    one line, and the status is PARTIAL (a script must not take the run for a whole one)."""
    report = tmp_path / "report.html"
    failures = [TaskFailure(2, 42, 2, "RuntimeError: boom"), TaskFailure(3, 43, 2, "RuntimeError: boom")]
    result = SimpleNamespace(statistics=SimpleNamespace(verdict="no evidence"), report_path=report, failures=failures)
    monkeypatch.setattr("training.walk_forward.run_walk_forward", lambda config, settings: result)
    monkeypatch.setattr("warehouse_db.resolve_settings", lambda: None)  # the job never gets to connect
    assert cli.walk_forward_main([]) == ExitCode.PARTIAL == 6
    assert capsys.readouterr().out == f"no evidence\nreport: {report.resolve()}\n"
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [
        "2 task(s) failed after their retries: fold 2 seed 42, fold 3 seed 43 (the report lists why)"
    ]


@pytest.mark.parametrize(
    "interrupted, failures, status",
    [(False, [], ExitCode.OK), (False, [TaskFailure(2, 42, 2, "RuntimeError: boom")], ExitCode.PARTIAL),
     (True, [], ExitCode.INTERRUPTED)],
)  # fmt: skip
def test_what_make_sweep_prints_at_the_end_and_its_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, interrupted, failures, status
) -> None:
    """The sweep's page, its best trial and the final walk-forward's verdict and page; the walk-forward's partial
    failure is the sweep's status 6, and an interrupted search prints its page only (no test ran these lines)."""
    walk_forward = SimpleNamespace(
        statistics=SimpleNamespace(verdict="no evidence"), report_path=tmp_path / "wf.html", failures=failures
    )
    best = SimpleNamespace(trial_number=3, objective=1.23456, params={"window": 5})
    result = SimpleNamespace(
        sweep_id="s1", report_path=tmp_path / "s1.html", interrupted=interrupted, best=best, walk_forward=walk_forward
    )
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("training.sweep.run_sweep", lambda config, settings: result)
    monkeypatch.setattr("warehouse_db.resolve_settings", lambda: None)  # the job never gets to connect
    assert sweep_main(["--sweep-id", "s1"]) == status
    printed = capsys.readouterr().out.splitlines()
    if interrupted:
        assert printed == [f"sweep s1: report {tmp_path / 's1.html'}"]
    else:
        assert printed == [
            f"sweep s1: report {tmp_path / 's1.html'}",
            'best trial 3: objective 1.235 with {"window": 5}',
            "no evidence",
            f"walk-forward report: {tmp_path / 'wf.html'}",
        ]


@pytest.mark.parametrize("main, job", JOBS)
def test_settings_past_the_memory_end_in_one_line_and_status_2(
    main, job: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # What NumPy raises for SB3's rollout buffer at --n-envs 100000000 (was a traceback, status 1).
    error = MemoryError("Unable to allocate 6.15 TiB for an array with shape (256, 100000000, 66)")
    status, errors = _errors_when_the_job_raises(main, job, error, monkeypatch, caplog)
    assert status == ExitCode.CONFIG == 2
    assert len(errors) == 1 and errors[0].startswith("out of memory (Unable to allocate 6.15 TiB"), errors
    assert "lower --n-envs" in errors[0]


def test_a_yaml_number_without_a_dot_is_a_number_and_text_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 3e-4\nclip_range: 1\n")  # YAML 1.1 reads 3e-4 as the text '3e-4'
    config = load_config(path, cls=WalkForwardConfig)
    assert (config.learning_rate, config.clip_range) == (3e-4, 1.0)
    path.write_text("learning_rate: fast\n")
    with pytest.raises(ValueError, match=f"^{path}: field 'learning_rate' must be a number, got 'fast'$"):
        load_config(path, cls=WalkForwardConfig)


def _refused_before_the_job(main, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """Run ``main``; it must answer status 2 with one line on stderr, without starting the job or reading the mart."""

    def no_job(*args: object, **kwargs: object) -> None:
        raise AssertionError("the job ran: the error should have been found before the mart is read")

    monkeypatch.setattr("training.single_run.run_training", no_job)
    monkeypatch.setattr("training.walk_forward.run_walk_forward", no_job)
    assert main(argv) == ExitCode.CONFIG == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and captured.out == "", captured.err
    return lines[0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1: a\nfoo: b\n", "key 1 is not a field name"),
        ("seed: 1.5\n", "field 'seed' must be an integer, got 1.5"),
        ("timesteps: abc\n", "field 'timesteps' must be an integer, got 'abc'"),
        ("timesteps: {a: 1}\n", "field 'timesteps' must be an integer, got {a: 1}"),
        ("timesteps: true\n", "field 'timesteps' must be an integer, got true"),
        ("net_arch: [64, wide]\n", "field 'net_arch' must be a list of integers such as [64, 64], got [64, wide]"),
        ("net_arch: {a: 1}\n", "field 'net_arch' must be a list of integers"),
        ("symbols: [AAPL, ON]\n", "field 'symbols' must be a list of names such as [AAPL, MSFT], got [AAPL, true] "
         "(YAML reads yes, no, on and off as true or false: quote the value)"),
        ("symbols: [AAPL, {a: 1}]\n", "field 'symbols' must be a list of names"),
        ("env: gym\n", "field 'env' must be one of 'native', 'tensortrade', got 'gym'"),
        ("progress_bar: 1\n", "field 'progress_bar' must be true or false, got 1"),
        ("run_id: [a]\n", "field 'run_id' must be text or null, got [a]"),
        ("ent_coef: .nan\n", "field 'ent_coef' must be a number, got .nan"),
        ("gamma: .inf\n", "field 'gamma' must be a number, got .inf"),
        ("learning_rate: nan\n", "field 'learning_rate' must be a number, got 'nan'"),
        ("symbols_limit: many\n", "field 'symbols_limit' must be an integer or null, got 'many'"),
        ("runs_dir: [a]\n", "field 'runs_dir' must be a file or folder name, got [a]"),
        ("learning_rate: [1]\n", "field 'learning_rate' must be a number, got [1]"),
        ("folds: [1, x]\n", "field 'folds' must be a list of integers"),
    ],
)  # fmt: skip
def test_a_config_value_of_the_wrong_type_is_one_line_naming_the_file_and_field(
    tmp_path: Path, text: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    line = _refused_before_the_job(cli.walk_forward_main, ["--config", str(path)], monkeypatch, capsys)
    assert line == f"error: {path}: {message}" or line.startswith(f"error: {path}: {message}"), line


def test_config_values_take_the_forms_the_command_line_takes(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text('folds: "1,2"\nsymbols: AAPL, MSFT\nnet_arch: 32\nlearning_rate: 3e-4\ninitial_cash: 5000\n')
    config = load_config(path, cls=WalkForwardConfig)
    assert (config.folds, config.symbols, config.net_arch) == ((1, 2), ("AAPL", "MSFT"), (32,))
    assert (config.learning_rate, config.initial_cash) == (3e-4, 5000.0) and isinstance(config.initial_cash, float)
    path.write_text("folds: 3\nsymbols: [A, B]\nnet_arch: [16, 16]\nsymbols_limit: null\nrun_id: x\n")
    config = load_config(path, cls=WalkForwardConfig)
    assert (config.folds, config.symbols, config.net_arch, config.symbols_limit) == ((3,), ("A", "B"), (16, 16), None)
    # What YAML reads as numbers or dates where the field is text, and integers written as 64.0 or "64".
    path.write_text('symbols: [SPY, 3988]\nrun_id: 2024-01-02\nnet_arch: [64.0, "64"]\nfolds: [1, 2.0]\ndevice: cpu\n')
    config = load_config(path, cls=WalkForwardConfig)
    assert (config.symbols, config.run_id, config.net_arch, config.folds) == (
        ("SPY", "3988"),
        "2024-01-02",
        (64, 64),
        (1, 2),
    )


def test_a_config_file_that_is_not_utf8_is_named_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "n.yaml"
    path.write_bytes(b"timesteps: 2000\n\xff\n")
    line = _refused_before_the_job(cli.main, ["--config", str(path)], monkeypatch, capsys)
    assert line == f"error: {path} is not UTF-8 text: byte 0xff on line 2 (save it as UTF-8)"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"timesteps: 2000\n", "is not a model zip"),
        (None, "is a zip file but not a stable-baselines3 model"),
    ],
)
def test_resuming_from_a_file_that_is_not_a_model_is_refused_before_the_mart_is_read(
    tmp_path: Path,
    content: bytes | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    import zipfile

    monkeypatch.setenv("COLUMNS", "40")  # tyro wraps at the terminal's width: the one line must not split the path
    path = tmp_path / "model.zip"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a model")
    else:
        path.write_bytes(content)
    line = _refused_before_the_job(cli.main, ["--resume", str(path), "--timesteps", "2000"], monkeypatch, capsys)
    assert f"resume: {path} {message}" in line


def test_a_model_zip_that_sb3_cannot_load_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    path = _model_shaped_zip(tmp_path / "model.zip")
    with pytest.raises(ModelFileError, match=f"^--resume {path}: stable-baselines3 cannot load this model") as error:
        build_model(TrainConfig(), None, seed=1, resume=path)
    assert "\n" not in str(error.value) and cli.user_error_status(error.value) == ExitCode.CONFIG


def test_a_malformed_ray_address_is_a_bad_value_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for address in ("garbage", "host:port", "ray://:10001", "http://127.0.0.1:8265"):
        line = _refused_before_the_job(cli.walk_forward_main, ["--ray-address", address], monkeypatch, capsys)
        assert f"ray_address {address!r} is not host:port, ray://host:port or 'auto'" in line


def test_a_malformed_ray_address_in_the_environment_is_status_2_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Found when the runner prepares: before any folder, connection or mart.
    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    monkeypatch.setattr("warehouse_db.resolve_settings", lambda: None)  # the job never gets to connect
    assert cli.walk_forward_main(["--runs-dir", str(tmp_path / "runs"), "--no-progress-bar"]) == ExitCode.CONFIG
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "RAY_ADDRESS 'garbage' is not host:port, ray://host:port or 'auto'"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("main", [cli.main, cli.walk_forward_main])
def test_a_run_id_the_file_system_cannot_hold_is_one_line_and_status_2_before_anything_runs(
    main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """300 characters was a traceback (File name too long) from the run folder's check; a NUL byte from YAML too."""
    line = _refused_before_the_job(main, ["--run-id", "r" * 300, "--runs-dir", str(tmp_path)], monkeypatch, capsys)
    assert "run_id must be at most 200 bytes long (UTF-8), not 300" in line
    (tmp_path / "nul.yaml").write_text('run_id: "a\\0b"\n', encoding="utf-8")
    line = _refused_before_the_job(main, ["--config", str(tmp_path / "nul.yaml")], monkeypatch, capsys)
    assert "run_id 'a\\x00b' must be printable text" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "nul.yaml"]


@pytest.mark.parametrize("runs_dir", ["a-file", "a-file/below"])
def test_a_runs_dir_that_cannot_hold_the_run_folder_is_one_line_and_status_2(tmp_path: Path, runs_dir: str) -> None:
    """Checked before the warehouse is touched (settings=None here): a file, or a folder below one, was a traceback."""
    from training.single_run import run_training

    (tmp_path / "a-file").write_text("", encoding="utf-8")
    config = load_config(None, {"runs_dir": str(tmp_path / runs_dir), "run_id": "r"}, cls=SingleRunConfig)
    with pytest.raises(RunFolderError, match=r"cannot create the folder .*/r \(Not a directory\): choose another") as e:
        run_training(config, None)
    assert cli.user_error_status(e.value) == ExitCode.CONFIG


class _StopsAtTheMart(Exception):
    """Raised in place of reading the mart: these tests end where the run folder has been claimed."""


def _run_whose_folder_another_run_takes_meanwhile(tmp_path: Path, run_id: str | None) -> tuple[list[str], Path]:
    """A run (walk-forward or ``make train``: both go through ``execute``) whose folder another run, started at the
    same moment with the same id, creates between this run's check and its own creation of the folder. Returns the
    folders this run asked runners for, and the other run's folder."""
    from training import walk_forward
    from warehouse_db.settings import ConnectionSettings

    runs_dir = tmp_path / "runs"
    others = runs_dir / "same-second-same-suffix"
    asked_for: list[str] = []

    def make_runner(run_dir: Path) -> InProcessRunner:
        asked_for.append(run_dir.name)
        if run_dir == others and not others.exists():  # the other run claims the folder now, and starts logging
            others.mkdir(parents=True)
            (others / "run.log").write_text("the other run's log\n", encoding="utf-8")
        return InProcessRunner()

    def stop(*args, **kwargs):
        raise _StopsAtTheMart

    config = WalkForwardConfig(run_id=run_id, runs_dir=runs_dir, save_to_warehouse=False)
    settings = ConnectionSettings(host="nowhere", port=5432, user="u", password=None, dbname="d", embedded=False)
    with pytest.MonkeyPatch.context() as patch:
        generated = iter(["same-second-same-suffix", "another-suffix"])
        patch.setattr(walk_forward, "new_run_id", lambda: next(generated))
        patch.setattr(walk_forward, "read_mart_schema", stop)
        with pytest.raises((_StopsAtTheMart, FileExistsError)) as ended:
            walk_forward.execute("walk-forward", config, settings, fold_ids=(), seeds=(1,), make_runner=make_runner)
    # Whatever happened to this run, the other run's folder holds its own files only, untouched.
    assert [path.name for path in others.iterdir()] == ["run.log"]
    assert (others / "run.log").read_text(encoding="utf-8") == "the other run's log\n"
    return asked_for, ended


def test_a_generated_run_id_that_another_run_took_a_moment_ago_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    """Two runs started in the same second that drew the same suffix shared one folder (and the one that failed
    removed it, the other's files with it)."""
    asked_for, ended = _run_whose_folder_another_run_takes_meanwhile(tmp_path, run_id=None)
    assert ended.type is _StopsAtTheMart  # the run went on, in a folder of its own
    assert asked_for == ["same-second-same-suffix", "another-suffix"]


def test_a_given_run_id_that_another_run_took_a_moment_ago_is_refused_in_one_line(tmp_path: Path) -> None:
    asked_for, ended = _run_whose_folder_another_run_takes_meanwhile(tmp_path, run_id="same-second-same-suffix")
    assert ended.type is FileExistsError and asked_for == ["same-second-same-suffix"]
    assert str(ended.value) == (
        f"run folder {tmp_path / 'runs' / 'same-second-same-suffix'} already exists and is not empty: choose another "
        "--run-id"
    )
    assert cli.user_error_status(ended.value) == ExitCode.CONFIG


def test_a_new_folder_is_claimed_once(tmp_path: Path) -> None:
    """The claim is one mkdir: of two claims of one folder (a sweep id given twice, say), the second fails, even while
    the folder is still empty."""
    assert claim_run_folder(tmp_path / "runs", "sweep-a", "--sweep-id") == "sweep-a"
    with pytest.raises(FileExistsError, match=r"sweep-a already exists, empty .* choose another --sweep-id"):
        claim_run_folder(tmp_path / "runs", "sweep-a", "--sweep-id")
    assert claim_run_folder(tmp_path / "runs", "sweep-a", "--run-id", fresh_id=lambda: "sweep-b") == "sweep-b"
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["sweep-a", "sweep-b"]


def test_a_file_where_the_run_folder_would_go_is_named_with_the_flag_that_avoids_it(tmp_path: Path) -> None:
    """A file (or a link to nothing) named as the run id: the claim said "cannot create the folder (File exists):
    choose another --runs-dir", and a generated id was not replaced, though only the id was taken."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "taken").write_text("not a run\n", encoding="utf-8")
    (runs / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("taken", "dangling"):
        for check in (refuse_used_folder, lambda run_dir, flag: claim_run_folder(run_dir.parent, run_dir.name, flag)):
            with pytest.raises(FileExistsError) as refused:
                check(runs / name, "--run-id")
            assert str(refused.value) == f"{runs / name} already exists and is not a folder: choose another --run-id"
        assert claim_run_folder(runs, name, "--run-id", fresh_id=lambda name=name: f"fresh-{name}") == f"fresh-{name}"
    assert (runs / "taken").read_text(encoding="utf-8") == "not a run\n"


# What a command's first line must not wait for: importing them takes seconds (torch and stable-baselines3 about 3 s
# together, Ray one more), and the job imports them when its tasks start.
HEAVY_MODULES = ("torch", "stable_baselines3", "ray")
LOADED_PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("loaded:", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.__stderr__))
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _loaded_heavy_modules(module: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """Run ``python -m module args`` as typed; (its exit status, its stderr, the heavy modules it had imported)."""
    probe = LOADED_PROBE.format(heavy=HEAVY_MODULES)
    done = subprocess.run(
        [sys.executable, "-c", probe, module, *args], env=env, capture_output=True, text=True, timeout=120
    )
    lines = done.stderr.splitlines()
    loaded = next(line for line in reversed(lines) if line.startswith("loaded:")).removeprefix("loaded:").strip()
    return done.returncode, done.stderr, [name for name in loaded.split(",") if name]


@pytest.mark.parametrize("module", ["training", "training.walk_forward", "training.sweep"])
def test_help_and_an_unreachable_warehouse_answer_without_torch_sb3_or_ray(tmp_path: Path, module: str) -> None:
    """--help, and the one line for a warehouse that refuses the connection, import none of torch,
    stable-baselines3 or Ray: `--help` took 5 s (importing the command pulled them through the results tables, the
    baselines and the task runners), the warehouse's line 7 s (its error handler imported them once more)."""
    status, said, loaded = _loaded_heavy_modules(module, "--help")
    assert status == 0, said
    assert loaded == [], f"{module} --help imported {loaded}"

    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/db"}
    status, said, loaded = _loaded_heavy_modules(module, "--runs-dir", str(tmp_path / "runs"), env=env)
    assert status == ExitCode.WAREHOUSE and "cannot connect to PostgreSQL" in said, said
    assert loaded == [], f"{module} against an unreachable warehouse imported {loaded} before its one line"
