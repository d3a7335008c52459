"""One Socket Mode WebSocket connection, on websocket-client's low-level ``WebSocket``.

A :class:`Connection` does the handshake, runs one reader thread that blocks in
``recv`` (no polling, no sleeps), reassembles fragmented messages, answers pings, and
hands each complete text message to the client. Every write goes through one lock.

The client may run an envelope's listeners on the reader thread itself (no hand-off to a
worker: the ack goes out from the thread that read the envelope). While it does, the
connection is *inline* (:meth:`begin_inline`); if the listeners take too long, the client
calls :meth:`take_over` and a new reader thread goes on reading the socket while the old
one finishes the listeners and then ends. Exactly one thread reads the socket at a time.
Closing sends a close frame and lets the reader run until the server's close frame
arrives; the client aborts the socket if that takes too long (a bounded handshake).

Who may block where (the bounds on a peer that stops reading or trickles):

* An ack (:meth:`send_text`) waits at most ``write_timeout`` for the send lock, and the
  write itself is watched: the client's health thread reads :meth:`write_overdue` and aborts
  a connection whose write has run longer than ``write_timeout`` (an abort shuts the socket
  down, which makes the blocked ``send`` fail at once). Such a connection is dead. While
  ``close()`` waits for listeners it does the same sooner, for a write that makes no progress
  (:meth:`write_stalled`: the peer acknowledges nothing of it).
* Pings, pongs and close frames are written only when they cannot block on the peer
  (:meth:`_write_control`: the socket is writable). A ping (the health thread's) is skipped
  if the send lock is taken; a pong (the reader's) waits for it up to ``write_timeout``; a
  close frame waits 50 ms, then becomes an abort. So the health thread never waits on a
  connection, and the reader never on a peer's reading.
* The handshake (:meth:`open`) runs on the client's session thread with a per-read timeout;
  a peer that trickles bytes is cut off by :meth:`abort`, which the client calls when the
  open attempt's one deadline passes (or on ``close()``), from another thread.
* Redirects in the handshake are refused (Slack never redirects): the URL the peer tried to
  send the client to is named in the error, without its query.

The reader thread's loop over websocket-client's frame parser is the connection's own
(:meth:`Connection._read_frames`): it checks each frame's announced size before its payload is read
(``max_message_size``), reassembles fragmented messages, answers pings, takes the server's close
frame, and hands each complete text message to the client. :class:`ReadAhead` feeds the parser
from one large ``recv``. How a connection ended is an :class:`~slack_socket_mode.ends.End`, given to
``on_closed``.

Transport errors (the handshake's, a read's, a write's) are caught as
:data:`~slack_socket_mode.boundary.TRANSPORT_ERRORS` and mapped to ours in
:mod:`slack_socket_mode.boundary`, the one place where that is done.
"""

from __future__ import annotations

import functools
import logging
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit

import websocket
from websocket import ABNF

from .boundary import TRANSPORT_ERRORS, handshake_error, transport_end, write_error
from .ends import End, EndKind
from .errors import NotConnectedError, SocketModeError
from .redaction import redact
from .urls import safe_url

__all__ = ["CORK_DELAY", "CORK_FRAMES", "NOWAIT_MAX", "Connection", "OpenSocket", "ReadAhead", "await_ended", "tunnel"]

_TEXT, _BINARY, _CONT = ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT
_CLOSE, _PING, _PONG = ABNF.OPCODE_CLOSE, ABNF.OPCODE_PING, ABNF.OPCODE_PONG

#: The longest text :meth:`Connection.try_send_text` sends (characters): a socket with room to write
#: now takes a frame this small whole (Linux reports room once a third of the buffer is free).
NOWAIT_MAX = 4096
#: Seconds a close frame waits for an ack being written before the connection is aborted instead.
_CLOSE_LOCK_WAIT = 0.05
#: Acks the reader holds back at most while more frames are already read (see :meth:`Connection.send_text`):
#: this many frames, :data:`NOWAIT_MAX` bytes of them, held at most this many seconds (between two acks).
CORK_FRAMES = 16
CORK_DELAY = 0.002
#: Acks are held only where a slow listener on the reader is taken over within this many seconds
#: (``handoff_after``): the new reader writes them, so that none waits on it for longer.
CORK_MAX_HANDOFF = 0.1
#: Linux's SIOCOUTQ (the same number as TIOCOUTQ): the bytes of a socket's send queue the peer has not acknowledged.
_SIOCOUTQ: Optional[int] = None
if sys.platform.startswith("linux"):
    import fcntl
    import termios

    _SIOCOUTQ = termios.TIOCOUTQ
