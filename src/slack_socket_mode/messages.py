"""What a Socket Mode text frame means, with no I/O.

:func:`parse_message` turns the text of one frame into one of :class:`Hello`,
:class:`Disconnect`, :class:`Envelope`, :class:`Other` or :class:`Malformed`. It never
raises on any input. See https://api.slack.com/apis/socket-mode for the messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Union

__all__ = [
    "ENVELOPE_TYPES",
    "Disconnect",
    "Envelope",
    "Hello",
    "Malformed",
    "Message",
    "Other",
    "parse_message",
]

#: The envelope types Slack documents; an object with another type and an ``envelope_id``
#: is still an envelope (Slack may add types) and is dispatched like these.
ENVELOPE_TYPES = frozenset({"events_api", "interactive", "slash_commands"})


@dataclass(frozen=True)
class Hello:
    """The first message on every connection.

    Attributes:
        num_connections: how many connections the app holds, as Slack counts them.
        approximate_connection_time: seconds until Slack will refresh this connection, or None.
        debug_info: Slack's ``debug_info`` object (``host``, ``build_number``, …).
        connection_info: Slack's ``connection_info`` object (``app_id``).
    """

    num_connections: Optional[int]
    approximate_connection_time: Optional[float]
    debug_info: dict[str, Any] = field(default_factory=dict)
    connection_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Disconnect:
    """Slack is about to close the connection (``warning``, ``refresh_requested``, ``link_disabled``, …)."""

    reason: str
    debug_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Envelope:
    """An envelope to dispatch to the listeners and ack.

    Attributes:
        envelope_id: the id the ack must carry.
        type: ``events_api``, ``interactive``, ``slash_commands`` (or a newer type).
        body: the whole message, as listeners receive it.
        retry_attempt: 0 for a first delivery, 1..3 for Slack's redeliveries.
    """

    envelope_id: str
    type: str
    body: dict[str, Any]
    retry_attempt: int


@dataclass(frozen=True)
class Other:
    """A well-formed message we do not act on (logged at DEBUG)."""

    type: Optional[str]


@dataclass(frozen=True)
class Malformed:
    """A frame that is not a valid Socket Mode message; ``problem`` says why (no payload echoed)."""

    problem: str


Message = Union[Hello, Disconnect, Envelope, Other, Malformed]


def parse_message(text: str) -> Message:
    """Classify the text of one frame. Never raises. Pure and thread-safe."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return Malformed("not JSON")
    if not isinstance(body, dict):
        return Malformed(f"JSON {type(body).__name__}, not an object")
    return classify(body)


def classify(body: dict[str, Any]) -> Message:
    """Classify an already-decoded message object. Never raises. Pure and thread-safe."""
    kind = body.get("type")
    envelope_id = body.get("envelope_id")
    if envelope_id is not None:
        if not isinstance(envelope_id, str) or not envelope_id:
            return Malformed("envelope_id is not a non-empty string")
        if not isinstance(kind, str):
            return Malformed(f"envelope {envelope_id} has no type")
        attempt = body.get("retry_attempt")
        return Envelope(envelope_id, kind, body, attempt if isinstance(attempt, int) else 0)
    if kind in ENVELOPE_TYPES:
        return Malformed(f"{kind} envelope without envelope_id")
    if kind == "hello":
        debug_info = body.get("debug_info")
        debug_info = debug_info if isinstance(debug_info, dict) else {}
        act = debug_info.get("approximate_connection_time")
        num = body.get("num_connections")
        info = body.get("connection_info")
        return Hello(
            num_connections=num if isinstance(num, int) else None,
            approximate_connection_time=float(act) if isinstance(act, (int, float)) and act > 0 else None,
            debug_info=debug_info,
            connection_info=info if isinstance(info, dict) else {},
        )
    if kind == "disconnect":
        reason = body.get("reason")
        debug_info = body.get("debug_info")
        return Disconnect(
            reason if isinstance(reason, str) else "unknown",
            debug_info if isinstance(debug_info, dict) else {},
        )
    return Other(kind if isinstance(kind, str) else None)
