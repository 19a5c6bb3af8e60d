"""Landing speed: the prototype's executemany vs our landing path vs a server-side COPY FROM file (the ceiling).

All three land the same bars into the same ``raw.ibkr_bars`` table (with its watermark index) of a scratch
database in the embedded warehouse. Targets: ours >= 10x executemany, and within 2x of server-side COPY.

    python bench/bench_landing.py [--sizes 50000 1000000] [--repeats 3]
"""

from __future__ import annotations

import csv
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common
import psycopg2

from command_line import OneLineParser, positive_int
from devtools.scratch_database import scratch_database
from ingest.landing import Batch, land_batch, new_load_id, utc_now
from ingest.raw_tables import IBKR_BARS, BarSettings, RawBar, open_for_landing
from warehouse_db import connect


def make_bars(n: int) -> list[RawBar]:
    """n distinct one-minute bars over 500 symbols, deterministic."""
    start = datetime(2020, 1, 1, 14, 30, tzinfo=UTC)
    rows = []
    for i in range(n):
        t = start + timedelta(minutes=i // 500)
        price = 10.0 + (i % 997) / 100
        rows.append(
            RawBar(
                symbol=f"S{i % 500:03d}",
                bar_time=t,
                session_date=t.date(),
                open=price,
                high=price + 0.5,
                low=price - 0.5,
                close=price + 0.1,
                volume=1000.0 + i % 50,
                wap=price,
                bar_count=7,
                con_id=1000 + i % 500,
                exchange="SMART",
                currency="USD",
            )
        )
    return rows


def main() -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="runs per method and size; the best is reported"
    )
    args = parser.parse_args()

    with scratch_database("bench_landing") as settings:
        open_for_landing(settings).close()
        # The full raw row: the source's columns, then the bar settings and lineage (their order in IBKR_BARS).
        all_columns = IBKR_BARS.column_names
        print(
            f"{'bars':>10} {'executemany':>12} {'ours':>8} {'server COPY':>12} {'ours/execmany':>14} {'ours/COPY':>10}"
        )
        for n in args.sizes:
            bars = make_bars(n)
            load_id = new_load_id()
            full_rows = [
                bar + ("1 min", "TRADES", True, "bench", str(load_id), str(load_id), utc_now()) for bar in bars
            ]

            def reset() -> None:
                with connect(settings, autocommit=True) as conn:
                    conn.execute("truncate raw.ibkr_bars, raw.load_batches")
                    conn.execute("vacuum analyze raw.ibkr_bars")

            def prototype_executemany(full_rows: list[tuple] = full_rows) -> None:
                # The prototype's way: psycopg2 executemany of an INSERT per row.
                pg2 = psycopg2.connect(**settings.connect_kwargs())
                with pg2, pg2.cursor() as cur:
                    placeholders = ", ".join(["%s"] * len(all_columns))
                    cur.executemany(
                        f"insert into raw.ibkr_bars ({', '.join(all_columns)}) values ({placeholders})", full_rows
                    )
                pg2.close()

            def ours(bars: list[tuple] = bars) -> None:
                with connect(settings) as conn:
                    batch = Batch("MANY", BarSettings(bar_size="1 min"), "ok", utc_now())
                    land_batch(conn, load_id=new_load_id(), source="bench", batch=batch, bars=bars)

            with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent / ".warehouse") as tmp:
                os.chmod(tmp, 0o755)  # the server runs as its own OS user when we are root
                path = Path(tmp) / "bars.csv"
                with path.open("w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerows(full_rows)
                os.chmod(path, 0o644)

                def server_copy(path: Path = path) -> None:
                    with connect(settings) as conn:
                        conn.execute(f"copy raw.ibkr_bars ({', '.join(all_columns)}) from '{path}' (format csv)")
                        conn.commit()

                # executemany is slow (tens of seconds at 1M): measure it once at large sizes.
                t_exec = _common.best_of(1 if n > 100_000 else args.repeats, prototype_executemany, reset)
                t_ours = _common.best_of(args.repeats, ours, reset)
                t_copy = _common.best_of(args.repeats, server_copy, reset)
            print(
                f"{n:>10} {t_exec:>11.2f}s {t_ours:>7.2f}s {t_copy:>11.2f}s {t_exec / t_ours:>13.1f}x {t_ours / t_copy:>9.2f}x",
                flush=True,
            )
        print("targets: ours/execmany >= 10x, ours/COPY <= 2x")


if __name__ == "__main__":
    main()
