"""What the engine speaks over its connections: a :class:`Wire`, Socket Mode's (:data:`SOCKET_MODE`) by default.

The :class:`~slack_socket_mode.engine.Engine` is the same for every protocol Slack offers over a
WebSocket: the session rules, the connection table, liveness, backoff, the dispatcher, ``close()``.
What differs between them is small, and is what a :class:`Wire` holds:

* which Web API method issues each connection's URL (:class:`~.opening.UrlMethod`);
* the keepalive the health thread sends (a WebSocket ping frame for Socket Mode, a JSON
  ``{"type": "ping", "id": n}`` for the RTM API);
* how a text message a connection read is routed (None: Socket Mode's envelopes, ``hello`` and
  ``disconnect``, :meth:`Engine.on_text`; the RTM client routes by message ``type``);
* the protocol's name, for the log.

The RTM client (:mod:`slack_socket_mode.rtm`) gives the engine its own; nothing else here knows it.
Immutable and thread-safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from .connection import Connection
from .opening import SOCKET_MODE_URLS, UrlMethod

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .listeners import Listeners
    from .session import Session

__all__ = ["SOCKET_MODE", "EngineParts", "Wire"]


class EngineParts(Protocol):
    """The parts of the engine a router is given (:class:`~slack_socket_mode.engine.Engine` has them)."""

    session: Session
    dispatcher: Dispatcher
    listeners: Listeners


@dataclass(frozen=True)
class Wire:
    """One protocol over the engine's connections (see the module's docstring).

    Attributes:
        name: the protocol's name, for the log (``Socket Mode``).
        urls: the Web API method that issues each URL.
        ping: sends one connection's keepalive if that cannot block; True if it went out.
        route: ``(engine parts) -> on_text``: makes the callback each reader calls with
            ``(connection, text)`` for each text message; None for Socket Mode's own routing.
    """

    name: str
    urls: UrlMethod
    ping: Callable[[Connection], bool] = Connection.ping
    route: Optional[Callable[[EngineParts, logging.Logger], Callable[[Connection, str], None]]] = None


#: Socket Mode: ``apps.connections.open``, WebSocket pings, envelopes routed by :meth:`Engine.on_text`.
SOCKET_MODE = Wire("Socket Mode", SOCKET_MODE_URLS)
