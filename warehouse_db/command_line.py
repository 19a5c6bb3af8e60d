"""argparse as the project's commands use it: a usage error is one line, like every other error they report."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USAGE = 2
"""argparse's own status for a usage error, which every command of the project documents as 'bad usage'."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors print ``error: <what>; see <prog> --help`` instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
