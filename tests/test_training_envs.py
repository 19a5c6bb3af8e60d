"""The trading environments: the fill rule by hand, parity (native, TensorTrade, batched), the env checkers, episode
bounds and leakage."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from devtools.synthetic_mart import FEATURE_LOOKBACKS, TARGET, lay_out_folds, synthetic_mart
from training.config import TrainConfig
from training.envs import ENV_KINDS, EnvSettings, fill_rule, make_env
from training.envs.batched_env import NativeVecEnv
from training.envs.fill_rule import Position
from training.envs.tensortrade_env import build_tensortrade_env
from training.fold_task import env_settings, prepare_fold
from training.market_data import FeatureScaler, MarketData, SymbolSeries, build_series

FEATURES = list(FEATURE_LOOKBACKS)
SETTINGS = EnvSettings.from_bps(
    window=10, initial_cash=10_000.0, commission_bps=10.0, slippage_bps=5.0, observation_clip=10.0
)


def frictionless(**fields) -> EnvSettings:
    """TrainConfig's environment settings without commission or slippage, with ``fields`` changed."""
    return dataclasses.replace(env_settings(TrainConfig()), **{"commission": 0.0, "slippage": 0.0, **fields})


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    """Every session of 4 symbols, with a `split` column from one fold's splits (gap rows dropped)."""
    frame = synthetic_mart(n_symbols=4, n_sessions=260, seed=11)
    (fold,) = lay_out_folds(frame["session_date"], folds=1, test_sessions=50, validation_sessions=50)
    labels = pd.Series(pd.NA, index=frame.index, dtype="object")
    for split in ("train", "validation", "test"):
        labels[fold.rows(frame, split).index] = split
    return frame.assign(split=labels)[labels.notna()].reset_index(drop=True)


def series_of(frame: pd.DataFrame, split: str = "train", scaler: FeatureScaler | None = None) -> list[SymbolSeries]:
    scaler = scaler or FeatureScaler.fit(frame[frame["split"] == "train"], FEATURES, clip=10.0)
    return build_series(frame[frame["split"] == split], split, scaler)


def tiny_series() -> SymbolSeries:
    """Five sessions with distinct opens and closes, so a fill at the wrong price cannot go unnoticed."""
    return SymbolSeries(
        symbol="TEST",
        split="train",
        dates=np.array(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"], dtype="datetime64[D]"),
        open=np.array([10.0, 11.0, 12.0, 13.0, 14.0]),
        close=np.array([10.5, 11.5, 12.5, 13.5, 14.5]),
        features=np.arange(10, dtype=np.float32).reshape(5, 2) / 10,
    )


def run_episode(env, actions, symbol: str | None = None):
    """Observations, rewards and infos of one episode driven by ``actions`` (cycled)."""
    obs, info = env.reset(seed=0, options={"symbol": symbol} if symbol else None)
    observations, rewards, infos = [obs], [], [info]
    done, step = False, 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(actions[step % len(actions)])
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        done, step = terminated or truncated, step + 1
    return observations, np.array(rewards), infos


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_fill_rule_by_hand(kind: str) -> None:
    """Long at t fills at open[t+1]*(1+slippage), marks at close[t+1]; flat fills at open*(1-slippage)."""
    commission, slippage, cash = 0.001, 0.002, 1_000.0
    settings = frictionless(window=2, initial_cash=cash, commission=commission, slippage=slippage)
    env = make_env(kind, [tiny_series()], settings)
    _, info = env.reset(seed=0)
    assert info["session_index"] == 1 and info["net_worth"] == cash and info["position"] == Position.FLAT

    # Decide long at session 1: buy at the open of session 2, mark at its close.
    _, reward, terminated, truncated, info = env.step(Position.LONG)
    shares = cash * (1 - commission) / (12.0 * (1 + slippage))
    assert info["session_index"] == 2 and info["position"] == Position.LONG
    assert info["net_worth"] == pytest.approx(shares * 12.5, rel=1e-12)
    assert reward == pytest.approx(math.log(shares * 12.5 / cash), rel=1e-12)
    assert not terminated and not truncated

    # Hold through session 3.
    _, reward, _, truncated, info = env.step(Position.LONG)
    assert info["net_worth"] == pytest.approx(shares * 13.5, rel=1e-12)
    assert reward == pytest.approx(math.log(13.5 / 12.5), rel=1e-12)
    assert not truncated

    # Decide flat at session 3: sell at the open of session 4; the data ends there (N - window = 3 steps).
    _, reward, terminated, truncated, info = env.step(Position.FLAT)
    proceeds = shares * (1 - commission) * (14.0 * (1 - slippage))
    assert info["net_worth"] == pytest.approx(proceeds, rel=1e-12)
    assert reward == pytest.approx(math.log(proceeds / (shares * 13.5)), rel=1e-12)
    assert info["session_index"] == 4 and info["position"] == Position.FLAT
    assert truncated and not terminated


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_observation_is_the_window_ending_at_the_decision_session(kind: str) -> None:
    series = tiny_series()
    env = make_env(kind, [series], frictionless(window=3))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.append(series.features[0:3].ravel(), 0.0).astype(np.float32))
    obs, *_ = env.step(Position.LONG)
    np.testing.assert_array_equal(obs, np.append(series.features[1:4].ravel(), 1.0).astype(np.float32))


