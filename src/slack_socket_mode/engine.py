"""The client's parts, composed: :class:`Engine` builds them, routes each message, sums up their state.

:class:`~slack_socket_mode.SocketModeClient` is slack_sdk's facade; behind it, one :class:`Engine`
holds what does the work and wires them to each other in one place:

* the :class:`~.opening.Connector` (URLs and connections) and the :class:`~.lifecycle.Supervisor` (the rules);
* the :class:`~.session.Session` that carries out the rules on the connection table;
* the :class:`~.ledger.EnvelopeLedger`, and a :class:`~.shared.SharedLedger` when ``dedupe`` is a store;
* the :class:`~.acks.AckRouter` over the ledger, and the :class:`~.dispatch.Dispatcher`.

What the connections speak is a :class:`~.wire.Wire` (Socket Mode's by default; the RTM client's
:mod:`slack_socket_mode.rtm` gives its own): the Web API method of the URLs, the keepalive, the router.

It also routes each Socket Mode text message a connection reads (:meth:`Engine.on_text`, on the reader), puts
the :meth:`~slack_socket_mode.SocketModeClient.stats` snapshot together, and runs the steps of
:meth:`~slack_socket_mode.SocketModeClient.close`. It holds no lock of its own (the order of the
parts' locks is in :mod:`slack_socket_mode.client` and docs/threading.md).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from slack_sdk.web import WebClient

from .acks import AckRouter
from .connection import CORK_MAX_HANDOFF, Connection, await_ended
from .dispatch import Dispatcher
from .errors import ConfigurationError, ConnectTimeoutError, SocketModeError
from .ledger import EnvelopeLedger
from .lifecycle import ClientState, Supervisor
from .listeners import ListenerLists
from .messages import Disconnect, Envelope, Hello, Malformed, decode_json, parse_message
from .opening import Connector
from .redaction import Secret
from .session import Facade as SessionFacade
from .session import Session
from .shared import SharedLedger
from .stats import ClientStats, HealthStatus, percentile
from .urls import check_socket_url
from .wire import SOCKET_MODE, Wire

if TYPE_CHECKING:
    from .listeners import Listeners
    from .options import ClientOptions
    from .proxies import ProxySettings

__all__ = ["Engine", "EngineView", "Facade"]

#: Seconds a write may make no progress during close() before its connection is given up (the
#: peer stopped reading): close() waits for running listeners, but not for one that cannot ack.
_STALLED_WRITE = 0.25


class Facade(SessionFacade, ListenerLists, Protocol):
    """What the engine needs of the client's facade (:class:`slack_socket_mode.SocketModeClient`).

    The session's needs (``issue_new_wss_url``, ``hello``), the listener lists, and ``message_tap``
    (the recorder's hook: called with ``(connection id, text)`` for each text message read, or None).
    """

    message_tap: Optional[Callable[[int, str], None]]


class Engine:
    """Makes the client's parts and wires them together (see the module's docstring).

    Args:
        client: the facade (its listener lists, ``message_tap``, ``hello``).
        listeners: calls the application's listeners (the facade chooses how: see :mod:`.listeners`).
        options: the checked options; each goes to the part that uses it.
        prefix: the client's thread-name prefix, ``slack_socket_mode-<n>``.
        logger: where to log.
        wire: the protocol (:data:`~.wire.SOCKET_MODE` by default): URLs, keepalive, routing.

    Raises:
        ConfigurationError: the shared store (``dedupe``) cannot be used.

    Attributes:
        connector, ledger, shared, session, acks, dispatcher, listeners: the parts (``shared`` may be None).
    """

    def __init__(
        self,
        client: Facade,
        options: ClientOptions,
        *,
        listeners: Listeners,
        prefix: str,
        logger: logging.Logger,
        wire: Wire = SOCKET_MODE,
    ) -> None:
        self._client = client
        self.listeners = listeners
        self._prefix = prefix
        self._logger = logger
        o = options
        self._close_timeout = o.close_timeout
        #: The URL of the newest connection attempt (``SocketModeClient.wss_uri``), or None.
        self.wss_uri: Optional[str] = None
        self._set_url: Optional[str] = None  # the URL last given to the wss_uri setter
        self.connector = Connector(
            prefix=prefix,
            logger=logger,
            proxy=o.proxy,
            ssl_context=o.ssl_context,
            max_message_size=o.max_message_size,
            write_timeout=o.write_timeout,
            trace_enabled=o.trace_enabled,
            all_message_trace_enabled=o.all_message_trace_enabled,
            ping_pong_trace_enabled=o.ping_pong_trace_enabled,
            allow_insecure_urls=o.allow_insecure_urls,
            debug_reconnects=o.debug_reconnects,
            url_method=wire.urls,
            # a reader holds acks only where a slow listener is taken over soon (the new reader writes them)
            hold_acks=o.handoff_after <= CORK_MAX_HANDOFF,
            on_unsent=self._keep_unsent,
        )
        self.ledger: EnvelopeLedger[Connection] = EnvelopeLedger(
            dedupe=bool(o.dedupe),
            max_entries=o.ledger_max_entries,
            max_age=o.ledger_max_age,
            max_ack_bytes=o.max_ack_bytes,
            on_routed=Connection.ack_routed,  # counted on the connection until written, without the ledger
        )
        self.shared: Optional[SharedLedger] = None
        if not isinstance(o.dedupe, bool):
            try:
                self.shared = SharedLedger(o.dedupe, logger=logger, thread_name=f"{prefix}-lease")
            except ValueError as e:
                raise ConfigurationError(str(e)) from None
        supervisor = Supervisor(
            o.policy,
            connections=o.connections,
            hello_timeout=o.hello_timeout,
            drain_timeout=o.drain_timeout,
            close_timeout=o.close_timeout,
            open_timeout=o.connect_timeout,
            slot_retry_interval=o.slot_retry_interval,
        )
        self.session = session = Session(
            client,
            listeners=listeners,
            supervisor=supervisor,
            connector=self.connector,
            ledger=self.ledger,
            liveness=o.liveness,
            on_text=self.on_text if wire.route is None else self._route,  # Socket Mode's: no layer between
            prefix=prefix,
            logger=logger,
            connect_timeout=o.connect_timeout,
            write_timeout=o.write_timeout,
            auto_reconnect=o.auto_reconnect,
            ping=wire.ping,
            name=wire.name,
        )
        self.acks = AckRouter(
            self.ledger, lock=session.lock, primary=session.primary, drained=session.maybe_drained, logger=logger
        )
        self.dispatcher = Dispatcher(
            listeners,
            acks=self.acks,
            shared=self.shared,
            supervisor=supervisor,
            connections=lambda: list(session.connections.values()),
            wake_health=session.health.wake,
            after_drain=session.maybe_drained,
            prefix=prefix,
            logger=logger,
            concurrency=o.concurrency,
            max_queue=o.max_queue,
            slow_queue_warning=o.slow_queue_warning,
            worker_idle_timeout=o.worker_idle_timeout,
            inline_dispatch=o.inline_dispatch,
            handoff_after=o.handoff_after,
        )
        session.attach(self.acks, self.dispatcher)
        self._on_text: Callable[[Connection, str], None] = self.on_text
        if wire.route is not None:  # the parts exist now: the protocol's router is made over them
            self._on_text = wire.route(self, logger)

    def _route(self, conn: Connection, text: str) -> None:
        """The readers' callback for a wire with its own router (made once the parts are)."""
        self._on_text(conn, text)

    def set_wss_uri(self, url: Optional[str]) -> None:
        """The ``wss_uri`` setter: the next connection opens ``url`` (checked) instead of a fresh one."""
        if url is not None:
            check_socket_url(url, allow_insecure=self.connector.allow_insecure_urls)
        with self.session.lock:
            self.wss_uri = self._set_url = url
            self.session.next_url = url

    def set_auto_reconnect(self, enabled: bool) -> None:
        """The ``auto_reconnect_enabled`` setter: whether a dropped connection is reopened. Thread-safe."""
        with self.session.lock:
            self.session.auto_reconnect = bool(enabled)

    def issue_url(self, web_client: WebClient, app_token: Secret) -> str:
        """Get a new URL from ``apps.connections.open`` (see :meth:`.Connector.issue_url`); it is ``wss_uri`` now."""
        url = self.connector.issue_url(web_client, app_token)
        self.wss_uri = url
        return url

    def connect(self, timeout: Optional[float], *, auto_reconnect: bool) -> None:
        """Carry out :meth:`SocketModeClient.connect` (see there for what it raises)."""
        reopen = self._set_url if self._set_url is not None and self._set_url == self.wss_uri else None
        fatal, connected, stopped = self.session.start(timeout, auto_reconnect=auto_reconnect, reopen_url=reopen)
        if fatal is not None:
            raise fatal
        if stopped:
            raise SocketModeError("connect() was interrupted by close() or disconnect()")
        if not connected:
            self.disconnect()
            raise ConnectTimeoutError(f"no hello from Slack within {timeout:g} s; see the log for each attempt")

    def _keep_unsent(self, texts: list[str]) -> None:
        """A connection's held acks it could not write: kept for the next ``hello`` (as an ack with no connection)."""
        self.acks.defer(texts)

    def on_text(self, conn: Connection, text: str) -> None:
        """Route one text message a connection read (on its reader thread)."""
        client = self._client
        tap = client.message_tap
        if tap is not None or client.on_message_listeners:
            conn.flush()  # the application's code runs on the reader: held acks do not wait for it
        if tap is not None:
            tap(conn.id, text)
        if client.on_message_listeners:
            self.listeners.message(text)
        message = parse_message(text)
        if type(message) is Envelope:
            self.dispatcher.on_envelope(conn, message, text)
            return
        if isinstance(message, Hello):
            self.session.on_hello(conn, message)
        elif isinstance(message, Disconnect):
            self.session.on_disconnect(conn, message.reason)
            return  # slack_sdk's clients call no message listener for it either
        elif isinstance(message, Malformed):
            if not (client.message_listeners and not text.startswith("{")):
                self.session.malformed += 1
                self._logger.warning(
                    "connection %d: skipped a message of %d characters: %s", conn.id, len(text), message.problem
                )
                return
            # text that is not a JSON object: slack_sdk's clients hand it to message listeners with {}
            if self._logger.isEnabledFor(logging.DEBUG):
                self._logger.debug("connection %d: a text message that is not JSON, for message listeners", conn.id)
            self.dispatcher.on_message(conn, Envelope("", "", {}, 0), text)
            return
        elif not client.message_listeners:
            if self._logger.isEnabledFor(logging.DEBUG):
                self._logger.debug("connection %d: ignored a message of type %s", conn.id, message.type)
            return
        if client.message_listeners:  # hello and the rest, as slack_sdk's clients call them: no ack, no ledger
            body = decode_json(text)  # parsed above: a JSON object
            self.dispatcher.on_message(conn, Envelope("", str(body.get("type") or ""), body, 0), text)

    def enqueue(self, message: str) -> None:
        """Carry out :meth:`SocketModeClient.enqueue_message` (see there)."""
        conn = self.session.primary()
        if conn is not None:
            self.on_text(conn, message)
            return
        parsed = parse_message(message)
        if not isinstance(parsed, Envelope):
            self._logger.info("enqueue_message: not connected; ignored a message (%s)", type(parsed).__name__)
            return
        self.dispatcher.submit_unconnected(parsed, message)

    def connect_to_new_endpoint(self, force: bool, *, auto_reconnect: bool) -> None:
        """Carry out :meth:`SocketModeClient.connect_to_new_endpoint` (see there; a connect waits up to 30 s)."""
        session = self.session
        if session.live_count == 0 or session.supervisor.state not in (ClientState.CONNECTED, ClientState.RECONNECTING):
            self.connect(30.0, auto_reconnect=auto_reconnect)
        elif force:  # every connection replaced, make-before-break
            with session.rules():
                session.perform(session.supervisor.refresh("connect_to_new_endpoint(force=True)", time.monotonic()))

    def disconnect(self) -> None:
        """Carry out :meth:`SocketModeClient.disconnect`: close every connection, stop reconnecting."""
        session = self.session
        with session.rules():
            session.perform(session.supervisor.stop(time.monotonic(), final=False))
            conns = list(session.connections.values())
        await_ended(conns, time.monotonic() + self._close_timeout)

    def health(self, max_queue_wait: float) -> HealthStatus:
        """Carry out :meth:`SocketModeClient.health` (see there)."""
        state = self.session.supervisor.state.value
        wait = self.dispatcher.oldest_wait()
        shared = self.shared_status()
        if self.session.live_count == 0:
            return HealthStatus(False, f"not connected ({state})", state, wait, shared)
        if wait > max_queue_wait:
            return HealthStatus(False, f"an envelope has waited {wait:.1f} s for a worker", state, wait, shared)
        admitting = self.shared.admission_wait() if self.shared is not None else 0.0
        if admitting > max_queue_wait:
            reason = f"a reader has waited {admitting:.1f} s for the shared ledger"
            return HealthStatus(False, reason, state, wait, shared)
        return HealthStatus(True, "", state, wait, shared)

    def stats(self) -> ClientStats:
        """A consistent snapshot of the parts' counters, taken under the session's lock."""
        client = self._client
        latencies = sorted(self.acks.latencies)
        session, ledger, dispatcher = self.session, self.ledger, self.dispatcher
        with session.lock:
            return ClientStats(
                state=session.supervisor.state.value,
                connections_open=session.live_count,
                num_connections=client.hello.num_connections if client.hello is not None else None,
                connections_opened=session.opened,
                reconnects=dict(session.reconnects),
                last_disconnect_reason=session.last_disconnect_reason,
                envelopes_received=ledger.received,
                envelopes_acked=ledger.acked,
                envelopes_deduplicated=ledger.deduplicated,
                acks_suppressed=ledger.suppressed_acks,
                acks_crossed=ledger.crossed_acks,
                malformed_messages=session.malformed,
                reader_takeovers=dispatcher.takeovers,
                queue_depth=dispatcher.queue_depth,
                oldest_wait=dispatcher.oldest_wait(),
                ack_latency_p50=percentile(latencies, 0.50),
                ack_latency_p90=percentile(latencies, 0.90),
                ack_latency_p99=percentile(latencies, 0.99),
                shared_ledger=self.shared_status(),
                redeliveries_asked=ledger.redeliveries_asked,
                shared_leases_lost=self.shared.leases_lost if self.shared is not None else 0,
                shared_foreign_keys=self.shared.foreign_keys if self.shared is not None else 0,
                ledger_entries=len(ledger),
                ledger_ack_bytes=ledger.ack_bytes,
                ledger_evicted=ledger.evicted,
                acks_deferred=self.acks.deferred,
                acks_deferred_dropped=self.acks.deferred_dropped,
            )

    def shared_status(self) -> str:
        """The shared ledger's status (see :meth:`.SharedLedger.status`), or "" without one."""
        return self.shared.status() if self.shared is not None else ""

    def close(self, timeout: float, *, from_listener: bool = False) -> None:
        """Carry out :meth:`SocketModeClient.close` (see there) within ``timeout`` seconds. Idempotent.

        ``from_listener``: called for a listener running elsewhere (a coroutine of the asyncio
        client): its own run is not waited for.
        """
        final_end = time.monotonic() + timeout
        session, dispatcher = self.session, self.dispatcher
        with session.rules():  # CLOSING: the one "closing" that the dispatcher and the facade read
            if session.supervisor.closing():
                return
            session.perform(session.supervisor.begin_close())
        dispatcher.stop_accepting()
        end = final_end - min(self._close_timeout + 0.5, timeout / 2)
        # The listeners get until end; every 50 ms meanwhile, a connection whose write has stalled (the
        # peer reads nothing) is given up: its listeners' writes fail at once, their acks go elsewhere.
        first = True
        while not dispatcher.wait_for_listeners(
            min(end, time.monotonic() + 0.05), timeout, first=first, from_listener=from_listener
        ):
            if time.monotonic() >= end:
                break
            first = False
            session.abort_stalled_writes(_STALLED_WRITE)
        if self.shared is not None:  # within close()'s one deadline: half of what is left, at most 1 s
            self.shared.close(min(1.0, max(0.0, (final_end - time.monotonic()) / 2)))
        with session.rules():
            session.perform(session.supervisor.stop(time.monotonic(), final=True))
            conns = list(session.connections.values())
        await_ended(conns, final_end - min(0.5, timeout / 4))
        session.stop_threads()
        dispatcher.shutdown()
        self.listeners.shutdown()
        me = threading.current_thread()
        ours = [t for t in threading.enumerate() if t.name.startswith(f"{self._prefix}-") and t is not me]
        for thread in ours:
            thread.join(max(0.0, final_end - time.monotonic()))
        running = [t.name for t in ours if t.is_alive()]
        if running:
            self._logger.warning(
                "close(): %d thread(s) still running after %g s (they end on their own): %s",
                len(running),
                timeout,
                ", ".join(running),
            )


