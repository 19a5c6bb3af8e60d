"""The loader's gateway session against TWS-protocol peers that answer differently from our simulator.

Real gateways of other builds and third-party servers of the protocol (devtools.scripted_gateway) may send zero
bars instead of error 162, a warning before an answer that never comes, pacing violations as 420 or 322, a server
version outside the client's offer, or dates the client library cannot parse. Each test runs the real ib_async
client, through the loader's own ``IbkrSession``, against one such variant over loopback.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import ib_async
import pytest

from devtools.scripted_gateway import CLOSE, ScriptedGateway, bars, error, notice, one_stock
from gateway_simulator import protocol
from ingest.ibkr.client_library import quiet_client_logs
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.decode_errors import undecoded_request_id
from ingest.ibkr.fetcher import IbkrSession
from ingest.ibkr.gateway_errors import market_data_refusal
from ingest.ibkr.pacing import PacingLimiter, PacingPolicy
from ingest.ibkr.session_types import (
    ContractRef,
    GatewayUnavailableError,
    MarketDataRefusedError,
    Outcome,
    RetryPolicy,
)

pytestmark = pytest.mark.integration  # sockets and the real client library

DAYS = ["20240104", "20240105"]
AAPL = ContractRef("AAPL", 265598, "NASDAQ")
QUICK_RETRY = RetryPolicy(pacing_backoff_s=0.01, pacing_cooldown_s=0.01, timeout_retries=1)
PACING_162 = "Historical Market Data Service error message:Historical data request pacing violation"


def run_session(
    gateway: ScriptedGateway,
    action: Callable[[IbkrSession], Awaitable[Any]],
    retry: RetryPolicy = QUICK_RETRY,
    request_timeout_s: float = 0.5,
    connect_timeout_s: float = 5.0,
    reconnect_timeout_s: float = 60.0,
    burst_window_s: float = PacingPolicy.burst_window_s,
) -> tuple[Any, float, IbkrSession]:
    """(what ``action`` returned or raised, seconds it took, the session) against the scripted gateway."""

    async def scenario() -> tuple[Any, float, IbkrSession]:
        async with gateway.serving() as port:
            settings = IbkrSettings(
                port=port,
                client_id=5,
                connect_timeout_s=connect_timeout_s,
                request_timeout_s=request_timeout_s,
                reconnect_timeout_s=reconnect_timeout_s,
            )
            # Identical retries may follow each other at once here; the 15 s rule is the limiter's own test.
            policy = PacingPolicy(identical_window_s=0.01, margin_s=0.0, burst_window_s=burst_window_s)
            session = IbkrSession(settings, PacingLimiter(policy), retry)
            started = time.monotonic()
            try:
                result: Any = await action(session)
            except GatewayUnavailableError as failure:
                result = failure
            finally:
                await session.close()
            return result, time.monotonic() - started, session

    return asyncio.run(scenario())


async def fetch_daily(session: IbkrSession) -> Outcome:
    await session.connect()
    return await session.fetch(
        AAPL, end="", duration="5 D", bar_size="1 day", what_to_show="TRADES", use_rth=True, intraday=False
    )


def test_zero_bars_before_the_timeout_are_no_data_asked_once():
    gateway = ScriptedGateway(answer=lambda req_id, nth: [bars(req_id, [])])
    outcome, _, _ = run_session(gateway, fetch_daily, request_timeout_s=5.0)
    assert (outcome.status, outcome.attempts, outcome.error_code) == ("no_data", 1, None)
    assert len(gateway.historical_requests) == 1


@pytest.mark.parametrize(
    "code, text",
    [
        (2174, "Warning: You submitted request with date-time attributes without explicit time zone."),
        (165, "Historical Market Data Service query message:HMDS server connection was successful"),
    ],
)
def test_a_warning_before_a_silence_is_a_timeout_to_retry_not_a_failure(code, text):
    """The first request gets only the warning and no answer; the retry gets bars."""

    def answer(req_id: int, nth: int):
        return [error(req_id, code, text)] if nth == 1 else [bars(req_id, DAYS)]

    outcome, _, session = run_session(ScriptedGateway(answer=answer), fetch_daily)
    assert (outcome.status, outcome.attempts, len(outcome.bars)) == ("ok", 2, 2)
    assert session.stats.timeouts == 1


@pytest.mark.parametrize(
    "code, text, rolling_rule_from_then_on",
    [
        (420, "Invalid Real-time Query:Historical data request pacing violation", True),
        (162, PACING_162, True),
        # Too many requests open at once (other clients of the login count too): nothing to do with the 10-minute rule.
        (
            322,
            "Error processing request.-'bR' : cause - Only 50 simultaneous API historical data requests allowed.",
            False,
        ),
    ],
)
def test_every_pacing_code_is_retried(code, text, rolling_rule_from_then_on):
    def answer(req_id: int, nth: int):
        return [error(req_id, code, text)] if nth == 1 else [bars(req_id, DAYS)]

    outcome, _, session = run_session(ScriptedGateway(answer=answer), fetch_daily)
    assert (outcome.status, outcome.attempts) == ("ok", 2)
    assert session.stats.pacing_violations == 1
    # Daily bars are exempt from the 10-minute rule, but a server that says "pacing violation" enforces it.
    assert session.limiter.policy.strict == rolling_rule_from_then_on


def test_pacing_violations_are_retried_until_the_give_up_time_not_a_count_of_tries():
    def answer(req_id: int, nth: int):
        return [error(req_id, 162, PACING_162)] if nth <= 8 else [bars(req_id, DAYS)]

    patient = RetryPolicy(pacing_backoff_s=0.01, pacing_backoff_max_s=0.02, pacing_cooldown_s=0.0)
    # Nine tries of one contract: a short burst window (IBKR's: at most 5 in 2 s) keeps them from waiting 2 s on it.
    outcome, _, _ = run_session(ScriptedGateway(answer=answer), fetch_daily, retry=patient, burst_window_s=0.05)
    assert (outcome.status, outcome.attempts) == ("ok", 9)

    def always_refused(req_id: int, nth: int):
        return [error(req_id, 162, PACING_162)]

    impatient = RetryPolicy(pacing_give_up_s=0.3, pacing_backoff_s=0.05, pacing_backoff_max_s=0.05, pacing_cooldown_s=0)
    outcome, seconds, _ = run_session(
        ScriptedGateway(answer=always_refused), fetch_daily, retry=impatient, burst_window_s=0.05
    )
    assert (outcome.status, outcome.error_code) == ("failed", 162)
    assert "still refused" in outcome.error_message and outcome.attempts >= 3
    assert seconds < 5


def test_a_server_too_old_for_the_client_is_named_at_once():
    result, seconds, _ = run_session(ScriptedGateway(server_version=150), fetch_daily, connect_timeout_s=5.0)
    assert isinstance(result, GatewayUnavailableError)
    assert "version" in str(result) and "update IB Gateway/TWS" in str(result)
    assert seconds < 2  # not the whole connect timeout


def test_a_server_version_above_the_clients_offer_is_refused():
    highest = ib_async.client.Client.MaxClientVersion
    result, _, _ = run_session(ScriptedGateway(server_version=highest + 22), fetch_daily)
    assert isinstance(result, GatewayUnavailableError)
    assert f"API version {highest + 22}, above the highest this client offered ({highest})" in str(result)


@pytest.mark.parametrize(
    "gateway",
    [ScriptedGateway(closes_before_handshake=True), ScriptedGateway(resets_before_handshake=True)],
    ids=["closed", "reset"],
)
def test_a_connection_closed_before_the_handshake_is_named_at_once(gateway):
    """IB Gateway closes the connection of a host it does not accept, and a tunnel or proxy with no gateway behind it
    (ssh -L, socat) accepts and closes at once. The client library hears of a clean close without a word: the loader
    waited out the whole connect timeout, then said the host did not answer on that port, which it had. A peer that
    closes without reading the client's greeting resets the connection instead (the client says "connection reset by
    peer"), which was named as a refusal during the API start-up, with a client id in use among its causes, and
    without the tunnel or proxy."""
    result, seconds, _ = run_session(gateway, fetch_daily, connect_timeout_s=5.0)
    assert isinstance(result, GatewayUnavailableError)
    assert "the connection was accepted, then closed before the API handshake" in str(result)
    assert "Trusted IPs" in str(result) and "ssh -L" in str(result)
    assert "no gateway behind it that is running and logged in" in str(result)  # socat while IBC logs in
    assert seconds < 2


def test_the_close_of_a_connection_given_up_on_is_not_taken_for_the_next_ones(caplog):
    """The client library waits for a connection it gave up on to close before it opens the next: that close, heard
    while the next connection's handshake is awaited, is not the new connection closed before its handshake."""

    async def reconnect_over_an_open_socket(session: IbkrSession) -> Outcome:
        await session.connect()
        session.ib.client.reset()  # the library's state of a connection given up on, its socket still open
        assert session.ib.client.conn.transport is not None
        await session._ensure_connected()
        return await fetch_daily(session)

    gateway = ScriptedGateway(answer=lambda req_id, nth: [bars(req_id, DAYS)])
    with caplog.at_level(logging.WARNING, logger="ingest.ibkr.fetcher"):
        outcome, seconds, session = run_session(gateway, reconnect_over_an_open_socket)
    assert outcome.status == "ok" and session.stats.reconnects == 1
    assert seconds < 2  # nor does waiting for that close take the connect timeout (5 s)
    assert "reconnect failed" not in caplog.text


