"""Frames in and out of one server-side connection, with no I/O: the sans-I/O half of the driver.

:func:`encode_message` queues a message on a ``websockets`` :class:`~websockets.server.ServerProtocol`,
fragmented at the server's ``fragment_size``; :class:`MessageAssembler` turns the frames the
protocol parsed into what the server records (text messages, acks, control frames). Neither
touches a socket, a lock or a thread: the caller holds whatever lock guards the protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from .records import Ack, ReceivedMessage, parse_ack

__all__ = ["Incoming", "MessageAssembler", "encode_message"]

logger = logging.getLogger("slack_socket_mode.testing")


def encode_message(protocol: ServerProtocol, data: bytes, text: bool, fragment_size: int) -> None:
    """Queue ``data`` as one text (or binary) message: one frame, or frames of ``fragment_size`` bytes."""
    size = fragment_size
    if len(data) <= size:
        if text:
            protocol.send_text(data)
        else:
            protocol.send_binary(data)
        return
    view = memoryview(data)
    first = bytes(view[:size])
    if text:
        protocol.send_text(first, fin=False)
    else:
        protocol.send_binary(first, fin=False)
    for start in range(size, len(data), size):
        protocol.send_continuation(bytes(view[start : start + size]), fin=start + size >= len(data))


@dataclass
class Incoming:
    """What a batch of frames from a client held.

    Attributes:
        messages: the complete text messages, in order (acks included).
        acks: the acks among them.
        pings: ping frames.
        pongs: pong frames.
        close: a close frame arrived.
        invalid_utf8: a text message was not UTF-8; the frames after it were not read.
    """

    messages: list[ReceivedMessage] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    pings: int = 0
    pongs: int = 0
    close: bool = False
    invalid_utf8: bool = False

    @property
    def recorded(self) -> bool:
        """Whether the server has something to record (a message or a control frame)."""
        return bool(self.messages) or bool(self.pings or self.pongs or self.close)


class MessageAssembler:
    """Reassembles fragmented messages across batches of frames (one per connection; not thread-safe)."""

    def __init__(self) -> None:
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None

    def feed(self, events: list[Any], connection_id: int, now: float) -> Incoming:
        """Read the frames among ``events``; ``now`` is their receive time (monotonic seconds).

        Binary messages are skipped (logged at DEBUG). Reading stops at a text message that
        is not UTF-8 (:attr:`Incoming.invalid_utf8`).
        """
        incoming = Incoming()
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                if opcode is Opcode.CONT:
                    if self._fragment_opcode is None:
                        continue  # websockets rejects this before it gets here
                    self._fragments.append(bytes(frame.data))
                    if not frame.fin:
                        continue
                    opcode = self._fragment_opcode
                    payload = b"".join(self._fragments)
                    self._fragments = []
                    self._fragment_opcode = None
                elif not frame.fin:
                    self._fragment_opcode = opcode
                    self._fragments = [bytes(frame.data)]
                    continue
                else:
                    payload = bytes(frame.data)
                if opcode is not Opcode.TEXT:
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("connection %s: binary message ignored (%d bytes)", connection_id, len(payload))
                    continue
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    incoming.invalid_utf8 = True
                    break
                incoming.messages.append(ReceivedMessage(connection_id, text, now))
                ack = parse_ack(text, now, connection_id)
                if ack is not None:
                    incoming.acks.append(ack)
            elif opcode is Opcode.PING:
                incoming.pings += 1
            elif opcode is Opcode.PONG:
                incoming.pongs += 1
            elif opcode is Opcode.CLOSE:
                incoming.close = True
        return incoming
