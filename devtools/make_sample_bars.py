"""Write data/sample_bars.csv: a small bar file in the CSV source's format, for `make ingest SOURCE=csv`.

The bars come from the gateway simulator's generator (seed 7), on real NYSE sessions, so the sample and the
simulator agree. The range is fixed, so the file never changes unless this script does.

    .venv/bin/python -m devtools.make_sample_bars
"""

from __future__ import annotations

import csv
import datetime as dt

from gateway_simulator.bars import BarGenerator
from gateway_simulator.sessions import nyse_calendar
from warehouse_db.settings import REPO_ROOT

SYMBOLS = ("AAPL", "MSFT", "JPM", "XOM", "BRK B")
# Five years: enough history for the default walk-forward folds (marts.walk_forward_plan), so the sample trains.
FIRST, LAST = dt.date(2020, 11, 2), dt.date(2025, 10, 31)
OUTPUT = REPO_ROOT / "data" / "sample_bars.csv"


def main() -> None:
    calendar = nyse_calendar()
    generator = BarGenerator(seed=7, calendar=calendar)
    first = calendar.index_after(FIRST - dt.timedelta(days=1))
    last = calendar.index_on_or_before(LAST)
    with OUTPUT.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["symbol", "date", "open", "high", "low", "close", "volume", "wap", "bar_count"])
        for symbol in SYMBOLS:
            for bar in generator.daily(symbol, first, last):
                writer.writerow(
                    [
                        symbol,
                        bar.time.isoformat(),
                        f"{bar.open:.2f}",
                        f"{bar.high:.2f}",
                        f"{bar.low:.2f}",
                        f"{bar.close:.2f}",
                        bar.volume,
                        f"{bar.wap:.2f}",
                        bar.bar_count,
                    ]
                )
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