@pytest.mark.parametrize(
    "commission_bps, slippage_bps, initial_cash",
    [(0.0, 0.0, 10_000.0), (1.0, 5.0, 10_000.0), (25.0, 50.0, 10_000.0), (1.0, 5.0, 1e8)],
)
def test_native_and_tensortrade_agree(
    mart: pd.DataFrame, commission_bps: float, slippage_bps: float, initial_cash: float
) -> None:
    """Same actions on the same data: same observations, net-worth path and rewards (relative error < 1e-9)."""
    settings = EnvSettings.from_bps(10, initial_cash, commission_bps, slippage_bps, 10.0)
    series = series_of(mart)
    native, tensortrade = make_env("native", series, settings), make_env("tensortrade", series, settings)
    rng = np.random.default_rng(5)
    action_sequences = {
        "random": rng.integers(0, 2, 500).tolist(),
        "alternating": [1, 0],
        "buy_and_hold": [1],
        "flat": [0],
        "runs": [1, 1, 1, 0, 0, 1, 0, 0, 0, 1],
    }
    for name, actions in action_sequences.items():
        for symbol in (s.symbol for s in series):
            obs_a, rewards_a, infos_a = run_episode(native, actions, symbol)
            obs_b, rewards_b, infos_b = run_episode(tensortrade, actions, symbol)
            assert len(rewards_a) == len(rewards_b) == len(series[0]) - settings.window
            for a, b in zip(obs_a, obs_b, strict=True):
                np.testing.assert_array_equal(a, b)
            worth_a = np.array([info["net_worth"] for info in infos_a])
            worth_b = np.array([info["net_worth"] for info in infos_b])
            assert np.max(np.abs(worth_a / worth_b - 1)) < 1e-9, (name, symbol)
            assert np.max(np.abs(rewards_a - rewards_b)) < 1e-9, (name, symbol)
            assert [i["position"] for i in infos_a] == [i["position"] for i in infos_b]
            assert [i["session_index"] for i in infos_a] == [i["session_index"] for i in infos_b]


def test_both_sample_the_same_symbols_from_the_same_seed(mart: pd.DataFrame) -> None:
    series = series_of(mart)
    native, tensortrade = make_env("native", series, SETTINGS), make_env("tensortrade", series, SETTINGS)
    picks = {
        kind: [env.reset(seed=seed)[1]["symbol"] for seed in range(20)]
        for kind, env in (("native", native), ("tensortrade", tensortrade))
    }
    assert picks["native"] == picks["tensortrade"]
    assert len(set(picks["native"])) > 1  # the seed actually chooses


def _checked_without_warnings(env) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    return [str(warning.message) for warning in caught]


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_env_checkers_pass_without_warnings(mart: pd.DataFrame, kind: str) -> None:
    env = make_env(kind, series_of(mart), SETTINGS)
    assert _checked_without_warnings(env) == []
    assert np.all(np.isfinite(env.observation_space.low)) and np.all(np.isfinite(env.observation_space.high))


def test_patched_tensortrade_env_itself_passes_the_checkers(mart: pd.DataFrame) -> None:
    """The TradingEnv subclass (render_mode, close, bounds, flat observations fixed), not only our wrapper."""
    env = build_tensortrade_env(series_of(mart)[0], SETTINGS)
    assert env.render_mode is None
    assert _checked_without_warnings(env) == []
    env.close()  # upstream raises AttributeError without a plotter