def test_a_client_id_in_use_is_named_at_once():
    result, seconds, _ = run_session(ScriptedGateway(client_id_in_use=True), fetch_daily, connect_timeout_s=5.0)
    assert isinstance(result, GatewayUnavailableError)
    assert "client id 5 is already in use" in str(result)
    assert seconds < 2


@pytest.mark.parametrize(
    ("gateway", "missing"),
    [
        (ScriptedGateway(accounts=""), "managed account"),
        (ScriptedGateway(sends_next_valid_id=False), "next valid order id"),
    ],
    ids=["no-account", "no-next-valid-id"],
)
def test_a_start_up_that_never_completes_after_the_handshake_says_what_is_missing(gateway, missing):
    """The client starts its session only once the gateway has sent a managed account and the next order id. A
    server that answers the handshake but never sends one of them was described as giving no API handshake at all
    (a closed port, the API disabled...), which it had given."""
    result, _, _ = run_session(gateway, fetch_daily, connect_timeout_s=1.0)
    assert isinstance(result, GatewayUnavailableError)
    assert f"answered the API handshake (server version 178) but sent no {missing} within 1 s" in str(result)


def test_another_service_on_the_port_is_named_with_what_it_answered():
    """A web server, or the Client Portal gateway's HTTPS port, where IBKR_PORT should name the TWS API: its answer
    to the client's greeting is shown, not a list of guesses that begins with "the host does not answer"."""
    web_server = ScriptedGateway(answers_greeting_with=b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
    result, _, _ = run_session(web_server, fetch_daily, connect_timeout_s=1.0)
    assert isinstance(result, GatewayUnavailableError)
    assert "does not speak the TWS API (it answered 'HTTP/1.1 400 Bad Request\\r\\nConnec'): check IBKR_PORT" in str(
        result
    )


def test_an_answer_the_client_cannot_decode_fails_its_request_at_once_and_is_not_asked_again():
    """ib_async drops the answer and would wait for its timeout, on every retry alike: the same answer never
    decodes. The request fails as the answer arrives, with the library's reason."""
    gateway = ScriptedGateway(answer=lambda req_id, nth: [bars(req_id, ["2024-01-04", "2024-01-05"])])
    outcome, seconds, session = run_session(gateway, fetch_daily, request_timeout_s=10.0)
    assert (outcome.status, outcome.error_code, outcome.attempts) == ("failed", None, 1)
    assert outcome.error_message.startswith("the client could not decode the gateway's answer (ValueError: time data")
    assert len(gateway.historical_requests) == 1 and session.stats.timeouts == 0
    assert seconds < 10


def test_an_undecodable_message_that_names_no_request_of_the_session_is_named_in_the_timeout():
    """Not attributable (an answer to an id the client no longer knows, as a late answer to a request it gave up on):
    the waiting request is not failed for it, but its timeout says what the client could not read."""
    gateway = ScriptedGateway(answer=lambda req_id, nth: [bars(req_id + 1000, ["20240104"], {"20240104": "x"})])
    outcome, _, _ = run_session(gateway, fetch_daily)
    assert outcome.status == "failed" and outcome.error_code is None
    assert outcome.error_message.startswith("timed out")
    assert "could not decode an answer (ValueError: could not convert string to float: 'x')" in outcome.error_message


@pytest.mark.parametrize(
    ("message", "req_id"),
    [
        ("Error handling fields: ['17', '7', '', '', '1', '2024-01-04', '1', '1', '1', '1', '1', '1', '1']", 7),
        ("Error handling fields: ['10', '12', 'AAPL', 'STK']", 12),
        ("Error handling fields: ['52', '1', 'x']", None),  # contractDataEnd: undecodable only when the id is not one
        ("Error handling fields: ['10', '12', \"Macy's\", 'a\\'b\"c']", 12),  # later fields in either quotes
        ("Error handling fields: [\"17\", '7']", 7),
        ("Error handling fields: ['8', '12', 'AAPL', 'STK']", None),  # contractData below 164: the 10 already dropped
        ("Error handling fields: ['4', '2', '7', '200', 'x']", None),  # not an answer this session asks for
        ("Error handling fields: ['17']", None),
        ("Error handling fields: ['17', 'x']", None),
        ("Error handling fields: [", None),
        ("something else went wrong", None),
    ],
)
def test_the_request_an_undecodable_message_answers_is_read_from_the_logged_fields(message, req_id):
    assert undecoded_request_id(message) == req_id


def test_the_request_id_of_a_huge_undecodable_answer_is_read_from_the_head_of_the_line():
    """The whole field list was parsed to read its first two items, on the event loop: a million-field answer (a long
    history) took some 3 s and a peak of ~1 GB. Only the line's head is read now, whatever the answer's size."""
    huge = "Error handling fields: " + repr(["17", "7", "", ""] + ["185.25"] * 1_000_000)
    long_first_field = "Error handling fields: " + repr(["1" * 1_000_000, "7"])
    tracemalloc.start()
    try:
        assert undecoded_request_id(huge) == 7
        assert undecoded_request_id(long_first_field) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # bytes; parsing the whole list peaked above 1e9


def test_a_contract_data_end_fails_to_decode_only_when_its_request_id_does_not_parse(caplog):
    """Why contractDataEnd (52) is not among the answers whose request id an undecodable message names: ib_async
    decodes nothing of it but the id, and a failure after decoding (the wrapper's own) is logged otherwise."""

    class Wrapper:
        def contractDetailsEnd(self, req_id: int) -> None:
            raise RuntimeError("the wrapper failed")

    decoder = ib_async.decoder.Decoder(Wrapper(), 178)
    with caplog.at_level(logging.ERROR, logger="ib_async.Decoder"):
        decoder.interpret(["52", "1", "9"])
        decoder.interpret(["52", "1"])
        decoder.interpret(["52", "1", "x"])
    handled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Error handling fields")]
    assert handled == ["Error handling fields: ['52', '1', 'x']"]
    assert undecoded_request_id(handled[0]) is None


def test_a_request_lost_in_an_ibkr_outage_is_retried_when_connectivity_returns():
    """1100 (IBKR unreachable, e.g. its nightly restart), then 1102: the lost request's timeout is not counted."""
    lost = "Connectivity between IB and Trader Workstation has been lost."
    restored = "Connectivity between IB and Trader Workstation has been restored - data maintained."

    def answer(req_id: int, nth: int):
        if nth == 1:
            return [error(-1, 1100, lost), 0.8, error(-1, 1102, restored)]
        return [bars(req_id, DAYS)]

    strict = RetryPolicy(timeout_retries=0)  # any counted timeout would fail the symbol
    outcome, seconds, session = run_session(ScriptedGateway(answer=answer), fetch_daily, retry=strict)
    assert (outcome.status, outcome.attempts) == ("ok", 2)
    assert session.stats.timeouts == 0
    assert seconds >= 0.8  # the retry waited for 1102, after the first attempt's 0.5 s timeout


def test_requests_that_time_out_while_ibkr_reports_an_outage_not_over_name_it_in_their_failure():
    """IBKR's connectivity lost (1100) and never restored, as over a weekend's maintenance: once the outage is waited
    out, lookups and requests go out and time out. Their failures said only "timed out" (in raw.load_batches and the
    summary, for every symbol), though the gateway had said why."""
    lost = "Connectivity between IB and Trader Workstation has been lost."

    async def lookup_and_fetch(session: IbkrSession) -> tuple[Any, Outcome]:
        await session.connect()
        return await session.qualify("AAPL", "NASDAQ"), await fetch_daily(session)

    gateway = ScriptedGateway(start_up_notices=[(1100, lost)], contracts=lambda req_id, request: [])
    (lookup, outcome), _, _ = run_session(gateway, lookup_and_fetch, reconnect_timeout_s=0.3, request_timeout_s=0.3)
    why = "; IBKR reported IBKR connectivity (1100) down and not restored since"
    assert (
        lookup.contract is None
        and lookup.error_message == f"timed out: no contract details within 0.3 s (2 tries){why}"
    )
    assert (outcome.status, outcome.error_message) == ("failed", f"timed out: no answer within 0.3 s (2 tries){why}")


def test_a_request_the_server_cancels_is_asked_again_not_taken_for_no_data():
    def answer(req_id: int, nth: int):
        if nth == 1:
            return [
                0.1,
                error(
                    req_id,
                    162,
                    f"Historical Market Data Service error message:API historical data query cancelled: {req_id}",
                ),
            ]
        return [bars(req_id, DAYS)]

    outcome, _, _ = run_session(ScriptedGateway(answer=answer), fetch_daily)
    assert (outcome.status, outcome.attempts, len(outcome.bars)) == ("ok", 2, 2)


def test_a_request_the_gateway_says_it_no_longer_knows_is_asked_again_not_taken_for_no_data():
    """366 "No historical data query found" for a request still open: the gateway lost it (ib_async ends it with an empty
    list at once). Taken for "no data", the symbol would count as current and its bars would never be asked for."""

    def answer(req_id: int, nth: int):
        return (
            [error(req_id, 366, f"No historical data query found for ticker id:{req_id}")]
            if nth == 1
            else [bars(req_id, DAYS)]
        )

    outcome, _, _ = run_session(ScriptedGateway(answer=answer), fetch_daily)
    assert (outcome.status, outcome.attempts, len(outcome.bars)) == ("ok", 2, 2)


@pytest.mark.parametrize(
    "code, text", [(366, "No historical data query found for ticker id:{}"), (162, protocol.text_query_cancelled(0))]
)
def test_a_request_the_gateway_ends_on_every_try_fails_with_its_code_not_as_a_timeout(code, text):
    def answer(req_id: int, nth: int):
        return [error(req_id, code, text.format(req_id))]

    gateway = ScriptedGateway(answer=answer)
    outcome, took, _ = run_session(gateway, fetch_daily, request_timeout_s=5.0)
    assert (outcome.status, outcome.error_code, outcome.attempts) == ("failed", code, 2)
    assert outcome.error_message.startswith("the gateway ended the request without an answer (2 tries; the last: ")
    assert "timed out" not in outcome.error_message and took < 2.5


@pytest.mark.parametrize(
    "code, text, exchange",
    [
        (162, protocol.text_no_permissions("NYSE"), "NYSE STK"),
        (162, protocol.HMDS_PREFIX + "No market data permissions for ISLAND STK", "ISLAND STK"),
        (354, "Requested market data is not subscribed.", None),
        (10089, "Requested market data requires additional subscription for API.", None),
    ],
)
def test_a_missing_market_data_permission_fails_its_request_at_once_and_the_next_is_still_asked(code, text, exchange):
    """A subscription covers some exchanges only: the login's other symbols may load, so the session goes on."""

    def answer(req_id: int, nth: int):
        return [error(req_id, code, text)] if nth == 1 else [bars(req_id, DAYS)]

    async def two_fetches(session: IbkrSession) -> tuple[Outcome, Outcome]:
        return await fetch_daily(session), await fetch_daily(session)

    gateway = ScriptedGateway(answer=answer)
    (refused, served), took, _ = run_session(gateway, two_fetches, request_timeout_s=5.0)
    assert (refused.status, refused.error_code, refused.attempts) == ("failed", code, 1)
    refusal = market_data_refusal(refused.error_code, refused.error_message)
    assert refusal is not None and not refusal.account_wide and refusal.exchange == exchange
    assert served.status == "ok" and took < 2.5, "a refusal is no timeout"


@pytest.mark.parametrize("code, text", [(10197, protocol.TEXT_COMPETING_SESSION), (162, protocol.TEXT_OTHER_IP)])
def test_a_login_refused_market_data_altogether_sends_no_request_after_the_refusal(code, text):
    """A competing live session of the same username, or a session from another IP address, refuses every request
    alike: the session stops asking (as IBKR would refuse each) instead of failing every symbol one by one."""

    def answer(req_id: int, nth: int):
        return [error(req_id, code, text)]

    async def three_fetches(session: IbkrSession) -> list[object]:
        results: list[object] = []
        for ask in [fetch_daily] * 3 + [lambda session: session.qualify("MSFT")]:
            try:
                results.append(await ask(session))
            except MarketDataRefusedError as refused:
                results.append(refused)
        return results

    gateway = ScriptedGateway(answer=answer)
    results, took, _ = run_session(gateway, three_fetches)
    assert len(gateway.historical_requests) == 1 and gateway.contract_requests == []
    assert all(isinstance(r, MarketDataRefusedError) for r in results)
    first = results[0]
    assert (first.code, first.message, first.symbol) == (code, text, "AAPL") and first.refusal.account_wide
    assert "log that session out" in str(first)


def test_a_gateway_that_moves_its_api_port_is_not_reconnected_on_the_old_one_and_the_error_names_the_new_one():
    """IB Gateway/TWS answers 1300 and drops the connection when its socket port is changed: reconnecting to the old
    port used to go on for IBKR_RECONNECT_TIMEOUT and then blame the trusted IPs."""
    text = (
        "TWS socket port has been reset and this connection is being dropped. Please reconnect on the new port - 4003"
    )

    def answer(req_id: int, nth: int):
        gateway.closes_before_handshake = True  # nothing serves the API on the old port any more
        return [notice(1300, text), CLOSE]

    gateway = ScriptedGateway(answer=answer)
    lost, took, _ = run_session(gateway, fetch_daily, reconnect_timeout_s=30.0)
    assert isinstance(lost, GatewayUnavailableError) and took < 5
    assert f"(error 1300: {text}): set IBKR_PORT (or --port) to 4003 and run again" in str(lost)
    assert "Trusted IPs" not in str(lost)


def test_an_outage_never_reported_over_holds_requests_back_once_not_each_time():
    """A 2105 for a farm the load does not use may never see its 2106: after one reconnect timeout, requests flow."""

    def answer(req_id: int, nth: int):
        broken = [error(-1, 2105, "HMDS data farm connection is broken:euhmds")] if nth == 1 else []
        return [*broken, bars(req_id, DAYS)]

    async def three_fetches(session: IbkrSession) -> list[float]:
        seconds = []
        for _ in range(3):
            started = time.monotonic()
            assert (await fetch_daily(session)).status == "ok"
            seconds.append(time.monotonic() - started)
        return seconds

    gateway = ScriptedGateway(answer=answer)
    patient = RetryPolicy(timeout_retries=0)
    seconds, _, _ = run_session(gateway, three_fetches, retry=patient, reconnect_timeout_s=0.6)
    assert seconds[1] >= 0.55  # the second request waited for the farm
    assert seconds[2] < 0.3  # the third did not: the outage counts as over


def test_the_client_librarys_decoder_logger_is_left_as_it_was():
    """The session listens for decode errors on the library's logger; closing it restores what the user had."""
    decoder = logging.getLogger("ib_async.Decoder")
    quiet_client_logs()
    before = (decoder.level, decoder.propagate, list(decoder.handlers))
    run_session(ScriptedGateway(answer=lambda req_id, nth: [bars(req_id, DAYS)]), fetch_daily)

    async def overlapping() -> None:  # two sessions, closed in the order they were opened
        first, second = (IbkrSession(IbkrSettings(), PacingLimiter(PacingPolicy())) for _ in range(2))
        first._decode_errors.attach()
        second._decode_errors.attach()
        await first.close()
        await second.close()

    asyncio.run(overlapping())
    assert (decoder.level, decoder.propagate, list(decoder.handlers)) == before


def test_a_contract_lookup_lost_in_an_ibkr_outage_is_asked_again_when_connectivity_returns():
    """1100 while a contract-details request is out (IBKR's nightly restart, say), then 1102: not counted as a timeout."""
    lost = "Connectivity between IB and Trader Workstation has been lost."
    restored = "Connectivity between IB and Trader Workstation has been restored - data maintained."
    lookups: list[int] = []

    def contracts(req_id, request):
        lookups.append(req_id)
        if len(lookups) == 1:
            return [error(-1, 1100, lost), 0.8, error(-1, 1102, restored)]
        return one_stock(req_id, request)

    async def qualify(session: IbkrSession):
        await session.connect()
        return await session.qualify("AAPL", "NASDAQ")

    strict = RetryPolicy(timeout_retries=0)  # any counted timeout would fail the lookup
    outcome, seconds, session = run_session(ScriptedGateway(contracts=contracts), qualify, retry=strict)
    assert outcome.contract is not None and outcome.contract.primary_exchange == "NASDAQ", outcome
    assert len(lookups) == 2 and session.stats.timeouts == 0
    assert seconds >= 0.8  # the second lookup waited for 1102


def test_a_request_held_by_an_outage_goes_out_once_a_new_session_no_longer_reports_it():
    """ushmds breaks, then the connection drops: the next API session reports its farms afresh (ushmds OK), so a
    historical request held by the last session's outage goes out at once, not after IBKR_RECONNECT_TIMEOUT."""
    lookups: list[int] = []

    def contracts(req_id, request):
        lookups.append(req_id)
        broken = error(-1, 2105, "HMDS data farm connection is broken:ushmds")
        return [broken, *one_stock(req_id, request), 0.2, CLOSE] if len(lookups) == 1 else one_stock(req_id, request)

    gateway = ScriptedGateway(contracts=contracts, answer=lambda req_id, nth: [bars(req_id, DAYS)])

    async def held_then_reconnected(session: IbkrSession) -> Outcome:
        await session.connect()
        await session.qualify("AAPL", "NASDAQ")  # answered with "ushmds broken"; then the gateway drops the connection
        fetching = asyncio.create_task(fetch_daily(session))
        await asyncio.sleep(0.5)
        assert not fetching.done() and gateway.historical_requests == []  # held by ushmds's outage
        await session.connect()  # as the next request would: the new session's start-up says ushmds is OK
        return await asyncio.wait_for(fetching, 5)  # not the 60 s patience for the forgotten outage

    outcome, seconds, session = run_session(gateway, held_then_reconnected, reconnect_timeout_s=60)
    assert outcome.status == "ok" and len(gateway.historical_requests) == 1, outcome
    assert session.stats.connects == 2 and seconds < 10
