"""Find pieces of a secret in text: tests check that no output, message or log shows any part of a password."""

from __future__ import annotations

from collections.abc import Iterable


def leaked_fragments(text: str, secrets: Iterable[str], length: int = 4) -> list[str]:
    """Every ``length``-character piece of a secret that occurs in ``text`` (empty: nothing leaked).

    Whole secrets shorter than ``length`` are looked for as they are. Choose test secrets whose pieces do not
    occur by chance in ordinary output (mix letters, digits and punctuation).
    """
    found = []
    for secret in secrets:
        pieces = {secret[i : i + length] for i in range(max(1, len(secret) - length + 1))}
        found += sorted(piece for piece in pieces if piece in text)
    return found
