"""The local Socket Mode server's book of envelopes: every delivery, every ack, every message.

:class:`EnvelopeBook` holds what :class:`~slack_socket_mode.testing.SocketModeServer` reports
(:meth:`~.server.SocketModeServer.envelope`, ``acks``, ``messages``, ``unacked()``,
``duplicate_acks()``) and decides whether an envelope still waits for an ack, which is what
redelivery asks. It does no I/O and takes no lock: the server calls every method with its
own lock held.
"""

from __future__ import annotations

import time

from .records import Ack, Delivery, EnvelopeRecord, Forgotten, Item, ReceivedMessage

__all__ = ["EnvelopeBook", "EnvelopeState"]


class EnvelopeState:
    """What the server knows of one envelope id (guarded by the server lock)."""

    __slots__ = ("acks", "deliveries", "envelope_id", "pending", "text")

    def __init__(self, envelope_id: str) -> None:
        self.envelope_id = envelope_id
        self.text = ""  # the text of the latest delivery
        self.deliveries: list[Delivery] = []
        self.acks: list[Ack] = []
        self.pending = 0  # deliveries since the last ack


class EnvelopeBook:
    """Deliveries and acks per envelope id, plus every ack and message in arrival order.

    Not thread-safe by itself: the owner calls it with its lock held. The lists it exposes
    (:attr:`acks`, :attr:`messages`, :attr:`duplicates`) are its own: copy them before they
    leave the lock.
    """

    def __init__(self) -> None:
        self.acks: list[Ack] = []  # every ack, in arrival order
        self.messages: list[ReceivedMessage] = []  # every text message, acks included
        self.duplicates: list[Ack] = []  # acks that found no delivery waiting for one
        self.first_ack: dict[str, Ack] = {}
        self._records: dict[str, EnvelopeState] = {}  # in first-push order

    def record_delivery(self, item: Item, connection_id: int) -> tuple[EnvelopeState, Delivery]:
        """Record that ``item`` is about to be written to connection ``connection_id``."""
        envelope_id, text, _, attempt = item
        record = self._records.get(envelope_id)
        if record is None:
            record = self._records[envelope_id] = EnvelopeState(envelope_id)
        record.text = text
        delivery = Delivery(attempt, time.monotonic(), connection_id)
        record.deliveries.append(delivery)
        record.pending += 1
        return record, delivery

    def undo(self, record: EnvelopeState, delivery: Delivery) -> None:
        """Forget a delivery whose write failed."""
        for index in range(len(record.deliveries) - 1, -1, -1):
            if record.deliveries[index] is delivery:
                del record.deliveries[index]
                record.pending = max(0, record.pending - 1)
                break
        if not record.deliveries and not record.acks:
            self._records.pop(record.envelope_id, None)

    def awaiting_ack(self, envelope_id: str, delivery: Delivery) -> EnvelopeState | None:
        """The envelope's state if ``delivery`` is its latest and no ack came since, else ``None``.

        ``None`` means a redelivery of ``delivery`` is no longer due: it was acked, or the
        envelope was pushed again meanwhile.
        """
        record = self._records.get(envelope_id)
        if record is None or record.pending == 0 or not record.deliveries or record.deliveries[-1] is not delivery:
            return None
        return record

    def record_incoming(self, messages: list[ReceivedMessage], acks: list[Ack]) -> None:
        """Record messages read from a client and the acks among them.

        An ack settles every pending delivery of its id; one that finds none pending (or an
        id never pushed) is a duplicate.
        """
        self.messages.extend(messages)
        for ack in acks:
            self.acks.append(ack)
            self.first_ack.setdefault(ack.envelope_id, ack)
            record = self._records.get(ack.envelope_id)
            if record is None:
                self.duplicates.append(ack)
                continue
            if record.pending == 0:
                self.duplicates.append(ack)
            record.pending = 0
            record.acks.append(ack)

    def snapshot(self, envelope_id: str) -> EnvelopeRecord:
        """An :class:`~.records.EnvelopeRecord` of ``envelope_id``.

        Raises:
            KeyError: that id was never pushed.
        """
        record = self._records.get(envelope_id)
        if record is None:
            raise KeyError(envelope_id)
        return EnvelopeRecord(
            envelope_id, list(record.deliveries), list(record.acks), bool(record.acks) and record.pending == 0
        )

    def forget(self) -> Forgotten:
        """Drop the settled envelopes' records and the lists of every ack, duplicate and message."""
        settled = [record for record in self._records.values() if record.acks and record.pending == 0]
        for record in settled:
            del self._records[record.envelope_id]
            self.first_ack.pop(record.envelope_id, None)
        forgotten = Forgotten(
            envelopes=len(settled),
            redelivered=sum(1 for record in settled if len(record.deliveries) > 1),
            acks=len(self.acks),
            duplicate_acks=len(self.duplicates),
            messages=len(self.messages),
        )
        self.acks, self.duplicates, self.messages = [], [], []
        return forgotten

    def unacked(self) -> list[str]:
        """Ids of the envelopes pushed and never acked, in push order."""
        return [envelope_id for envelope_id, record in self._records.items() if not record.acks]
