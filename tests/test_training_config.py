"""TrainConfig (defaults, YAML, flags, docs) and the mart-YAML feature reader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from devtools.synthetic_mart import FEATURE_LOOKBACKS, TARGET, write_mart_yaml
from training import cli
from training.config import TrainConfig, dump_config, field_docs, load_config
from training.features import MartSchemaError, read_mart_schema


def test_every_field_is_documented_and_has_a_flag() -> None:
    docs = field_docs()
    names = [field.name for field in dataclasses.fields(TrainConfig)]
    assert [name for name in names if not docs.get(name)] == []
    help_text = cli.build_parser().format_help()
    assert all(f"--{name.replace('_', '-')}" in help_text for name in names)


def test_defaults_are_seeded_native_cpu_on_every_symbol() -> None:
    config = TrainConfig()
    assert (config.seed, config.env, config.device, config.symbols, config.symbols_limit) == (
        42,
        "native",
        "cpu",
        (),
        None,
    )
    assert config.eval_splits == ("validation", "test")


def test_yaml_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"seed": 7, "window": 5, "timesteps": 1000, "net_arch": [32, 32]}))
    config = cli.parse_config(
        [
            "--config",
            str(path),
            "--timesteps",
            "2_000",
            "--symbols",
            "AAA,BBB",
            "--env",
            "tensortrade",
            "--no-progress-bar",
            "--symbols-limit",
            "none",
        ]
    )
    assert (config.seed, config.window, config.timesteps) == (7, 5, 2000)
    assert config.symbols == ("AAA", "BBB") and config.env == "tensortrade" and config.progress_bar is False
    assert config.net_arch == (32, 32) and config.symbols_limit is None


def test_the_dumped_config_reproduces_the_settings(tmp_path: Path) -> None:
    config = load_config(None, {"seed": 3, "symbols": ("X",), "resume": "runs/a/model.zip"})
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


@pytest.mark.parametrize(
    "values, message",
    [
        ({"windw": 3}, "unknown configuration keys"),
        ({"env": "gym"}, "env must be one of"),
        ({"eval_splits": ("holdout",)}, "eval_splits"),
    ],
)
def test_bad_configuration_is_refused(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, values)


def test_cli_reports_a_bad_configuration_with_status_2(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--config", "/nonexistent/run.yaml"]) == cli.EXIT_CONFIG
    assert "error" in capsys.readouterr().err


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
                            {"name": "symbol"},
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
    assert schema.target_horizon_sessions == 2


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


def test_the_real_mart_yaml_matches_the_synthetic_stand_in() -> None:
    """The dbt YAML the job reads by default lists the features the synthetic test mart is built with."""
    schema = read_mart_schema()
    assert schema.source == TrainConfig().mart_yaml
    assert {f.name: f.lookback_sessions for f in schema.features} == FEATURE_LOOKBACKS
    assert schema.target == TARGET
