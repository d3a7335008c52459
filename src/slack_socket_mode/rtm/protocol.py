"""The RTM API over the engine: its URLs, its keepalive, and each message routed by ``type``.

What differs from Socket Mode, and only that, is here (https://api.slack.com/rtm):

* the URL comes from ``rtm.connect``, called with a bot or user token (:data:`RTM_URLS`); a
  refused token is an :class:`~.errors.RTMAuthError`;
* no envelopes and no acks: each message is an event whose ``type`` says what it is
  (:func:`parse_event`), handed to the listeners as it is (:meth:`RTMRouter.on_text`);
* ``hello`` says the connection is ready (the engine's readiness, as Socket Mode's ``hello``),
  ``goodbye`` that the server is about to close it: a rotation, make-before-break, as Socket
  Mode's ``disconnect``; both are handed to the listeners too, as slack_sdk does;
* the keepalive is the client's own ``{"type": "ping", "id": n}`` text message, which the server
  answers with ``{"type": "pong", "reply_to": n}`` (:class:`Keepalive`): the engine's liveness rules
  (a pong deadline, a receive timeout) decide when a silent connection is dead. A pong is not
  handed to the listeners (slack_sdk's client sends no such ping, so its listeners never see one).

:func:`rtm_wire` puts these together as the engine's :class:`~slack_socket_mode.wire.Wire`.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, NamedTuple, Optional, Protocol

from slack_sdk.web import WebClient

from ..connection import Connection
from ..messages import Envelope, Hello, decode_json
from ..opening import UrlMethod
from ..wire import EngineParts, Wire
from .errors import RTMAuthError

__all__ = ["RTM_URLS", "Event", "Keepalive", "RTMRouter", "RouterClient", "parse_event", "rtm_wire"]


def _rtm_connect(web_client: WebClient, token: str) -> Any:
    return web_client.rtm_connect(token=token)


#: ``rtm.connect`` (GET) with the client's bot or user token.
RTM_URLS = UrlMethod("rtm.connect", _rtm_connect, "the token", RTMAuthError)

#: What the engine is told of each RTM ``hello``: no connection count, no planned lifetime.
_HELLO = Hello(num_connections=None, approximate_connection_time=None, debug_info={}, connection_info={})


class Event(NamedTuple):
    """One RTM message, decoded.

    Attributes:
        type: its ``type`` (``message``, ``hello``, ``goodbye``, ``pong``, …), or None when it has none
            (the reply to a message the client sent with an ``id`` has ``reply_to`` and no ``type``).
        body: the decoded object, as listeners receive it.
    """

    type: Optional[str]
    body: dict[str, Any]


def parse_event(text: str) -> Optional[Event]:
    """Decode one RTM text message; None if it is not a JSON object (skipped). Never raises. Pure."""
    try:
        body = decode_json(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    kind = body.get("type")
    return Event(kind if isinstance(kind, str) else None, body)


class Keepalive:
    """The health thread's keepalive for RTM connections: ``{"type": "ping", "id": n}``, ``n`` counting up.

    Called with a connection; sends the ping only if that cannot block
    (:meth:`~slack_socket_mode.connection.Connection.ping` with a text). Thread-safe (one counter
    for the client; ``itertools.count`` is atomic under the GIL).
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def __call__(self, conn: Connection) -> bool:
        return conn.ping(f'{{"type":"ping","id":{next(self._ids)}}}')


class RouterClient(Protocol):
    """What the router reads of the RTM client's engine side: the raw-message listeners."""

    @property
    def on_message_listeners(self) -> list[Any]: ...


class RTMRouter:
    """Routes each text message of an RTM connection (on its reader thread).

    Args:
        parts: the engine's session (``hello``, ``goodbye``), dispatcher (listeners) and listeners.
        client: the engine side of the RTM client (its ``on_message_listeners``).
        logger: where to log.

    Thread-safety: :meth:`on_text` is called by the readers, any number at once.
    """

    def __init__(self, parts: EngineParts, client: RouterClient, logger: logging.Logger) -> None:
        self._session = parts.session
        self._dispatcher = parts.dispatcher
        self._listeners = parts.listeners
        self._client = client
        self._logger = logger
        self.skipped = 0  # messages that were not a JSON object

    def on_text(self, conn: Connection, text: str) -> None:
        """Route one text message: readiness, rotation, keepalive, or an event for the listeners."""
        if self._client.on_message_listeners:
            self._listeners.message(text)
        event = parse_event(text)
        if event is None:
            self.skipped += 1
            self._logger.warning(
                "connection %d: skipped a message of %d characters: not a JSON object", conn.id, len(text)
            )
            return
        kind = event.type
        if kind == "pong":
            return  # its arrival is all it is for: liveness saw the frame
        if kind == "hello":
            self._session.on_hello(conn, _HELLO)
        elif kind == "goodbye":
            self._session.on_disconnect(conn, "goodbye")
        self._dispatcher.on_message(conn, Envelope("", kind or "", event.body, 0), text)


def rtm_wire(client: RouterClient) -> Wire:
    """The engine's :class:`~slack_socket_mode.wire.Wire` for an RTM client: ``rtm.connect``, JSON pings, the router."""

    def route(parts: EngineParts, logger: logging.Logger) -> Callable[[Connection, str], None]:
        return RTMRouter(parts, client, logger).on_text

    return Wire("RTM", RTM_URLS, Keepalive(), route)
