"""What the client heard while it connected to the gateway, and why a connect that did not start an API session
failed, in one line the user can act on.

The client library says little of a failed start-up: a handshake it gives up on is only an apiError, a close
before the handshake is not even that, and either way it would wait out the whole connect timeout. A
:class:`HandshakeWatch` listens beside it, ends the wait as soon as the start-up cannot complete, and names the
likely cause (:meth:`HandshakeWatch.why_not_started`). Connecting itself is :class:`ingest.ibkr.fetcher.IbkrSession`'s.

Imports only the standard library and the pure modules beside it (the ib_insync compat check runs it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.gateway_errors import ERR_CLIENT_ID_IN_USE, is_notice

SHOWN_BYTES = 32
"""How much of a non-API answer to the client's greeting a connect error shows."""


class HandshakeWatch:
    """What the gateway said and did during one connect (``connecting``: the client library's connect), and
    ``ended`` set once the start-up cannot complete (the client library would wait out its connect timeout)."""

    def __init__(self, ib: Any, connecting: asyncio.Future, ended: asyncio.Event) -> None:
        self.ib = ib
        self.connecting = connecting
        self.ended = ended
        self.handshake_errors: list[str] = []
        self.answered: dict[str, Any] = {}
        """What the gateway sent of the start-up, should it never complete."""
        self.received = bytearray()
        """The first bytes that came before any handshake: what answers, if not the API."""
        self.closed_before_handshake: list[bool] = []

    def attach(self) -> None:
        # The client library reports a handshake it gives up on (a server too old for it, say) only through
        # apiError, and would then wait out the whole connect timeout: end the wait at once instead.
        self.ib.client.apiError += self.on_api_error
        self.ib.client.conn.hasData += self.on_data
        self.ib.client.conn.disconnected += self.on_closed

    def detach(self) -> None:
        self.ib.client.apiError -= self.on_api_error
        self.ib.client.conn.hasData -= self.on_data
        self.ib.client.conn.disconnected -= self.on_closed

    def on_api_error(self, message: object) -> None:
        if str(message).startswith("API connection failed"):
            return  # the library echoing the exception connectAsync is about to raise
        self.handshake_errors.append(str(message))
        self.ended.set()

    def on_data(self, data: bytes) -> None:  # after the library's own handler has read the data
        if self.ib.client.serverVersion():
            self.answered.update(version=self.ib.client.serverVersion(), accounts=bool(self.ib.wrapper.accounts))
        elif len(self.received) < SHOWN_BYTES:
            self.received.extend(data[: SHOWN_BYTES - len(self.received)])

    def on_closed(self, _message: object) -> None:
        # The library hears of a close before the handshake without a word (no apiError: it is not "connected"
        # yet) and would wait out the whole connect timeout. A close it makes itself, giving up, comes after its
        # connect has ended; one after the handshake is its own apiError ("Peer closed connection").
        if not self.connecting.done() and not self.answered:
            self.closed_before_handshake.append(True)
            self.ended.set()

    def why_not_started(self, settings: IbkrSettings, notices: list[tuple[int, str]]) -> str:
        """Why no API session started, timed out or ended early; ``notices``: what the gateway sent under id -1."""
        s = settings
        handshake_errors, answered, received = self.handshake_errors, self.answered, self.received
        refused = self.refused_during_start_up(settings, notices)
        if any(code == ERR_CLIENT_ID_IN_USE for code, _ in notices):
            reason = (
                f"client id {s.client_id} is already in use: set another IBKR_CLIENT_ID (or give another "
                "--client-id, which overrides it)"
            )
        elif self.closed_before_handshake and not received:
            # IB Gateway closes at once the connection of a host it does not accept, as does a tunnel or a proxy
            # (ssh -L, socat, a container's published port) that has no gateway behind it. Most such peers close
            # without reading the client's greeting, and the kernel then resets the connection: the client hears
            # "connection reset by peer" (an apiError), not a clean close. Either way no handshake came, so no
            # client id was looked at: this is no refusal during the API start-up.
            reason = (
                "the connection was accepted, then closed before the API handshake: the gateway does not accept "
                "API clients from this host (Configure > Settings > API > Settings: 'Allow connections from "
                "localhost only' / 'Trusted IPs') or has as many as it takes, or a tunnel or proxy on that port "
                "(ssh -L, socat, a container's published port) has no gateway behind it that is running and logged "
                "in (a gateway opens its API port only once logged in)"
            )
        elif refused:
            reason = refused
        elif handshake_errors:
            reason = f"the API handshake failed: {handshake_errors[0]}"
            if "version" in handshake_errors[0].lower():
                minimum = getattr(self.ib.client, "MinClientVersion", "?")
                reason += f" (this client needs API version {minimum} or newer: update IB Gateway/TWS)"
        elif answered:
            # The client starts its API session once the gateway has sent both; a gateway still starting up, or
            # a server of the protocol that has no account to name, never completes it.
            missing = "next valid order id" if answered["accounts"] else "managed account"
            reason = (
                f"the gateway answered the API handshake (server version {answered['version']}) but sent no "
                f"{missing} within {s.connect_timeout_s:g} s, which the client needs to start its session: is it "
                "still starting up or logging in, or (TWS) waiting for you to accept the connection on its screen?"
            )
        elif received:
            # Another service on that port (a web server, the Client Portal gateway's HTTPS port) answers the
            # client's greeting in its own protocol, which the client cannot read as a handshake.
            shown = bytes(received).decode("ascii", "backslashreplace")
            reason = (
                f"what answers on that port does not speak the TWS API (it answered {shown!r}): check IBKR_PORT "
                "(IB Gateway 4002 paper / 4001 live, TWS 7497 paper / 7496 live; the Client Portal gateway's web "
                "API is another interface)"
            )
        elif getattr(self.ib.client.conn, "numBytesSent", None) == 0:
            # The client's greeting goes out once the TCP connection is open: it never opened. Nothing answered
            # at all (a closed port is refused at once), so the causes of a silent API are out of the question.
            reason = (
                f"no connection within {s.connect_timeout_s:g} s: the host does not answer (a wrong IBKR_HOST, a "
                "machine that is off or unreachable, or a firewall that drops the connection)"
            )
        else:
            reason = (
                f"no API handshake within {s.connect_timeout_s:g} s of the connection being accepted: what "
                "answers is not the gateway's API port, or it has not accepted this host (not among its trusted "
                "IPs: TWS asks on its screen whether to accept the connection), or client id "
                f"{s.client_id} is already in use"
            )
        return reason

    def refused_during_start_up(self, settings: IbkrSettings, notices: list[tuple[int, str]]) -> str | None:
        """Why a gateway that accepted the connection closed it during the start-up (IB Gateway does so, without a
        word, to a host not among its trusted IPs), or None if it did not close it. An error the gateway sent
        before closing is its own reason, and is named."""
        handshake_errors = self.handshake_errors
        if not (handshake_errors and closed_by_peer(handshake_errors[0])):
            return None
        said = [f"error {code}: {text}" for code, text in notices if not is_notice(code)]
        return (
            f"the gateway closed the connection during the API start-up ({said[0] if said else handshake_errors[0].rstrip('.')}): "
            "it accepts API clients only from its trusted IPs (Configure > Settings > API > Settings, 'Allow "
            "connections from localhost only' / 'Trusted IPs') and with a client id no other client uses "
            f"(IBKR_CLIENT_ID or --client-id, now {settings.client_id})"
        )


def closed_by_peer(handshake_error: str) -> bool:
    """The client library's ways of saying the gateway closed the connection."""
    text = handshake_error.lower()
    return "peer closed" in text or "reset by peer" in text
