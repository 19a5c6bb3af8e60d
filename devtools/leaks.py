"""Find pieces of a secret in text and files: tests check that no output, message, log, or file a run leaves behind
shows any part of a password."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

_HEX_ONLY = re.compile(r"[%0-9A-Fa-f+]+")


def _pieces(text: str, length: int) -> set[str]:
    return {text[i : i + length] for i in range(max(1, len(text) - length + 1))}


def secret_pieces(secret: str, length: int = 4) -> set[str]:
    """The ``length``-character pieces of ``secret`` and of its percent-encoded forms (a URL that carries it:
    ``%23`` for ``#``, ``%20`` or ``+`` for a space), leaving out encoded pieces made only of ``%``, hex digits and
    ``+``, which any encoded text holds, and so do numbers and timestamps (``@3 `` encoded is ``%403+``, and
    ``04:38:33.403+00`` holds ``403+``)."""
    encoded = {quote(secret, safe=""), quote(secret), quote_plus(secret)} - {secret}
    pieces = {piece for form in encoded for piece in _pieces(form, length) if not _HEX_ONLY.fullmatch(piece)}
    return _pieces(secret, length) | pieces


def leaked_fragments(text: str, secrets: Iterable[str], length: int = 4) -> list[str]:
    """Every ``length``-character piece of a secret, as it is or percent-encoded, that occurs in ``text`` (empty:
    nothing leaked).

    Whole secrets shorter than ``length`` are looked for as they are. Choose test secrets whose pieces do not
    occur by chance in ordinary output (mix letters, digits and punctuation).
    """
    found = []
    for secret in secrets:
        found += sorted(piece for piece in secret_pieces(secret, length) if piece in text)
    return found


_BASE64_BLOB = re.compile(rb"base64,[A-Za-z0-9+/=\s]+")


def files_with_fragments(
    root: Path, secrets: Iterable[str], skip: Iterable[Path] = (), length: int = 4
) -> dict[str, list[str]]:
    """Every file under ``root`` (for a zip archive: every member) that holds a ``length``-character piece of a
    secret, by path relative to ``root``; ``skip`` names files meant to hold secrets (a 0600 passfile).

    Left out, as pieces occur in them by chance: base64 blobs (the images a report embeds: letters, digits and
    ``/``), and PyTorch's tensors in a model archive (``*.pth``: an optimizer's small floats are bytes such as
    ``27j%``).
    """
    secrets, skipped, found = list(secrets), {path.resolve() for path in skip}, {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.resolve() in skipped:
            continue
        name = str(path.relative_to(root))
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                contents = [(f"{name}:{member}", archive.read(member)) for member in archive.namelist()]
            contents = [(member, data) for member, data in contents if not member.endswith(".pth")]
        else:
            contents = [(name, path.read_bytes())]
        for member, data in contents:
            text = _BASE64_BLOB.sub(b"", data).decode("utf-8", "replace")
            if pieces := leaked_fragments(text, secrets, length):
                found[member] = pieces
    return found
