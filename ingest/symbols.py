"""Ticker symbols: the one pattern every source and the watchlist must match, and its normal form.

Normal form is IBKR's own spelling: upper case, and a class-share suffix separated by a space
(``BRK B``). ``BRK.B`` and ``brk b`` are accepted and normalised to ``BRK B``; anything else, such as
quotes, semicolons, control characters or non-ASCII letters, is rejected, so a symbol can never carry SQL
or odd bytes into the warehouse. dbt's staging model applies the same pattern (var ``symbol_pattern``
in dbt_project.yml); ``tests/test_symbols_and_watchlist.py`` checks that both agree.
"""

from __future__ import annotations

import re

SYMBOL_PATTERN = r"^[A-Z][A-Z0-9]{0,5}([ .][A-Z]{1,2})?$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)


class InvalidSymbolError(ValueError):
    """A symbol that does not match :data:`SYMBOL_PATTERN`."""


def normalize_symbol(raw: str) -> str:
    """Trim, upper-case and spell class shares with a space; raise InvalidSymbolError if it isn't a ticker."""
    candidate = raw.strip()
    # Check ASCII before upper-casing: "ß".upper() is "SS", which would otherwise pass.
    if not candidate.isascii() or not _SYMBOL_RE.fullmatch(candidate.upper()):
        raise InvalidSymbolError(
            f"invalid symbol {raw!r}: expected 1-6 letters/digits starting with a letter, "
            "optionally a class suffix like 'BRK B' or 'BRK.B'"
        )
    return candidate.upper().replace(".", " ")