#: Opens a TCP connection to ``(host, port)`` within ``timeout`` seconds (a proxy tunnel).
OpenSocket = Callable[[str, int, float], socket.socket]


class Connection:
    """A Socket Mode WebSocket.

    Args:
        connection_id: the client's number for it (1, 2, …), used in logs and thread names.
        url: the single-use ``wss://`` URL from ``apps.connections.open``.
        on_text: called on the reader thread with ``(connection, text)`` for each text message.
        on_closed: called once on the reader thread with ``(connection, end)`` when it ends
            (an :class:`~slack_socket_mode.ends.End`).
        thread_name: name for the reader thread.
        max_message_size: bytes; a larger message makes the connection be replaced.
        connect_options: keyword arguments for ``websocket.WebSocket.connect`` (proxy settings).
        sslopt: websocket-client's TLS options (``{"context": ssl_context}``).
        write_timeout: seconds a write (an ack) may take, waiting for the send lock included,
            before the connection is given up (see the module's bounds).
        open_socket: opens the TCP connection instead of websocket-client (an HTTP proxy
            tunnel with extra headers, see :meth:`.ProxySettings.open_tunnel`); TLS is then
            started here, with ``sslopt``'s context.
        trace_limit: log each text message sent and received at DEBUG (redacted), cut to
            this many characters; None logs none (the hot path then costs one check).
        trace_pings: log each ping and pong sent and received at DEBUG.
        hold_acks: let the reader hold acks to write them together (:meth:`send_text`); the client
            turns it off where ``handoff_after`` is above :data:`CORK_MAX_HANDOFF`.
        on_unsent: called, with no lock of the connection held, with the texts of held acks that
            were not written (the write failed, or the connection was given up or ended first); the
            client keeps them for the next ``hello``.

    Thread-safety: :meth:`send_text`, :meth:`ping`, :meth:`close`, :meth:`abort` and
    :meth:`write_overdue` may be called from any thread; :meth:`open` and :meth:`start` once,
    by the owner.
    """

    def __init__(
        self,
        connection_id: int,
        url: str,
        *,
        on_text: Callable[[Connection, str], None],
        on_closed: Callable[[Connection, End], None],
        logger: logging.Logger,
        thread_name: str,
        max_message_size: int,
        connect_options: Optional[dict[str, Any]] = None,
        sslopt: Optional[dict[str, Any]] = None,
        write_timeout: float = 5.0,
        open_socket: Optional[OpenSocket] = None,
        trace_limit: Optional[int] = None,
        trace_pings: bool = False,
        hold_acks: bool = True,
        on_unsent: Optional[Callable[[list[str]], None]] = None,
    ) -> None:
        self.id = connection_id
        self._on_unsent = on_unsent
        self._hold_acks = hold_acks  # False: every ack is written at once (see send_text)
        self._url = url
        self._on_closed = on_closed
        self._logger = logger
        self._connect_options = connect_options or {}
        self._write_timeout = write_timeout
        self._sslopt = sslopt
        self._open_socket = open_socket
        self._trace_limit = trace_limit
        self._trace_pings = trace_pings
        # Every write goes through self._send_lock, so websocket-client's own locks are off.
        self._ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False, sslopt=sslopt)
        self._on_text = on_text
        self._max_message_size = max_message_size
        # Lock order: the last of all (docs/threading.md, "Locks"): guards the socket's write side
        # (frames go out whole, one at a time), _close_sent and _writing_since. Nothing else is
        # taken while it is held, and it is never held by the client's health thread or a reader
        # for longer than a write that cannot block (_write_control).
        self._send_lock = threading.Lock()
        # _close_sent, _aborted and _generation are read by the reader on each frame
        self._close_sent = False
        # Ack frames the reader holds back to write with the next ones, one write for all (send_text):
        # guarded by _send_lock; appended by the reader only, written by whoever writes next.
        self._corked: list[bytes] = []
        self._corked_texts: list[str] = []  # their texts, given back (on_unsent) if they are not written
        self._unsent: list[str] = []  # texts of held acks not written, for on_unsent once the lock is let go
        self._corked_bytes = 0
        self._corked_since = 0.0  # monotonic time the first of them was held back
        self._read_ahead: Optional[ReadAhead] = None  # the frame parser's byte source, once open
        self._writing_since: Optional[float] = None  # monotonic start of the write in progress
        # write_stalled()'s last look: (the write's _writing_since, the send queue then, when it last changed)
        self._queue_seen: tuple[Optional[float], Optional[int], float] = (None, None, 0.0)
        self._aborted = False
        self._ended = threading.Event()
        self._thread_name = thread_name
        self._generation = 0  # which reader thread may read: bumped by take_over()
        self._reader = threading.Thread(target=self._read_loop, args=(0,), name=thread_name, daemon=True)
        self._readers = [self._reader]  # every reader thread started, the current one last
        #: monotonic seconds when the current reader began running listeners inline, or None
        self.inline_since: Optional[float] = None
        #: monotonic seconds when the last frame of any kind arrived
        self.last_received = time.monotonic()
        #: monotonic seconds when our last ping was sent, or None
        self.last_ping: Optional[float] = None
        #: True once the client stopped routing new work to it (replaced)
        self.draining = False
        #: the close code the server sent, if it closed the connection
        self.close_code: Optional[int] = None
        #: True while the reader waits for a free worker (liveness checks are paused)
        self.backpressured = False
        # One item per ack routed here and not yet written (ack_routed/ack_written): append and pop are
        # atomic, so the ack path takes no lock for it; a draining connection is not closed while any is.
        self._acks_on_way: deque[None] = deque()

    def __repr__(self) -> str:
        state = "ended" if self._ended.is_set() else ("closing" if self._close_sent else "open")
        return f"<Connection {self.id} {safe_url(self._url)} {state}>"

    @property
    def url(self) -> str:
        """The URL without its query (the ticket), for logs."""
        return safe_url(self._url)

    @property
    def can_send(self) -> bool:
        """True until a close frame was sent, the connection was aborted or it ended."""
        return not self._close_sent and not self._aborted and not self._ended.is_set()

    def ack_routed(self) -> None:
        """An ack was routed here (the ledger says so, under its lock): it is on its way until :meth:`ack_written`."""
        self._acks_on_way.append(None)

    def ack_written(self) -> None:
        """An ack routed here was written, here or elsewhere, or given up on. Lock-free."""
        try:
            self._acks_on_way.pop()
        except IndexError:  # not routed through the ledger's on_routed: nothing was counted
            pass

    @property
    def acks_on_way(self) -> int:
        """Acks routed here and not yet written (a draining connection waits for them). Lock-free."""
        return len(self._acks_on_way)

    @property
    def ended(self) -> bool:
        """True once the reader has finished and the socket is closed."""
        return self._ended.is_set()

    def open(self, timeout: float) -> None:
        """Do the WebSocket handshake, in at most ``timeout`` seconds.

        Raises:
            ConnectionFailedError: refused, timed out, TLS failure, or a handshake
                answered with a non-101 status (``status`` set).
            ProxyAuthError: the proxy answered HTTP 407.
        """
        failure: Optional[SocketModeError] = None
        try:
            if self._aborted:
                raise websocket.WebSocketTimeoutException("aborted before the handshake")
            if self._open_socket is not None:
                self._ws.connect(
                    self._url,
                    timeout=timeout,
                    suppress_origin=True,
                    redirect_limit=0,
                    socket=tunnel(self._open_socket, self._url, self._sslopt, timeout),
                )
            else:
                self._ws.connect(
                    self._url, timeout=timeout, suppress_origin=True, redirect_limit=0, **self._connect_options
                )
            if self._aborted:  # the deadline passed as the handshake ended
                raise websocket.WebSocketTimeoutException("the open attempt's deadline passed")
            if getattr(self._ws.handshake_response, "status", 101) != 101:
                # websocket-client 1.9.0 (the last for Python 3.9) takes a redirect it did not follow
                # for a finished handshake; later releases raise this themselves.
                raise websocket.WebSocketException("Redirect limit exhausted")
            sock = self._ws.sock
            if sock is None:
                raise websocket.WebSocketConnectionClosedException("the handshake left no socket")
            sock.settimeout(None)  # the reader blocks; close() and abort() unblock it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # websocket-client's frame parser asks for the header, the length and the payload of
            # each frame separately; feed it from one large read instead (see ReadAhead).
            frame_buffer: Any = self._ws.frame_buffer  # websocket-client 1.9.0 types recv as returning int
            self._read_ahead = ReadAhead(functools.partial(websocket.recv, sock), before_wait=self.flush)
            frame_buffer.recv = self._read_ahead
        except Exception as e:  # OSError, TLS, websocket-client, python-socks and the proxy's errors alike
            self._ws.shutdown()
            failure = handshake_error(e, self._ws, self.url, aborted=self._aborted)  # the one mapping
        if failure is not None:
            # raised outside the except clauses: no __context__ (the proxy's error may name its credentials)
            raise failure
        self.last_received = time.monotonic()

    def start(self) -> None:
        """Start the reader thread."""
        self._reader.start()

    def is_reader(self) -> bool:
        """True on the thread that reads this connection now."""
        return threading.current_thread() is self._reader

    def begin_inline(self, now: float) -> None:
        """The reader is about to run listeners itself (called on the reader thread).

        The caller serialises this with :meth:`end_inline` and :meth:`take_over` (one lock).
        """
        self.inline_since = now

    def end_inline(self) -> None:
        """The reader's listeners returned (called on the thread that ran them).

        On a reader that was taken over meanwhile this changes nothing: ``inline_since`` is then
        the new reader's (its own inline run, watched for a take-over in turn), not this one's.
        The caller serialises this with :meth:`begin_inline` and :meth:`take_over` (one lock).
        """
        if threading.current_thread() is self._reader:
            self.inline_since = None

    def take_over(self) -> bool:
        """Start a new reader thread while the current one runs listeners inline.

        The old reader finishes its listeners and ends without reading again; the new one
        goes on from the next byte (the read-ahead buffer and the frame parser are the
        connection's, not the thread's). The caller serialises this with
        :meth:`begin_inline` and :meth:`end_inline`.

        Returns:
            True if a new reader was started; False if the reader is not inline or the
            connection has ended.
        """
        if self.inline_since is None or self._ended.is_set():
            return False
        self.inline_since = None
        self._generation += 1
        generation = self._generation
        self._reader = threading.Thread(
            target=self._read_loop, args=(generation,), name=f"{self._thread_name}.{generation}", daemon=True
        )
        self._readers = [t for t in self._readers if t.is_alive()] + [self._reader]
        self._reader.start()
        return True

    def send_text(self, text: str) -> None:
        """Send one text frame, waiting at most ``write_timeout`` for the send lock.

        The write itself is bounded by its owner's watchdog (:meth:`write_overdue`); a write that
        fails, or a lock that stays taken, gives the connection up (:meth:`abort`).

        On the reader thread, while more bytes are already read ahead (a burst: the next
        envelope is there), a frame of at most :data:`NOWAIT_MAX` characters is held back
        (*corked*) and written with the ones that follow, in one socket write: when the reader
        would wait for the socket (:class:`ReadAhead` calls :meth:`flush`), or another thread
        writes on the connection, or :data:`CORK_FRAMES` frames or :data:`NOWAIT_MAX` bytes are
        held, or the first was held :data:`CORK_DELAY` seconds, whichever comes first. A new
        reader (:meth:`take_over`) writes them as it starts. Held acks that are not written (the
        write fails, the connection is given up or ends first) go to ``on_unsent``, which keeps
        them for the next ``hello``; an ack in a socket that then fails is lost, and the ledger
        acks Slack's redelivery again.

        Raises:
            NotConnectedError: the connection is closing, closed, or was given up.
        """
        if self._trace_limit is not None:
            self._trace("sending", text)
        ahead = self._read_ahead
        if not self._send_lock.acquire(timeout=self._write_timeout):
            self.abort()
            raise NotConnectedError(f"connection {self.id}: a write waited {self._write_timeout:g} s; given up")
        failure: Optional[SocketModeError] = None
        try:
            if self._close_sent or self._aborted:
                raise NotConnectedError(f"connection {self.id} is closing")
            # Decided under the send lock: a reader taken over while it waited for it is no longer the reader.
            cork = (
                self._hold_acks
                and ahead is not None
                and ahead.buffered
                and len(text) <= NOWAIT_MAX
                and self.is_reader()
            )
            corked = self._corked
            if not cork and not corked:
                self._writing_since = time.monotonic()
                try:
                    self._ws.send(text)
                except TRANSPORT_ERRORS as e:
                    self.abort()
                    failure = write_error(self.id, e)
                finally:
                    self._writing_since = None
            else:
                frame = ABNF.create_frame(text, _TEXT).format()
                now = time.monotonic()
                if not corked:
                    self._corked_since = now
                corked.append(frame)
                self._corked_texts.append(text)
                self._corked_bytes += len(frame)
                if (
                    not cork
                    or len(corked) >= CORK_FRAMES
                    or self._corked_bytes >= NOWAIT_MAX
                    or now - self._corked_since >= CORK_DELAY
                ):
                    failure = self._write_corked()
                    if failure is not None and self._unsent and self._unsent[-1] is text:
                        self._unsent.pop()  # this one is the caller's to send elsewhere (it is told by the raise)
                    cork = False
        finally:
            self._send_lock.release()
        if self._unsent:
            self._give_back()
        if failure is not None:
            raise failure  # outside the except clause: no __context__
        if cork and not self.is_reader():  # taken over as it held the ack back: the new reader may have
            self.flush()  # looked before it was held, and now waits on recv; this thread may wait to write

    def flush(self) -> None:
        """Write the frames the reader held back (see :meth:`send_text`) now, in one write; if any.

        Called on the reader before it waits for the socket, by a new reader as it starts, and by
        an old reader that held an ack back as it was taken over. Waits at most ``write_timeout``
        for the send lock; a write that fails gives the connection up (:meth:`abort`), and its
        reader then ends on the failed read.
        """
        if not self._corked:
            return
        if not self._send_lock.acquire(timeout=self._write_timeout):
            self.abort()
            return
        failure: Optional[SocketModeError] = None
        try:
            if self._close_sent or self._aborted:
                self._drop_corked()
            elif self._corked:
                failure = self._write_corked()
        finally:
            self._send_lock.release()
        if self._unsent:
            self._give_back()
        if failure is not None and self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("connection %d: %s", self.id, failure)

    def _drop_corked(self) -> None:
        """Give up the held frames: their texts go to :meth:`_give_back` (send lock held)."""
        self._unsent.extend(self._corked_texts)
        self._corked_texts = []
        self._corked.clear()
        self._corked_bytes = 0

    def _give_back(self) -> None:
        """Hand the texts of held acks that were not written to ``on_unsent`` (no lock of ours held after the swap)."""
        if not self._send_lock.acquire(timeout=self._write_timeout):
            return
        try:
            texts, self._unsent = self._unsent, []
        finally:
            self._send_lock.release()
        if texts and self._on_unsent is not None:
            try:
                self._on_unsent(texts)
            except Exception:  # a bug of ours: the acks are lost, Slack redelivers and the ledger acks again
                self._logger.exception("connection %d: keeping %d unwritten acks failed", self.id, len(texts))

    def _write_corked(self, then: bytes = b"") -> Optional[SocketModeError]:
        """Write the held-back frames, and ``then`` (a formatted frame), in one write. Send lock held.

        Returns the error to raise if the write failed (the connection is then given up, and the
        held texts wait in ``_unsent`` for :meth:`_give_back`).
        """
        data = b"".join(self._corked) + then
        texts, self._corked_texts = self._corked_texts, []
        self._corked.clear()
        self._corked_bytes = 0
        sock = self._ws.sock
        self._writing_since = time.monotonic()
        try:
            if sock is None:
                raise websocket.WebSocketConnectionClosedException("the socket is closed")
            sock.sendall(data)
        except TRANSPORT_ERRORS as e:
            self.abort()
            self._unsent.extend(texts)  # perhaps partly written: Slack takes a repeated ack as it takes one
            return write_error(self.id, e)
        finally:
            self._writing_since = None
        return None

    def try_send_text(self, text: str) -> bool:
        """Send one text frame only if that cannot wait: for a thread that must not block (an event loop's).

        Returns False, having sent nothing, when the frame would or might wait: the send lock is
        taken, the socket's buffer has no room for it now, the text is longer than
        :data:`NOWAIT_MAX` characters, or the connection is closing. The caller then sends it with
        :meth:`send_text` from a thread that may wait. A write that fails gives the connection up
        (:meth:`abort`) and returns False: nothing was sent.
        """
        if len(text) > NOWAIT_MAX or not self._write_control(_TEXT, text):
            return False
        if self._trace_limit is not None:
            self._trace("sent", text)
        return True

    def write_stalled(self, now: float, after: float) -> Optional[float]:
        """Seconds the write in progress has made no progress, if that is more than ``after``; else None.

        No progress: the peer has acknowledged nothing, that is the socket's send queue (Linux's
        ``SIOCOUTQ``) is the same as at the previous call. A peer that stopped reading
        acknowledges nothing (its window is closed); one that reads slowly does, although a
        blocked ``send`` takes more only once a third of the buffer is free. The first look at a
        write counts as progress; where the system does not tell the queue, none is seen after
        the write began. Lock-free (``close()`` calls it while the write is blocked); called by
        one thread at a time.
        """
        since = self._writing_since
        if since is None:
            return None
        queued = _send_queue(self._ws.sock)
        seen_for, seen, moved = self._queue_seen
        if seen_for != since:  # a write not looked at before
            moved = since if queued is None else now
        elif queued is not None and queued != seen:  # the peer acknowledged bytes
            moved = now
        self._queue_seen = (since, queued, moved)
        return now - moved if now - moved > after else None

    def write_overdue(self, now: float) -> Optional[float]:
        """Seconds the write in progress has run if that is more than ``write_timeout``, else None.

        Lock-free (the health thread calls it and must not wait on this connection's I/O).
        """
        since = self._writing_since
        if since is not None and now - since > self._write_timeout:
            return now - since
        return None

    def write_deadline(self) -> Optional[float]:
        """When the write in progress becomes overdue (monotonic seconds), or None. Lock-free."""
        since = self._writing_since
        return None if since is None else since + self._write_timeout

    def ping(self, text: Optional[str] = None) -> bool:
        """Send a ping if that cannot block; True if it was sent (a failure is left to the reader).

        ``text``: a protocol's own keepalive, sent as a text message instead of a WebSocket ping
        frame (the RTM API's ``{"type": "ping", "id": n}``), under the same rule
        (:meth:`try_send_text`: only if it cannot wait). Either way ``last_ping`` is set once it
        went out, and any frame that arrives after it answers it (see :mod:`.liveness`).
        """
        now = time.monotonic()
        if text is not None:
            if self.try_send_text(text):
                self.last_ping = now
                return True
            return False
        if self._write_control(_PING, b""):
            if self._trace_pings:
                self._logger.debug("connection %d: sending a ping", self.id)
            self.last_ping = now
            return True
        return False

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (once) if that cannot block, else abort.

        Waits at most :data:`_CLOSE_LOCK_WAIT` for an ack being written; never on the peer.
        The reader ends when the server answers or on :meth:`abort`.
        """
        if self._close_sent or self._ended.is_set():
            return
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
        if not self._write_control(_CLOSE, payload, closing=True, wait=_CLOSE_LOCK_WAIT) and not self._close_sent:
            self.abort()

    def _write_control(
        self, opcode: int, payload: Union[bytes, str], *, closing: bool = False, wait: float = 0.0
    ) -> bool:
        """Write a small frame only if it cannot block on the peer: the socket must be writable.

        A control frame is at most 127 bytes, a text frame of :meth:`try_send_text` at most
        :data:`NOWAIT_MAX` characters; a writable socket has room for either. The send lock is
        waited for at most ``wait`` seconds (0: not at all). With ``closing``, marks the close
        frame sent. Returns True if the frame went out.
        """
        locked = self._send_lock.acquire(timeout=wait) if wait > 0 else self._send_lock.acquire(blocking=False)
        if not locked:
            return False
        try:
            if self._close_sent or self._aborted:
                return False
            sock = self._ws.sock
            if sock is None or not _writable(sock):
                return False
            if closing:
                self._close_sent = True
            if self._corked:  # the reader's held-back acks go first (at most NOWAIT_MAX bytes: room for them too)
                return self._write_corked(ABNF.create_frame(payload, opcode).format()) is None
            try:
                self._ws.send(payload, opcode)
            except TRANSPORT_ERRORS:
                self.abort()
                return False
            return True
        finally:
            self._send_lock.release()
            if self._unsent:
                self._give_back()

    def abort(self) -> None:
        """Shut the socket down now; the reader wakes up and ends. Idempotent.

        Messages already read ahead from the socket are dropped, not delivered: the client
        gave up on this connection, and Slack redelivers what it did not ack.
        """
        self._aborted = True
        sock = self._ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every reader thread to end; True if they did.

        The calling thread is not waited for (a listener running on a reader may call this).
        """
        end = time.monotonic() + timeout
        me = threading.current_thread()
        for thread in list(self._readers):
            if thread is not me and thread.ident is not None:
                thread.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._readers if t is not me)

    def wait_ended(self, timeout: Optional[float]) -> bool:
        """Wait up to ``timeout`` seconds for the connection to end; True if it did."""
        return self._ended.wait(timeout)

    # ---- reader thread -------------------------------------------------------------------------

    def _read_loop(self, generation: int) -> None:
        end: Optional[End]
        try:
            if generation:  # taken over: the old reader's held-back acks go out now, not after its listeners
                self.flush()
            end = self._read_frames(generation)
        except TRANSPORT_ERRORS as e:
            end = transport_end(e, closing=self._close_sent, aborted=self._aborted)
        except BaseException as e:  # a bug of ours (or a KeyboardInterrupt): never let it pass silently
            self._logger.exception("connection %d: reader failed", self.id)
            end = End(EndKind.READER_ERROR, type(e).__name__)
        if end is None or self._generation != generation:
            return  # a new reader took over while this one ran listeners: the connection is its now
        self._ws.shutdown()
        self._ended.set()
        if self._corked and self._send_lock.acquire(timeout=self._write_timeout):
            try:  # held acks the connection ended with: kept for the next hello
                self._drop_corked()
            finally:
                self._send_lock.release()
        if self._unsent:
            self._give_back()
        try:
            self._on_closed(self, end)
        except Exception:
            self._logger.exception("connection %d: close handler failed", self.id)

    def _read_frames(self, generation: int) -> Optional[End]:
        """Read frames until the connection ends; return how it ended, or None if taken over.

        The size bound holds before a payload is read: the frame's header and announced
        length are read first (websocket-client's ``frame_buffer`` keeps them, and
        ``recv_frame`` resumes from there), and a frame that would take the message past
        ``max_message_size`` ends the connection before a byte of its payload is read or
        allocated. This costs no syscall and no allocation beyond what ``recv_frame`` does.
        Runs on the current reader thread only (:meth:`take_over`); the attributes the other
        threads change (``_aborted``, ``_generation``, ``_close_sent``) are read on each frame.
        """
        # websocket-client's frame_buffer: its header, length and frames are checked here, at our boundary.
        frames: Any = self._ws.frame_buffer
        needs_header, recv_header = frames.needs_header, frames.recv_header
        needs_length, recv_length = frames.needs_length, frames.recv_length
        recv_frame = frames.recv_frame
        limit = self._max_message_size
        parts: list[bytes] = []
        size = 0  # bytes of the message being assembled
        assembling = 0  # opcode of the message being assembled, 0 if none
        while True:
            if self._aborted:  # read-ahead may hold frames: an aborted connection delivers none of them
                return End(EndKind.ABORTED)
            if needs_header():
                recv_header()
            if needs_length():
                recv_length()
            if frames.length > limit - size:
                refused = self._refuse_frame(frames.header[4], frames.length, size)
                if refused is not None:
                    return refused
            frame = recv_frame()
            self.last_received = time.monotonic()
            opcode = frame.opcode
            if opcode == _TEXT and frame.fin and not assembling:  # the common case
                self._deliver(frame.data)
                if self._generation != generation:  # taken over while running listeners
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
                        self._deliver(data)
                        if self._generation != generation:
                            return None
                    else:
                        self._logger.warning("connection %d: skipped a binary message of %d bytes", self.id, len(data))
            elif opcode == _PING:  # a pong waits for an ack being written, never for a peer that does not read
                if self._trace_pings:
                    self._logger.debug("connection %d: received a ping; sending a pong", self.id)
                self._write_control(_PONG, frame.data, wait=self._write_timeout)
            elif opcode == _CLOSE:
                code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else 1005
                self.close_code = code
                if not self._close_sent:
                    self.close(code if code not in (1005, 1006) else 1000)
                    return End(EndKind.SERVER_CLOSED, code=code)
                return End(EndKind.CLIENT_CLOSED)
            elif self._trace_pings:  # _PONG: last_received is all a pong is for
                self._logger.debug("connection %d: received a pong", self.id)

    def _refuse_frame(self, opcode: int, length: int, assembled: int) -> Optional[End]:
        """Decide on a frame whose header announces more bytes than the message has room for.

        Called by :meth:`_read_frames` (the slow path only) before the payload is read.

        Args:
            opcode: the frame's opcode.
            length: the payload length its header announces, in bytes.
            assembled: bytes of the fragmented message assembled so far (0 if none).

        Returns:
            None to read the frame after all (a control frame of at most 125 bytes, which is
            not part of the message), else how the connection ends (logged).

        Raises:
            websocket.WebSocketProtocolException: a control frame announcing more than 125 bytes.
        """
        if opcode & 0x8:  # ping, pong, close: not part of the message being assembled
            if length <= 125:
                return None
            raise websocket.WebSocketProtocolException(f"control frame of {length} bytes (at most 125 allowed)")
        size = assembled + length
        self._logger.error(
            "connection %d: message of more than %d bytes exceeds max_message_size (%d); replacing the connection",
            self.id,
            size,
            self._max_message_size,
        )
        return End(EndKind.OVERSIZE, f"({size} bytes)")

    def _deliver(self, data: bytes) -> None:
        """Hand one complete text message to ``on_text`` (on the reader); a bug there is logged, not fatal."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._logger.warning(
                "connection %d: skipped a text message of %d bytes that is not UTF-8", self.id, len(data)
            )
            return
        if self._trace_limit is not None:
            self._trace("received", text)
        try:
            self._on_text(self, text)
        except Exception:  # a bug of ours on one message is not a transport error: log it and read on
            self._logger.exception("connection %d: handling a message of %d characters failed", self.id, len(text))

    def _trace(self, verb: str, text: str) -> None:
        """Log a text message at DEBUG, tokens redacted, cut to ``trace_limit`` characters."""
        limit = self._trace_limit
        if limit is None or not self._logger.isEnabledFor(logging.DEBUG):
            return
        shown = redact(text[:limit]) + (f"… ({len(text)} characters)" if len(text) > limit else "")
        self._logger.debug("connection %d: %s %s", self.id, verb, shown)


def await_ended(conns: list[Connection], end: float) -> None:
    """Wait until ``end`` (monotonic seconds) for ``conns`` to end, aborting those that have not.

    Used by ``close()`` and ``disconnect()`` once the close frames are on their way, with no lock
    held. A connection whose reader is the calling thread (a listener called ``close()``) is
    aborted at once: it cannot read the reply. Then joins their reader threads (at least 50 ms each).
    """
    for conn in conns:
        if conn.is_reader():  # called by a listener on this connection's reader: it cannot read the reply
            conn.abort()
            continue
        if not conn.wait_ended(max(0.0, end - time.monotonic())):
            conn.abort()
    for conn in conns:
        conn.join(max(0.05, end - time.monotonic()))


def _send_queue(sock: Any) -> Optional[int]:
    """The bytes of ``sock``'s send queue the peer has not acknowledged (Linux), or None where unknown."""
    if _SIOCOUTQ is None or sock is None:
        return None
    try:
        answer = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):  # closed meanwhile
        return None
    return int(struct.unpack("i", answer)[0])


