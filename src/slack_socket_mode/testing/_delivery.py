"""How the local Socket Mode server delivers envelopes: push, batches, raw messages, redelivery.

:class:`Deliverer` records each delivery in the :class:`~._envelopes.EnvelopeBook` before
writing it (so an ack can never arrive for a delivery not yet recorded), picks the connection
through the :class:`~._routing.ConnectionTable`, tries another live connection when a write
fails, and schedules the redelivery of every unacked envelope on the :class:`~._timers.TimerQueue`
the way Slack does: after ``redelivery_delay`` seconds, with ``retry_attempt`` one higher and
``retry_reason`` ``"timeout"``, up to ``max_retries``, to any live connection.

Locks: the server lock (``cond``) is held only to read and update the book and the table;
it is released before any socket write.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from ._connection import ServerConnection
from ._envelopes import EnvelopeBook, EnvelopeState
from ._routing import ConnectionTable
from ._timers import TimerQueue
from .records import Delivery, Item, dumps

__all__ = ["Deliverer"]

logger = logging.getLogger("slack_socket_mode.testing")

_BATCH_COUNT = 1024  # deliver_many() records this many deliveries per lock acquisition


class Deliverer:
    """Writes envelopes and raw messages to connections, and redelivers unacked envelopes.

    Args:
        cond: the server's condition (its lock guards ``book`` and ``table``).
        book: where deliveries are recorded.
        table: the connections and the routing rule.
        timers: where redeliveries are scheduled.
        redelivery_delay: seconds before an unacked delivery is redelivered; ``None``: never.
        max_retries: the highest ``retry_attempt`` a redelivery may carry.
        running: ``() -> bool``: the server is started and not stopping (sending is refused
            otherwise, and a redelivery that found no connection is not tried again).
    """

    def __init__(
        self,
        cond: threading.Condition,
        book: EnvelopeBook,
        table: ConnectionTable,
        timers: TimerQueue,
        *,
        redelivery_delay: float | None,
        max_retries: int,
        running: Callable[[], bool],
    ) -> None:
        self._lock = cond
        self._book = book
        self._table = table
        self._timers = timers
        self._redelivery_delay = redelivery_delay
        self._max_retries = max_retries
        self._running = running

    def _targets_locked(self, connection: ServerConnection | None) -> list[ServerConnection]:
        if not self._running():
            raise RuntimeError("the SocketModeServer is not running")
        return self._table.targets_for_send_locked(connection)

    def deliver(self, item: Item, connection: ServerConnection | None, only_after: Delivery | None) -> Delivery | None:
        """Record a delivery and write it; ``only_after`` makes it a redelivery of that one.

        Returns:
            The delivery, or ``None`` for a redelivery no longer due (acked or pushed again).

        Raises:
            RuntimeError: no live connection (or ``connection`` is closed or closing).
        """
        envelope_id = item[0]
        tried: list[ServerConnection] = []
        while True:
            with self._lock:
                if only_after is not None and self._book.awaiting_ack(envelope_id, only_after) is None:
                    return None  # acked (or pushed again) meanwhile
                targets = self._targets_locked(connection)
                if tried:
                    targets = [conn for conn in targets if conn not in tried]
                    if not targets:
                        raise RuntimeError("no live connection to send to")
                conn = self._table.choose_locked(targets)
                record, delivery = self._book.record_delivery(item, conn.id)
            if self._redelivery_delay is not None:
                self._timers.schedule(
                    delivery.sent_at + self._redelivery_delay, self._redelivery_due, (envelope_id, delivery)
                )
            if conn.send(item[2]):
                return delivery
            with self._lock:
                self._book.undo(record, delivery)
            if connection is not None:
                raise RuntimeError(f"connection {connection.id} is closed or closing")
            tried.append(conn)

    def deliver_many(self, items: list[Item], connection: ServerConnection | None) -> None:
        """:meth:`deliver` each item, with few lock acquisitions and socket writes.

        Raises:
            RuntimeError: as for :meth:`deliver` (possibly after some items were sent).
        """
        for start in range(0, len(items), _BATCH_COUNT):
            self._deliver_batch(items[start : start + _BATCH_COUNT], connection)

    def _deliver_batch(self, items: list[Item], connection: ServerConnection | None) -> None:
        groups: dict[ServerConnection, list[tuple[Item, EnvelopeState, Delivery]]] = {}
        with self._lock:
            targets = self._targets_locked(connection)
            for item in items:
                conn = self._table.choose_locked(targets)
                record, delivery = self._book.record_delivery(item, conn.id)
                groups.setdefault(conn, []).append((item, record, delivery))
        delay = self._redelivery_delay
        if delay is not None:
            self._timers.schedule_many(
                [
                    (d.sent_at + delay, self._redelivery_due, (i[0], d))
                    for entries in groups.values()
                    for i, _, d in entries
                ]
            )
        for conn, entries in groups.items():
            written = conn.send_many([item[2] for item, _, _ in entries])
            if written == len(entries):
                continue
            failed = entries[written:]
            with self._lock:
                for _, record, delivery in failed:
                    self._book.undo(record, delivery)
            if connection is not None:
                raise RuntimeError(f"connection {connection.id} is closed or closing")
            for item, _, _ in failed:
                self.deliver(item, None, None)

    def send_raw(self, data: bytes, text: bool, connection: ServerConnection | None) -> None:
        """Write one message that is not an envelope (nothing recorded), to ``connection`` or the next live one.

        Raises:
            RuntimeError: no live connection (or ``connection`` is closed or closing).
        """
        tried: list[ServerConnection] = []
        while True:
            with self._lock:
                targets = self._targets_locked(connection)
                targets = [conn for conn in targets if conn not in tried]
                if not targets:
                    raise RuntimeError("no live connection to send to")
                conn = self._table.choose_locked(targets)
            if conn.send(data, text):
                return
            if connection is not None:
                raise RuntimeError(f"connection {connection.id} is closed or closing")
            tried.append(conn)

    def _redelivery_due(self, arg: tuple[str, Delivery]) -> None:
        """Timer action: redeliver the envelope if ``delivery`` is still its latest and unacked."""
        envelope_id, delivery = arg
        with self._lock:
            record = self._book.awaiting_ack(envelope_id, delivery)
            if record is None or delivery.attempt >= self._max_retries:
                return
            text = record.text
        try:
            envelope = json.loads(text)
        except ValueError:
            return
        envelope["retry_attempt"] = delivery.attempt + 1
        envelope["retry_reason"] = "timeout"
        try:
            text = dumps(envelope)
            item = (envelope_id, text, text.encode("utf-8"), delivery.attempt + 1)
            redelivery = self.deliver(item, None, delivery)
        except RuntimeError:
            # No live connection right now: try again after another delay, like Slack.
            if self._running() and self._redelivery_delay is not None:  # timers run only once started
                self._timers.schedule(time.monotonic() + self._redelivery_delay, self._redelivery_due, arg)
            return
        if redelivery is not None and logger.isEnabledFor(logging.DEBUG):
            logger.debug("redelivered %s (retry_attempt %d)", envelope_id, redelivery.attempt)
