"""Hearing of the gateway's answers that the client library could not decode, and which request each one answered.

Imports only the standard library (the ib_insync compat check runs it).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable
from typing import ClassVar

log = logging.getLogger(__name__)

_ANSWERS_NAMING_THEIR_REQUEST = frozenset({17, 10})
"""The answers the session asks for whose request id ib_async's log of an undecodable message shows, second among
its fields: historicalData (17) and contractData (10; below server version 164 the library has already dropped the
message id, so the fields do not start with 10 and the id is not read). Not contractDataEnd (52): the request id is
the only field the library decodes of it, so it fails to decode only when that id does not parse."""

_LEADING_FIELDS = re.compile(
    r"""Error handling fields: \[('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"), ('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
)
"""The first two items of the field list's repr (each a Python string literal, in either quotes): the message id
and the request id."""
_HEAD_CHARACTERS = 200
"""How much of the log line is read: the message and request ids are short, and a list of a million fields (a large
answer) would cost seconds and a gigabyte to parse whole, on the event loop."""


def undecoded_request_id(message: str) -> int | None:
    """The request id of the message named in ib_async's "Error handling fields: [...]" log line, or None when the
    line is worded otherwise, or names another message (see :data:`_ANSWERS_NAMING_THEIR_REQUEST`). Only the line's head is
    read, so the cost is the same whatever the answer's size."""
    leading = _LEADING_FIELDS.search(message[:_HEAD_CHARACTERS])
    if leading is None:
        return None
    try:
        message_id, request_id = (ast.literal_eval(item) for item in leading.groups())
        return int(request_id) if int(message_id) in _ANSWERS_NAMING_THEIR_REQUEST else None
    except (ValueError, SyntaxError):
        return None


def undecodable_note(reason: str) -> str:
    """What a failure message adds when an answer could not be decoded, for ``reason``."""
    return f"; the client could not decode an answer ({reason})"


class DecodeErrors(logging.Handler):
    """Hears of the messages the client library could not decode.

    The library logs such a message and drops it, so the request it answered would only time out, on every retry
    alike. The log line lists the message's fields: when they name the request (:func:`undecoded_request_id`),
    ``on_undecodable`` fails that request at once. Answers interleave, so this attributes by request id, never to
    whichever request happens to be waiting. One that names no request of the session (another message, an id
    the library has forgotten) cannot be attributed: failing every waiting request would fail innocent ones, so
    it is only counted, and a request that then times out names it (:meth:`since`). Quiet client logs (the CLI's
    default) are kept quiet: the first undecodable message is reported once here.
    """

    _users: ClassVar[dict[str, tuple[int, tuple[int, bool]]]] = {}
    """Per logger: how many sessions listen, and its (level, propagate) from before the first of them."""

    def __init__(self, library_name: str, on_undecodable: Callable[[int | None, str], bool]) -> None:
        super().__init__(logging.ERROR)
        self.logger = logging.getLogger(f"{library_name}.Decoder")
        self.on_undecodable = on_undecodable
        """(request id or None, why) -> whether a request of the session took it as its own answer."""
        self.count = 0
        """Messages that could not be attributed to a request."""
        self.last = ""
        self._reported = False
        self._attached = False

    def since(self, count: int) -> str:
        """What a failure message adds when unattributed messages went undecoded since the count was ``count``."""
        return undecodable_note(self.last) if self.count > count else ""

    def attach(self) -> None:
        if self._attached:
            return
        self._attached = True
        name = self.logger.name
        users, saved = self._users.get(name, (0, (self.logger.level, self.logger.propagate)))
        if users == 0 and not self.logger.isEnabledFor(logging.ERROR):  # quiet: records reach these handlers only
            self.logger.setLevel(logging.ERROR)
            self.logger.propagate = False
        self._users[name] = (users + 1, saved)
        self.logger.addHandler(self)

    def detach(self) -> None:
        if not self._attached:
            return
        self._attached = False
        self.logger.removeHandler(self)
        users, saved = self._users.pop(self.logger.name)
        if users > 1:
            self._users[self.logger.name] = (users - 1, saved)
        else:  # the last session restores what the user had
            level, self.logger.propagate = saved
            self.logger.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        error = record.exc_info[1] if record.exc_info else None
        reason = f"{type(error).__name__}: {error}" if error is not None else message
        if not self._reported:
            self._reported = True
            log.warning("the client library could not decode a message from the gateway: %s", reason)
        if not self.on_undecodable(undecoded_request_id(message), reason):
            self.last = reason
            self.count += 1
