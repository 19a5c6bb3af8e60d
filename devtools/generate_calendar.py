"""Write the NYSE (XNYS) session calendar seed, ``warehouse/seeds/xnys_sessions.csv``.

Reproducible: the output depends only on the pinned ``exchange_calendars`` version and the date range,
never on today's date. Run it again after upgrading exchange_calendars and commit the CSV if it changed:

    .venv/bin/python -m devtools.generate_calendar      # or: make calendar

``--check`` exits 1 when the committed CSV differs from what the script would write (for CI).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path

import pandas as pd

from market_calendar import EXCHANGE, FIRST_DAY, LAST_DAY_AT_LEAST, schedule
from warehouse_db.settings import REPO_ROOT

logger = logging.getLogger("generate_calendar")

START = FIRST_DAY.isoformat()
END = LAST_DAY_AT_LEAST.isoformat()
SEED_PATH = REPO_ROOT / "warehouse" / "seeds" / "xnys_sessions.csv"


def build_sessions(start: str = START, end: str = END) -> pd.DataFrame:
    """One row per NYSE session: its date, open and close (UTC) and whether it closes early."""
    sessions = schedule(start, end)
    frame = pd.DataFrame(
        {
            "session_date": sessions.index.strftime("%Y-%m-%d"),
            "open_at": sessions["open"].dt.strftime("%Y-%m-%d %H:%M:%S+00"),
            "close_at": sessions["close"].dt.strftime("%Y-%m-%d %H:%M:%S+00"),
            "is_half_day": sessions["is_half_day"].to_list(),
        }
    )
    if (
        frame.empty
        or frame["session_date"].iloc[0] > start[:4] + "-01-05"
        or frame["session_date"].iloc[-1] < end[:4] + "-12-24"
    ):
        raise RuntimeError(
            f"{EXCHANGE} calendar does not cover {start}..{end}: {frame['session_date'].iloc[[0, -1]].tolist()}"
        )
    return frame


def render_csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().replace("True", "true").replace("False", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=SEED_PATH)
    parser.add_argument("--start", default=START)
    parser.add_argument("--end", default=END)
    parser.add_argument("--check", action="store_true", help="compare with the existing file instead of writing it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    text = render_csv(build_sessions(args.start, args.end))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            logger.error("%s is out of date: run `make calendar`", args.output)
            return 1
        logger.info("%s is up to date", args.output)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    logger.info("wrote %d sessions to %s", text.count("\n") - 1, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
