"""The dbt project on clean synthetic bars: builds green, features are exact and point-in-time,
incremental builds equal a full refresh, and only the marts are visible to trainer and analyst.

One database is built per module (embedded cluster) and copied (CREATE DATABASE ... TEMPLATE) for the
tests that change data, so each test starts from the same clean build.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
import yaml

from devtools import dbt_harness, scratch_database, synthetic_bars
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

FEATURES = [
    "log_return_1", "log_return_5", "log_return_20", "realized_vol_20", "close_to_sma_10", "close_to_sma_50",
    "rsi_14", "macd_to_close", "macd_signal_to_close", "macd_hist_to_close", "atr_14_to_close",
    "volume_zscore_20", "high_low_range",
]  # fmt: skip
MART_COLUMNS = ["symbol", "session_date", "open", "high", "low", "close", "volume", *FEATURES,
                "target_log_return_next", "split", "dbt_loaded_at"]  # fmt: skip
SYMBOLS = ["SA", "SB", "SC", "SD"]
START, END = "2023-01-01", "2024-06-30"  # ~18 months: all three splits non-empty with the defaults
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def cluster(embedded_cluster: ConnectionSettings) -> ConnectionSettings:
    return embedded_cluster


@pytest.fixture(scope="module")
def base(cluster: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A database with clean bars for SYMBOLS plus 'brk.b' (normalised to BRK B), built from scratch."""
    settings = scratch_database.create_database(cluster, "test_dbt_build")
    dbt_harness.prepare_raw(settings)
    frame = synthetic_bars.generate_bars(synthetic_bars.SyntheticConfig([*SYMBOLS, "brk.b "], START, END, seed=11))
    with connect(settings) as conn:
        synthetic_bars.copy_bars(conn, frame)
    project = dbt_harness.DbtProject(settings, tmp_path_factory.mktemp("dbt_base"))
    result = project.run("build")
    yield {"settings": settings, "result": result, "frame": frame}
    scratch_database.drop_database(settings)


@pytest.fixture
def copy_of_base(base: dict, cluster: ConnectionSettings, tmp_path: Path) -> Iterator[dbt_harness.DbtProject]:
    settings = scratch_database.clone_database(cluster, base["settings"].dbname, "test_dbt_copy")
    yield dbt_harness.DbtProject(settings, tmp_path)
    scratch_database.drop_database(settings)


def query(settings: ConnectionSettings, sql: str, params: tuple = ()) -> pd.DataFrame:
    with connect(settings) as conn:
        cursor = conn.execute(sql, params)
        columns = [column.name for column in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=columns)


def test_build_is_green(base: dict) -> None:
    result: dbt_harness.DbtResult = base["result"]
    assert result.returncode == 0, result.output[-4000:]
    statuses = result.statuses()
    assert statuses, "dbt wrote no run_results.json"
    assert set(statuses.values()) <= {"success", "pass", "no-op"}, statuses  # no-op: the exposure
    for model in ("stg_ibkr__bars", "int_bars_deduplicated", "int_bars_featurized", "training_bars", "symbol_coverage"):
        assert statuses[model] == "success"


def test_custom_schemas_are_used_verbatim(base: dict) -> None:
    frame = query(
        base["settings"],
        "select table_schema, table_name from information_schema.tables"
        " where table_schema in ('staging', 'intermediate', 'marts', 'seeds')",
    )
    placed = set(map(tuple, frame.to_numpy()))
    assert ("staging", "stg_ibkr__bars") in placed
    assert ("intermediate", "int_bars_featurized") in placed
    assert ("marts", "training_bars") in placed
    assert ("seeds", "xnys_sessions") in placed


def test_trainer_sees_only_marts(base: dict) -> None:
    settings = base["settings"]
    for relation in (
        "raw.ibkr_bars",
        "staging.stg_ibkr__bars",
        "intermediate.int_bars_featurized",
        "seeds.xnys_sessions",
    ):
        with connect(settings, role="trainer") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select 1 from {relation} limit 1")
    for role in ("trainer", "analyst"):
        with connect(settings, role=role) as conn:
            for mart in ("training_bars", "symbol_coverage", "training_splits", "bar_corrections"):
                conn.execute(f"select * from marts.{mart} limit 1").fetchall()
            assert conn.execute("select count(*) from marts.training_bars").fetchone()[0] > 0


