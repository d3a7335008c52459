"""The reader half of a :class:`~slack_socket_mode.connection.Connection`: frames in, text messages out.

:class:`FrameReader` is the reader thread's loop over websocket-client's frame parser, an object
each connection owns: it checks each frame's announced size before its payload is read
(``max_message_size``), reassembles fragmented messages, answers pings, takes the server's close
frame, and hands each complete text message to the client. :class:`ReadAhead` feeds the parser
from one large ``recv``. The loop is entered once per reader thread and keeps the connection in a
local, so owning it costs the hot path nothing over being the connection: one method per frame,
no extra call layer. It reads the connection's state that the other threads change (aborted,
closing, which reader may read) and writes what the health thread reads (``last_received``).
Runs only on the connection's current reader thread (:meth:`Connection.take_over`).
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import websocket
from websocket import ABNF

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["FrameReader", "ReadAhead"]

_TEXT, _BINARY, _CONT = ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT
_CLOSE, _PING, _PONG = ABNF.OPCODE_CLOSE, ABNF.OPCODE_PING, ABNF.OPCODE_PONG


class FrameReader:
    """Reads one connection's frames on its reader thread (see the module's docstring).

    Args:
        conn: the connection it reads for (its state, its writes, and the first argument of ``on_text``).
        ws: the connection's websocket-client ``WebSocket``; its ``frame_buffer`` is the parser.
        on_text: called with ``(conn, text)`` for each complete text message.
        logger: where to log.
        max_message_size: bytes; a larger message ends the connection before its payload is read.
        write_timeout: seconds a pong may wait for the connection's send lock.
        trace_limit: log each text message received at DEBUG, cut to this many characters; None: none.
        trace_pings: log each ping and pong received at DEBUG.

    Not thread-safe: used by the connection's current reader thread only.
    """

    __slots__ = (
        "_conn",
        "_logger",
        "_max_message_size",
        "_on_text",
        "_trace_limit",
        "_trace_pings",
        "_write_timeout",
        "_ws",
    )

    def __init__(
        self,
        conn: Connection,
        ws: websocket.WebSocket,
        *,
        on_text: Callable[[Connection, str], None],
        logger: logging.Logger,
        max_message_size: int,
        write_timeout: float,
        trace_limit: Optional[int],
        trace_pings: bool,
    ) -> None:
        self._conn = conn
        self._ws = ws
        self._on_text = on_text
        self._logger = logger
        self._max_message_size = max_message_size
        self._write_timeout = write_timeout
        self._trace_limit = trace_limit
        self._trace_pings = trace_pings

    def read(self, generation: int) -> Optional[str]:
        """Read frames until the connection ends; return why it ended, or None if taken over.

        The size bound holds before a payload is read: the frame's header and announced
        length are read first (websocket-client's ``frame_buffer`` keeps them, and
        ``recv_frame`` resumes from there), and a frame that would take the message past
        ``max_message_size`` ends the connection before a byte of its payload is read or
        allocated. This costs no syscall and no allocation beyond what ``recv_frame`` does.
        """
        # websocket-client's frame_buffer: its header, length and frames are checked here, at our boundary.
        conn = self._conn  # its state is read and written through this local: no extra layer per frame
        frames: Any = self._ws.frame_buffer
        needs_header, recv_header = frames.needs_header, frames.recv_header
        needs_length, recv_length = frames.needs_length, frames.recv_length
        recv_frame = frames.recv_frame
        on_text = self._on_text
        limit = self._max_message_size
        parts: list[bytes] = []
        size = 0  # bytes of the message being assembled
        assembling = 0  # opcode of the message being assembled, 0 if none
        while True:
            if conn._aborted:  # read-ahead may hold frames: an aborted connection delivers none of them
                return "aborted"
            if needs_header():
                recv_header()
            if needs_length():
                recv_length()
            if frames.length > limit - size:
                refused = self._refuse_frame(frames.header[4], frames.length, size)
                if refused is not None:
                    return refused
            frame = recv_frame()
            conn.last_received = time.monotonic()
            opcode = frame.opcode
            if opcode == _TEXT and frame.fin and not assembling:  # the common case
                self._deliver(conn, on_text, frame.data)
                if conn._generation != generation:  # taken over while running listeners
                    return None
            elif opcode in (_TEXT, _BINARY, _CONT):
                if (opcode == _CONT) != bool(assembling):
                    raise websocket.WebSocketProtocolException("unexpected continuation frame")
                if opcode != _CONT:
                    assembling = opcode
                parts.append(frame.data)
                size += len(frame.data)
                if frame.fin:
                    data, kind = b"".join(parts), assembling
                    parts, size, assembling = [], 0, 0
                    if kind == _TEXT:
                        self._deliver(conn, on_text, data)
                        if conn._generation != generation:
                            return None
                    else:
                        self._logger.warning("connection %d: skipped a binary message of %d bytes", conn.id, len(data))
            elif opcode == _PING:  # a pong waits for an ack being written, never for a peer that does not read
                if self._trace_pings:
                    self._logger.debug("connection %d: received a ping; sending a pong", conn.id)
                conn._write_control(_PONG, frame.data, wait=self._write_timeout)
            elif opcode == _CLOSE:
                code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else 1005
                conn.close_code = code
                if not conn._close_sent:
                    conn.close(code if code not in (1005, 1006) else 1000)
                    return f"server closed the connection (code {code})"
                return "closed by client"
            elif self._trace_pings:  # _PONG: last_received is all a pong is for
                self._logger.debug("connection %d: received a pong", conn.id)

    def _refuse_frame(self, opcode: int, length: int, assembled: int) -> Optional[str]:
        """Decide on a frame whose header announces more bytes than the message has room for.

        Called by :meth:`read` (the slow path only) before the payload is read.

        Args:
            opcode: the frame's opcode.
            length: the payload length its header announces, in bytes.
            assembled: bytes of the fragmented message assembled so far (0 if none).

        Returns:
            None to read the frame after all (a control frame of at most 125 bytes, which is
            not part of the message), else the reason the connection ends (logged).

        Raises:
            websocket.WebSocketProtocolException: a control frame announcing more than 125 bytes.
        """
        if opcode & 0x8:  # ping, pong, close: not part of the message being assembled
            if length <= 125:
                return None
            raise websocket.WebSocketProtocolException(f"control frame of {length} bytes (at most 125 allowed)")
        return self._oversize(assembled + length)

    def _deliver(self, conn: Connection, on_text: Callable[[Connection, str], None], data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._logger.warning(
                "connection %d: skipped a text message of %d bytes that is not UTF-8", conn.id, len(data)
            )
            return
        if self._trace_limit is not None:
            conn._trace("received", text)
        try:
            on_text(conn, text)
        except Exception:  # a bug of ours on one message is not a transport error: log it and read on
            self._logger.exception("connection %d: handling a message of %d characters failed", conn.id, len(text))

    def _oversize(self, size: int) -> str:
        self._logger.error(
            "connection %d: message of more than %d bytes exceeds max_message_size (%d); replacing the connection",
            self._conn.id,
            size,
            self._max_message_size,
        )
        return f"message over max_message_size ({size} bytes)"


class ReadAhead:
    """The byte source of websocket-client's frame parser, reading ahead from the socket.

    websocket-client's ``frame_buffer`` asks its byte source for exactly the bytes it needs
    next: 2 bytes of header, then the extended length, then the payload; on a plain socket
    that is three ``recv`` system calls per frame, each releasing and retaking the GIL. This
    source reads up to :attr:`CHUNK` bytes at a time and serves the parser's requests from
    them, so a frame that arrived whole costs one ``recv``, and a burst of small frames one
    ``recv`` per :attr:`CHUNK` bytes. It only buffers bytes; the framing stays websocket-client's.

    At most ``CHUNK`` bytes are held, whatever the frames announce, so the size bound of
    :meth:`FrameReader.read` still holds before a large payload is read. Used by the
    one thread that reads the connection at a time; not thread-safe.
    """

    CHUNK = 65536  #: bytes asked of the socket per read

    __slots__ = ("_buffer", "_fill", "_position")

    def __init__(self, fill: Callable[[int], bytes]) -> None:
        self._fill = fill  # websocket-client's WebSocket._recv: raises on a closed connection
        self._buffer = b""
        self._position = 0

    def __call__(self, size: int) -> bytes:
        """Up to ``size`` bytes (at least one); blocks until some are there."""
        buffer, position = self._buffer, self._position
        if position >= len(buffer):
            buffer = self._fill(self.CHUNK)
            position = 0
            if size >= len(buffer):  # the read is all the parser wants: hand it over as it is
                self._buffer, self._position = b"", 0
                return buffer
            self._buffer = buffer
        chunk = buffer[position : position + size]
        self._position = position + len(chunk)
        return chunk
