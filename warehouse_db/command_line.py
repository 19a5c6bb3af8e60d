"""What the project's commands share: argparse whose usage error is one line, like every other error they report,
and SIGTERM ending a command as Ctrl+C does."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import NoReturn

EXIT_USAGE = 2
"""argparse's own status for a usage error, which every command of the project documents as 'bad usage'."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors print ``error: <what>; see <prog> --help`` instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (kill, timeout, a scheduler cancelling the job) ends a command as Ctrl+C does: as a KeyboardInterrupt,
    which the command reports in one line with its 'interrupted' exit status (130)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
