"""Trading environments: ``native`` (NumPy) and ``tensortrade`` (tensortrade-ng), with the same semantics.

The semantics are stated once, in :mod:`training.envs.fill_rule`; the observation layout in :mod:`training.envs.spaces`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import gymnasium

from training.config import EnvKind
from training.envs.spaces import EnvSettings
from training.market_data import SymbolSeries

ENV_KINDS: tuple[str, ...] = get_args(EnvKind)  # the config's Literal is the one list


def make_env(kind: str, series: Sequence[SymbolSeries], settings: EnvSettings) -> gymnasium.Env:
    """An environment of ``kind`` over ``series`` (one symbol per episode)."""
    if kind == "native":
        from training.envs.native_env import NativeTradingEnv

        return NativeTradingEnv(series, settings)
    if kind == "tensortrade":
        # Imported only when asked for: tensortrade-ng pulls in IPython and plotting libraries.
        from training.envs.tensortrade_env import TensorTradeEnv

        return TensorTradeEnv(series, settings)
    raise ValueError(f"unknown environment kind {kind!r}; expected one of {ENV_KINDS}")


__all__ = ["ENV_KINDS", "EnvSettings", "make_env"]
