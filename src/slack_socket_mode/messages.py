"""What a Socket Mode text frame means, with no I/O; and the plain ack's text.

:func:`parse_message` turns the text of one frame into one of :class:`Hello`,
:class:`Disconnect`, :class:`Envelope`, :class:`Other` or :class:`Malformed`. It never
raises on any input. An envelope whose shape ``SocketModeRequest`` would refuse (a
``payload`` that is ``null``, a number, a list) is :class:`Malformed`, never an exception.
Text from the peer that ends up in a message (a ``disconnect`` reason, an envelope id in a
problem) is redacted. :func:`plain_ack` writes the ack without a payload. See
https://api.slack.com/apis/socket-mode for the messages.

JSON is decoded by :func:`decode_json`: with ``orjson`` installed (the ``fast`` extra, opt-in) by
orjson, three to four times faster on Slack's envelopes (an 822-byte ``app_mention``: 7.1 µs with
the standard library, 2.2 µs with orjson; a 67 KB ``block_actions``: 176 µs and 88 µs). Text orjson
refuses (NaN, Infinity, lone surrogates, nesting past its limit) is decoded again by the standard
library, so the result is what ``json.loads`` gives, or its error, with one exception that is
orjson's: an integer outside the 64-bit range (below -2**63 or above 2**64 - 1) decodes as a float
(one too large even for a float is refused by orjson, and decoded by the standard library).
Slack sends none (its ids and timestamps are strings); install the extra only where that holds
for the payloads your listeners read.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union

from .records import record
from .redaction import redact

if TYPE_CHECKING:  # typing.TypeGuard is new in 3.10; annotations are not evaluated at run time
    from typing_extensions import TypeGuard

_fast_loads: Optional[Callable[[str], Any]]
try:
    from orjson import loads as _fast_loads
except ImportError:  # the fast extra is not installed: the standard library alone
    _fast_loads = None

#: True when :func:`decode_json` uses orjson (installed, as the ``fast`` extra installs it).
FAST_JSON = _fast_loads is not None

__all__ = [
    "ENVELOPE_TYPES",
    "Disconnect",
    "Envelope",
    "Hello",
    "Malformed",
    "Message",
    "MAX_ENVELOPE_ID",
    "FAST_JSON",
    "Other",
    "decode_json",
    "envelope_id_problem",
    "parse_message",
    "plain_ack",
]

#: The envelope types Slack documents; an object with another type and an ``envelope_id``
#: is still an envelope (Slack may add types) and is dispatched like these.
ENVELOPE_TYPES = frozenset({"events_api", "interactive", "slash_commands"})

#: A str as a JSON string, escaped as json.dumps does by default (ensure_ascii).
_json_string = json.encoder.encode_basestring_ascii


def plain_ack(envelope_id: str) -> str:
    """The text of an ack without a payload, ``{"envelope_id":"…"}``, built without a JSON encoder.

    Thread-safe (pure). The same text as ``json.dumps({"envelope_id": envelope_id},
    separators=(",", ":"))``.
    """
    return '{"envelope_id":' + _json_string(envelope_id) + "}"


@record
class Hello(NamedTuple):
    """The first message on every connection.

    Attributes:
        num_connections: how many connections the app holds, as Slack counts them.
        approximate_connection_time: seconds until Slack will refresh this connection, or None.
        debug_info: Slack's ``debug_info`` object (``host``, ``build_number``, …).
        connection_info: Slack's ``connection_info`` object (``app_id``).
    """

    num_connections: Optional[int]
    approximate_connection_time: Optional[float]
    debug_info: dict[str, Any]
    connection_info: dict[str, Any]


@record
class Disconnect(NamedTuple):
    """Slack is about to close the connection (``warning``, ``refresh_requested``, ``link_disabled``, …)."""

    reason: str
    debug_info: dict[str, Any]


@record
class Envelope(NamedTuple):
    """An envelope to dispatch to the listeners and ack.

    Attributes:
        envelope_id: the id the ack must carry.
        type: ``events_api``, ``interactive``, ``slash_commands`` (or a newer type).
        body: the whole message, as listeners receive it.
        retry_attempt: 0 for a first delivery, 1..3 for Slack's redeliveries (a value that is not a
            non-negative integer counts as 0).
    """

    envelope_id: str
    type: str
    body: dict[str, Any]
    retry_attempt: int


@record
class Other(NamedTuple):
    """A well-formed message we do not act on (logged at DEBUG)."""

    type: Optional[str]


@record
class Malformed(NamedTuple):
    """A frame that is not a valid Socket Mode message; ``problem`` says why (no payload echoed)."""

    problem: str


#: The longest ``envelope_id`` the client takes, in characters. Slack's are UUID-like (36
#: characters); an envelope with a longer one is :class:`Malformed` (not echoed or kept).
MAX_ENVELOPE_ID = 256
#: Values of ``approximate_connection_time`` above this (a year) are ignored.
_MAX_SECONDS = 365 * 24 * 3600

#: A ``disconnect`` reason longer than this is cut (Slack's are a few words).
_MAX_REASON = 100

Message = Union[Hello, Disconnect, Envelope, Other, Malformed]


def envelope_id_problem(envelope_id: object) -> Optional[str]:
    """Why ``envelope_id`` is not one the client takes (a non-empty str of at most
    :data:`MAX_ENVELOPE_ID` characters), or ``None`` if it is. The value is never echoed.

    The one rule: :func:`classify` applies it to every envelope, and the recording reader
    (:func:`slack_socket_mode.recording.read_recording`) to every recorded one. Pure and thread-safe.
    """
    if isinstance(envelope_id, str) and 0 < len(envelope_id) <= MAX_ENVELOPE_ID:
        return None
    return f"envelope_id is not a string of 1 to {MAX_ENVELOPE_ID} characters"


def decode_json(text: str) -> Any:
    """``json.loads(text)``, by orjson where it can (see the module's docstring). Pure and thread-safe.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError``).
        RecursionError: nested too deeply for the standard library.
    """
    if _fast_loads is not None:
        try:
            return _fast_loads(text)
        except ValueError:  # orjson.JSONDecodeError: the standard library decides, and says why
            pass
    return json.loads(text)


def parse_message(text: str) -> Message:
    """Classify the text of one frame. Never raises. Pure and thread-safe."""
    try:
        body = decode_json(text)
    except (ValueError, RecursionError):
        return Malformed("not JSON")
    if not isinstance(body, dict):
        return Malformed(f"JSON {type(body).__name__}, not an object")
    return classify(body)


def classify(body: dict[str, Any]) -> Message:
    """Classify an already-decoded message object. Never raises. Pure and thread-safe."""
    kind = body.get("type")
    if not isinstance(kind, str):
        kind = None
    envelope_id = body.get("envelope_id")
    if envelope_id is not None:
        problem = envelope_id_problem(envelope_id)
        if problem is not None:
            return Malformed(problem)
        if kind is None:
            return Malformed(f"envelope {redact(envelope_id)} has no type")
        payload = body.get("payload")
        if "payload" in body and not isinstance(payload, (dict, str)):  # what SocketModeRequest refuses
            return Malformed(
                f"envelope {redact(envelope_id)} ({redact(kind)[:64]}) has a payload that is JSON "
                f"{_json_type(payload)}, not an object"
            )
        attempt = body.get("retry_attempt")
        if not _is_int(attempt) or attempt < 0:
            attempt = 0
        return Envelope(envelope_id, kind, body, attempt)
    if kind in ENVELOPE_TYPES:
        return Malformed(f"{kind} envelope without envelope_id")
    if kind == "hello":
        debug_info = body.get("debug_info")
        debug_info = debug_info if isinstance(debug_info, dict) else {}
        act = debug_info.get("approximate_connection_time")
        num = body.get("num_connections")
        info = body.get("connection_info")
        return Hello(
            num_connections=num if _is_int(num) else None,
            approximate_connection_time=_seconds(act),
            debug_info=debug_info,
            connection_info=info if isinstance(info, dict) else {},
        )
    if kind == "disconnect":
        reason = body.get("reason")
        debug_info = body.get("debug_info")
        return Disconnect(
            redact(reason)[:_MAX_REASON] if isinstance(reason, str) else "unknown",  # it reaches logs and listeners
            debug_info if isinstance(debug_info, dict) else {},
        )
    return Other(kind)


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (``null``, ``number``, ``array``, …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else type(value).__name__


def _is_int(value: Any) -> TypeGuard[int]:
    """An int that is not a bool (JSON ``true`` decodes to one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: Any) -> Optional[float]:
    """A positive, finite number of seconds (at most a year), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and not 0 < value <= _MAX_SECONDS:  # before float(): huge ints overflow
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS else None
