"""One WebSocket connection of the local Socket Mode server: the per-connection protocol driver.

A :class:`ServerConnection` owns its socket, its ``websockets``
:class:`~websockets.server.ServerProtocol` and its reader thread
(``slack_socket_mode.testing-reader-<id>``). It runs the handshake, reads frames and
applies them; its writes and closes (one writer path) are in its base class
:class:`~._writer.ConnectionWriter`. What it needs from
the server it gets through :class:`ConnectionHooks` (the server's condition, its timers, the
ticket check, registration and recording); what the server asks of it is the block of
methods marked "Server side" (not part of the documented API, which is the attributes,
:attr:`~ServerConnection.is_open` and :meth:`~ServerConnection.wait_closed`).

Locks, in the order they may be taken: ``_write_lock`` (every socket write), then the
server's lock (``hooks.cond``), then ``_proto_lock`` (protocol state, held briefly; nothing
is taken under it). Never is a socket written with the server lock held.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from ._frames import MessageAssembler
from ._timers import TimerQueue
from ._webapi import THREAD_PREFIX
from ._writer import CLOSE_TIMEOUT, ConnectionWriter
from .records import Ack, ReceivedMessage

__all__ = ["CLOSE_TIMEOUT", "ConnectionHooks", "ServerConnection"]

logger = logging.getLogger("slack_socket_mode.testing")

_RECV_SIZE = 256 * 1024

if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter


class _WireLogger(_LoggerAdapter):
    """The logger handed to ``websockets``: its per-connection INFO lines become DEBUG."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *map(_printable, args), **kwargs)


def _printable(arg: object) -> object:
    """``arg``, or a stand-in for a text frame whose payload is not UTF-8 (a hostile peer's).

    websockets 15 (the last release for Python 3.9) raises ``UnicodeDecodeError`` printing one.
    """
    if isinstance(arg, Frame) and arg.opcode is Opcode.TEXT:
        try:
            bytes(arg.data).decode()
        except UnicodeDecodeError:
            return f"TEXT [{len(arg.data)} bytes, not UTF-8]"
    return arg


_WIRE_LOGGER = _WireLogger(logging.getLogger("slack_socket_mode.testing.wire"), {})