def test_tensortrade_envs_in_one_process_keep_their_own_clocks(mart: pd.DataFrame) -> None:
    """Upstream shares one global clock between environments; interleaved stepping must not change results."""
    series = series_of(mart)
    alone = make_env("tensortrade", series, SETTINGS)
    _, rewards_alone, _ = run_episode(alone, [1, 0, 0, 1], series[0].symbol)
    first, second = make_env("tensortrade", series, SETTINGS), make_env("tensortrade", series, SETTINGS)
    first.reset(seed=0, options={"symbol": series[0].symbol})
    second.reset(seed=0, options={"symbol": series[1].symbol})
    rewards, done, step = [], False, 0
    while not done:
        _, reward, _, done, info = first.step([1, 0, 0, 1][step % 4])
        second.step(step % 2)
        rewards.append(reward)
        step += 1
    assert first._env.clock.step == step and second._env.clock.step == step
    np.testing.assert_allclose(rewards, rewards_alone, rtol=0, atol=1e-12)


def _training_observations(frame: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """Every observation the training and evaluation environments can produce for one fold of ``frame``.

    The path a task takes: mart rows -> MarketData -> prepare_fold (scaler fitted on train) -> batched environment.
    """
    (fold,) = lay_out_folds(frame["session_date"], folds=1, test_sessions=50, validation_sessions=50)
    config = TrainConfig(window=SETTINGS.window)
    fold_series = prepare_fold(MarketData.from_frame(frame, feature_names), fold, config)
    observations = []
    for series in fold_series.series.values():
        env = NativeVecEnv(series, SETTINGS, n_envs=1)
        observations.append(env.market.windows)
    return np.concatenate(observations)


def test_the_target_never_reaches_an_observation() -> None:
    """Scramble the target of the mart's rows: no observation of any split may change.

    The positive control below leaks the target on purpose (as if the mart YAML listed it as a feature) and the
    same comparison sees it, so this test fails whenever the target reaches an observation.
    """
    frame = synthetic_mart(n_symbols=3, n_sessions=260, seed=12)
    scrambled = frame.assign(**{TARGET: np.random.default_rng(0).normal(0, 1, len(frame))})
    np.testing.assert_array_equal(_training_observations(frame, FEATURES), _training_observations(scrambled, FEATURES))
    leaking = [*FEATURES, TARGET]
    assert not np.array_equal(_training_observations(frame, leaking), _training_observations(scrambled, leaking))


def test_market_data_for_tasks_carries_no_target() -> None:
    frame = synthetic_mart(n_symbols=2, n_sessions=120, seed=13)
    data = MarketData.from_frame(frame, FEATURES)
    assert TARGET not in data.frame.columns
    assert list(data.frame.columns) == ["symbol", "session_date", "open", "close", *FEATURES]


def _perturb_after(frame: pd.DataFrame, split: str, symbol: str, cutoff: np.datetime64) -> pd.DataFrame:
    """Every column of the symbol's rows after ``cutoff`` in ``split`` replaced by something else."""
    changed = frame.copy()
    later = (
        (changed["symbol"] == symbol)
        & (changed["split"] == split)
        & (pd.to_datetime(changed["session_date"]).to_numpy(dtype="datetime64[D]") > cutoff)
    )
    rng = np.random.default_rng(2)
    for column in [*FEATURES, "open", "high", "low", "close", "volume", TARGET]:
        changed.loc[later, column] = changed.loc[later, column] * rng.uniform(0.5, 1.5, int(later.sum())) + 0.01
    return changed


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_a_later_bar_changes_no_observation_at_or_before_its_session(mart: pd.DataFrame, kind: str) -> None:
    """Perturb all bars after session t; observations and rewards up to t are identical.

    On validation the whole pipeline is rerun on the perturbed mart (scaler fitted on train, as in training).
    On train the scaler is held fixed: it is fitted on the train split like the policy's weights, but the
    environment itself must still be causal.
    """
    actions = np.random.default_rng(3).integers(0, 2, 300).tolist()
    original_scaler = FeatureScaler.fit(mart[mart["split"] == "train"], FEATURES, clip=10.0)
    for split in ("validation", "train"):
        symbol = str(mart["symbol"].iloc[0])
        dates = series_of(mart, split)[0].dates
        for t in (SETTINGS.window - 1, SETTINGS.window + 4, len(dates) - 3):
            changed = _perturb_after(mart, split, symbol, dates[t])
            scaler = None if split == "validation" else original_scaler
            obs_a, rewards_a, infos_a = run_episode(
                make_env(kind, series_of(mart, split, scaler), SETTINGS), actions, symbol
            )
            obs_b, rewards_b, infos_b = run_episode(
                make_env(kind, series_of(changed, split, scaler), SETTINGS), actions, symbol
            )
            sessions = [info["session_index"] for info in infos_a]
            upto = sessions.index(t) + 1  # observations of sessions <= t (the reset one is session window-1)
            for a, b in zip(obs_a[:upto], obs_b[:upto], strict=True):
                np.testing.assert_array_equal(a, b)
            # Rewards of the steps that end at or before t (those fill and mark within sessions <= t).
            np.testing.assert_array_equal(rewards_a[: upto - 1], rewards_b[: upto - 1])
            # ...and the perturbation is visible right after t, so the comparison above can fail.
            assert not np.array_equal(obs_a[upto], obs_b[upto])


def test_series_never_carry_the_target(mart: pd.DataFrame) -> None:
    scaler = FeatureScaler.fit(mart[mart["split"] == "train"], FEATURES, clip=10.0)
    assert TARGET not in scaler.feature_names
    assert series_of(mart)[0].features.shape[1] == len(FEATURES)


def test_features_are_clipped_to_the_observation_bounds(mart: pd.DataFrame) -> None:
    extreme = mart.copy()
    extreme.loc[extreme.index[5], "volume_zscore_20"] = 1e9
    series = series_of(extreme, scaler=FeatureScaler.fit(mart[mart["split"] == "train"], FEATURES, clip=3.0))
    env = make_env("native", series, frictionless(window=10, observation_clip=3.0))
    observations, _, _ = run_episode(env, [1, 0], series[0].symbol)
    assert all(env.observation_space.contains(obs) for obs in observations)
    assert max(float(np.max(obs[:-1])) for obs in observations) == pytest.approx(3.0)


def test_the_scaler_standardises_with_the_train_mean_and_deviation_by_hand() -> None:
    """(x - mean) / std of the rows it was fitted on (population std; a constant feature divides by 1), clipped."""
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [5.0, 5.0, 5.0, 5.0]})
    scaler = FeatureScaler.fit(train, ["a", "b"], clip=1.5)
    std = math.sqrt(1.25)
    np.testing.assert_array_equal(scaler.mean, [2.5, 5.0])
    np.testing.assert_allclose(scaler.std, [std, 1.0], rtol=1e-15)
    scaled = scaler.transform(np.array([[2.5 + std, 6.0], [2.5 - 0.5 * std, 5.0], [100.0, -100.0]]))
    np.testing.assert_allclose(scaled, [[1.0, 1.0], [-0.5, 0.0], [1.5, -1.5]], rtol=1e-6)


