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
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ._api_fake import WebApiFake
from ._connection import CLOSE_TIMEOUT, ConnectionHooks, ServerConnection
from ._delivery import Deliverer
from ._envelopes import EnvelopeBook
from ._faults import close_connections, reset_connections, send_disconnect, silence_connections
from ._routing import ConnectionTable
from ._timers import TimerQueue
from ._webapi import THREAD_PREFIX, ApiCall, ApiServer, address_family, url_host, wake_listener
from .records import Ack, Delivery, EnvelopeRecord, ReceivedMessage, prepare
from .samples import load_sample

if TYPE_CHECKING:
    from .app_model import AppModel

__all__ = [
    "CLOSE_TIMEOUT",
    "Ack",
    "ApiCall",
    "Delivery",
    "EnvelopeRecord",
    "ReceivedMessage",
    "ServerConnection",
    "SocketModeServer",
]

logger = logging.getLogger("slack_socket_mode.testing")

_T = TypeVar("_T")


if TYPE_CHECKING:
    from .replay import ReplayReport


class SocketModeServer:
    """A local fake of Slack's Socket Mode service: a Web API server plus a WebSocket server.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Point a
    ``slack_sdk.WebClient`` at :attr:`api_url`; ``apps.connections.open`` with an app-level
    token (``xapp-...``) returns a single-use ``ws://`` URL to this server. Each connection
    gets a ``hello``, then whatever the test pushes.

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

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # any recorded state changed
        self._started = False
        self._stopping = False
        self._table = ConnectionTable(self._cond, app)  # guarded by _lock
        self._book = EnvelopeBook()  # guarded by _lock
        self._web_api = WebApiFake(self._cond, host, tls=ssl_context is not None)

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

    # -- Web API -------------------------------------------------------------------------

    @property
    def api_calls(self) -> list[ApiCall]:
        """Every Web API call received, oldest first (a copy)."""
        with self._lock:
            return list(self._web_api.calls)

    @property
    def open_calls(self) -> int:
        """How many ``apps.connections.open`` calls were received, answered ok or not."""
        return self._web_api.open_calls

    def wait_for_api_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[ApiCall]:
        """Wait until at least ``count`` calls of Web API ``method`` were received.

        Args:
            method: a method name such as ``"chat.postMessage"``.
            count: how many calls to wait for.
            timeout: the longest wait, in seconds.

        Returns:
            Every call of ``method`` so far, oldest first.

        Raises:
            TimeoutError: fewer calls arrived within ``timeout``.
            RuntimeError: the server was stopped.
        """

        def ready() -> list[ApiCall] | None:
            calls = [call for call in self._web_api.calls if call.method == method]
            return calls if len(calls) >= count else None

        return self._wait(ready, timeout, lambda: f"{count} {method} call(s); got {len(ready() or [])}")

    def fail_next_opens(
        self,
        error: str | None = None,
        *,
        count: int = 1,
        status: int = 200,
        retry_after: int | None = None,
        echo: bool = False,
    ) -> None:
        """Make the next ``count`` ``apps.connections.open`` calls fail.

        With ``status`` 200 they answer ``{"ok": false, "error": error}``; with 429 they
        answer HTTP 429 ``{"ok": false, "error": "ratelimited"}``; any other status answers
        that status with ``{"ok": false, "error": error}``. A ``Retry-After`` header is added
        when ``retry_after`` (seconds) is given. With ``echo``, the error text quotes the
        request's ``Authorization`` header back, token and all (a broken Web API that echoes
        the request: the client must redact it everywhere). Calls with a missing or
        non-``xapp-`` token fail their own way and do not use these up.

        Args:
            error: the error code; default ``"invalid_auth"`` (``"ratelimited"`` for 429).
            count: how many calls fail.
            status: the HTTP status.
            retry_after: the ``Retry-After`` header value, in seconds.
            echo: quote the request's ``Authorization`` header in the error text.
        """
        if error is None:
            error = "ratelimited" if status == 429 else "invalid_auth"
        self._web_api.fail_next_opens(error, status, retry_after, echo, count)

    def send_next_opens_to(self, url: str, *, count: int = 1) -> None:
        """Make the next ``count`` ``apps.connections.open`` calls answer with ``url``.

        For a peer of the test's own at that URL: one that trickles its handshake, redirects
        it, or misbehaves in another way this server does not.

        Args:
            url: the WebSocket URL to hand out.
            count: how many calls answer with it.
        """
        self._web_api.send_next_opens_to(url, count)

    def refuse_next_connections(self, count: int = 1) -> None:
        """Make the next ``count`` ``apps.connections.open`` calls return a URL nobody listens on.

        The WebSocket connect to it fails with :class:`ConnectionRefusedError`.
        """
        self._web_api.refuse_next_connections(count)

    # -- connections ---------------------------------------------------------------------

    @property
    def connections(self) -> list[ServerConnection]:
        """The open connections (handshake done, not closed), oldest first (a copy)."""
        with self._lock:
            return list(self._table.open)

    @property
    def all_connections(self) -> list[ServerConnection]:
        """Every connection ever accepted (handshake done), in order (a copy)."""
        with self._lock:
            return list(self._table.all)

    def wait_for_connections(self, count: int = 1, timeout: float = 5.0) -> list[ServerConnection]:
        """Wait until at least ``count`` connections are open and were sent their ``hello``.

        Args:
            count: how many open connections to wait for.
            timeout: the longest wait, in seconds.

        Returns:
            The open connections, oldest first.

        Raises:
            TimeoutError: fewer were open when ``timeout`` passed.
            RuntimeError: the server was stopped.
        """

        def ready() -> list[ServerConnection] | None:
            return list(self._table.open) if len(self._table.open) >= count else None

        return self._wait(
            ready,
            timeout,
            lambda: (
                f"{count} open connection(s); {len(self._table.open)} open, {len(self._table.all)} ever accepted, "
                f"{self._web_api.open_calls} apps.connections.open call(s)"
            ),
        )

    def wait_for_new_connection(self, after: int, timeout: float = 5.0) -> ServerConnection:
        """Wait for the connection accepted after the first ``after`` ones.

        Typically ``before = len(server.all_connections)``, then some action, then
        ``server.wait_for_new_connection(before)``.

        Args:
            after: how many connections had been accepted before.
            timeout: the longest wait, in seconds.

        Returns:
            ``all_connections[after]``, once its ``hello`` was sent.

        Raises:
            TimeoutError: no such connection within ``timeout``.
            RuntimeError: the server was stopped.
        """

        def ready() -> ServerConnection | None:
            return self._table.all[after] if len(self._table.all) > after else None

        return self._wait(
            ready,
            timeout,
            lambda: (
                f"connection #{after + 1}; {len(self._table.all)} ever accepted, "
                f"{self._web_api.open_calls} apps.connections.open call(s)"
            ),
        )

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

    @property
    def acks(self) -> list[Ack]:
        """Every ack received, in arrival order (a copy)."""
        with self._lock:
            return list(self._book.acks)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every text message received from clients, acks included, in arrival order (a copy).

        Binary messages are not recorded (they are ignored, logged at DEBUG).
        """
        with self._lock:
            return list(self._book.messages)

    def wait_for_acks(
        self, count: int | None = None, *, envelope_ids: Iterable[str] | None = None, timeout: float = 5.0
    ) -> list[Ack]:
        """Wait for acks: at least ``count`` in all, and/or one for each of ``envelope_ids``.

        With neither argument, waits for one ack.

        Args:
            count: how many acks (any envelope) to wait for.
            envelope_ids: ids that must each have at least one ack.
            timeout: the longest wait, in seconds.

        Returns:
            With ``envelope_ids``: the first ack of each listed id, in the listed order.
            Otherwise: every ack received so far.

        Raises:
            TimeoutError: not all arrived within ``timeout``; the message lists what is missing.
            RuntimeError: the server was stopped.
        """
        if count is None and envelope_ids is None:
            count = 1
        ids = list(envelope_ids) if envelope_ids is not None else None
        missing = set(ids or ())
        scanned = 0

        def ready() -> list[Ack] | None:
            nonlocal scanned
            acks = self._book.acks
            if missing:
                for index in range(scanned, len(acks)):
                    missing.discard(acks[index].envelope_id)
                scanned = len(acks)
                if missing:
                    return None
            if count is not None and len(acks) < count:
                return None
            if ids is not None:
                return [self._book.first_ack[envelope_id] for envelope_id in ids]
            return list(acks)

        def describe() -> str:
            parts = []
            if count is not None:
                parts.append(f"{count} ack(s), got {len(self._book.acks)}")
            if missing:
                shown = sorted(missing)[:10]
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                parts.append(f"acks for {len(missing)} envelope(s) still missing: {', '.join(shown)}{more}")
            return "; ".join(parts) + f" ({len(self._table.open)} open connection(s))"

        return self._wait(ready, timeout, describe)

    def envelope(self, envelope_id: str) -> EnvelopeRecord:
        """A snapshot of the deliveries and acks of ``envelope_id``.

        Raises:
            KeyError: that id was never pushed.
        """
        with self._lock:
            return self._book.snapshot(envelope_id)

    def unacked(self) -> list[str]:
        """Ids of the envelopes pushed and never acked, in push order."""
        with self._lock:
            return self._book.unacked()

    def duplicate_acks(self) -> list[Ack]:
        """Acks that arrived when no delivery of their envelope was waiting for an ack.

        An ack settles every pending delivery of its id, so an envelope redelivered before
        its first ack arrived and then acked twice gives one duplicate. Acks for ids that
        were never pushed are duplicates too.
        """
        with self._lock:
            return list(self._book.duplicates)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` is true, re-checking whenever the server records something.

        The server records something when a connection opens or closes, a message, ping,
        pong or close frame arrives, or a Web API call is made. ``predicate`` runs with the
        server's lock held: it must be quick and must not call the server's methods (read
        attributes of connections, or your own state, instead).

        Raises:
            TimeoutError: still false after ``timeout`` seconds (the message names ``what``).
            RuntimeError: the server was stopped.
        """
        self._wait(lambda: True if predicate() else None, timeout, lambda: what)

    def _wait(self, ready: Callable[[], _T | None], timeout: float, describe: Callable[[], str]) -> _T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = ready()
                if result is not None:
                    return result
                if self._stopping:
                    raise RuntimeError(f"the server was stopped while waiting for {describe()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:g} s waiting for {describe()}")
                self._cond.wait(remaining)

    # -- replay --------------------------------------------------------------------------

    def replay(
        self, path: str, *, speed: float | None = 1.0, skip_bad_lines: bool = False, connect_timeout: float = 10.0
    ) -> ReplayReport:
        """Replay a recording (``slack-socket-mode listen --record``) to the connected app.

        Pushes the recording's envelopes in order at the recorded pace divided by ``speed``
        (``None``: as fast as the socket takes them), sends a ``disconnect`` where the
        recording had one, redelivers by this server's rules, waits for the acks (as long as
        redeliveries go on) and reports. See :mod:`slack_socket_mode.testing.replay`.

        Returns:
            A :class:`~slack_socket_mode.testing.replay.ReplayReport`: per envelope delivered,
            acked, ack time, ack payload, redeliveries.

        Raises:
            RecordingError: a bad header, or a bad line (without ``skip_bad_lines``): nothing after
                it was pushed. See :class:`~slack_socket_mode.recording.RecordingError`.
            TimeoutError: the app had no live connection within ``connect_timeout`` seconds.
            ValueError: ``speed`` is not positive or ``None``.
            OSError: the recording cannot be read.
        """
        from .replay import ACK_DEADLINE, replay_recording  # noqa: PLC0415 - loaded by the first replay

        delay = self._redelivery_delay
        report = replay_recording(
            self,
            path,
            speed=speed,
            skip_bad_lines=skip_bad_lines,
            connect_timeout=connect_timeout,
            settle_timeout=delay * (self._max_retries + 1) if delay is not None else ACK_DEADLINE,
        )
        if report.error is not None:
            raise report.error
        return report

    # -- faults --------------------------------------------------------------------------

    def disconnect(self, reason: str = "refresh_requested", *, connection: ServerConnection | None = None) -> None:
        """Send ``{"type":"disconnect","reason":reason,"debug_info":{"host":"applink-local"}}``.

        Args:
            reason: ``"warning"``, ``"refresh_requested"``, ``"link_disabled"``,
                ``"too_many_websockets"`` or anything else.
            connection: the connection; by default every open connection.

        Raises:
            RuntimeError: no open connection (or ``connection`` is closed or closing).
        """
        send_disconnect(self._table.targets(connection), reason)

    def close_connection(self, connection: ServerConnection | None = None, code: int = 1000, reason: str = "") -> None:
        """Start a clean close: send a close frame; the TCP connection is closed once the
        client closes it or after 2 s. A silenced connection is closed at once (no frame).

        Args:
            connection: the connection; by default every open connection.
            code: the close code.
            reason: the close reason.

        Raises:
            RuntimeError: no open connection.
        """
        close_connections(self._table.targets(connection), code, reason)

    def reset(self, connection: ServerConnection | None = None) -> None:
        """Reset the TCP connection (RST, no close frame) and wait (up to 2 s) until it is closed.

        Args:
            connection: the connection; by default every open connection.

        Raises:
            RuntimeError: no open connection.
        """
        reset_connections(self._table.targets(connection))

    def silence(self, connection: ServerConnection | None = None) -> None:
        """Go silent with the TCP connection kept open, like a dead network path.

        The server stops reading from the socket (so it answers no ping and sees no
        close) and writes nothing more to it: no pongs, envelopes, redeliveries or pings.
        The connection counts as open until :meth:`close_connection`, :meth:`reset` or
        :meth:`stop`.

        Args:
            connection: the connection; by default every open connection.

        Raises:
            RuntimeError: no open connection.
        """
        silence_connections(self._table.targets(connection))