def test_mart_columns_and_yaml_meta(base: dict) -> None:
    frame = query(
        base["settings"],
        "select column_name, data_type from information_schema.columns"
        " where table_schema = 'marts' and table_name = 'training_bars' order by ordinal_position",
    )
    assert frame["column_name"].tolist() == MART_COLUMNS
    types = dict(zip(frame["column_name"], frame["data_type"], strict=True))
    assert all(types[column] == "double precision" for column in [*FEATURES, "target_log_return_next"])

    spec = yaml.safe_load((REPO_ROOT / "warehouse/models/marts/training_bars.yml").read_text(encoding="utf-8"))
    columns = spec["models"][0]["columns"]
    assert [c["name"] for c in columns] == MART_COLUMNS, "every mart column is described, in order"
    assert all(c.get("description") for c in columns)
    features = [c for c in columns if c.get("meta", {}).get("role") == "feature"]
    assert [c["name"] for c in features] == FEATURES
    assert all(isinstance(c["meta"]["lookback_sessions"], int) for c in features)
    assert max(c["meta"]["lookback_sessions"] for c in features) == 50
    assert [c["name"] for c in columns if c.get("meta", {}).get("role") == "target"] == ["target_log_return_next"]
    macro = (REPO_ROOT / "warehouse/macros/training_features.sql").read_text(encoding="utf-8")
    listed = macro.split("training_feature_columns()")[1].split("]")[0]
    assert [name.strip().strip("',") for name in listed.split("[")[1].split(",") if name.strip()] == FEATURES


def test_mart_rows_splits_warmup_and_embargo(base: dict) -> None:
    settings = base["settings"]
    mart = query(settings, "select * from marts.training_bars")
    splits = query(settings, "select * from marts.training_splits").iloc[0]
    features = query(settings, "select symbol, session_date, session_number from intermediate.int_bars_featurized")
    assert not mart[MART_COLUMNS].isna().any().any(), "no null in the mart"
    assert set(mart["split"]) == {"train", "validation", "test"}
    assert set(mart["symbol"]) == {*SYMBOLS, "BRK B"}
    first_session = mart.groupby("split")["session_date"].min()
    last_session = mart.groupby("split")["session_date"].max()
    assert last_session["train"] < splits["validation_embargo_start"]
    assert first_session["validation"] >= splits["validation_start"]
    assert last_session["validation"] < splits["test_embargo_start"]
    assert first_session["test"] >= splits["test_start"]

    sessions = synthetic_bars.nyse_sessions(START, END).date
    position = {session: index for index, session in enumerate(sessions)}
    assert position[splits["validation_start"]] - position[splits["validation_embargo_start"]] == 50
    assert position[splits["test_start"]] - position[splits["test_embargo_start"]] == 50
    in_embargo = mart["session_date"].between(
        splits["validation_embargo_start"], splits["validation_start"], inclusive="left"
    ) | mart["session_date"].between(splits["test_embargo_start"], splits["test_start"], inclusive="left")
    assert not in_embargo.any()

    joined = mart.merge(features, on=["symbol", "session_date"])
    assert joined["session_number"].min() == 51, "the first 50 bars of each symbol are warm-up"
    last_bar = features.groupby("symbol")["session_date"].max()
    assert not (mart["session_date"].to_numpy() == mart["symbol"].map(last_bar).to_numpy()).any()


def test_default_fractions_leave_three_splits_at_twelve_months(cluster: ConnectionSettings, tmp_path: Path) -> None:
    settings = scratch_database.create_database(cluster, "test_dbt_12m")
    try:
        dbt_harness.prepare_raw(settings)
        frame = synthetic_bars.generate_bars(synthetic_bars.SyntheticConfig(["SA", "SB"], "2024-01-01", "2024-12-31"))
        with connect(settings) as conn:
            synthetic_bars.copy_bars(conn, frame)
        project = dbt_harness.DbtProject(settings, tmp_path)
        project.run("build", "--select", "+training_bars", "--exclude", "test_type:data", check=True)
        counts = query(
            settings, "select split, count(distinct session_date) as sessions from marts.training_bars group by split"
        )
        sessions = dict(zip(counts["split"], counts["sessions"], strict=True))
        assert set(sessions) == {"train", "validation", "test"}
        assert sessions["test"] >= 10 and sessions["validation"] >= 10 and sessions["train"] > sessions["test"]
    finally:
        scratch_database.drop_database(settings)


