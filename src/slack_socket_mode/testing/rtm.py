"""A local fake of Slack's RTM API: the Socket Mode server, speaking RTM.

:class:`RTMServer` is a :class:`~slack_socket_mode.testing.SocketModeServer` (the same Web API
and WebSocket servers, threads, records, faults and waits) with what the RTM API does differently:

* its Web API's ``rtm.connect`` (and ``rtm.start``) answers a bot or user token (``xoxb-…``,
  ``xoxp-…``) with a single-use URL, ``self`` and ``team`` (as every server does; ``fail_next_opens``,
  ``refuse_next_connections`` and ``send_next_opens_to`` apply to it);
* each connection is greeted with ``{"type": "hello"}``;
* the client's ``{"type": "ping", "id": n}`` is answered with ``{"type": "pong", "reply_to": n}``
  (not on a silenced connection, which reads nothing);
* a test sends events of any ``type`` (:meth:`RTMServer.send_event`) and ``goodbye``
  (:meth:`RTMServer.goodbye`), and reads what the client sent (:attr:`RTMServer.events`, and
  :meth:`RTMServer.wait_for_events`).

The faults (``reset``, ``silence``, ``close_connection``) are the base class's. Example::

    from slack_socket_mode.rtm import RTMClient
    from slack_socket_mode.testing.rtm import RTMServer

    with RTMServer() as server:
        rtm = RTMClient(token="xoxb-test", base_url=server.api_url)
        rtm.connect()
        server.send_event({"type": "message", "channel": "C111", "user": "U222", "text": "hi"})
        rtm.close()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from ._connection import ServerConnection
from .records import Ack, ReceivedMessage, dumps
from .server import SocketModeServer

__all__ = ["RTMServer", "ReceivedEvent"]

#: What :class:`RTMServer` sends on each new connection.
RTM_HELLO: dict[str, Any] = {"type": "hello"}


@dataclass(frozen=True)
class ReceivedEvent:
    """A JSON object a client sent to an :class:`RTMServer` (its pings included).

    Attributes:
        connection_id: the id of the connection it arrived on.
        body: the decoded object.
        received_at: :func:`time.monotonic` time (seconds) at which it was read.
    """

    connection_id: int
    body: dict[str, Any]
    received_at: float = field(compare=False)

    @property
    def type(self) -> Any:
        """The object's ``type``, or None."""
        return self.body.get("type")


def _decoded(message: ReceivedMessage) -> ReceivedEvent | None:
    try:
        body = json.loads(message.text)
    except ValueError:
        return None
    return ReceivedEvent(message.connection_id, body, message.received_at) if isinstance(body, dict) else None


class RTMServer(SocketModeServer):
    """The local Socket Mode server speaking the RTM API (see the module's docstring).

    Takes the keyword arguments of :class:`~slack_socket_mode.testing.SocketModeServer`
    (``redelivery_delay`` defaults to None here: RTM has no acks, so nothing is redelivered).
    Every public method is thread-safe.

    Attributes:
        pongs_sent: ``{"type": "pong"}`` answers sent, all connections together.
    """

    def __init__(self, *, redelivery_delay: float | None = None, **options: Any) -> None:
        super().__init__(redelivery_delay=redelivery_delay, **options)
        self.hello_template = dict(RTM_HELLO)
        self.pongs_sent = 0

    # -- what the client sent -------------------------------------------------------------------

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every JSON object the clients sent, oldest first (pings included; see :attr:`sent`)."""
        return [event for event in map(_decoded, self.messages) if event is not None]

    @property
    def sent(self) -> list[ReceivedEvent]:
        """What the clients sent but pings: the messages of ``send()``."""
        return [event for event in self.events if event.type != "ping"]

    @property
    def pings(self) -> list[ReceivedEvent]:
        """The clients' ``{"type": "ping"}`` keepalives, oldest first."""
        return [event for event in self.events if event.type == "ping"]

    def wait_for_events(
        self, predicate: Callable[[ReceivedEvent], bool], count: int = 1, timeout: float = 5.0
    ) -> list[ReceivedEvent]:
        """Wait until the clients have sent ``count`` objects that ``predicate`` accepts; returns them.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
            RuntimeError: the server was stopped meanwhile.
        """
        found: list[ReceivedEvent] = []

        def ready() -> bool:
            found[:] = [event for event in self.events if predicate(event)]
            return len(found) >= count

        self.wait_until(ready, timeout, what=f"{count} matching messages from the client")
        return found

    # -- what the server sends ------------------------------------------------------------------

    def send_event(self, event: dict[str, Any], *, connection: ServerConnection | None = None) -> None:
        """Send an event (a JSON object of any ``type``) as the RTM API does.

        Args:
            event: the event, sent as compact JSON.
            connection: where to send it; by default the next live connection.

        Raises:
            RuntimeError: no live connection (or ``connection`` is closed or closing).
        """
        self.send_text(dumps(event), connection=connection)

    def goodbye(self, *, connection: ServerConnection | None = None) -> None:
        """Send ``{"type": "goodbye"}``: the server is about to close the connection.

        The connection stays open (and takes events) until the client closes it, or the test
        does (:meth:`close_connection`), as the RTM API may keep it open for a while.

        Raises:
            RuntimeError: no live connection (or ``connection`` is closed or closing).
        """
        targets = [connection] if connection is not None else self.connections
        if not targets:
            raise RuntimeError("no open connection")
        data = dumps({"type": "goodbye"}).encode()
        sent = False
        for conn in targets:
            conn.disconnect_sent = True
            sent = conn.send(data) or sent
        if not sent:
            raise RuntimeError("no connection could take the goodbye message (closed or closing)")

    # -- the keepalive --------------------------------------------------------------------------

    def _record_incoming(self, messages: list[ReceivedMessage], acks: list[Ack]) -> None:
        """Record what a client sent (the base class's), then answer its pings (on the connection's reader)."""
        super()._record_incoming(messages, acks)
        for message in messages:
            if '"ping"' not in message.text:
                continue
            event = _decoded(message)
            if event is None or event.type != "ping":
                continue
            conn = next((c for c in self.connections if c.id == message.connection_id), None)
            if conn is None:
                continue
            if conn.send(dumps({"type": "pong", "reply_to": event.body.get("id")}).encode()):
                with self._lock:
                    self.pongs_sent += 1
