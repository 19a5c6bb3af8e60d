"""Loading bars into the warehouse's raw schema: ``python -m ingest`` (see ingest/cli.py)."""

from command_line import interrupts_in_one_line

interrupts_in_one_line()  # `python -m ingest` imports ib_async and psycopg before its own handling
