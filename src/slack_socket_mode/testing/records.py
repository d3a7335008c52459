"""What the local Socket Mode server records, and the wire formats of those records.

The frozen records (:class:`Ack`, :class:`ReceivedMessage`, :class:`Delivery`,
:class:`EnvelopeRecord`) are what tests read; :func:`prepare` and :func:`parse_ack` turn an
envelope into the bytes the server sends and a client's text into an :class:`Ack`. Nothing
here does I/O, takes a lock or starts a thread.

Every time recorded here comes from :func:`time.monotonic` (seconds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Ack",
    "Delivery",
    "EnvelopeRecord",
    "Forgotten",
    "Item",
    "ReceivedMessage",
    "dumps",
    "parse_ack",
    "prepare",
]


@dataclass(frozen=True)
class Ack:
    """An ack received from a client: a text frame holding a JSON object with an ``envelope_id``.

    Attributes:
        envelope_id: the acked envelope's id.
        payload: the ack's ``payload`` object, or ``None`` if it had none (or not an object).
        received_at: :func:`time.monotonic` time (seconds) at which the frame was read.
        connection_id: :attr:`~.server.ServerConnection.id` of the connection it arrived on.
        raw: the frame's text, exactly as received.
    """

    envelope_id: str
    payload: dict[str, Any] | None
    received_at: float
    connection_id: int
    raw: str


@dataclass(frozen=True)
class ReceivedMessage:
    """A text message received from a client (acks included), reassembled if fragmented.

    Attributes:
        connection_id: :attr:`~.server.ServerConnection.id` of the connection it arrived on.
        text: the message text.
        received_at: :func:`time.monotonic` time (seconds) at which it was read.
    """

    connection_id: int
    text: str
    received_at: float


@dataclass(frozen=True)
class Delivery:
    """One time an envelope was written to a connection.

    Attributes:
        attempt: the envelope's ``retry_attempt`` in that copy (0 for a first delivery).
        sent_at: :func:`time.monotonic` time (seconds) just before it was written.
        connection_id: :attr:`~.server.ServerConnection.id` of the connection it was written to.
    """

    attempt: int
    sent_at: float
    connection_id: int


@dataclass(frozen=True)
class EnvelopeRecord:
    """A snapshot of what happened to one envelope id (see :meth:`~.server.SocketModeServer.envelope`).

    Attributes:
        envelope_id: the envelope id.
        deliveries: every delivery, first one first (pushes and redeliveries).
        acks: every ack received for this id, in arrival order (duplicates included).
        settled: ``True`` when it was acked and no delivery is waiting for an ack.
    """

    envelope_id: str
    deliveries: list[Delivery]
    acks: list[Ack]
    settled: bool


@dataclass(frozen=True)
class Forgotten:
    """What :meth:`~.server.SocketModeServer.forget` dropped.

    Attributes:
        envelopes: records of settled envelopes (acked, no delivery waiting for an ack).
        redelivered: of those, the envelopes delivered more than once.
        acks: acks from the list of every ack (:attr:`~.server.SocketModeServer.acks`).
        duplicate_acks: acks from :meth:`~.server.SocketModeServer.duplicate_acks`.
        messages: text messages from :attr:`~.server.SocketModeServer.messages`.
    """

    envelopes: int
    redelivered: int
    acks: int
    duplicate_acks: int
    messages: int


#: Compact JSON, UTF-8 kept as is: how the server writes every message.
ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """``value`` as compact JSON text."""
    return ENCODER.encode(value)


#: A prepared envelope: (envelope_id, text, UTF-8 bytes, retry_attempt).
Item = tuple[str, str, bytes, int]


def prepare(envelope: dict[str, Any] | str) -> Item:
    """Check an envelope to push and encode it once.

    Raises:
        ValueError: no string ``envelope_id``, or a str that is not a JSON object.
        TypeError: neither a dict nor a str.
    """
    if isinstance(envelope, str):
        text = envelope
        try:
            fields = json.loads(text)
        except ValueError:
            raise ValueError("envelope text is not JSON") from None
        if not isinstance(fields, dict):
            raise ValueError("envelope text is not a JSON object")
    elif isinstance(envelope, dict):
        fields = envelope
        text = dumps(envelope)
    else:
        raise TypeError(f"envelope must be a dict or a str, not {type(envelope).__name__}")
    envelope_id = fields.get("envelope_id")
    if not isinstance(envelope_id, str) or not envelope_id:
        raise ValueError("the envelope has no envelope_id")
    attempt = fields.get("retry_attempt")
    return envelope_id, text, text.encode("utf-8"), attempt if type(attempt) is int else 0


def parse_ack(text: str, now: float, connection_id: int) -> Ack | None:
    """The :class:`Ack` in a client's text message, or ``None`` if it is not one.

    An ack is a JSON object with a string ``envelope_id``; ``now`` is its receive time.
    """
    if not text.startswith("{"):
        stripped = text.lstrip()
        if not stripped.startswith("{"):
            return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    envelope_id = value.get("envelope_id")
    if not isinstance(envelope_id, str):
        return None
    payload = value.get("payload")
    return Ack(envelope_id, payload if isinstance(payload, dict) else None, now, connection_id, text)
