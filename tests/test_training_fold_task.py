"""One fold x seed task: what it may see (train for training, validation for selection, test once) and determinism."""

from __future__ import annotations

import dataclasses
import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stable_baselines3 import PPO

import training.fold_task
import training.ppo
from devtools.synthetic_mart import FEATURE_LOOKBACKS, lay_out_folds, synthetic_mart
from training.baselines import (
    SmaCrossoverPolicy,
    buy_and_hold,
    flat,
    matched_random,
    sma_signals,
)
from training.config import TrainConfig
from training.envs.batched_env import NativeVecEnv
from training.evaluation import replay as replay_policy
from training.fold_task import (
    MarketData,
    TaskResult,
    env_settings,
    prepare_fold,
    run_fold_seed,
    validate_configuration,
    validation_scorer,
)
from training.market_data import FeatureScaler
from training.policies import AGENT, BASELINES, BUY_AND_HOLD, FLAT, POLICIES, RANDOM, SMA_CROSSOVER
from training.tradability import NotEnoughData

pytestmark = pytest.mark.integration  # trains PPO

FEATURES = list(FEATURE_LOOKBACKS)
CONFIG = TrainConfig(
    timesteps=1024, eval_freq=256, n_envs=4, n_steps=64, batch_size=128, n_epochs=1, random_draws=10,
    progress_bar=False, save_to_warehouse=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_mart(n_symbols=4, n_sessions=320, seed=21)


@pytest.fixture(scope="module")
def fold(frame: pd.DataFrame):
    return lay_out_folds(frame["session_date"], folds=2, test_sessions=50, validation_sessions=40)[0]


@pytest.fixture(scope="module")
def result(frame: pd.DataFrame, fold) -> TaskResult:
    return run_fold_seed(CONFIG, MarketData.from_frame(frame, FEATURES), fold, seed=3)


def _weights(model_zip: bytes) -> dict[str, np.ndarray]:
    model = PPO.load(io.BytesIO(model_zip), device="cpu")
    return {name: value.numpy() for name, value in model.policy.state_dict().items()}


def _perturbed(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """Prices and features of the masked rows scaled by random factors."""
    changed = frame.copy()
    factors = np.random.default_rng(8).uniform(0.5, 1.5, int(mask.sum()))
    for column in ["open", "close", *FEATURES]:
        changed.loc[mask, column] = changed.loc[mask, column] * factors
    return changed


def test_training_and_model_selection_never_see_a_test_session(frame: pd.DataFrame, fold, result: TaskResult) -> None:
    """Change every test-split row: the scaler, the training, every validation score and the selected weights stay
    bit-identical; only the test replays change (they are where the test rows are used, once)."""
    after_validation = pd.to_datetime(frame["session_date"]).dt.date > fold.validation.end
    changed = run_fold_seed(CONFIG, MarketData.from_frame(_perturbed(frame, after_validation.to_numpy()), FEATURES),
                            fold, seed=3)  # fmt: skip
    assert changed.selection_history == result.selection_history
    assert changed.selected_step == result.selected_step and changed.scaler == result.scaler
    for name, value in _weights(result.model_zip).items():
        np.testing.assert_array_equal(value, _weights(changed.model_zip)[name])
    for policy, replay in result.replays["validation"].items():
        np.testing.assert_array_equal(replay.net_worth, changed.replays["validation"][policy].net_worth)
    assert not np.array_equal(result.replays["test"]["agent"].net_worth, changed.replays["test"]["agent"].net_worth)


def test_the_selection_api_cannot_reach_test_rows(frame: pd.DataFrame, fold, result: TaskResult) -> None:
    """validate_configuration (what a sweep calls) gives the same answer with test rows present, changed or absent."""
    dates = pd.to_datetime(frame["session_date"]).dt.date
    runs = [
        validate_configuration(CONFIG, MarketData.from_frame(data, FEATURES), fold, seed=3)
        for data in (frame, frame[dates <= fold.validation.end], _perturbed(frame, (dates > fold.validation.end).to_numpy()))
    ]  # fmt: skip
    for run in runs:
        assert run.selection_history == result.selection_history and run.score == result.validation_score
        assert set(run.validation) == set(result.replays["validation"])
        np.testing.assert_array_equal(
            run.validation["agent"].net_worth, result.replays["validation"]["agent"].net_worth
        )


def test_the_selection_api_drops_test_rows_before_anything_sees_them(
    frame: pd.DataFrame, fold, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What validate_configuration hands on ends with the validation split (the answer alone cannot show it: the
    scaler and the environments also keep to their splits)."""
    handed_on: list[pd.DataFrame] = []

    class Seen(Exception):
        pass

    def recording(data: MarketData, *args, **kwargs):
        handed_on.append(data.frame)
        raise Seen

    monkeypatch.setattr(training.fold_task, "prepare_fold", recording)
    with pytest.raises(Seen):
        validate_configuration(CONFIG, MarketData.from_frame(frame, FEATURES), fold, seed=3)
    dates = pd.to_datetime(handed_on[0]["session_date"]).dt.date
    assert dates.max() == fold.validation.end


def test_a_split_too_short_to_trade_is_named_with_its_dates(frame: pd.DataFrame, fold) -> None:
    """The 40-session validation split cannot hold a 40-session window plus an episode: one clear error, naming it."""
    too_long_a_window = dataclasses.replace(CONFIG, window=40)
    with pytest.raises(NotEnoughData) as raised:
        prepare_fold(MarketData.from_frame(frame, FEATURES), fold, too_long_a_window)
    assert str(raised.value) == (
        f"fold {fold.fold_id}: no symbol has 45 sessions (window + min_episode_steps) in its validation split "
        f"{fold.validation.start} .. {fold.validation.end} (the most: SYM000 40, SYM001 40, SYM002 40): lower "
        "--window or --min-episode-steps, leave the fold out (--folds), or fetch more history"
    )


def test_the_baselines_trade_with_the_task_costs_and_the_agent_exposure(
    frame: pd.DataFrame, fold, result: TaskResult
) -> None:
    """Every baseline of a task is replayed by hand through the same environment, fill rule and costs as the agent;
    the random baseline is matched to the agent's exposure and turnover on the same split."""
    settings = env_settings(CONFIG)
    assert settings.commission > 0 and settings.slippage > 0
    series = prepare_fold(MarketData.from_frame(frame, FEATURES), fold, CONFIG).series["test"]
    symbols = [s.symbol for s in series]
    agent = result.replays["test"][AGENT]
    by_hand = {
        BUY_AND_HOLD: buy_and_hold(),
        FLAT: flat(),
        SMA_CROSSOVER: SmaCrossoverPolicy(sma_signals(frame, series, CONFIG.sma_fast, CONFIG.sma_slow)),
        RANDOM: matched_random(agent.symbol_metrics, symbols, CONFIG.random_draws, 3, fold.fold_id, "test"),
    }
    # A policy replayed but missing from BASELINES would land in ml.walk_forward_metrics and nowhere else (no
    # statistics, comparison or report line); a baseline in BASELINES needs its by-hand replay above.
    assert set(result.replays["test"]) == set(POLICIES), "fold_task.evaluate_policies must replay exactly POLICIES"
    assert set(by_hand) == set(BASELINES), "replay every baseline of BASELINES by hand here"
    for name, policy in by_hand.items():
        np.testing.assert_array_equal(
            result.replays["test"][name].net_worth,
            replay_policy("test", series, settings, policy).net_worth,
            err_msg=name,
        )


def test_the_training_environment_sees_only_train_dates(
    frame: pd.DataFrame, fold, result: TaskResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[np.ndarray] = []

    class Recording(NativeVecEnv):
        def __init__(self, series, settings, n_envs):
            super().__init__(series, settings, n_envs)
            seen.extend(s.dates for s in series)

    monkeypatch.setattr(training.ppo, "NativeVecEnv", Recording)
    run_fold_seed(CONFIG, MarketData.from_frame(frame, FEATURES), fold, seed=4)
    train_dates = np.concatenate(seen)
    assert len(train_dates) and fold.train.contains(train_dates).all()
    # Every replayed session belongs to the split it was replayed for.
    for split, replays in result.replays.items():
        for replay in replays.values():
            assert getattr(fold, split).contains(replay.dates).all()
            assert replay.dates[0] > fold.train.end


def test_the_scaler_is_fitted_on_train_rows_only(frame: pd.DataFrame, fold, result: TaskResult) -> None:
    on_train = FeatureScaler.fit(fold.rows(frame, "train"), FEATURES, CONFIG.observation_clip)
    on_everything = FeatureScaler.fit(frame, FEATURES, CONFIG.observation_clip)
    np.testing.assert_array_equal(result.scaler["mean"], on_train.mean)
    np.testing.assert_array_equal(result.scaler["std"], on_train.std)
    assert not np.allclose(result.scaler["mean"], on_everything.mean)


def test_the_tested_model_is_the_best_checkpoint_on_validation(frame: pd.DataFrame, fold, result: TaskResult) -> None:
    scores = [score for _, score in result.selection_history]
    assert [step for step, _ in result.selection_history] == [256, 512, 768, 1024]
    assert result.validation_score == max(scores)
    assert result.selected_step == result.selection_history[scores.index(max(scores))][0]
    assert len(set(scores)) > 1  # checkpoints differ, so choosing among them means something
    model = PPO.load(io.BytesIO(result.model_zip), device="cpu")
    validation = prepare_fold(MarketData.from_frame(frame, FEATURES), fold, CONFIG).series["validation"]
    assert validation_scorer(CONFIG, validation)(model) == result.validation_score
    assert result.replays["validation"]["agent"].metrics()["sharpe"] == result.validation_score


def test_the_same_task_twice_gives_the_same_result(frame: pd.DataFrame, fold, result: TaskResult) -> None:
    again = run_fold_seed(CONFIG, MarketData.from_frame(frame, FEATURES), fold, seed=3)
    assert again.selection_history == result.selection_history
    for split, replays in result.replays.items():
        for policy, replay in replays.items():
            np.testing.assert_array_equal(replay.net_worth, again.replays[split][policy].net_worth)
    other_seed = run_fold_seed(CONFIG, MarketData.from_frame(frame, FEATURES), fold, seed=5)
    assert other_seed.selection_history != result.selection_history


def test_settings_past_the_memory_are_refused_before_anything_is_built(
    frame: pd.DataFrame, fold, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --n-envs 100000000 was a NumPy traceback, or the kernel's out-of-memory killer while the environments were built.
    observation = len(FEATURES) * CONFIG.window + 1
    needed = training.ppo.memory_needed(CONFIG, observation)
    # The rollout buffer alone, twice: n_steps x n_envs x (observation + 7 numbers) float32.
    assert needed > 2 * CONFIG.n_steps * CONFIG.n_envs * (observation + 7) * 4

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the environments were built before the memory check")

    monkeypatch.setattr(training.fold_task, "make_training_env", must_not_build)
    available = type("Memory", (), {"available": needed - 1})
    monkeypatch.setattr(training.ppo.psutil, "virtual_memory", lambda: available)
    data = MarketData.from_frame(frame, FEATURES)
    with pytest.raises(
        training.ppo.SettingsTooLarge,
        match=r"n_envs 4, n_steps 64, .* needs at least \d+\.\d MiB of memory; \d+\.\d MiB is available",
    ):
        run_fold_seed(CONFIG, data, fold, seed=3)
    # With just enough memory the check passes, and the task goes on to build its environments.
    available.available = needed
    with pytest.raises(AssertionError, match="built before the memory check"):
        run_fold_seed(CONFIG, data, fold, seed=3)


@pytest.mark.parametrize("seen", ["last spring", 20210101])
def test_a_resumed_model_whose_seen_sessions_are_no_date_is_refused_in_one_line(fold, seen) -> None:
    """A model zip's data is JSON anyone can edit: a sessions_seen_until that is no date was a traceback (status 1)."""
    model = type("Model", (), {training.ppo.SESSIONS_SEEN_UNTIL: seen})()
    with pytest.raises(training.ppo.ModelFileError, match=r"--resume m\.zip: its sessions_seen_until .* is not a date"):
        training.ppo.check_unseen(model, fold, Path("m.zip"))


def test_a_resumed_model_that_has_seen_the_first_test_session_is_refused(fold, caplog) -> None:
    """The boundaries of --resume's look-ahead guard: a model that has seen the fold's first test session is refused;
    one that has seen up to the session before it (validation sessions) only makes the selection optimistic."""

    def resume_having_seen(day) -> None:
        model = type("Model", (), {training.ppo.SESSIONS_SEEN_UNTIL: day.isoformat()})()
        training.ppo.check_unseen(model, fold, Path("m.zip"))

    day = timedelta(days=1)
    with pytest.raises(training.ppo.ModelHasSeenHeldOutSessions, match=f"test split begins on {fold.test.start}"):
        resume_having_seen(fold.test.start)
    resume_having_seen(fold.test.start - day)
    resume_having_seen(fold.validation.start)
    resume_having_seen(fold.validation.start - day)
    assert ["will be optimistic" in record.message for record in caplog.records] == [True, True]


def test_a_containers_memory_limit_bounds_the_memory_available(tmp_path) -> None:
    """In a container the kernel kills at the cgroup's limit, whatever the host has free (psutil sees the host)."""
    host = training.ppo.psutil.virtual_memory().available
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text(f"{2**20 * 3}\n")
    (v2 / "memory.current").write_text(f"{2**20}\n")
    assert training.ppo.available_memory(v2) == min(host, 2 * 2**20)
    (v2 / "memory.max").write_text("max\n")  # no limit
    assert abs(training.ppo.available_memory(v2) - host) < 2**28
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{2**20 * 5}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2**20 * 6}\n")  # over its limit: nothing left
    assert training.ppo.available_memory(tmp_path / "v1") == 0
