"""Which client library speaks to the gateway (ib_async, or ib_insync 0.9.86 for the compat check) and how much
it logs."""

from __future__ import annotations

import logging
from types import ModuleType


def client_library() -> ModuleType:
    """ib_async (the maintained successor); ib_insync when only that is installed (compat check)."""
    try:
        import ib_async as library
    except ImportError:  # pragma: no cover - exercised in the ib_insync venv
        import ib_insync as library  # type: ignore[no-redef]
    return library


def quiet_client_logs(level: int = logging.CRITICAL) -> None:
    """The client library logs every 162/200 at ERROR; the loader reports them itself."""
    for name in ("ib_async", "ib_insync"):
        logging.getLogger(name).setLevel(level)
