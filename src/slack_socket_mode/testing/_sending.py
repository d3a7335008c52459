"""What a test sends through :class:`~.server.SocketModeServer`: envelopes and raw messages.

:class:`ServerSending` is a base class of the server holding its public sending methods;
the work is done by its :class:`~._delivery.Deliverer` (records, routing, redelivery).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from ._connection import ServerConnection
from ._delivery import Deliverer
from .records import prepare
from .samples import load_sample

__all__ = ["ServerSending"]


class ServerSending:
    """Sending methods of :class:`~.server.SocketModeServer` (a base class; see there)."""

    _deliverer: Deliverer  # set by SocketModeServer.__init__

    def make_envelope(
        self,
        type: str = "events_api",
        payload: dict[str, Any] | None = None,
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool = False,
    ) -> dict[str, Any]:
        """Build a valid envelope with a fresh uuid4 ``envelope_id`` (unless one is given).

        ``events_api`` envelopes also carry ``retry_attempt`` 0 and ``retry_reason`` ``""``,
        as Slack's do. Does not send anything.
        """
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "type": type,
            "payload": payload if payload is not None else {},
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            envelope["retry_attempt"] = 0
            envelope["retry_reason"] = ""
        return envelope

    def push(self, envelope: dict[str, Any] | str, *, connection: ServerConnection | None = None) -> str:
        """Send an envelope and record its delivery.

        A dict is sent as compact JSON; a str is sent as is. The delivery's attempt is the
        envelope's ``retry_attempt`` (0 if absent). If ``redelivery_delay`` is set, the
        envelope is redelivered when not acked in time. One socket write per call; use
        :meth:`push_many` to send many envelopes with few writes.

        Args:
            envelope: the envelope; it must have a string ``envelope_id``.
            connection: where to send it; by default the next live connection round-robin
                (open, not silenced, not closing; a connection that was sent a
                ``disconnect`` included, until it closes). If the chosen connection closes
                before the write, another is tried. An envelope sent to a silenced
                connection is recorded but dropped.

        Returns:
            The envelope id.

        Raises:
            ValueError: the envelope has no ``envelope_id`` (or a str is not a JSON object).
            TypeError: ``envelope`` is neither a dict nor a str.
            RuntimeError: no live connection (or ``connection`` is closed or closing), or
                the server is not running.
        """
        item = prepare(envelope)
        self._deliverer.deliver(item, connection, None)
        return item[0]

    def push_many(
        self, envelopes: Iterable[dict[str, Any] | str], *, connection: ServerConnection | None = None
    ) -> list[str]:
        """Send many envelopes, spread round-robin, writing about 64 KB per socket write.

        Same as calling :meth:`push` for each (same records and redeliveries), but much
        cheaper per envelope: for benchmarks. Every envelope is checked before any is sent.

        Returns:
            The envelope ids, in order.

        Raises:
            ValueError, TypeError, RuntimeError: as for :meth:`push` (a RuntimeError may
                come after some envelopes were sent).
        """
        items = [prepare(envelope) for envelope in envelopes]
        self._deliverer.deliver_many(items, connection)
        return [item[0] for item in items]

    def push_sample(
        self, name: str, *, envelope_id: str | None = None, connection: ServerConnection | None = None
    ) -> str:
        """Push one of the shipped samples (see :mod:`slack_socket_mode.testing.samples`).

        Args:
            name: an envelope sample's name, e.g. ``"events_api_message"``.
            envelope_id: replaces the sample's id, so one sample can be pushed many times.
            connection: as for :meth:`push`.

        Returns:
            The envelope id.

        Raises:
            FileNotFoundError: no sample has that name.
            ValueError: the sample is not an envelope.
            RuntimeError: as for :meth:`push`.
        """
        sample = load_sample(name)
        if "envelope_id" not in sample:
            raise ValueError(f"sample {name!r} is not an envelope")
        if envelope_id is not None:
            sample["envelope_id"] = envelope_id
        return self.push(sample, connection=connection)

    def send_text(self, text: str, *, connection: ServerConnection | None = None) -> None:
        """Send a raw text message, not recorded as an envelope (for malformed input tests).

        Args:
            text: the message.
            connection: where to send it; by default the next live connection round-robin.

        Raises:
            RuntimeError: no live connection (or ``connection`` is closed or closing).
        """
        self._deliverer.send_raw(text.encode("utf-8"), True, connection)

    def send_raw_text_bytes(self, data: bytes, *, connection: ServerConnection | None = None) -> None:
        """Send ``data`` as a text frame without checking it is UTF-8 (invalid text tests).

        Raises:
            RuntimeError: as for :meth:`send_text`.
        """
        self._deliverer.send_raw(bytes(data), True, connection)

    def send_binary(self, data: bytes, *, connection: ServerConnection | None = None) -> None:
        """Send a binary message (Slack never does; for malformed input tests).

        Raises:
            RuntimeError: as for :meth:`send_text`.
        """
        self._deliverer.send_raw(bytes(data), False, connection)
