"""The session: the rules (:class:`~slack_socket_mode.lifecycle.Supervisor`) carried out, and the one connection table.

:class:`Session` owns the client's lock and everything it guards: the supervisor, the table of
open connections (the single source of connection state the client reads: :attr:`Session.connections`,
:meth:`Session.primary`, :attr:`Session.live_count`), the open attempts under way and the counters
of replacements. It runs two threads:

* ``session`` — woken when the rules ask for a connection; it gets a URL (``issue_new_wss_url``)
  and does the handshake (:class:`~slack_socket_mode.opening.Connector`), one at a time;
* ``health`` — a :class:`~slack_socket_mode.health.HealthMonitor` over the table: it sleeps until
  the next deadline (a ping, a pong or receive timeout, a rotation, a backoff timer, a write past
  ``write_timeout``, a reader's take-over, the idle pool's retirement) and fires it. It never waits
  on a connection's I/O.

Readers call :meth:`Session.on_hello`, :meth:`Session.on_disconnect` and :meth:`Session.on_closed`.

Lock order 1 (the first; docs/threading.md, "Locks"): ``lock`` (an ``RLock``; ``changed`` is its
condition). No socket call is made while it is held: the close frames and aborts the rules ask
for are queued by :meth:`Session.perform` and made once the outermost :meth:`Session.rules` of the
thread releases it; none of them blocks. The application's listeners are called without it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Union

from .boundary import open_error
from .connection import Connection
from .ends import End
from .errors import ConnectionFailedError, FatalError, NotConnectedError, SocketModeError
from .health import HealthMonitor
from .interval_runner import IntervalRunner
from .ledger import EnvelopeLedger
from .lifecycle import (
    Abort,
    Action,
    ClientState,
    Close,
    ConnectionState,
    Drain,
    Fail,
    Open,
    Supervisor,
    Transition,
    Warn,
)
from .liveness import Liveness
from .messages import Hello
from .opening import Connector, OpenAttempt
from .redaction import redact
from .stats import CauseCounter

if TYPE_CHECKING:
    from .acks import AckRouter
    from .dispatch import Dispatcher
    from .listeners import Listeners

__all__ = ["Facade", "Session"]


class Facade(Protocol):
    """What the session needs of the client's facade (:class:`slack_socket_mode.SocketModeClient`).

    ``issue_new_wss_url`` is called on the facade, so that an app's or a test's override of it is
    what opens each connection, as in slack_sdk; ``hello`` is set on each ``hello``.
    """

    hello: Optional[Hello]

    def issue_new_wss_url(self) -> str:
        """A fresh URL from ``apps.connections.open`` (raises our :class:`~.errors.SocketModeError` classes)."""
        ...


_RUNNING_CLIENT = (ClientState.CONNECTING, ClientState.CONNECTED, ClientState.RECONNECTING)
_STOPPED = (ClientState.CLOSED, ClientState.DISCONNECTED)  # by close() or disconnect()


class Session:
    """Carries out the supervisor's rules on the client's connections; runs the ``session`` and ``health`` threads.

    Args:
        client: the facade: its ``issue_new_wss_url`` and ``hello``.
        listeners: calls the application's listeners (errors, opens, closes, transitions), with no lock held.
        supervisor: the rules.
        connector: makes each connection.
        ledger: the envelope ledger (a draining connection is drained once nothing it delivered is in flight).
        liveness: the ping and timeout rules (for the health monitor).
        on_text: the readers' callback for each text message.
        prefix: the client's thread-name prefix.
        logger: where to log.
        connect_timeout: seconds for one open attempt (the Web API call and the handshake).
        write_timeout: seconds a write may run before its connection is aborted and replaced (health monitor).
        auto_reconnect: whether a connection lost unexpectedly is replaced (``auto_reconnect_enabled``).
        ping: sends one connection's keepalive if it cannot block (the health monitor's; see there).
        name: the protocol's name for the log (``Socket Mode``, ``RTM``).

    Attributes:
        health: the :class:`~slack_socket_mode.health.HealthMonitor` that runs the ``health`` thread.

    Thread-safety: every method may be called from any thread; state is read and changed under
    ``lock`` (:meth:`rules`), except ``live_count`` and the serving list, replaced whole and read
    without it.
    """

    def __init__(
        self,
        client: Facade,
        *,
        listeners: Listeners,
        supervisor: Supervisor,
        connector: Connector,
        ledger: EnvelopeLedger[Connection],
        liveness: Liveness,
        on_text: Callable[[Connection, str], None],
        prefix: str,
        logger: logging.Logger,
        connect_timeout: float,
        write_timeout: float,
        auto_reconnect: bool,
        ping: Callable[[Connection], bool] = Connection.ping,
        name: str = "Socket Mode",
    ) -> None:
        self._client = client
        self._name = name
        self._listeners = listeners
        self._connector = connector
        self._ledger = ledger
        self._on_text = on_text
        self._prefix = prefix
        self._logger = logger
        self._connect_timeout = connect_timeout
        self._acks: Optional[AckRouter] = None  # attached once made (they use this session)
        self._dispatcher: Optional[Dispatcher] = None
        # Lock order 1 (first): guards the supervisor, connections, _opening, _attempts, _open_queue, _pending_io,
        # the AckRouter's deferred acks, next_url, auto_reconnect and the counters below. No socket
        # call while it is held (see rules()).
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._rules_depth = threading.local()  # .n: how deep this thread is in rules()
        # (connection or open attempt, close reason or None: abort)
        self._pending_io: list[tuple[Union[Connection, OpenAttempt], Optional[str]]] = []
        self._pending_notify: list[Callable[[], None]] = []  # the application's listeners, run by rules()
        self.supervisor = supervisor
        self.connections: dict[int, Connection] = {}
        self._opening: dict[int, Connection] = {}  # handshakes under way on the session thread
        self._attempts: dict[int, OpenAttempt] = {}  # open attempts under way: they own every socket they connect
        self._serving: list[Connection] = []  # newest first; replaced whole, read without the lock
        self.live_count = 0
        self._open_queue: deque[int] = deque()
        self.fatal: Optional[FatalError] = None
        self.auto_reconnect = auto_reconnect
        self.next_url: Optional[str] = None  # set by the wss_uri setter: the next connection's URL
        self.opened = 0
        self.reconnects = CauseCounter()  # bounded: at most 32 causes (see .stats)
        self.last_disconnect_reason: Optional[str] = None
        self.malformed = 0

        self._threads_started = False
        self._opener = IntervalRunner(self._open_step, name=f"{self._prefix}-session", logger=self._logger)
        self.health = HealthMonitor(
            supervisor=supervisor,
            connections=self.connections,
            reconnects=self.reconnects,
            rules=self.rules,
            in_rules=self.in_rules,
            perform=self.perform,
            liveness=liveness,
            write_timeout=write_timeout,
            name=f"{self._prefix}-health",
            logger=self._logger,
            ping=ping,
        )

    def attach(self, acks: AckRouter, dispatcher: Dispatcher) -> None:
        """Give the session the ack router (deferred acks go out on ``hello``) and the dispatcher (its watches)."""
        self._acks = acks
        self._dispatcher = self.health.dispatcher = dispatcher

    def stop_threads(self) -> None:
        """Ask both threads to stop, waiting for neither (close() joins every thread of the client)."""
        self.health.stop()  # both asked to stop first: one that is slow to end costs the other nothing
        self._opener.stop(0.0)

    def abort_stalled_writes(self, after: float) -> None:
        """close(): give up each connection whose write has made no progress for ``after`` seconds.

        Nothing can be written to it (the peer stopped reading), so close() does not wait for its
        writers: the abort makes their ``send`` fail at once, and their acks go out on another
        connection (:class:`~slack_socket_mode.acks.AckRouter`). Called with no lock held; the
        sockets are looked at without it too.
        """
        now = time.monotonic()
        conns = list(self.connections.values())  # a copy of the table, as the dispatcher reads it
        stalled = [(conn, seconds) for conn in conns if (seconds := conn.write_stalled(now, after)) is not None]
        if not stalled:
            return
        with self.rules():
            for conn, seconds in stalled:
                if self.connections.get(conn.id) is conn:
                    reason = f"close(): a write made no progress in {seconds:.2f} s (the peer does not read)"
                    self.perform(self.supervisor.dead(conn.id, reason, now) or [Abort(conn.id, reason)])

    def on_disconnect(self, conn: Connection, reason: str) -> None:
        """``conn`` received ``disconnect`` with ``reason`` (on its reader)."""
        self._logger.info("connection %d: disconnect (reason %s)", conn.id, reason)
        with self.rules():
            self.last_disconnect_reason = reason
            self.reconnects[f"disconnect {reason}"] += 1
            self.perform(self.supervisor.disconnect(conn.id, reason, time.monotonic()))

    def start(
        self, timeout: Optional[float], *, auto_reconnect: bool, reopen_url: Optional[str]
    ) -> tuple[Optional[FatalError], bool, bool]:
        """connect(): start the threads and the rules, and wait up to ``timeout`` s for the first ``hello``.

        ``reopen_url`` is the URL the app set (``wss_uri``) while it is still the newest: it is
        opened again, as slack_sdk's ``connect()`` does. Returns ``(fatal error or None, connected,
        stopped by close() or disconnect())``.

        Raises:
            SocketModeError: the client is closed.
        """
        with self.rules():
            if self.supervisor.closing():
                raise SocketModeError("the client is closed; create a new one")
            self.start_threads()
            self.auto_reconnect = auto_reconnect
            if reopen_url is not None and self.live_count == 0:
                self.next_url = reopen_url  # slack_sdk's connect() opens wss_uri while it is set
            self.fatal = None
            self.perform(self.supervisor.start(time.monotonic()))
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.live_count == 0 and self.fatal is None and self.supervisor.state not in _STOPPED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self.changed.wait(remaining)
            fatal = self.fatal
            connected = self.live_count > 0
            stopped = self.supervisor.state in _STOPPED
        return fatal, connected, stopped

    def start_threads(self) -> None:
        if not self._threads_started:
            self._threads_started = True
            self._opener.start()
            self.health.start()

    @contextmanager
    def rules(self) -> Iterator[None]:
        """Hold ``lock`` to consult the rules; carry out what they asked for once it is released.

        The socket calls (close frames and aborts) and the application's listeners (transitions,
        errors) that :meth:`perform` queued are made after the outermost ``rules`` of this thread
        releases the lock (nested uses leave them to it), socket calls first: a listener may wait
        for their outcome. No socket call blocks: a close frame is written only if the socket can
        take it, else the connection is aborted. A listener that raises is logged (:mod:`.listeners`).
        """
        depth = getattr(self._rules_depth, "n", 0)
        self._rules_depth.n = depth + 1
        io: list[tuple[Union[Connection, OpenAttempt], Optional[str]]] = []
        notify: list[Callable[[], None]] = []
        try:
            with self.lock:
                yield
                if depth == 0:
                    io, self._pending_io = self._pending_io, []
                    notify, self._pending_notify = self._pending_notify, []
        finally:
            self._rules_depth.n = depth
        _carry_out(io)
        for call in notify:
            call()

    def in_rules(self) -> bool:
        """True when the calling thread is inside :meth:`rules` (it holds ``lock``)."""
        return getattr(self._rules_depth, "n", 0) > 0

    def perform(self, actions: list[Action]) -> None:
        """Carry out the supervisor's actions. Called with the lock held, inside :meth:`_rules`.

        Socket calls (close frames, aborts) are queued in ``_pending_io`` and the application's
        listeners in ``_pending_notify``, for :meth:`rules` to run once the lock is released; none is
        made here, and the caller's lock is never released.
        """
        assert self.in_rules(), "perform() is called inside rules()"
        notify = self._pending_notify
        while actions:
            more: list[Action] = []
            for action in actions:
                if isinstance(action, Transition):
                    self._log_transition(action, notify)
                elif isinstance(action, Open):
                    self._open_queue.append(action.connection_id)
                    self._opener.wake()
                elif isinstance(action, Drain):
                    conn = self.connections.get(action.connection_id)
                    if conn is not None:
                        conn.draining = True
                        if self._idle(conn):
                            more += self.supervisor.drained(conn.id, time.monotonic())
                elif isinstance(action, Close):
                    conn = self.connections.get(action.connection_id)
                    if conn is not None:
                        self._pending_io.append((conn, action.reason))
                elif isinstance(action, Abort):
                    conn = self.connections.get(action.connection_id) or self._opening.get(action.connection_id)
                    attempt = self._attempts.get(action.connection_id)
                    if conn is not None or attempt is not None:
                        self._logger.warning("connection %d: aborting (%s)", action.connection_id, action.reason)
                    if conn is not None:
                        self._pending_io.append((conn, None))
                    if attempt is not None:  # the Web API call, TCP, proxy and TLS steps: sockets no one else holds
                        self._pending_io.append((attempt, None))
                elif isinstance(action, Warn):
                    self._logger.warning("%s", action.message)
                elif isinstance(action, Fail):
                    self.fatal = action.error
                    self._logger.error("%s stopped: %s", self._name, action.error)
                    error = action.error
                    notify.append(lambda error=error: self._listeners.error(error))  # type: ignore[misc]
            actions = more
        ids = self.supervisor.serving_ids()
        self._serving = [self.connections[i] for i in ids if i in self.connections]
        self.live_count = sum(1 for i in self.supervisor.connected_ids() if i in self.connections)
        self.changed.notify_all()
        self.health.wake()

    def _log_transition(self, t: Transition, notify: list[Callable[[], None]]) -> None:
        old = t.old.value if t.old is not None else "new"
        who = "client" if t.connection_id is None else f"connection {t.connection_id}"
        self._logger.info("%s: %s -> %s (%s)", who, old, t.new.value, redact(t.reason))
        if t.connection_id is not None and t.new is ConnectionState.CLOSED:
            self._forget(t.connection_id)
        notify.append(lambda t=t: self._listeners.lifecycle(t))  # type: ignore[misc]

    def _forget(self, connection_id: int) -> None:
        conn = self.connections.pop(connection_id, None)
        if conn is not None and not conn.ended:
            self._pending_io.append((conn, None))

    def _open_step(self) -> Optional[float]:
        """Open the connections the supervisor asked for (blocking calls, one at a time).

        One deadline, ``connect_timeout``, covers the Web API call and the handshake: the
        handshake gets what the call left, and the health thread aborts an attempt still under
        way at the deadline, as does ``close()``: the supervisor's ``Abort`` for a ``CONNECTING``
        connection reaches its :class:`OpenAttempt` (every socket this thread connected for it:
        the Web API call's, the proxy's, the TLS one) through ``_attempts`` and the handshake
        through ``_opening``. A peer that trickles its answer, a byte at a time within each
        read's timeout, is cut off at the deadline all the same.
        """
        while True:
            with self.rules():
                if not self._open_queue:
                    return None
                cid = self._open_queue.popleft()
                if self.supervisor.connection_state(cid) is not ConnectionState.CONNECTING:
                    continue
                if self.supervisor.state not in _RUNNING_CLIENT:
                    # close() or disconnect() came first (a connection given up during close(), say):
                    # nothing is opened, and that is no failure to report
                    stopped = ConnectionFailedError("the client is stopping", error="open_aborted")
                    self.perform(self.supervisor.open_failed(cid, stopped, time.monotonic()))
                    continue
            deadline = time.monotonic() + self._connect_timeout
            conn: Optional[Connection] = None
            error: Optional[Exception] = None
            attempt = OpenAttempt()
            with self.lock:
                self._attempts[cid] = attempt
                stopping = self.supervisor.state not in _RUNNING_CLIENT
            if stopping:  # close() came since: the attempt connects nothing
                attempt.abort()
            try:
                with attempt.owning():
                    conn = self._open(cid, deadline)
            except Exception as e:  # mapped at the one boundary; a surprise must not stall reconnecting
                error = open_error(
                    cid, e, self._logger, aborted_after=self._connect_timeout if attempt.aborted else None
                )
            with self.rules():
                self._attempts.pop(cid, None)
                self._opening.pop(cid, None)
                now = time.monotonic()
                if conn is None or error is not None:
                    failure = error or ConnectionFailedError("could not open a connection", error="unknown")
                    if not isinstance(failure, FatalError):  # a fatal one is said once, by Fail, at ERROR
                        self._logger.warning("connection %d: %s", cid, failure)
                    self.perform(self.supervisor.open_failed(cid, failure, now))
                else:
                    self.connections[cid] = conn
                    self.opened += 1
                    conn.start()
                    self.perform(self.supervisor.opened(cid, now))
            if conn is not None and error is None:  # opened (on_open listeners: the transition's, in rules())
                continue
            if not isinstance(failure, FatalError):  # a FatalError reached the listeners through Fail
                self._listeners.error(failure)

    def _open(self, cid: int, deadline: float) -> Connection:
        """Get a URL (unless one was set) and open a connection to it by ``deadline`` (on the session thread)."""
        with self.lock:
            url, self.next_url = self.next_url, None
        if url is None:
            url = self._client.issue_new_wss_url()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectionFailedError(
                f"apps.connections.open took more than connect_timeout ({self._connect_timeout:g} s)",
                error="open_timeout",
            )
        conn = self._connector.connection(cid, url, on_text=self._on_text, on_closed=self.on_closed)
        with self.lock:
            self._opening[cid] = conn
            stopping = self.supervisor.state not in _RUNNING_CLIENT
        if stopping:
            conn.abort()
        self._logger.info("connection %d: opening %s", cid, conn.url)
        conn.open(remaining)
        return conn

    def on_hello(self, conn: Connection, hello: Hello) -> None:
        with self.rules():
            self._client.hello = hello
            # What this hello said, of the two fields Slack's Socket Mode hello has (RTM's has neither).
            said = [
                f"{name}={value}{unit}"
                for name, value, unit in (
                    ("num_connections", hello.num_connections, ""),
                    ("approximate_connection_time", hello.approximate_connection_time, " s"),
                )
                if value is not None
            ]
            self._logger.info("connection %d: hello%s", conn.id, f" ({', '.join(said)})" if said else "")
            self.perform(self.supervisor.hello(conn.id, hello.approximate_connection_time, time.monotonic()))
            deferred = self._acks.take_deferred() if self._acks is not None else []
        for text in deferred:
            try:
                conn.send_text(text)
            except NotConnectedError:
                self._logger.warning("connection %d: could not send a deferred ack", conn.id)

    def on_closed(self, conn: Connection, end: End) -> None:
        """``conn`` ended (on its reader): count it by its :class:`~.ends.EndKind` if unexpected, replace it."""
        code = conn.close_code if conn.close_code is not None else 1006
        reason = str(end)
        with self.rules():
            unexpected = self.supervisor.lost_unexpectedly(conn.id)
            if unexpected:
                self.reconnects[end.kind.value] += 1
                if not self.auto_reconnect and self.supervisor.state is not ClientState.CLOSED:
                    self._logger.warning("connection %d lost (%s); auto_reconnect_enabled is off", conn.id, reason)
            self.perform(self.supervisor.lost(conn.id, reason, time.monotonic(), reconnect=self.auto_reconnect))
        self._listeners.close(code, reason)

    def primary(self) -> Optional[Connection]:
        for conn in self._serving:
            if conn.can_send:
                return conn
        with self.lock:
            for cid in reversed(self.supervisor.connected_ids()):
                conn_ = self.connections.get(cid)
                if conn_ is not None and conn_.can_send:
                    return conn_
        return None

    def _idle(self, conn: Connection) -> bool:
        """No envelope delivered on ``conn`` waits for its listeners or its ack to be written.

        In this order: the ledger drops its count for an acked envelope after the ack is counted
        on its way (:meth:`Connection.ack_routed`), so a zero here is never a gap between the two.
        """
        return self._ledger.inflight(conn) == 0 and conn.acks_on_way == 0

    def maybe_drained(self, conn: Connection) -> None:
        if conn.draining and self._idle(conn):
            with self.rules():
                self.perform(self.supervisor.drained(conn.id, time.monotonic()))


def _carry_out(io: list[tuple[Union[Connection, OpenAttempt], Optional[str]]]) -> None:
    """Make the socket calls the rules asked for (never with the client's lock held; none blocks)."""
    for target, close_reason in io:
        if close_reason is None or not isinstance(target, Connection):
            target.abort()
        else:
            target.close(1000, close_reason)