def reference_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The features of one symbol's bars (sorted by session) computed independently with pandas."""
    close, high, low, volume = bars["close"], bars["high"], bars["low"], bars["volume"]
    previous = close.shift(1)
    out = pd.DataFrame({"session_date": bars["session_date"]})
    out["log_return_1"] = np.log(close / previous)
    out["log_return_5"] = np.log(close / close.shift(5))
    out["log_return_20"] = np.log(close / close.shift(20))
    out["realized_vol_20"] = out["log_return_1"].rolling(20).std(ddof=1)
    out["close_to_sma_10"] = close / close.rolling(10).mean() - 1
    out["close_to_sma_50"] = close / close.rolling(50).mean() - 1
    change = close.diff()
    avg_gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    avg_loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    rs = avg_gain / avg_loss
    out["rsi_14"] = np.where(avg_loss == 0, np.where(avg_gain == 0, 50.0, 100.0), 100 - 100 / (1 + rs))
    out.loc[change.isna(), "rsi_14"] = np.nan
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    out["macd_to_close"] = macd / close
    out["macd_signal_to_close"] = signal / close
    out["macd_hist_to_close"] = (macd - signal) / close
    true_range = pd.concat([high - low, (high - previous).abs(), (low - previous).abs()], axis=1).max(axis=1)
    true_range.iloc[0] = high.iloc[0] - low.iloc[0]
    out["atr_14_to_close"] = true_range.ewm(alpha=1 / 14, adjust=False).mean() / close
    out["volume_zscore_20"] = (volume - volume.rolling(20).mean()) / volume.rolling(20).std(ddof=1)
    out["high_low_range"] = (high - low) / close
    out["target_log_return_next"] = np.log(close.shift(-1) / close)
    return out


def assert_features_match(computed: pd.DataFrame, bars: pd.DataFrame) -> int:
    checked = 0
    for symbol, symbol_bars in bars.groupby("symbol"):
        expected = reference_features(symbol_bars.sort_values("session_date").reset_index(drop=True))
        actual = computed[computed["symbol"] == symbol].sort_values("session_date").reset_index(drop=True)
        assert actual["session_date"].tolist() == expected["session_date"].tolist()
        for column in [*FEATURES, "target_log_return_next"]:
            got, want = actual[column].astype(float).to_numpy(), expected[column].to_numpy()
            assert np.array_equal(np.isnan(got), np.isnan(want)), f"{symbol} {column}: null pattern differs"
            np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, equal_nan=True, err_msg=f"{symbol} {column}")
            checked += int((~np.isnan(got)).sum())
    return checked


def test_features_match_an_independent_pandas_computation(base: dict) -> None:
    settings = base["settings"]
    bars = query(
        settings, "select symbol, session_date, open, high, low, close, volume from intermediate.int_bars_deduplicated"
    )
    computed = query(settings, "select * from intermediate.int_bars_featurized")
    assert assert_features_match(computed, bars) > 10_000
    # ...and the mart holds exactly those values.
    mart = query(settings, "select * from marts.training_bars")
    merged = mart.merge(computed, on=["symbol", "session_date"], suffixes=("", "_features"))
    assert len(merged) == len(mart)
    for column in [*FEATURES, "target_log_return_next"]:
        assert (merged[column] == merged[f"{column}_features"]).all(), column


def test_symbols_are_normalised(base: dict) -> None:
    symbols = query(base["settings"], "select distinct symbol from intermediate.int_bars_deduplicated")["symbol"]
    assert "BRK B" in set(symbols) and not any(s != s.strip().upper() or "." in s for s in symbols)


def test_features_are_point_in_time(base: dict, copy_of_base: dbt_harness.DbtProject) -> None:
    """Features of session t on the full history equal those computed after deleting every bar after t."""
    full = query(base["settings"], "select * from intermediate.int_bars_featurized")
    cutoff = sorted(full["session_date"].unique())[200]
    with connect(copy_of_base.settings) as conn:
        deleted = conn.execute("delete from raw.ibkr_bars where session_date > %s", (cutoff,)).rowcount
    assert deleted > 0
    copy_of_base.run("run", "--full-refresh", "--select", "+int_bars_featurized", check=True)
    truncated = query(copy_of_base.settings, "select * from intermediate.int_bars_featurized")
    assert truncated["session_date"].max() == cutoff
    before = full[full["session_date"] <= cutoff].set_index(["symbol", "session_date"]).sort_index()
    after = truncated.set_index(["symbol", "session_date"]).sort_index()
    assert before.index.equals(after.index)
    pd.testing.assert_frame_equal(before[FEATURES], after[FEATURES], check_exact=True)
    # The target of t is the only column that looks ahead: known before the cut, unknown at t after it.
    pd.testing.assert_series_equal(
        before["target_log_return_next"].drop(cutoff, level=1), after["target_log_return_next"].drop(cutoff, level=1)
    )
    assert after.xs(cutoff, level=1)["target_log_return_next"].isna().all()