def _writable(sock: Any) -> bool:
    """True if ``sock`` has room to write now (a poll that does not wait)."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
            return any(events & select.POLLOUT for _, events in poller.poll(0))
        return bool(select.select([], [sock], [], 0)[1])
    except (OSError, ValueError):  # closed meanwhile
        return False


def tunnel(
    open_socket: Optional[OpenSocket], url: str, sslopt: Optional[dict[str, Any]], timeout: float
) -> socket.socket:
    """Open the TCP connection to ``url``'s host with ``open_socket``, and start TLS on it for ``wss://``."""
    assert open_socket is not None
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    sock = open_socket(host, parts.port or (443 if secure else 80), timeout)
    if not secure:
        return sock
    context = (sslopt or {}).get("context") or ssl.create_default_context()
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


class ReadAhead:
    """The byte source of websocket-client's frame parser, reading ahead from the socket.

    websocket-client's ``frame_buffer`` asks its byte source for exactly the bytes it needs
    next: 2 bytes of header, then the extended length, then the payload; on a plain socket
    that is three ``recv`` system calls per frame, each releasing and retaking the GIL. This
    source reads up to :attr:`CHUNK` bytes at a time and serves the parser's requests from
    them, so a frame that arrived whole costs one ``recv``, and a burst of small frames one
    ``recv`` per :attr:`CHUNK` bytes. It only buffers bytes; the framing stays websocket-client's.

    At most ``CHUNK`` bytes are held, whatever the frames announce, so the size bound of
    :meth:`Connection._read_frames` still holds before a large payload is read. Used by the
    one thread that reads the connection at a time; not thread-safe.

    ``before_wait``: called before each read from the socket (which may wait), on the reading
    thread: the connection writes the acks it held back while more bytes were here
    (:attr:`buffered`).
    """

    CHUNK = 65536  #: bytes asked of the socket per read

    __slots__ = ("_before_wait", "_buffer", "_fill", "_position")

    def __init__(self, fill: Callable[[int], bytes], before_wait: Optional[Callable[[], None]] = None) -> None:
        self._fill = fill  # websocket-client's WebSocket._recv: raises on a closed connection
        self._before_wait = before_wait
        self._buffer = b""
        self._position = 0

    @property
    def buffered(self) -> bool:
        """True while bytes read from the socket are not yet handed to the parser (more frames may be here)."""
        return self._position < len(self._buffer)

    def __call__(self, size: int) -> bytes:
        """Up to ``size`` bytes (at least one); blocks until some are there."""
        buffer, position = self._buffer, self._position
        if position >= len(buffer):
            if self._before_wait is not None:
                self._before_wait()
            buffer = self._fill(self.CHUNK)
            position = 0
            if size >= len(buffer):  # the read is all the parser wants: hand it over as it is
                self._buffer, self._position = b"", 0
                return buffer
            self._buffer = buffer
        chunk = buffer[position : position + size]
        self._position = position + len(chunk)
        return chunk
