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

The reader thread's loop over the frames (size bound, reassembly, pings, the close frame) is a
:class:`~slack_socket_mode.frames.FrameReader` the connection owns, in :mod:`slack_socket_mode.frames`.

A handshake's errors are mapped to ours in :mod:`slack_socket_mode.opening`
(:func:`~slack_socket_mode.opening.handshake_error`), the one place an open attempt's errors are
mapped; the proxy tunnel is opened there too (:func:`~slack_socket_mode.opening.tunnel`).
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Optional

import websocket
from websocket import ABNF

from .errors import NotConnectedError, SocketModeError
from .frames import FrameReader
from .frames import ReadAhead as _ReadAhead  # the name Connection.open uses
from .opening import brief, handshake_error, tunnel
from .redaction import redact
from .urls import safe_url

__all__ = ["Connection", "await_ended"]

_CLOSE, _PING = ABNF.OPCODE_CLOSE, ABNF.OPCODE_PING

#: Seconds a close frame waits for an ack being written before the connection is aborted instead.
_CLOSE_LOCK_WAIT = 0.05
#: Linux's SIOCOUTQ (the same number as TIOCOUTQ): the bytes of a socket's send queue the peer has not acknowledged.
_SIOCOUTQ: Optional[int] = None
if sys.platform.startswith("linux"):
    import fcntl
    import termios

    _SIOCOUTQ = termios.TIOCOUTQ
#: Opens a TCP connection to ``(host, port)`` within ``timeout`` seconds (a proxy tunnel).
OpenSocket = Callable[[str, int, float], socket.socket]

#: Raised by websocket-client and the socket layer when a connection fails.
_TRANSPORT_ERRORS = (OSError, websocket.WebSocketException, struct.error, ValueError)


class Connection:
    """A Socket Mode WebSocket.

    Args:
        connection_id: the client's number for it (1, 2, …), used in logs and thread names.
        url: the single-use ``wss://`` URL from ``apps.connections.open``.
        on_text: called on the reader thread with ``(connection, text)`` for each text message.
        on_closed: called once on the reader thread with ``(connection, reason)`` when it ends.
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
        on_closed: Callable[[Connection, str], None],
        logger: logging.Logger,
        thread_name: str,
        max_message_size: int,
        connect_options: Optional[dict[str, Any]] = None,
        sslopt: Optional[dict[str, Any]] = None,
        write_timeout: float = 5.0,
        open_socket: Optional[OpenSocket] = None,
        trace_limit: Optional[int] = None,
        trace_pings: bool = False,
    ) -> None:
        self.id = connection_id
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
        self._frames = FrameReader(
            self,
            self._ws,
            on_text=on_text,
            logger=logger,
            max_message_size=max_message_size,
            write_timeout=write_timeout,
            trace_limit=trace_limit,
            trace_pings=trace_pings,
        )
        # Lock order: the last of all (docs/threading.md, "Locks"): guards the socket's write side
        # (frames go out whole, one at a time), _close_sent and _writing_since. Nothing else is
        # taken while it is held, and it is never held by the client's health thread or a reader
        # for longer than a write that cannot block (_write_control).
        self._send_lock = threading.Lock()
        # _close_sent, _aborted and _generation are read by the FrameReader on each frame
        self._close_sent = False
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
            if sock is not None:
                sock.settimeout(None)  # the reader blocks; close() and abort() unblock it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # websocket-client's frame parser asks for the header, the length and the payload of
            # each frame separately; feed it from one large read instead (see _ReadAhead).
            frame_buffer: Any = self._ws.frame_buffer  # websocket-client 1.9.0 types recv as returning int
            frame_buffer.recv = _ReadAhead(self._ws._recv)
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

        Raises:
            NotConnectedError: the connection is closing, closed, or was given up.
        """
        if self._trace_limit is not None:
            self._trace("sending", text)
        if not self._send_lock.acquire(timeout=self._write_timeout):
            self.abort()
            raise NotConnectedError(f"connection {self.id}: a write waited {self._write_timeout:g} s; given up")
        try:
            if self._close_sent or self._aborted:
                raise NotConnectedError(f"connection {self.id} is closing")
            self._writing_since = time.monotonic()
            try:
                self._ws.send(text)
            except _TRANSPORT_ERRORS as e:
                self.abort()
                raise NotConnectedError(f"connection {self.id} failed: {type(e).__name__}") from None
            finally:
                self._writing_since = None
        finally:
            self._send_lock.release()

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

    def ping(self) -> bool:
        """Send a ping if that cannot block; True if it was sent (a failure is left to the reader)."""
        now = time.monotonic()
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

    def _write_control(self, opcode: int, payload: bytes, *, closing: bool = False, wait: float = 0.0) -> bool:
        """Write a control frame only if it cannot block on the peer: the socket must be writable.

        A control frame is at most 127 bytes; a writable socket has room for it. The send lock
        is waited for at most ``wait`` seconds (0: not at all). With ``closing``, marks the
        close frame sent. Returns True if the frame went out.
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
            try:
                self._ws.send(payload, opcode)
            except _TRANSPORT_ERRORS:
                self.abort()
                return False
            return True
        finally:
            self._send_lock.release()

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
        reason: Optional[str]
        try:
            reason = self._frames.read(generation)
        except _TRANSPORT_ERRORS as e:
            if self._close_sent:
                reason = "closed by client"
            elif self._aborted:
                reason = "aborted"
            elif isinstance(e, websocket.WebSocketConnectionClosedException):
                reason = "server closed the TCP connection"
            else:
                reason = f"{type(e).__name__}: {brief(e)}"
        except BaseException as e:  # a bug of ours (or a KeyboardInterrupt): never let it pass silently
            self._logger.exception("connection %d: reader failed", self.id)
            reason = f"reader error {type(e).__name__}"
        if reason is None or self._generation != generation:
            return  # a new reader took over while this one ran listeners: the connection is its now
        self._ws.shutdown()
        self._ended.set()
        try:
            self._on_closed(self, reason)
        except Exception:
            self._logger.exception("connection %d: close handler failed", self.id)

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