class ServerConnection(ConnectionWriter):
    """One WebSocket connection accepted by a :class:`SocketModeServer`.

    Created by the server; tests read its attributes and call :meth:`wait_closed`. The
    attributes are updated by the server's threads: reading them from any thread is safe.

    Attributes:
        id: 1, 2, 3 ... in the order the handshakes completed.
        opened_at: :func:`time.monotonic` time (seconds) of the handshake's 101 response.
        closed_at: :func:`time.monotonic` time at which the TCP connection was closed, or ``None``.
        hello_sent: whether the ``hello`` message was sent (it is sent with the 101 response).
        silenced: set by :meth:`SocketModeServer.silence`.
        disconnect_sent: whether a ``disconnect`` message was sent on it.
        pings_received: ping frames received from the client.
        pongs_received: pong frames received from the client.
        close_code_received: the code of the close frame the client sent, if it sent one.
        closed_by: once closed, who closed it: ``"client"`` (close frame or TCP close from
            the client), ``"server"`` (:meth:`~SocketModeServer.close_connection`,
            :meth:`~SocketModeServer.stop`), ``"reset"`` (:meth:`~SocketModeServer.reset`)
            or ``"error"`` (a socket error or a protocol violation by the client).
        peer: the client's address.
    """

    id: int
    opened_at: float
    closed_at: float | None
    hello_sent: bool
    silenced: bool
    disconnect_sent: bool
    pings_received: int
    pongs_received: int
    close_code_received: int | None
    closed_by: str | None
    _hooks: ConnectionHooks  # the writer needs only part of it (WriterHooks)

    def __init__(self, hooks: ConnectionHooks, sock: socket.socket, peer: Any) -> None:
        self.id = 0
        self.opened_at = 0.0
        self.closed_at = None
        self.hello_sent = False
        self.silenced = False
        self.disconnect_sent = False
        self.pings_received = 0
        self.pongs_received = 0
        self.close_code_received = None
        self.closed_by = None
        self.peer = peer
        self._hooks = hooks
        self._sock = sock
        self._protocol = ServerProtocol(max_size=None, logger=_WIRE_LOGGER)
        # Every socket write happens under _write_lock; protocol state is guarded by the
        # short-held _proto_lock so the reader can parse while a writer is blocked in sendall().
        self._write_lock = threading.Lock()
        self._proto_lock = threading.Lock()
        self._outbox: list[bytes] = []  # protocol output produced by the reader, not yet written
        self._accepted = False  # handshake done: counted in the server's connections
        self._closing = False  # close frame sent or received, or the server is closing it
        self._aborting = False  # reset/stop: write nothing more, just close
        self._closed = False
        self._cause: str | None = None
        self._close_timer_armed = False
        self._eof_written = False
        self._wake = threading.Event()  # wakes a silenced reader
        self._thread: threading.Thread | None = None
        self._assembler = MessageAssembler()  # used by the reader thread only
        self._refused = False  # beyond the app's connection limit: sent too_many_websockets, not hello

    def __repr__(self) -> str:
        state = "open" if self.is_open else f"closed by {self.closed_by}" if self._closed else "connecting"
        return f"<ServerConnection id={self.id} {state}{' silenced' if self.silenced else ''}>"

    @property
    def is_open(self) -> bool:
        """``True`` from the completed handshake until the TCP connection is closed."""
        return self._accepted and not self._closed

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Wait until the TCP connection is closed.

        Args:
            timeout: the longest wait, in seconds.

        Returns:
            ``True`` if it is closed, ``False`` if ``timeout`` passed first. Thread-safe.
        """
        with self._hooks.cond:
            return self._hooks.cond.wait_for(lambda: self._closed, timeout)

    # -- the server's side: its table of connections, routing and faults ------------------

    @property
    def accepted(self) -> bool:
        """Server side: the handshake completed (it was counted among the server's connections)."""
        return self._accepted

    @property
    def is_closed(self) -> bool:
        """Server side: the TCP connection is closed (the reader finished)."""
        return self._closed

    def can_send(self) -> bool:
        """Server side: open and not closing (a silenced connection can, and drops what it gets)."""
        return self._accepted and not (self._closed or self._closing)

    def mark_open(self, connection_id: int, *, hello_sent: bool, refused: bool) -> None:
        """Server side, under the server lock: the handshake succeeded and got ``connection_id``.

        ``refused``: beyond the app's connection limit; it gets ``too_many_websockets`` and
        is never open (it counts as sent a ``disconnect``).
        """
        self.id = connection_id
        self.opened_at = time.monotonic()
        self._accepted = True
        if refused:
            self.disconnect_sent = self._refused = True
        else:
            self.hello_sent = hello_sent

    def mark_closed(self) -> None:
        """Server side, under the server lock: the reader finished and closed the socket."""
        self.closed_at = time.monotonic()
        self.closed_by = self._cause or "client"
        self._closed = True
        self._closing = True

    def claim_close(self, cause: str) -> bool:
        """Server side: record ``cause`` as who closes it (unless one is known); ``False`` if closed."""
        with self._hooks.cond:
            if self._closed:
                return False
            if self._cause is None:
                self._cause = cause
        return True

    def start_reader(self) -> None:
        """Server side: start the reader thread (it runs the handshake, then reads frames)."""
        thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}reader", daemon=True)
        self._thread = thread
        thread.start()

    def join_reader(self, timeout: float) -> None:
        """Server side: wait up to ``timeout`` seconds for the reader thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close_socket(self) -> None:
        """Server side: close the socket (after :meth:`abort`, when the reader is gone or stuck)."""
        try:
            self._sock.close()
        except OSError:
            pass

    # -- reading (the connection's reader thread) ------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            logger.debug("connection %s: reader failed", self.id, exc_info=True)
            self._cause = self._cause or "error"
        finally:
            self._finish()

    def _serve(self) -> None:
        sock = self._sock
        protocol = self._protocol
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except OSError as exc:
                if self._cause is None:
                    self._cause = "error"
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("connection %s: read failed: %r", self.id, exc)
                return
            if self.silenced and not self._aborting:
                # Going silent: nothing more is read or answered until the server closes it.
                self._wake.wait()
                return
            if not data:
                if not self._aborting:
                    with self._proto_lock:
                        protocol.receive_eof()
                        self._outbox.extend(protocol.data_to_send())
                    self._flush_outbox()
                if self._cause is None:
                    self._cause = "client"
                return
            with self._proto_lock:
                protocol.receive_data(data)
                events = protocol.events_received()
                output = protocol.data_to_send()
                if output:
                    self._outbox.extend(output)
                closing = protocol.close_expected()
                failed = protocol.parser_exc
            if self._outbox:
                self._flush_outbox()
            if events:
                if not self._accepted:
                    self._handshake(events)
                else:
                    self._handle_frames(events)
            if failed is not None and not isinstance(failed, EOFError) and self._cause is None:
                self._cause = "error"  # the client broke the protocol; websockets sent a close frame
            if closing or self._closing:
                self.arm_close_timeout()

    def _handshake(self, events: list[Any]) -> None:
        hooks = self._hooks
        request = events[0]
        if not isinstance(request, Request):
            return
        protocol = self._protocol
        if hooks.consume_ticket(request.path):
            response = protocol.accept(request)
        else:
            response = protocol.reject(403, "Failed to open a WebSocket connection: invalid or used ticket.\n")
        if response.status_code != 101:
            with self._write_lock:
                with self._proto_lock:
                    protocol.send_response(response)
                    chunks = self._take_output()
                self._write_chunks(chunks)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("handshake from %s rejected: %s", self.peer, response.status_code)
            self.arm_close_timeout()
            return
        # Register before writing, holding the write lock: once the client has read the
        # hello, the server already lists the connection, and nothing can be written to
        # it before the 101 response and the hello.
        with self._write_lock:
            hello = hooks.register(self)
            with self._proto_lock:
                protocol.send_response(response)
                if hello is not None:
                    protocol.send_text(hello)
                chunks = self._take_output()
            self._write_chunks(chunks)
        threading.current_thread().name = f"{THREAD_PREFIX}reader-{self.id}"
        if self._refused:
            hooks.close(self, 1000, "too_many_websockets")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("connection %s opened from %s", self.id, self.peer)
        if len(events) > 1:
            self._handle_frames(events[1:])

    def _handle_frames(self, events: list[Any]) -> None:
        incoming = self._assembler.feed(events, self.id, time.monotonic())
        self.pings_received += incoming.pings
        self.pongs_received += incoming.pongs
        if incoming.close:
            close = self._protocol.close_rcvd
            self.close_code_received = close.code if close is not None else None
            self._closing = True
            if self._cause is None:
                self._cause = "client"
        if incoming.invalid_utf8:
            self._fail(1007, "invalid UTF-8 in a text message")
        if incoming.recorded:
            self._hooks.record_incoming(incoming.messages, incoming.acks)

    def _fail(self, code: int, reason: str) -> None:
        if self._cause is None:
            self._cause = "error"
        with self._proto_lock:
            try:
                self._protocol.fail(code, reason)
            except Exception:
                pass
            self._outbox.extend(self._protocol.data_to_send())
        self._closing = True
        self._flush_outbox()
        self.arm_close_timeout()

    def _finish(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
        self._hooks.unregister(self)


@dataclass(frozen=True)
class ConnectionHooks:
    """What a :class:`ServerConnection` needs from its server: the whole interface, one way.

    Attributes:
        cond: the server's condition; its lock guards the connection's open/closing/closed
            state, and it is notified when that changes (through ``register``/``unregister``).
        timers: where the close timeout is scheduled.
        fragment_size: the largest frame payload the server sends, in bytes.
        consume_ticket: ``(request path) -> bool``: whether the handshake's ticket is valid
            (it is then used up).
        register: ``(connection) -> hello``: count a completed handshake (calling
            :meth:`ServerConnection.mark_open` under the server lock); returns the text to
            send with the 101 response (``hello``, or a refusal), if any.
        unregister: ``(connection) -> None``: the reader ended; called once, last.
        record_incoming: ``(messages, acks) -> None``: record what a client sent.
        close: ``(connection, code, reason) -> None``: start a clean close from the server.
    """

    cond: threading.Condition
    timers: TimerQueue
    fragment_size: int
    consume_ticket: Callable[[str], bool]
    register: Callable[[ServerConnection], bytes | None]
    unregister: Callable[[ServerConnection], None]
    record_incoming: Callable[[list[ReceivedMessage], list[Ack]], None]
    close: Callable[[ServerConnection, int, str], None]
