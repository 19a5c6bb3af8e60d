"""Noticing that IBKR re-adjusted a symbol's history: re-delivered bars that differ from stored ones by one factor.

IBKR serves TRADES bars split-adjusted as of the day they are served: after a 10-for-1 split every earlier bar
comes back with a tenth of the price and ten times the volume. An incremental load re-asks only the latest
sessions (plus an overlap), so without a check the warehouse would keep years of bars in the old units next to
the new ones. :func:`detect_readjustment` compares the overlap: when *every* re-delivered bar differs from the
stored one by the same price factor, the history was re-based, and the loader re-fetches the symbol's whole
window in the same run. A late correction of a bar or two does not look like that and lands as a correction.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction

from ingest.raw_reads import StoredBar
from ingest.raw_tables import RawBar

MIN_FACTOR_CHANGE = 0.03
"""A factor within 3% of 1 is not a re-adjustment (splits start at 5-for-4; dividends are not in TRADES)."""
RELATIVE_TOLERANCE = 0.005
ABSOLUTE_TOLERANCE = 0.006
"""Prices are rounded to cents on both sides: allow that, scaled by the factor, plus half a percent."""
VOLUME_TOLERANCE = 0.1


@dataclass(frozen=True)
class Readjustment:
    """Re-delivered bars differ from the stored ones by ``factor`` (new price = factor x stored price)."""

    factor: float
    sessions: int
    first: date
    last: date
    volume_inverse: bool
    """Volumes moved by 1/factor, as they do in a split."""

    def describe(self) -> str:
        ratio = usual_split_ratio(self.factor)  # new shares per old share
        if ratio is None:
            event = f"a split or reverse split of about {1 / self.factor:.4g} new shares per old one"
        else:
            event = f"a {ratio.numerator}-for-{ratio.denominator} {'split' if ratio > 1 else 'reverse split'}"
        volumes = "volumes by the inverse" if self.volume_inverse else "volumes unchanged"
        return (
            f"history re-adjusted: {self.sessions} re-delivered bar(s) {self.first}..{self.last} differ from the "
            f"stored ones by price factor {self.factor:.6g} ({volumes}; looks like {event})"
        )


USUAL_SPLIT_RATIOS = tuple(
    Fraction(r)
    for r in (
        "5/4",
        "4/3",
        "3/2",
        "2",
        "5/2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "10",
        "15",
        "20",
        "25",
        "30",
        "40",
        "50",
        "100",
    )
)
"""New shares per old share of the splits companies usually make (and their inverses, for reverse splits)."""


def usual_split_ratio(factor: float, tolerance: float = 0.03) -> Fraction | None:
    """The usual split ratio (new shares per old share) whose price factor 1/ratio is within ``tolerance`` of ``factor``."""
    candidates = [*USUAL_SPLIT_RATIOS, *(1 / r for r in USUAL_SPLIT_RATIOS)]
    best = min(candidates, key=lambda r: abs(factor * float(r) - 1))
    return best if abs(factor * float(best) - 1) <= tolerance else None


def _priced(bar: RawBar | StoredBar) -> bool:
    """Whether a bar holds prices a factor can be read from: all four finite and above zero.

    ``raw`` keeps what a server sent, and a server may send a price of 0, -1, NaN or infinity (dbt's data tests flag
    such bars); compared, they would divide by zero or yield a NaN factor that looks like a re-adjustment on every run.
    """
    return all(math.isfinite(price) and price > 0 for price in (bar.open, bar.high, bar.low, bar.close))


def detect_readjustment(bars: Sequence[RawBar], stored: Mapping[datetime, StoredBar]) -> Readjustment | None:
    """The consistent price factor between re-delivered ``bars`` and ``stored`` ones (those with usable prices on
    both sides), or None."""
    pairs = [
        (bar, stored[bar.bar_time])
        for bar in bars
        if bar.bar_time in stored and _priced(bar) and _priced(stored[bar.bar_time])
    ]
    if not pairs:
        return None
    factor = statistics.median(new.close / old.close for new, old in pairs)
    if abs(factor - 1) < MIN_FACTOR_CHANGE:
        return None
    tolerance = ABSOLUTE_TOLERANCE * (1 + factor)
    for new, old in pairs:
        for new_price, old_price in (
            (new.open, old.open),
            (new.high, old.high),
            (new.low, old.low),
            (new.close, old.close),
        ):
            if abs(new_price - old_price * factor) > tolerance + RELATIVE_TOLERANCE * new_price:
                return None
    volume_pairs = [(new.volume, old.volume) for new, old in pairs if new.volume and old.volume]
    volume_inverse = bool(volume_pairs) and all(
        abs(new_volume * factor / old_volume - 1) <= VOLUME_TOLERANCE for new_volume, old_volume in volume_pairs
    )
    sessions = sorted(new.session_date for new, _ in pairs)
    return Readjustment(float(f"{factor:.6g}"), len(pairs), sessions[0], sessions[-1], volume_inverse)