def test_series_too_short_for_the_window_are_rejected() -> None:
    with pytest.raises(ValueError, match="shorter than window"):
        make_env("native", [tiny_series()], frictionless(window=5))


def _trajectory(env, steps: int = 300, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Observations, rewards, dones and infos of ``steps`` vector steps with seeded random actions."""
    env.seed(seed)
    observations, rewards, dones, infos = [env.reset()], [], [], []
    actions = np.random.default_rng(seed).integers(0, 2, size=(steps, env.num_envs))
    for action in actions:
        obs, reward, done, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        dones.append(done)
        infos.append(info)
    env.close()
    return np.stack(observations), np.stack(rewards), np.stack(dones), infos


def _short_and_long_series(mart: pd.DataFrame) -> list[SymbolSeries]:
    """Series of different lengths (a symbol listed later), so episodes end at different steps."""
    series = series_of(mart)
    late = series[1]
    series[1] = SymbolSeries(
        late.symbol, late.split, late.dates[40:], late.open[40:], late.close[40:], late.features[40:]
    )
    return series


def test_batched_vec_env_is_a_dummy_vec_env_of_native_envs(mart: pd.DataFrame) -> None:
    """Same seeds, same actions: same observations, rewards, episode ends, symbols, net worths and Monitor stats."""
    series = _short_and_long_series(mart)
    batched = _trajectory(NativeVecEnv(series, SETTINGS, n_envs=5))
    dummy = _trajectory(
        make_vec_env(make_env, n_envs=5, env_kwargs={"kind": "native", "series": series, "settings": SETTINGS})
    )
    for a, b in zip(batched[:3], dummy[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    assert batched[2].sum() > 5  # episodes ended (and restarted on new symbols) along the way
    for step_a, step_b in zip(batched[3], dummy[3], strict=True):
        for a, b in zip(step_a, step_b, strict=True):
            assert (a["symbol"], a["net_worth"], a["position"], a["TimeLimit.truncated"]) == (
                b["symbol"],
                b["net_worth"],
                b["position"],
                b["TimeLimit.truncated"],
            )
            assert ("terminal_observation" in a) == ("terminal_observation" in b)
            if "terminal_observation" in b:
                np.testing.assert_array_equal(a["terminal_observation"], b["terminal_observation"])
                assert (a["episode"]["r"], a["episode"]["l"]) == (b["episode"]["r"], b["episode"]["l"])


@pytest.mark.parametrize("vec_env_class", [DummyVecEnv, SubprocVecEnv])
def test_sb3_vector_envs_over_either_environment_see_the_same_episodes(mart: pd.DataFrame, vec_env_class: type) -> None:
    """--vec-env dummy|subproc (SB3's make_vec_env) replay the batched environment's episodes, native or TensorTrade."""
    series = series_of(mart)
    reference = _trajectory(NativeVecEnv(series, SETTINGS, n_envs=2), steps=120)
    kind = "tensortrade" if vec_env_class is DummyVecEnv else "native"
    other = _trajectory(
        make_vec_env(
            make_env,
            n_envs=2,
            env_kwargs={"kind": kind, "series": series, "settings": SETTINGS},
            vec_env_cls=vec_env_class,
        ),
        steps=120,
    )
    np.testing.assert_array_equal(reference[0], other[0])
    np.testing.assert_allclose(reference[1], other[1], rtol=0, atol=1e-6)  # float32 rewards
    np.testing.assert_array_equal(reference[2], other[2])


def test_batched_vec_env_refuses_actions_outside_long_and_flat(mart: pd.DataFrame) -> None:
    env = NativeVecEnv(series_of(mart), SETTINGS, n_envs=2)
    env.reset()
    with pytest.raises(ValueError, match="0 \\(flat\\) or 1 \\(long\\)"):
        env.step(np.array([1, 2]))


def test_batched_vec_env_passes_sb3_checks(mart: pd.DataFrame) -> None:
    from stable_baselines3.common.vec_env.util import obs_space_info

    env = NativeVecEnv(series_of(mart), SETTINGS, n_envs=3)
    obs = env.reset()
    assert obs.shape == (3, *env.observation_space.shape) and obs.dtype == np.float32
    assert all(env.observation_space.contains(row) for row in obs)
    assert obs_space_info(env.observation_space)[1][None] == env.observation_space.shape
    assert env.env_is_wrapped(__import__("stable_baselines3").common.monitor.Monitor) == [True, True, True]


@pytest.mark.parametrize("kind", [*ENV_KINDS, "batched"])
def test_a_book_that_loses_everything_is_rewarded_a_finite_penalty_then_nothing(kind: str, mart: pd.DataFrame) -> None:
    """A commission a hair under 100% (--commission-bps 9999.99...) takes the book to exactly 0 within some twenty
    trades. log(0) was a math domain error in the single environments, and -inf then NaN (0/0) in the batched one: one
    such reward turns PPO's networks into NaN. A net worth under RUIN_NET_WORTH counts as that much: the rewards until
    the ruin are finite, every one after it 0."""
    (series,) = series_of(mart)[:1]
    settings = dataclasses.replace(SETTINGS, commission=1.0 - 2.0**-52)  # every trade keeps 2e-16 of the book
    if kind == "batched":
        env, worth, rewards = NativeVecEnv([series], settings, n_envs=1), [], []
        env.reset()
        for step in range(60):  # long, flat, long, ...: a trade every session
            _, reward, _, infos = env.step(np.array([Position.LONG if step % 2 == 0 else Position.FLAT]))
            rewards.append(float(reward[0]))
            worth.append(infos[0]["net_worth"])
    else:
        _, rewards, infos = run_episode(make_env(kind, [series], settings), [Position.LONG, Position.FLAT])
        worth = [info["net_worth"] for info in infos[1:]]
    ruin = worth.index(0.0)
    assert np.isfinite(rewards).all()
    # Log rewards add up: the episode's reward until the ruin is log(RUIN_NET_WORTH / initial cash), about -700.
    assert sum(rewards[: ruin + 1]) == pytest.approx(math.log(fill_rule.RUIN_NET_WORTH / settings.initial_cash))
    assert not any(rewards[ruin + 1 :])


def test_training_leaves_no_empty_log_folder_in_the_temporary_directory(
    mart: pd.DataFrame, tmp_path, monkeypatch
) -> None:
    """SB3's default logger, silent at verbose 0, created an empty /tmp/SB3-<date> folder at every learn(): one per
    fold x seed task, hundreds after a few sweeps. Without TensorBoard the model logs nowhere."""
    from training.ppo import build_model, learn, make_training_env

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    config = TrainConfig(n_envs=2, n_steps=32, batch_size=32, n_epochs=1)
    model = build_model(config, make_training_env(config, series_of(mart), SETTINGS), seed=3)
    learn(model, timesteps=64)
    assert model.num_timesteps >= 64
    assert list(tmp_path.glob("SB3-*")) == []
