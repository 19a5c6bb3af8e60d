"""The Interactive Brokers source: plan what is missing, fetch it through ib_async within IBKR's pacing
rules, and land each symbol's bars atomically in ``raw``.

Modules (each small, named for what it does):

* :mod:`ingest.ibkr.config`   -- ``IbkrSettings`` (gateway address, client id, timeouts) from ``.env``, checked.
* :mod:`ingest.ibkr.options`  -- ``LoadOptions`` (what to load), checked on construction.
* :mod:`ingest.ibkr.bar_sizes` -- IBKR bar sizes, their page sizes and duration strings.
* :mod:`ingest.ibkr.planner`  -- pure: warehouse coverage + now + months -> requests per symbol, with the reason.
* :mod:`ingest.ibkr.pacing`   -- pure limiter (injectable clock) that keeps to IBKR's historical-data rules,
  and the estimate of how long a plan takes under them.
* :mod:`ingest.ibkr.fetcher`  -- the ib_async session: connect, qualify, request, retry, reconnect.
* :mod:`ingest.ibkr.handshake` -- what the client heard while it connected, and why a connect failed.
* :mod:`ingest.ibkr.in_flight` -- the session's requests in flight: whose error is whose, and ending the wait for
  one whose fate is known early.
* :mod:`ingest.ibkr.session_types` -- what the session is given and hands back (contract, bars, outcome, retry
  policy) and the errors it raises.
* :mod:`ingest.ibkr.gateway_errors` -- pure: what IBKR's error codes and messages mean (a notice, pacing, no data,
  a market-data refusal and its advice).
* :mod:`ingest.ibkr.decode_errors` -- which request an answer the client library could not decode belonged to.
* :mod:`ingest.ibkr.client_library` -- ib_async, or ib_insync for the compat check, and how much it logs.
* :mod:`ingest.ibkr.readjustment` -- pure: re-delivered bars vs stored ones, a re-adjusted history (a split)?
* :mod:`ingest.ibkr.loader`   -- orchestration: coverage -> plan -> fetch -> land, progress and summary.
* :mod:`ingest.ibkr.compat_check` -- the same client path, runnable under ib_insync 0.9.86 as well.

What lands is :mod:`ingest.raw_tables`, how it lands :mod:`ingest.landing`, what the plan reads back
:mod:`ingest.raw_reads`; which bars are final, :mod:`ingest.sessions`.

This package's ``__init__`` imports nothing, so that :mod:`ingest.ibkr.fetcher` can be imported in a venv
that has only ``ib_insync`` (see :mod:`ingest.ibkr.compat_check`).
"""
