"""Ack routing: each ack goes out once, on the connection that delivered its envelope while it can send.

:class:`AckRouter` sits over the :class:`~slack_socket_mode.ledger.EnvelopeLedger` (which decides
whether an ack is sent and on which connection) and does the sending: on the envelope's own
connection while it can send, else on the newest open connection, else it keeps the ack until the
next ``hello`` (Slack redelivers meanwhile; the redelivery is acked at once). It also times each
ack (arrival to sent) for :class:`~slack_socket_mode.stats.ClientStats`.

Threads: called by readers and workers as they ack, by any thread through
``send_socket_mode_response``. Locks: the deferred acks are guarded by the client's lock (order 1,
an ``RLock``, passed in); no lock is held while a frame is written (the connection's send lock,
the last in the order, is taken by :meth:`Connection.send_text` alone).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Optional, Union

from slack_sdk.socket_mode.response import SocketModeResponse

from .connection import Connection
from .errors import NotConnectedError
from .ledger import AckRoute, EnvelopeLedger
from .messages import plain_ack

__all__ = ["MAX_DEFERRED", "AckRouter", "Handoff"]

#: Runs a write on a thread that may wait, and returns its future (see :meth:`AckRouter.send_ack`).
Handoff = Callable[[Callable[[], None]], "Future[None]"]

#: At most this many acks are kept for the next ``hello`` (and at most the ledger's ``max_ack_bytes`` characters
#: of them); beyond, the oldest is dropped (and counted): its envelope is in the ledger as acked, so Slack's
#: redelivery of it is acked again at once.
MAX_DEFERRED = 10_000

#: ``json.dumps(…, separators=(",", ":"))`` without building an encoder per call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


class AckRouter:
    """Sends acks where the ledger says, once; keeps them for the next ``hello`` when nothing can send.

    Args:
        ledger: the client's envelope ledger (it decides whether and where an ack goes).
        lock: the client's lock (order 1); it guards the deferred acks here.
        primary: returns the newest connection that can send, or None (the session's table).
        drained: called with a draining connection once an ack may have been its last in flight.
        logger: where to log.

    Thread-safety: every method may be called from any thread.
    """

    def __init__(
        self,
        ledger: EnvelopeLedger[Connection],
        *,
        lock: threading.RLock,
        primary: Callable[[], Optional[Connection]],
        drained: Callable[[Connection], None],
        logger: logging.Logger,
    ) -> None:
        self.ledger = ledger
        self._lock = lock  # the client's lock (order 1): guards _deferred
        self._primary = primary
        self._drained = drained
        self._logger = logger
        self._deferred: deque[str] = deque()  # acks no connection could send, for the next hello (bounded)
        self._deferred_chars = 0  # characters of the texts in _deferred
        self.deferred_dropped = 0  #: deferred acks dropped, the oldest first, to keep within the bounds
        #: seconds from an envelope's arrival to its ack being sent, for the last 1,024 acks
        self.latencies: deque[float] = deque(maxlen=1024)
        self._here = threading.local()  # .acked: (envelope_id, text) of the last ack this thread routed

    def acked_here(self, envelope_id: str) -> tuple[bool, Optional[str]]:
        """Whether the last ack routed on this thread was the first of ``envelope_id``'s, and its text; once.

        The text is None for the plain ack. The dispatcher asks it once an envelope's listeners
        returned, on the thread that ran them: an envelope acked by its own listener is settled
        in the ledger already, and need not be entered again (:meth:`.EnvelopeLedger.handled`).
        """
        here = self._here
        acked = getattr(here, "acked", None)
        if acked is not None and acked[0] == envelope_id:
            here.acked = None  # asked once: a later run of the same id (after eviction) is not taken for acked
            return True, acked[1]
        return False, None

    def send_ack(
        self, envelope_id: str, text: Optional[str], handoff: Optional[Handoff] = None
    ) -> Optional[Future[None]]:
        """Route and send the ack ``text`` (None: the plain ack, without a payload).

        ``handoff``: given by a caller that must not block (the asyncio client, on its event
        loop). The ack is then written at once only if that cannot wait
        (:meth:`Connection.try_send_text`); else the write is passed to ``handoff``, which runs it
        on a thread that may wait, and its future is returned. Otherwise returns None.
        """
        now = time.monotonic()
        route = self.ledger.ack(envelope_id, text, now)
        if not route.send:
            if self._logger.isEnabledFor(logging.DEBUG):
                self._logger.debug("envelope %s: a second ack was not sent", envelope_id)
            return None
        self._here.acked = (envelope_id, text)
        wire = plain_ack(envelope_id) if text is None else text
        if handoff is None:
            self._deliver(route, wire, envelope_id, now)
            return None
        origin = route.conn
        if origin is not None and not origin.draining and origin.can_send and origin.try_send_text(wire):
            self._written(route)
            if route.received_at is not None:
                self.latencies.append(now - route.received_at)
            return None
        return handoff(functools.partial(self._deliver, route, wire, envelope_id, now))

    def _deliver(self, route: AckRoute, wire: str, envelope_id: str, now: float) -> None:
        """Write the ack ``wire`` as ``route`` says (its fallbacks included) and account for it."""
        origin = route.conn
        try:
            used = self.send_on(origin, wire, envelope_id)
        finally:
            self._written(route)  # only now may a draining origin close (see Session.maybe_drained)
        if used is not origin:  # the origin could not send: another connection did, or none (deferred)
            self.ledger.sent_on(envelope_id, used)
        if route.received_at is not None:
            self.latencies.append(now - route.received_at)
        if origin is not None and origin.draining:
            self._drained(origin)

    def _written(self, route: AckRoute) -> None:
        """The ack routed by ``route`` was written, or given up on: it no longer keeps its connection busy."""
        conn = route.conn
        if route.held:
            self.ledger.written(conn)
        elif conn is not None:
            conn.ack_written()

    def send_response(
        self, response: Union[dict[str, Any], SocketModeResponse], handoff: Optional[Handoff] = None
    ) -> Optional[Future[None]]:
        """Ack with slack_sdk's ``SocketModeResponse`` or its dict form (``send_socket_mode_response``).

        A response without a payload is the plain ack; any other is sent as compact JSON.
        ``handoff`` and what is returned: see :meth:`send_ack`.

        Raises:
            ValueError: the response has no ``envelope_id``.
        """
        if isinstance(response, SocketModeResponse):
            envelope_id: Any = response.envelope_id
            if response.payload is None and isinstance(envelope_id, str):  # the common ack, without a payload
                return self.send_ack(envelope_id, None, handoff)
            body = response.to_dict()
        else:
            body = response
            envelope_id = body.get("envelope_id")
        if not isinstance(envelope_id, str):
            raise ValueError("a Socket Mode response needs an envelope_id")
        return self.send_ack(envelope_id, _compact_json(body), handoff)

    def send_message(self, message: str) -> None:
        """Send a text message: an ack (``{"envelope_id": …}``) through :meth:`send_ack`, else on the newest connection.

        Raises:
            NotConnectedError: no open connection (for a message that is not an ack).
        """
        if message.startswith('{"envelope_id"'):
            try:
                body = json.loads(message)
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("envelope_id"), str):
                self.send_ack(body["envelope_id"], message)
                return
        conn = self._primary()
        if conn is None:
            raise NotConnectedError("no open Socket Mode connection")
        conn.send_text(message)

    def send_on(self, conn: Optional[Connection], text: str, envelope_id: Optional[str] = None) -> Optional[Connection]:
        """Send ``text`` on ``conn``, else on the newest connection, else defer it; return the one used.

        ``envelope_id``: the ack's envelope. Before its ack is written on another connection than
        ``conn``, the ledger is told (:meth:`EnvelopeLedger.sent_on`), so that a redelivery read on
        that connection right after the write is known to have crossed the ack.
        """
        if conn is not None and conn.can_send:
            try:
                conn.send_text(text)
                return conn
            except NotConnectedError:
                pass
        primary = self._primary()
        if primary is not None and primary is not conn:
            if envelope_id is not None:
                self.ledger.sent_on(envelope_id, primary)
            try:
                primary.send_text(text)
                return primary
            except NotConnectedError:
                pass
        self.defer([text])
        return None

    def defer(self, texts: list[str]) -> None:
        """Keep acks no connection could write for the next ``hello``, within the bounds (:data:`MAX_DEFERRED`).

        Also where a connection's held acks go when it could not write them
        (:meth:`.Connection.send_text`). Any thread; takes the client's lock, makes no socket call.
        """
        with self._lock:
            deferred, most = self._deferred, self.ledger.max_ack_bytes
            for text in texts:
                deferred.append(text)
                self._deferred_chars += len(text)
            while len(deferred) > MAX_DEFERRED or (self._deferred_chars > most and len(deferred) > 1):
                self._deferred_chars -= len(deferred.popleft())
                self.deferred_dropped += 1
        if len(texts) == 1:
            self._logger.warning("no open connection: ack deferred until the next hello")
        else:
            self._logger.warning("%d acks not written on their connection: deferred until the next hello", len(texts))

    def take_deferred(self) -> list[str]:
        """The acks kept for the next ``hello`` (the caller sends them, with no lock held); forgets them."""
        with self._lock:
            deferred, self._deferred, self._deferred_chars = list(self._deferred), deque(), 0
        return deferred

    @property
    def deferred(self) -> int:
        """How many acks are kept for the next ``hello`` (at most :data:`MAX_DEFERRED`)."""
        return len(self._deferred)
