"""The bar-size settings IBKR accepts on the wire, read by the simulator on its own.

The product's bar-size model is ``ingest/ibkr/bar_sizes.py``. The simulator does not import it on purpose: it
stands in for IBKR, so it must judge what a client sends by IBKR's documented spellings, not by whatever the
client's own parser produces. Were both to share one table, a wrong spelling or length in it would be sent by
the loader and accepted by the simulator, and no test would notice. Hence this second, deliberately
independent reading, named for what it is: the strings IBKR's "valid bar sizes" table lists, with their length.
It knows lengths only as far as the simulator needs them (whole minutes and days for the bars it builds, and
whether a bar is 30 seconds or shorter for the pacing rules); a week and a month are simply "longer than a day".
"""

from __future__ import annotations

_SECONDS = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
    "1 day": 86400,
}
_LONGER_THAN_A_DAY = frozenset({"1 week", "1 month"})

WIRE_BAR_SIZES = (*_SECONDS, *sorted(_LONGER_THAN_A_DAY))
"""Every barSizeSetting IBKR's table lists, spelled as on the wire."""


def wire_bar_seconds(text: str) -> int | None:
    """Length in seconds of a barSizeSetting as IBKR spells it; None if IBKR would not accept the string.

    ``1 week`` and ``1 month`` report one second more than a day: the simulator only needs to know they are longer.
    """
    setting = " ".join(text.split())
    if setting in _LONGER_THAN_A_DAY:
        return _SECONDS["1 day"] + 1
    return _SECONDS.get(setting)
