"""The Socket Mode client: a drop-in for ``slack_sdk.socket_mode.SocketModeClient``.

This module is the facade: slack_sdk's constructor, methods and listener lists. The work is done by
one module per job, composed in one place:

* :mod:`.engine` — makes the parts below and wires them together, routes each text message a
  connection reads, and carries out ``close()``;
* :mod:`.options` — checks the constructor's options (:class:`~.options.ClientOptions`);
* :mod:`.session` — carries out the rules (:mod:`.lifecycle`), owns the client's lock and the
  one connection table, and runs the ``session`` thread;
* :mod:`.health` — the ``health`` thread over that table: timers, liveness, stuck writes, the
  take-over watch; it never waits on a connection's I/O;
* :mod:`.opening` — gets a URL from ``apps.connections.open`` and makes each connection; the one
  place an open attempt's errors (Web API, handshake, transport) are mapped and detached;
* :mod:`.dispatch` — runs each envelope's listeners on its reader (no hand-off) or on the
  ``worker_<k>`` pool, with the queue, backpressure and the reader's take-over;
* :mod:`.listeners` — calls the application's listeners, with no lock held;
* :mod:`.acks` — sends each ack where the :mod:`.ledger` says, once;
* :mod:`.stats` — the records :meth:`SocketModeClient.stats` and :meth:`SocketModeClient.health` return.

Threads (all named ``slack_socket_mode-<n>-…``, all stopped and joined by :meth:`SocketModeClient.close`):
``session`` (:mod:`.session`), ``health`` (:mod:`.health`), ``reader-<id>`` and ``reader-<id>.<n>``
(:mod:`.connection`), ``worker_<k>`` (:mod:`.dispatch`), ``lease`` (:mod:`.shared`, with a shared ledger).

Locks, in the one order in which they may be taken (a thread holding one may take only
those below it; docs/threading.md, "Locks"):

1. the session's ``lock`` (an ``RLock``; ``changed`` is its condition) — the supervisor, the
   connection table, the deferred acks. No socket call is made while it is held: the close frames
   and aborts the rules ask for are queued and carried out once it is released (``Session.rules()``).
2. the dispatcher's ``_queue_lock`` (``_room`` and ``_drained`` are its conditions) — queue
   accounting (:class:`~slack_socket_mode.dispatch.Dispatcher`).
3. the dispatcher's ``_watch_lock`` — inline runs: begin, end and take-over of a reader's listeners.
4. the ledger's lock (:class:`~slack_socket_mode.ledger.EnvelopeLedger`) — one envelope's record.
5. a connection's send lock (:class:`~slack_socket_mode.connection.Connection`) — its socket's
   write side; nothing is taken while it is held.

The facade itself holds no lock of its own.
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Callable, ClassVar, Optional, Union

from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from .engine import Engine
from .lifecycle import SLOT_RETRY_INTERVAL, ClientState, Transition
from .listeners import ListenerHookList, ListenerList, Listeners, default_hooks
from .messages import Envelope, Hello, parse_message
from .options import OPTION_NAMES, check_options
from .policy import ReconnectPolicy
from .shared import SharedStore
from .stats import ClientStats, HealthStatus

__all__ = ["ClientStats", "HealthStatus", "SocketModeClient"]

MessageListener = Callable[[Any, dict[str, Any], Optional[str]], None]
RequestListener = Callable[[Any, SocketModeRequest], None]
LifecycleListener = Callable[[Transition], None]

_client_numbers = itertools.count(1)


class SocketModeClient(BaseSocketModeClient):
    """A thread-based Socket Mode client with slack_sdk's interface.

    Replace ``from slack_sdk.socket_mode import SocketModeClient`` with
    ``from slack_socket_mode import SocketModeClient``; the rest of the app stays.
    Follows https://api.slack.com/apis/socket-mode.

    Args:
        app_token: the app-level token (``xapp-…``); kept in a redacted :class:`Secret`.
        logger: where to log (default ``logging.getLogger("slack_socket_mode")``).
        web_client: the ``WebClient`` for ``apps.connections.open``, exposed as ``client.web_client``; its
            ``base_url`` is the API host, and its ``ssl`` context serves the WebSocket too unless ``ssl_context``.
        auto_reconnect_enabled: reopen a dropped connection (Slack's rotations are always followed); each
            :meth:`connect` copies ``default_auto_reconnect_enabled`` to ``auto_reconnect_enabled``, as slack_sdk.
        ping_interval: seconds between our pings; None disables them.
        concurrency: listener runs at once, inline on the readers and on workers together (1: one at a time).
        proxy: a proxy URL (``http://user:pass@host:port``, ``socks5://…``) for the WebSocket, and for the built
            WebClient if HTTP (see :mod:`slack_socket_mode.proxies`; without it, ``HTTPS_PROXY`` etc. apply).
        proxy_headers: extra headers for an HTTP ``proxy``'s ``CONNECT`` (ignored with a WARNING without one).
        trace_enabled: log messages sent and received (1,000 characters) and pings at DEBUG, tokens redacted.
        all_message_trace_enabled: log every text message whole, at DEBUG, tokens redacted.
        ping_pong_trace_enabled: log every ping and pong, at DEBUG.
        receive_buffer_size: bytes, at least 16 as slack_sdk requires; the client reads 64 KiB at a time.
        http_proxy_host: the proxy's host, as slack_sdk's websocket-client-based client takes it (or ``proxy``).
        http_proxy_port: the proxy's port, with ``http_proxy_host``.
        http_proxy_auth: ``(user, password)`` for the proxy, with ``http_proxy_host``.
        proxy_type: ``"http"`` (the default) or a SOCKS scheme, with ``http_proxy_host``.
        on_message_listeners: called with each raw text message, on the reader thread.
        on_error_listeners: called with each :class:`ConnectionFailedError` and :class:`FatalError`.
        on_close_listeners: called with ``(code, reason)`` when a connection ends.
        lifecycle_listeners: called with each :class:`~slack_socket_mode.lifecycle.Transition` (client and connections).
        connections: how many connections to hold at once (1 to 10).
        ping_timeout: seconds to wait for a pong before replacing a connection.
        receive_timeout: seconds without any frame before replacing a connection.
        reconnect_policy: backoff for reconnects (default :class:`Backoff`).
        dedupe: do not run a redelivered envelope again (:mod:`.ledger`); a :class:`~.shared.SharedStore` such as
            :class:`slack_socket_mode.redis.RedisLedger` extends that to the app's replicas (:mod:`.shared`).
        connect_timeout: seconds for one open attempt (URL request and handshake, one deadline; a trickling peer
            is cut off at it); also the built WebClient's timeout.
        hello_timeout: seconds a new connection may take to send ``hello``.
        drain_timeout: seconds a replaced connection waits for its acks before closing.
        close_timeout: seconds to wait for the server's close frame.
        max_message_size: bytes; a larger inbound message replaces its connection.
        max_queue: envelopes waiting for or running in a worker; at the bound the reader stops reading (TCP
            backpressure) until a quarter of it is free again. Nothing is dropped.
        ledger_max_entries: settled envelopes the ledger (``dedupe``) remembers at most, oldest forgotten first.
        ledger_max_age: seconds after its first delivery that a settled envelope is remembered at most.
        max_ack_bytes: characters of ack texts with a payload the ledger keeps, to send again if Slack
            redelivers; beyond it the oldest settled envelopes are forgotten (docs/performance.md, "Memory").
        slow_queue_warning: seconds an envelope may wait for a worker before a WARNING (once per burst).
        worker_idle_timeout: idle seconds after which a burst's worker threads are let go (restarted on demand).
        inline_dispatch: let a reader run an envelope's listeners itself when none waits for a worker (no thread
            hand-off); False sends every envelope to the worker pool.
        handoff_after: seconds a reader's own listeners may run before a new reader takes over the socket; for a
            second after a takeover, envelopes go to the worker pool.
        allow_insecure_urls: allow ``ws://`` URLs to non-loopback hosts (never do this with Slack).
        debug_reconnects: add Slack's ``debug_reconnects=true`` to each URL (refreshes after about 360 s).
        ssl_context: an ``ssl.SSLContext`` for the WebSocket and the built WebClient (verification on by default).
        base_url: the Web API base URL of the built WebClient (default Slack's); or pass ``web_client``.
        write_timeout: seconds a write (an ack) may take before its connection is given up and replaced.
        slot_retry_interval: seconds between open attempts while Slack refuses connections with
            ``too_many_websockets`` (the app holds Slack's 10, across its processes): steady, no backoff.
        listener_hooks: objects with optional ``start(request)`` and ``complete(request, error)`` methods, run
            around each envelope's listeners on the thread that runs them (kept, after the process-wide defaults of
            :func:`~slack_socket_mode.listeners.add_default_hook`, in the list ``client.listener_hooks``; see below).

    Listener hooks: for each envelope dispatched, on every path (inline on its reader, a take-over reader, a
    worker, ``enqueue_message`` before :meth:`connect`, :meth:`run_message_listeners`), the thread that runs its
    listeners first calls each hook's ``start(request)`` in list order, then the listeners, then, in reverse order,
    ``complete(request, error)`` of each hook whose ``start`` returned (``request``: the ``SocketModeRequest``, or
    None without a payload; ``error``: the first ``Exception`` a listener raised, or None). A hook that raises is
    logged at ERROR with its name and traceback; the listeners and the other hooks still run, and the ack still
    goes. A hook whose methods are coroutine functions is refused (``TypeError``): the asyncio client
    (``slack_socket_mode.aio``) awaits them; this one never could. See docs/threading.md, "Listener hooks".

    Raises:
        ConfigurationError: invalid options or an app token that is not ``xapp-…``.

    Thread-safety: every public method may be called from any thread, listeners included.
    """

    #: What calls the listeners kept on the client (the websocket_client flavour calls its own its way).
    _listeners_type: ClassVar[type[Listeners]] = Listeners

    def __init__(
        self,
        app_token: str,
        logger: Optional[logging.Logger] = None,
        web_client: Optional[WebClient] = None,
        auto_reconnect_enabled: bool = True,
        trace_enabled: bool = False,
        all_message_trace_enabled: bool = False,
        ping_pong_trace_enabled: bool = False,
        ping_interval: Optional[float] = 5.0,
        receive_buffer_size: int = 1024,
        concurrency: int = 10,
        proxy: Optional[str] = None,
        proxy_headers: Optional[dict[str, str]] = None,
        on_message_listeners: Optional[list[Callable[[str], None]]] = None,
        on_error_listeners: Optional[list[Callable[[Exception], None]]] = None,
        on_close_listeners: Optional[list[Callable[[int, Optional[str]], None]]] = None,
        http_proxy_host: Optional[str] = None,
        http_proxy_port: Optional[int] = None,
        http_proxy_auth: Optional[tuple[str, str]] = None,
        proxy_type: Optional[str] = None,
        *,
        connections: int = 1,
        ping_timeout: float = 3.0,
        receive_timeout: float = 10.0,
        reconnect_policy: Optional[ReconnectPolicy] = None,
        dedupe: Union[bool, SharedStore] = True,
        connect_timeout: float = 10.0,
        hello_timeout: float = 10.0,
        drain_timeout: float = 5.0,
        close_timeout: float = 1.0,
        max_message_size: int = 16 * 1024 * 1024,
        max_queue: int = 10_000,
        ledger_max_entries: int = 50_000,
        ledger_max_age: float = 900.0,
        max_ack_bytes: int = 16 * 1024 * 1024,
        slow_queue_warning: float = 1.0,
        worker_idle_timeout: float = 10.0,
        inline_dispatch: bool = True,
        handoff_after: float = 0.01,
        allow_insecure_urls: bool = False,
        debug_reconnects: bool = False,
        ssl_context: Any = None,
        base_url: Optional[str] = None,
        lifecycle_listeners: Optional[list[LifecycleListener]] = None,
        write_timeout: float = 5.0,
        slot_retry_interval: float = SLOT_RETRY_INTERVAL,
        listener_hooks: Optional[list[Any]] = None,
    ) -> None:
        # the options as received, by name (OPTION_NAMES: all but logger and the listener lists, which stay
        # here); check_options has the same names and types (tests/test_structure.py checks both signatures)
        arguments = {name: value for name, value in locals().items() if name in OPTION_NAMES}
        self.logger = logger or logging.getLogger("slack_socket_mode")
        options = check_options(logger=self.logger, **arguments)
        self._number = next(_client_numbers)
        self._prefix = f"slack_socket_mode-{self._number}"
        self._app_token = options.app_token
        self._proxy = options.proxy
        self._proxy_headers = options.proxy_headers
        self.web_client = options.web_client
        self.default_auto_reconnect_enabled = auto_reconnect_enabled
        self.receive_buffer_size = receive_buffer_size
        self.trace_enabled = trace_enabled
        self.all_message_trace_enabled = all_message_trace_enabled
        self.ping_pong_trace_enabled = ping_pong_trace_enabled
        self.ping_interval = ping_interval
        self.concurrency = concurrency
        # ListenerList: a list that refuses a coroutine function with a TypeError (it would never run)
        self.message_listeners: list[Any] = ListenerList("message_listeners")
        self.socket_mode_request_listeners: list[Any] = ListenerList("socket_mode_request_listeners")
        self.on_message_listeners: list[Callable[[str], None]] = ListenerList(
            "on_message_listeners", on_message_listeners or []
        )
        self.on_error_listeners: list[Callable[[Exception], None]] = ListenerList(
            "on_error_listeners", on_error_listeners or []
        )
        self.on_close_listeners: list[Callable[[int, Optional[str]], None]] = ListenerList(
            "on_close_listeners", on_close_listeners or []
        )
        self.lifecycle_listeners: list[LifecycleListener] = ListenerList(
            "lifecycle_listeners", lifecycle_listeners or []
        )
        # the process-wide defaults first (slack_socket_mode.django adds one), then the constructor's
        self.listener_hooks: list[Any] = ListenerHookList("listener_hooks", [*default_hooks(), *(listener_hooks or [])])
        #: Called with ``(connection number, text)`` for each text message a connection reads, on its
        #: reader, before the client acts on it (``listen --record`` records with it); None: nothing.
        self.message_tap: Optional[Callable[[int, str], None]] = None
        # slack_sdk's attribute, kept for code that takes it; this client never does (no place in the order).
        self.connect_operation_lock = threading.Lock()
        self.hello: Optional[Hello] = None
        listeners = self._listeners_type(self, self.logger)
        self._engine = engine = Engine(self, options, listeners=listeners, prefix=self._prefix, logger=self.logger)
        # the parts the facade calls (tests and benchmarks may look inside them too)
        self._session, self._acks, self._dispatcher = engine.session, engine.acks, engine.dispatcher
        self._ledger = engine.ledger

    # ---- slack_sdk's public interface ----------------------------------------------------------

    @property
    def app_token(self) -> str:  # type: ignore[override]
        """The app-level token (not stored in ``vars(client)``; never logged)."""
        return self._app_token.reveal()

    @property  # type: ignore[override]
    def wss_uri(self) -> Optional[str]:
        """The URL of the newest connection attempt, or None.

        Setting it (as slack_sdk's and Bolt's tests do) makes the next connection open that URL instead of calling
        ``apps.connections.open``; reconnects get fresh URLs as usual. As in slack_sdk, a later :meth:`connect` opens
        it again while it is still the newest URL (no fresh one was issued since). A ``ws://`` URL must name a
        loopback host (``127.0.0.1``, ``localhost``, ``0.0.0.0``) unless ``allow_insecure_urls``.

        Raises:
            InsecureURLError: (on set) the URL is neither ``wss://`` nor ``ws://`` on loopback.
        """
        return self._engine.wss_uri

    @wss_uri.setter
    def wss_uri(self, url: Optional[str]) -> None:
        self._engine.set_wss_uri(url)

    @property
    def proxy(self) -> Optional[str]:
        """The proxy URL, credentials included (not stored in ``vars(client)``; never logged), or None."""
        return self._proxy.url if self._proxy is not None else None

    @property
    def proxy_headers(self) -> Optional[dict[str, str]]:
        """A copy of the extra ``CONNECT`` headers (not stored in ``vars(client)``; never logged), or None."""
        headers = self._proxy_headers.value
        return dict(headers) if headers is not None else None

    @property
    def closed(self) -> bool:  # type: ignore[override]
        """True once :meth:`close` was called."""
        return self._session.supervisor.closing()

    @property
    def auto_reconnect_enabled(self) -> bool:
        """Whether a dropped connection is reopened.

        Settable at any time, from any thread; :meth:`connect` resets it to ``default_auto_reconnect_enabled``, as
        slack_sdk does. Rotations Slack asks for (``disconnect``) are followed either way.
        """
        return self._session.auto_reconnect

    @auto_reconnect_enabled.setter
    def auto_reconnect_enabled(self, enabled: bool) -> None:
        self._engine.set_auto_reconnect(enabled)

    def session_id(self) -> Optional[str]:
        """An identifier of the newest open connection (``"slack_socket_mode-1-3"``), or None.

        Unique in the process; it names the connection's reader thread in logs as well.
        """
        conn = self._session.primary()
        return None if conn is None else f"{self._prefix}-{conn.id}"

    @property
    def state(self) -> ClientState:
        """The client's :class:`~slack_socket_mode.lifecycle.ClientState`."""
        return self._session.supervisor.state

    def __repr__(self) -> str:
        return f"<SocketModeClient {self._prefix} state={self.state.value} connections={self._session.live_count}>"

    def __enter__(self) -> SocketModeClient:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def is_connected(self) -> bool:
        """True while at least one connection has said ``hello`` and is open."""
        return self._session.live_count > 0

    def issue_new_wss_url(self) -> str:
        """Call ``apps.connections.open`` and return the new single-use URL.

        Raises:
            AuthError: the token was refused (``invalid_auth``, ``token_revoked``, …).
            RateLimitedError: HTTP 429; ``retry_after`` says how long to wait.
            ConnectionFailedError: any other failure (network, ``internal_error``).
            InsecureURLError: the URL is neither ``wss://`` nor ``ws://`` on loopback.
        """
        return self._engine.issue_url(self.web_client, self._app_token)

    def connect(self, timeout: Optional[float] = 30.0) -> None:
        """Open the connections and return once one has said ``hello``.

        Does nothing if already connected. Reconnects run in the background afterwards.

        Args:
            timeout: seconds to wait for the first ``hello``; None waits for as long as it takes.

        Raises:
            FatalError: (:class:`AuthError`, :class:`LinkDisabledError`, …) retrying cannot help.
            ConnectTimeoutError: no ``hello`` within ``timeout``; the client stops trying.
            SocketModeError: the client was closed, or close()/disconnect() interrupted the wait.
        """
        self._engine.connect(timeout, auto_reconnect=bool(self.default_auto_reconnect_enabled))

    def connect_to_new_endpoint(self, force: bool = False) -> None:
        """Connect if not connected; with ``force``, replace every connection (make-before-break)."""
        self._engine.connect_to_new_endpoint(force, auto_reconnect=bool(self.default_auto_reconnect_enabled))

    def disconnect(self) -> None:
        """Close every connection (close frames, bounded handshake) and stop reconnecting.

        :meth:`connect` may be called again afterwards. Returns within ``close_timeout`` seconds plus a little.
        """
        self._engine.disconnect()

    def close(self, timeout: float = 5.0) -> None:
        """Shut down for good: finish running listeners, send their acks, close, join threads.

        Stops dispatching new envelopes (Slack redelivers them elsewhere), waits for running listeners, closes every
        connection with a close frame (an abort if the peer does not read or answer in time), cuts short an open
        attempt under way, and joins every thread the client started. Returns within ``timeout`` seconds whatever the
        peer does: the listeners get what is left after ``close_timeout`` (at most half of ``timeout``) is kept for
        the close handshake; a thread still running at the end (a listener that does not return, a Web API call that
        does not answer) is named in a WARNING. A listener blocked writing its ack to a peer that stopped reading is
        not waited for: once that write has made no progress for 0.25 s its connection is aborted, and the ack goes
        out on another connection. Idempotent.
        """
        self._engine.close(timeout)

    def send_message(self, message: str) -> None:
        """Send a text message; an ack (``{"envelope_id": …}``) is routed like :meth:`send_socket_mode_response`.

        Raises:
            NotConnectedError: no open connection (for a message that is not an ack).
        """
        self._acks.send_message(message)

    def send_socket_mode_response(self, response: Union[dict[str, Any], SocketModeResponse]) -> None:
        """Ack an envelope: ``SocketModeResponse(envelope_id, payload)`` or ``{"envelope_id": …, "payload": …}``.

        The ack goes out on the connection that delivered the envelope while it is open, else on the newest
        connection. With no connection at all the ack is kept and sent on the next ``hello`` (Slack redelivers
        after 3 s; the redelivery is acked at once). A second ack for the same delivery is not sent. Never raises
        for lack of a connection.

        Raises:
            ValueError: the response has no ``envelope_id``.
        """
        self._acks.send_response(response)

    def enqueue_message(self, message: str) -> None:
        """Handle ``message`` as if a connection had received it (for tests and tools).

        While connected, the newest connection handles it like a message it read (envelopes are deduplicated and their
        acks routed to it). Before :meth:`connect`, an envelope's listeners run on a worker thread, as slack_sdk's
        client runs them from its queue; their acks wait for the next ``hello``. Other messages are ignored then.

        Raises:
            SocketModeError: the client is closed.
        """
        self._engine.enqueue(message)

    def process_message(self) -> None:
        """Not used: messages are dispatched as they arrive. Kept for slack_sdk compatibility."""

    def process_messages(self) -> None:
        """Not used: messages are dispatched as they arrive. Kept for slack_sdk compatibility."""

    def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        """Run every listener for ``message`` on the calling thread (slack_sdk compatibility)."""
        parsed = parse_message(raw_message)
        if isinstance(parsed, Envelope):
            self._engine.listeners.envelope(parsed, raw_message)

    # ---- visible state -------------------------------------------------------------------------

    @property
    def num_connections(self) -> Optional[int]:
        """``num_connections`` from the latest ``hello``."""
        return self.hello.num_connections if self.hello else None

    @property
    def debug_info(self) -> dict[str, Any]:
        """``debug_info`` from the latest ``hello``."""
        return self.hello.debug_info if self.hello else {}

    @property
    def approximate_connection_time(self) -> Optional[float]:
        """Seconds Slack expects the latest connection to last, from its ``hello``."""
        return self.hello.approximate_connection_time if self.hello else None

    @property
    def queue_depth(self) -> int:
        """Envelopes received and waiting for a free worker."""
        return self._dispatcher.queue_depth

    def oldest_wait(self) -> float:
        """Seconds the oldest envelope still waiting for a worker has waited (0.0 if none)."""
        return self._dispatcher.oldest_wait()

    @property
    def message_workers(self) -> ThreadPoolExecutor:
        """The worker pool (slack_sdk's attribute); replaced by an empty one after an idle spell."""
        return self._dispatcher.workers

    @message_workers.setter
    def message_workers(self, workers: ThreadPoolExecutor) -> None:
        self._dispatcher.workers = workers  # writable, as the attribute it replaces was

    def stats(self) -> ClientStats:
        """A consistent snapshot of the counters. Thread-safe."""
        return self._engine.stats()

    def health(self, max_queue_wait: float = 2.0) -> HealthStatus:
        """A health check for a liveness/readiness probe (Kubernetes ``/healthz``).

        Healthy when at least one connection has said ``hello``, no envelope has waited for a worker longer than
        ``max_queue_wait`` seconds (Slack redelivers after 3 s), and no reader has waited that long for the shared
        ledger (``dedupe=RedisLedger(...)``) to admit an envelope. Cheap, thread-safe.

        A request listener can report a problem of its own: one with a ``health_problem()`` method
        (as :class:`~slack_socket_mode.celery.CeleryHandoff` has: a broker it can never publish to)
        makes the client unhealthy while that method returns a reason ("" when fine).
        """
        status = self._engine.health(max_queue_wait)
        if not status.healthy:
            return status
        for listener in list(self.socket_mode_request_listeners):
            report = getattr(listener, "health_problem", None)
            problem = report() if callable(report) else ""
            if problem:
                return status._replace(healthy=False, reason=str(problem))
        return status
