"""The writing and closing half of a server-side connection: one writer path, then the close.

:class:`ConnectionWriter` is the base class of :class:`~._connection.ServerConnection` that
holds every socket write: a message, a batch of messages, a protocol action (ping, close
frame), and the output the reader thread queues (pongs, close replies) in ``_outbox``. Every
write happens under ``_write_lock``; the protocol is touched under the short-held
``_proto_lock`` only, so the reader can parse while a writer is blocked in ``sendall()``.
Closing: :meth:`ConnectionWriter.abort` (TCP close or RST, no more frames) and the close
timeout.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Callable, Protocol

from websockets.protocol import State
from websockets.server import ServerProtocol

from ._frames import encode_message

if TYPE_CHECKING:
    from ._timers import TimerQueue


class WriterHooks(Protocol):
    """What a :class:`ConnectionWriter` needs of its server (the connection's ``ConnectionHooks`` has it).

    Attributes:
        cond: the server's condition (its lock guards the connection's open/closing/closed state).
        timers: where the close timeout is scheduled.
        fragment_size: the largest frame payload the server sends, in bytes.
    """

    @property
    def cond(self) -> threading.Condition: ...
    @property
    def timers(self) -> TimerQueue: ...
    @property
    def fragment_size(self) -> int: ...


__all__ = ["CLOSE_TIMEOUT", "ConnectionWriter"]

logger = logging.getLogger("slack_socket_mode.testing")

#: How long a connection may take to finish closing (after a close frame was sent or
#: received, or a handshake was rejected) before its TCP connection is closed anyway.
CLOSE_TIMEOUT = 2.0

_BATCH_BYTES = 64 * 1024  # send_many() writes about this much per sendall()


class ConnectionWriter:
    """Writes and closes of :class:`~._connection.ServerConnection` (a base class; see there)."""

    # Set by ServerConnection.__init__ (see there for what each means).
    id: int
    silenced: bool
    _hooks: WriterHooks
    _sock: socket.socket
    _protocol: ServerProtocol
    _write_lock: threading.Lock
    _proto_lock: threading.Lock
    _outbox: list[bytes]
    _accepted: bool
    _closing: bool
    _aborting: bool
    _closed: bool
    _cause: str | None
    _close_timer_armed: bool
    _eof_written: bool
    _wake: threading.Event

    # -- writing -------------------------------------------------------------------------

    def is_live(self) -> bool:
        """Server side: open, not closing, not silenced (envelopes may be spread to it)."""
        return self._accepted and not (self._closed or self._closing or self.silenced)

    def send(self, data: bytes, text: bool = True) -> bool:
        """Send one message (fragmented above the server's fragment_size).

        Returns ``False`` if the connection cannot take it (closing or closed). On a
        silenced connection the message is dropped and ``True`` is returned.
        """
        if self.silenced:
            return not self._closed
        with self._write_lock:
            with self._proto_lock:
                if self._closing or self._protocol.state is not State.OPEN:
                    return False
                encode_message(self._protocol, data, text, self._hooks.fragment_size)
                chunks = self._take_output()
            ok = self._write_chunks(chunks)
            if ok and self._outbox:
                # The message went out; a failure to write the reader's queued output (a close
                # reply to a client that already hung up) does not undo its delivery.
                self._drain()
        if self._outbox:  # the reader queued output while we held the write lock
            self._flush_outbox()
        return ok

    def send_many(self, messages: list[bytes]) -> int:
        """Send text messages with as few writes as possible; returns how many were written.

        Writes in slices of about 64 KB so the reader can process acks in between. On a
        silenced connection the messages are dropped (and count as written).
        """
        if self.silenced:
            return 0 if self._closed else len(messages)
        written = 0
        total = len(messages)
        while written < total:
            with self._write_lock:
                with self._proto_lock:
                    if self._closing or self._protocol.state is not State.OPEN:
                        return written
                    end = written
                    size = 0
                    while end < total and size < _BATCH_BYTES:
                        data = messages[end]
                        encode_message(self._protocol, data, True, self._hooks.fragment_size)
                        size += len(data)
                        end += 1
                    chunks = self._take_output()
                ok = self._write_chunks(chunks)
                if ok and self._outbox:
                    self._drain()  # these messages went out, whatever becomes of the reader's output
            if self._outbox:
                self._flush_outbox()
            if not ok:
                return written
            written = end
        return written

    def run_protocol(self, action: Callable[[ServerProtocol], None]) -> bool:
        """Apply ``action`` to the protocol (send_ping, send_close...) and write its output."""
        with self._write_lock:
            with self._proto_lock:
                if self._closed or self._aborting:
                    return False
                try:
                    action(self._protocol)
                except Exception:  # InvalidState, ProtocolError: the connection is closing
                    return False
                chunks = self._take_output()
            ok = self._write_chunks(chunks)
            if ok and self._outbox:
                ok = self._drain()
        if self._outbox:
            self._flush_outbox()
        return ok

    def ping(self, payload: bytes) -> bool:
        """Server side: send a ping frame with ``payload``; ``False`` if it could not be written."""
        return self.run_protocol(lambda protocol: protocol.send_ping(payload))

    def _take_output(self) -> list[bytes]:
        """Protocol output to write, oldest first (call with _proto_lock held)."""
        chunks = self._protocol.data_to_send()
        if self._outbox:
            chunks = self._outbox + chunks
            self._outbox = []
        return chunks

    def _drain(self) -> bool:
        """Write what the reader queued (call with _write_lock held)."""
        while True:
            with self._proto_lock:
                chunks, self._outbox = self._outbox, []
            if not chunks:
                return True
            if not self._write_chunks(chunks):
                return False

    def _flush_outbox(self) -> None:
        """Write queued output unless another thread holds the write lock (it then will)."""
        while True:
            if not self._write_lock.acquire(blocking=False):
                return
            try:
                self._drain()
            finally:
                self._write_lock.release()
            # Output queued after our drain but while we still held the lock: go again.
            if not self._outbox:
                return

    def _write_chunks(self, chunks: list[bytes]) -> bool:
        """Write protocol output to the socket (call with _write_lock held)."""
        if self._aborting:
            return False
        data: list[bytes] = []
        try:
            for chunk in chunks:
                if chunk:
                    data.append(chunk)
                    continue
                # An empty chunk is websockets' SEND_EOF: half-close after what precedes it.
                if data:
                    self._sock.sendall(data[0] if len(data) == 1 else b"".join(data))
                    data = []
                if not self._eof_written:
                    self._eof_written = True
                    self._sock.shutdown(socket.SHUT_WR)
            if data:
                self._sock.sendall(data[0] if len(data) == 1 else b"".join(data))
        except OSError as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("connection %s: write failed: %r", self.id, exc)
            self.abort("error")
            return False
        return True

    # -- closing ---------------------------------------------------------------------------

    def abort(self, cause: str, *, rst: bool = False) -> None:
        """Close the TCP connection now, with no more WebSocket frames.

        With ``rst``, the kernel answers with a TCP RST (SO_LINGER 0) and no FIN is sent.
        """
        with self._hooks.cond:
            if self._closed:
                return
            if self._cause is None:
                self._cause = cause
            self._closing = True
            self._aborting = True
        try:
            if rst:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # SHUT_RD sends nothing to the peer but wakes the reader blocked in recv();
                # the reader then closes the socket, which sends the RST.
                self._sock.shutdown(socket.SHUT_RD)
            else:
                self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._wake.set()

    def arm_close_timeout(self) -> None:
        """Server side: mark it closing and :meth:`abort` it if still open after ``CLOSE_TIMEOUT``."""
        with self._hooks.cond:
            if self._close_timer_armed or self._closed:
                return
            self._close_timer_armed = True
            self._closing = True
        self._hooks.timers.schedule(time.monotonic() + CLOSE_TIMEOUT, self._close_timed_out, None)

    def _close_timed_out(self, _: object) -> None:
        if not self._closed:
            self.abort("server")
