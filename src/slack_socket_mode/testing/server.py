"""A local fake of Slack's Socket Mode service, for tests, demos and benchmarks.

:class:`SocketModeServer` runs two servers on loopback:

* a Web API server (:mod:`http.server`) answering ``apps.connections.open`` with a
  single-use WebSocket URL, ``auth.test``, and ``{"ok": true}`` for any other method;
* a WebSocket server built on the Sans-I/O protocol of the ``websockets`` library with its
  own small threaded I/O, which sends ``hello``, pushes envelopes, records acks, redelivers
  unacked envelopes like Slack does, and can inject faults (disconnect messages, clean
  closes, TCP resets, silence, failed or refused connection opens).

Example::

    from slack_sdk.web import WebClient
    from slack_socket_mode.testing import SocketModeServer

    with SocketModeServer() as server:
        client = SocketModeClient(app_token="xapp-1-...", web_client=WebClient(base_url=server.api_url))
        client.connect()
        envelope_id = server.push_sample("events_api_message")
        (ack,) = server.wait_for_acks(envelope_ids=[envelope_id])

Threads (all named ``slack_socket_mode.testing-<role>``): ``accept`` (WebSocket listener),
``reader-<id>`` (one per connection, blocking ``recv``), ``timers`` (redeliveries and close
timeouts), ``pinger`` (only with ``ping_interval``), ``api`` and ``api-request`` (Web API).
:meth:`SocketModeServer.stop` stops and joins them all.

The pieces, one job per module (all under :mod:`slack_socket_mode.testing`):

* :mod:`.records`: the frozen records tests read (``Ack``, ``Delivery``...) and their wire formats;
* ``_connection``: :class:`ServerConnection`, the per-connection protocol driver (reader
  thread, one writer path, closing), over the sans-I/O frame handling of ``_frames``;
* ``_routing``: the table of connections and which one gets the next envelope;
* ``_envelopes``: every delivery and ack per envelope id; ``_delivery``: push, batches and
  redelivery; ``_timers``: the timer thread that runs redeliveries and close timeouts;
* ``_api_fake``: what the Web API answers (tickets, open faults), served by ``_webapi``;
* ``_faults``: disconnect, close, reset, silence;
* this module: :class:`SocketModeServer`, the facade that owns the threads and the pieces,
  with its queries (``_queries``), sending (``_sending``) and fault (``_faults``) methods.

Those three are base classes of the facade, the one place the package splits a class that way:
they are its public methods (28 that tests call), grouped by kind, and hold no state of their
own; the state and the work are in the pieces above, which the facade composes. Composing the
groups too would add a one-line delegator per public method (docs/developing.md, "One job per class").

Lock order: a connection's write lock, then the server lock (``_lock``, the lock of
``_cond``; it guards the connection table, the envelope book and the Web API fake), then a
connection's protocol lock or the timer queue's lock (leaves). No socket is written with the
server lock held.

Every time recorded by this module comes from :func:`time.monotonic` (seconds).
"""

from __future__ import annotations

import errno
import itertools
import logging
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ..recording import MAX_LINE_SIZE
from ._api_fake import WebApiFake
from ._connection import CLOSE_TIMEOUT, ConnectionHooks, ServerConnection
from ._delivery import Deliverer
from ._envelopes import EnvelopeBook
from ._faults import ServerFaults
from ._queries import ServerQueries
from ._routing import ConnectionTable
from ._sending import ServerSending
from ._timers import TimerQueue
from ._webapi import THREAD_PREFIX, ApiCall, ApiServer, address_family, url_host, wake_listener
from .records import Ack, Delivery, EnvelopeRecord, Forgotten, ReceivedMessage
from .samples import load_sample

if TYPE_CHECKING:
    from .app_model import AppModel

__all__ = [
    "CLOSE_TIMEOUT",
    "Ack",
    "ApiCall",
    "Delivery",
    "EnvelopeRecord",
    "Forgotten",
    "ReceivedMessage",
    "ServerConnection",
    "SocketModeServer",
]

logger = logging.getLogger("slack_socket_mode.testing")

_T = TypeVar("_T")