class EngineView:
    """slack_sdk's client attributes that every facade over an :class:`Engine` reads the same way.

    A mixin of the asyncio and RTM clients (:mod:`slack_socket_mode.aio`, :mod:`slack_socket_mode.rtm`):
    each sets ``_engine`` (its :class:`Engine`) and ``_proxy`` (the checked proxy, or None) in its
    constructor. Every property is cheap and thread-safe.
    """

    _engine: Engine
    _proxy: Optional[ProxySettings]

    @property
    def proxy(self) -> Optional[str]:
        """The proxy URL, credentials included (not stored in ``vars(client)``; never logged), or None."""
        return self._proxy.url if self._proxy is not None else None

    @property
    def wss_uri(self) -> Optional[str]:
        """The URL of the newest connection attempt, or None.

        Settable: the next connection opens that URL instead of asking the Web API for a fresh one.

        Raises:
            InsecureURLError: (on set) the URL is neither ``wss://`` nor ``ws://`` on loopback.
        """
        return self._engine.wss_uri

    @wss_uri.setter
    def wss_uri(self, url: Optional[str]) -> None:
        self._engine.set_wss_uri(url)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._engine.session.supervisor.closing()

    @property
    def auto_reconnect_enabled(self) -> bool:
        """Whether a dropped connection is reopened; settable at any time, from any thread.

        Rotations Slack asks for (``disconnect``, RTM's ``goodbye``) are followed either way.
        """
        return self._engine.session.auto_reconnect

    @auto_reconnect_enabled.setter
    def auto_reconnect_enabled(self, enabled: bool) -> None:
        self._engine.set_auto_reconnect(enabled)

    @property
    def state(self) -> ClientState:
        """The client's :class:`~slack_socket_mode.lifecycle.ClientState`."""
        return self._engine.session.supervisor.state
