"""Loading bars into the warehouse's raw schema: ``python -m ingest`` (see ingest/cli.py)."""

from command_line import interrupts_in_one_line, utf8_where_the_locale_is_ascii

utf8_where_the_locale_is_ascii()  # before anything reads a path (LC_ALL=C PYTHONUTF8=0)
interrupts_in_one_line()  # `python -m ingest` imports ib_async and psycopg before its own handling