def digests(settings: ConnectionSettings) -> dict[str, tuple[int, str]]:
    feature_columns = ["symbol", "bar_size", "what_to_show", "use_rth", "session_date", "session_number", "open", "high",
                       "low", "close", "volume", *FEATURES, "target_log_return_next", "ema_12", "ema_26",
                       "macd_signal_9", "avg_gain_14", "avg_loss_14", "atr_14"]  # fmt: skip
    key = ["symbol", "bar_size", "what_to_show", "use_rth", "session_date"]
    return {
        "training_bars": dbt_harness.table_digest(
            settings, "marts.training_bars", MART_COLUMNS[:-1], ["symbol", "session_date"]
        ),
        "training_splits": dbt_harness.table_digest(settings, "marts.training_splits t", ["t.*"], ["first_session"]),
        "symbol_coverage": dbt_harness.table_digest(settings, "marts.symbol_coverage t", ["t.*"], key[:4]),
        "int_bars_featurized": dbt_harness.table_digest(
            settings, "intermediate.int_bars_featurized", feature_columns, key
        ),
        "int_bars_deduplicated": dbt_harness.table_digest(
            settings,
            "intermediate.int_bars_deduplicated",
            [
                *key,
                "open",
                "high",
                "low",
                "close",
                "volume",
                "load_id",
                "batch_id",
                "ingested_at",
                "versions_landed",
                "has_corrections",
            ],
            key,
        ),  # fmt: skip
    }


def test_incremental_build_equals_full_refresh(base: dict, copy_of_base: dbt_harness.DbtProject) -> None:
    """Append new sessions, correct a past bar, backfill history and add a symbol; build incrementally;
    the marts (and the feature table) must be identical to a full refresh of the same raw data."""
    settings = copy_of_base.settings
    now = datetime.now(UTC)
    later = synthetic_bars.generate_bars(
        synthetic_bars.SyntheticConfig([*SYMBOLS, "BRK B"], "2024-07-01", "2024-08-09", seed=12, ingested_at=now)
    )
    backfill = synthetic_bars.generate_bars(
        synthetic_bars.SyntheticConfig(["SC"], "2022-10-03", "2022-12-30", seed=13, ingested_at=now)
    )
    newcomer = synthetic_bars.generate_bars(
        synthetic_bars.SyntheticConfig(["SNEW"], "2024-03-01", "2024-08-09", seed=14, ingested_at=now)
    )
    corrected = base["frame"].query("symbol == 'SB' and session_date == @pd.Timestamp('2024-03-15').date()").copy()
    corrected["close"] *= 1.01
    corrected["high"] = corrected[["high", "close"]].max(axis=1)
    corrected["ingested_at"] = now
    corrected["load_id"] = corrected["batch_id"] = uuid.uuid4()
    with connect(settings) as conn:
        for frame in (later, backfill, newcomer, corrected):
            synthetic_bars.copy_bars(conn, frame)

    incremental = copy_of_base.run("build")
    assert incremental.returncode == 0, incremental.output[-4000:]
    rows = {name: entry["adapter_response"].get("rows_affected") for name, entry in incremental.by_name().items()
            if name in ("int_bars_deduplicated", "int_bars_featurized")}  # fmt: skip
    assert rows["int_bars_deduplicated"] < len(base["frame"]) / 4, f"incremental path not taken: {rows}"

    after_incremental = digests(settings)
    corrections = query(settings, "select * from intermediate.int_bar_corrections where symbol = 'SB'")
    assert len(corrections) == 2 and corrections["is_current"].sum() == 1

    again = copy_of_base.run("run")  # nothing new: nothing changes
    assert again.returncode == 0
    assert digests(settings) == after_incremental

    full = copy_of_base.run("build", "--full-refresh")
    assert full.returncode == 0, full.output[-4000:]
    assert digests(settings) == after_incremental
    assert after_incremental["training_bars"][0] > 1000
    # The appended sessions moved the derived split boundaries, so the incremental build had to re-split.
    with connect(settings) as conn:
        moved = conn.execute("select test_start from marts.training_splits").fetchone()[0]
    with connect(base["settings"]) as conn:
        assert conn.execute("select test_start from marts.training_splits").fetchone()[0] != moved


def test_calendar_seed_is_reproducible() -> None:
    """The committed seed is exactly what devtools/generate_calendar.py writes (2000..2030, XNYS)."""
    from devtools import generate_calendar

    assert generate_calendar.main(["--check"]) == 0
    seed = pd.read_csv(REPO_ROOT / "warehouse/seeds/xnys_sessions.csv")
    assert seed["session_date"].iloc[0] == "2000-01-03" and seed["session_date"].iloc[-1] == "2030-12-31"
    half_days = seed.loc[seed["is_half_day"], "session_date"]
    assert "2024-11-29" in set(half_days) and "2024-07-04" not in set(seed["session_date"])