if TYPE_CHECKING:
    from .replay import ReplayReport


class SocketModeServer(ServerQueries, ServerSending, ServerFaults):
    """A local fake of Slack's Socket Mode service: a Web API server plus a WebSocket server.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Point a
    ``slack_sdk.WebClient`` at :attr:`api_url`; ``apps.connections.open`` with an app-level
    token (``xapp-...``) returns a single-use ``ws://`` URL to this server. Each connection
    gets a ``hello``, then whatever the test pushes.

    This class is the facade: it owns the threads and the pieces and keeps the public API.
    Its queries and waits come from :class:`~._queries.ServerQueries`, its sending methods
    from :class:`~._sending.ServerSending` and its fault methods from
    :class:`~._faults.ServerFaults`.

    Every public method and property is thread-safe. Waiting helpers use a
    :class:`threading.Condition` (no polling), raise :class:`TimeoutError` when their
    timeout (seconds) passes, and :class:`RuntimeError` if the server is stopped while
    they wait. Lists returned by properties are copies.

    From clients, a text message that is a JSON object with a string ``envelope_id`` is
    an ack (:attr:`acks`); every text message is also recorded in :attr:`messages`.
    Binary messages are ignored (logged at DEBUG). Pings are answered with pongs and a
    close frame with a close frame, except on a silenced connection. A text message that
    is not valid UTF-8 fails the connection with close code 1007.

    Args:
        host: the address both servers bind (ports are chosen by the OS).
        redelivery_delay: seconds after which an unacked delivery is redelivered, like
            Slack's 3 s ack deadline; ``None`` never redelivers.
        max_retries: the highest ``retry_attempt`` a redelivery may carry.
        send_hello: send ``hello`` when a connection opens.
        approximate_connection_time: ``debug_info.approximate_connection_time`` in ``hello``
            (seconds).
        fragment_size: a message longer than this many bytes (UTF-8) is sent as a first
            frame and continuation frames of at most this size each.
        ping_interval: if set, ping every open connection at this period (seconds).
        app: an :class:`~slack_socket_mode.testing.app_model.AppModel`: one app shared by
            several client processes (deliveries to a random connection, at most
            ``max_connections`` open, ``too_many_websockets`` beyond). None: round-robin, no limit.
        ssl_context: a server-side ``ssl.SSLContext``: serve ``wss://`` and ``https://`` (for
            TLS tests, e.g. with a throwaway CA from ``trustme``). The TLS handshake of a
            WebSocket runs on its reader thread, so a client that refuses the certificate
            never blocks the accept loop.
        ws_url_address: ``(host, port)`` that the WebSocket URLs handed out by
            ``apps.connections.open`` and :meth:`new_connection_url` name instead of this
            server's own address: a relay or proxy in front of the WebSocket server that
            forwards to :attr:`ws_port` (for example one that delays traffic). ``None``: the
            server itself. The URLs of :meth:`refuse_next_connections` still name this host.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        redelivery_delay: float | None = 3.0,
        max_retries: int = 3,
        send_hello: bool = True,
        approximate_connection_time: int = 18060,
        fragment_size: int = 65536,
        ping_interval: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        app: AppModel | None = None,
        ws_url_address: tuple[str, int] | None = None,
    ) -> None:
        if redelivery_delay is not None and redelivery_delay <= 0:
            raise ValueError("redelivery_delay must be positive or None")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if fragment_size < 1:
            raise ValueError("fragment_size must be >= 1")
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError("ping_interval must be positive or None")
        self.host = host
        self._ssl_context = ssl_context
        self._redelivery_delay = redelivery_delay
        self._max_retries = max_retries
        self._send_hello = send_hello
        self._ping_interval = ping_interval
        self._app = app
        hello = load_sample("hello")
        hello["debug_info"]["approximate_connection_time"] = approximate_connection_time
        #: The ``hello`` sent on each new connection; ``num_connections`` is replaced by the
        #: number of open connections (this one included) when it is sent. Change it before
        #: clients connect.
        self.hello_template: dict[str, Any] = hello

        # Reentrant: a wait_until predicate that calls the server's queries (which take it) does not deadlock.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # any recorded state changed
        self._started = False
        self._stopping = False
        self._table = ConnectionTable(self._cond, app)  # guarded by _lock
        self._book = EnvelopeBook()  # guarded by _lock
        self._web_api = WebApiFake(self._cond, host, tls=ssl_context is not None, ws_url_address=ws_url_address)

        self._timers = TimerQueue()
        self._deliverer = Deliverer(
            self._cond,
            self._book,
            self._table,
            self._timers,
            redelivery_delay=redelivery_delay,
            max_retries=max_retries,
            running=self._is_running,
        )
        self._stop_event = threading.Event()

        self._hooks = ConnectionHooks(
            cond=self._cond,
            timers=self._timers,
            fragment_size=fragment_size,
            consume_ticket=self._web_api.consume_ticket,
            register=self._register,
            unregister=self._table.unregister,
            record_incoming=self._record_incoming,
            close=self.close_connection,
        )

        self._listener: socket.socket | None = None
        self._api: ApiServer | None = None
        self._threads: list[threading.Thread] = []
        self._ws_port = 0
        self._api_port = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SocketModeServer:
        """Bind both servers on ephemeral ports and start their threads.

        Returns:
            ``self``. Calling it again while running does nothing.

        Raises:
            RuntimeError: the server was stopped (it cannot be restarted).
            OSError: binding failed.
        """
        with self._lock:
            if self._stopping:
                raise RuntimeError("this SocketModeServer was stopped; create a new one")
            if self._started:
                return self
            self._started = True
        try:
            listener = socket.create_server((self.host, 0), family=address_family(self.host), backlog=128)
            self._listener = listener
            self._ws_port = self._web_api.ws_port = int(listener.getsockname()[1])
            self._api = ApiServer(self.host, self._web_api.handle, self._ssl_context)
            self._api_port = self._api.port
            self._spawn("accept", self._accept_loop)
            self._api.start()
            self._spawn("timers", self._timers.run)
            if self._ping_interval is not None:
                self._spawn("pinger", self._ping_loop)
        except BaseException:
            self.stop()
            raise
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Socket Mode server on ws port %s, web api %s", self._ws_port, self.api_url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and socket, stop every thread and join them.

        Open connections are closed at the TCP level (no close frame). Idempotent; safe
        to call from any thread except the server's own.

        Args:
            timeout: the longest time to spend joining threads, in seconds.
        """
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            started = self._started
            self._cond.notify_all()  # waiters raise RuntimeError
        deadline = time.monotonic() + timeout
        if started:
            listener = self._listener
            if listener is not None:
                try:
                    listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
                except OSError:
                    pass
                wake_listener(self.host, self._ws_port)  # and elsewhere
            self._timers.stop()
            self._stop_event.set()
            for thread in self._threads:
                if thread.name.endswith("-accept"):
                    thread.join(max(0.0, deadline - time.monotonic()))
            if self._api is not None:
                self._api.stop(deadline)
            with self._lock:
                connections = list(self._table.readers)
            for conn in connections:
                conn.abort("server")
            for conn in connections:
                conn.join_reader(max(0.0, deadline - time.monotonic()))
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            for conn in connections:
                conn.close_socket()
            if listener is not None:
                listener.close()

    def __enter__(self) -> SocketModeServer:
        """:meth:`start` the server; returns it."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """:meth:`stop` the server (exceptions propagate)."""
        self.stop()

    def _spawn(self, role: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"{THREAD_PREFIX}{role}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _is_stopping(self) -> bool:
        return self._stopping

    def _is_running(self) -> bool:
        return self._started and not self._stopping

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the SocketModeServer is not started; call start() or use it in a with block")

    # -- addresses -----------------------------------------------------------------------

    @property
    def ws_port(self) -> int:
        """The WebSocket server's port. Raises :class:`RuntimeError` before :meth:`start`."""
        self._require_started()
        return self._ws_port

    @property
    def api_port(self) -> int:
        """The Web API server's port. Raises :class:`RuntimeError` before :meth:`start`."""
        self._require_started()
        return self._api_port

    @property
    def api_url(self) -> str:
        """The Web API base URL for ``WebClient(base_url=...)``: ``http://127.0.0.1:<port>/api/``.

        Raises:
            RuntimeError: before :meth:`start`.
        """
        self._require_started()
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{url_host(self.host)}:{self._api_port}/api/"

    def new_connection_url(self) -> str:
        """Issue a fresh single-use WebSocket URL without a Web API call.

        It is what ``apps.connections.open`` would return (``open_calls`` is not counted).

        Raises:
            RuntimeError: before :meth:`start`.
        """
        self._require_started()
        return self._web_api.new_connection_url()

    # -- connections ---------------------------------------------------------------------

    def _register(self, conn: ServerConnection) -> bytes | None:
        """Count a connection whose handshake succeeded; returns the hello to send, if any."""
        return self._table.register(conn, self.hello_template if self._send_hello else None)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                sock, peer = listener.accept()
            except OSError as exc:
                if self._is_stopping():
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                logger.warning("Socket Mode test server stops accepting connections: %r", exc)
                return
            if self._is_stopping():
                sock.close()
                return
            sock.settimeout(None)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if self._ssl_context is not None:
                # the handshake happens on the reader thread's first recv, not here
                sock = self._ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = ServerConnection(self._hooks, sock, peer)
            with self._lock:
                if self._is_stopping():
                    sock.close()
                    return
                self._table.readers.add(conn)
                conn.start_reader()  # under the lock: stop() never sees an unstarted reader

    # -- sending -------------------------------------------------------------------------

    def _ping_loop(self) -> None:
        interval = self._ping_interval
        assert interval is not None
        for number in itertools.count(1):
            if self._stop_event.wait(interval):
                return
            payload = f"ping-{number}".encode()
            for conn in self.connections:
                if conn.is_live():
                    conn.ping(payload)

    # -- acks ----------------------------------------------------------------------------

    def _record_incoming(self, messages: list[ReceivedMessage], acks: list[Ack]) -> None:
        with self._lock:
            self._book.record_incoming(messages, acks)
            self._cond.notify_all()
        if acks and logger.isEnabledFor(logging.DEBUG):
            for ack in acks:
                logger.debug("ack for %s on connection %s", ack.envelope_id, ack.connection_id)

    # -- replay --------------------------------------------------------------------------

    def replay(
        self,
        path: str,
        *,
        speed: float | None = 1.0,
        skip_bad_lines: bool = False,
        connect_timeout: float = 10.0,
        max_line_size: int = MAX_LINE_SIZE,
    ) -> ReplayReport:
        """Replay a recording (``slack-socket-mode listen --record``) to the connected app.

        Pushes the recording's envelopes in order at the recorded pace divided by ``speed``
        (``None``: as fast as the socket takes them), sends a ``disconnect`` where the
        recording had one, redelivers by this server's rules, waits for the acks (as long as
        redeliveries go on) and reports. A line longer than ``max_line_size`` bytes (default
        :data:`~slack_socket_mode.recording.MAX_LINE_SIZE`) is a bad line. See
        :mod:`slack_socket_mode.testing.replay`.

        Returns:
            A :class:`~slack_socket_mode.testing.replay.ReplayReport`: per envelope delivered,
            acked, ack time, ack payload, redeliveries.

        Raises:
            RecordingError: a bad header, or a bad line (without ``skip_bad_lines``): nothing after
                it was pushed. See :class:`~slack_socket_mode.recording.RecordingError`.
            TimeoutError: the app had no live connection within ``connect_timeout`` seconds.
            ValueError: ``speed`` is not positive or ``None``, or ``max_line_size`` is not a positive int.
            OSError: the recording cannot be read.
        """
        from .replay import ACK_DEADLINE, replay_recording  # noqa: PLC0415 - loaded by the first replay

        delay = self._redelivery_delay
        report = replay_recording(
            self,
            path,
            speed=speed,
            skip_bad_lines=skip_bad_lines,
            max_line_size=max_line_size,
            connect_timeout=connect_timeout,
            settle_timeout=delay * (self._max_retries + 1) if delay is not None else ACK_DEADLINE,
        )
        if report.error is not None:
            raise report.error
        return report
