"""The rules of a Socket Mode session, as a state machine with no threads, sockets or clock.

:class:`Supervisor` decides, from what happened (a connection opened, said ``hello``,
got ``disconnect``, dropped; an open attempt failed; time passed), what the client must do
next: open a connection, drain one, close one, abort one, or give up. It returns
:class:`Action` values and :class:`Transition` records; the client's threads carry them out.
Every method takes ``now`` (seconds on a monotonic clock), so the rules are tested by
feeding messages and time (``tests/test_lifecycle.py``).

Rotation is make-before-break, and **a planned rotation is never a failure**: a connection
Slack wants to refresh (``disconnect`` reason ``warning``, ``refresh_requested`` or an unknown
reason), one whose ``approximate_connection_time`` is nearly spent and one the application
refreshes (``connect_to_new_endpoint(force=True)``) keeps serving while its replacement is opened
at once, whatever the backoff left by earlier faults (a pending backoff timer, a high attempt
count, the open floor of rule 1 below); once the replacement has said ``hello`` the old one is
drained (acks for its in-flight envelopes still go out on it) and closed. A rotation does not
count towards backoff, nor does Slack closing a connection it asked to refresh: only failed
attempts do (an open that fails, a connection lost without being asked for, no ``hello`` in
time, a dead connection). See https://api.slack.com/apis/socket-mode#disconnect.

``too_many_websockets`` is no failure either: the app holds Slack's limit of 10 connections,
across all its processes. The refused connection's slot is tried again every
``slot_retry_interval`` seconds (:data:`SLOT_RETRY_INTERVAL`), a short steady period with no
growth, so a slot another process frees is taken within seconds; the first refusal of an
episode (until a connection says ``hello`` again) gives one :class:`Warn` naming the limit.

Reconnect storms are impossible, whatever the peer says (the rule, in three parts):

1. **A floor per connection slot.** Open attempts after a failure start at most ``connections``
   per :data:`MIN_OPEN_INTERVAL` seconds on average, in bursts of at most :data:`OPEN_BURST` per
   slot: with one connection, at most two attempts in any two seconds. The burst lets one
   fault right after a connect (a reset) be repaired at once; a storm still meets the floor.
2. **A floor for rotations.** Replacements for planned rotations start at most ``connections``
   per :data:`MIN_ROTATION_INTERVAL` seconds on average, in bursts of at most
   :data:`ROTATION_BURST` per slot: far above any rate Slack rotates at (hours apart; a few in a
   minute during a deploy), so no rotation of Slack's ever waits, while a peer that asks for a
   refresh after every ``hello`` gets one rotation per slot every 10 s. An
   ``approximate_connection_time`` below :data:`MIN_CONNECTION_TIME` is taken as that minimum,
   so a ``hello`` saying 0.001 s cannot make the client rotate at once (see :func:`rotation_delay`).
3. **Failures count towards backoff.** Each failed attempt, and each connection lost without
   Slack asking for it, is one more attempt of the exponential backoff; a connection that stayed
   up ``policy.healthy_after`` seconds (then lost or rotated) resets the count first.

Every open attempt also has one deadline (``open_timeout``: the Web API call and the
handshake); a ``CONNECTING`` connection past it is aborted, and again every
:data:`ABORT_RETRY` seconds until the client reports the attempt over.

Not thread-safe: the client calls it under one lock.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Optional, Union

from .errors import FatalError, LinkDisabledError
from .policy import ReconnectPolicy
from .records import record

__all__ = [
    "CLOSING_STATES",
    "Abort",
    "Action",
    "ClientState",
    "Close",
    "ConnectionState",
    "DisconnectReason",
    "Drain",
    "Fail",
    "Open",
    "Supervisor",
    "Transition",
    "Warn",
    "rotation_delay",
    "ABORT_RETRY",
    "MIN_CONNECTION_TIME",
    "MIN_OPEN_INTERVAL",
    "MIN_ROTATION_INTERVAL",
    "OPEN_BURST",
    "ROTATION_BURST",
    "SLOT_RETRY_INTERVAL",
]

#: Seconds: on average at most ``connections`` open attempts start within an interval this long.
MIN_OPEN_INTERVAL = 1.0
#: Open attempts per connection slot that may start back to back: at most
#: ``OPEN_BURST * connections`` start within any ``OPEN_BURST * MIN_OPEN_INTERVAL`` seconds.
OPEN_BURST = 2
#: Seconds: the least ``approximate_connection_time`` believed (Slack's is about an hour).
MIN_CONNECTION_TIME = 60.0
#: Seconds: on average at most ``connections`` replacements for planned rotations start within an
#: interval this long.
MIN_ROTATION_INTERVAL = 10.0
#: Replacements for planned rotations per connection slot that may start back to back: at most
#: ``ROTATION_BURST * connections`` start within any ``ROTATION_BURST * MIN_ROTATION_INTERVAL`` seconds.
ROTATION_BURST = 5
#: Seconds between open attempts while Slack refuses connections with ``too_many_websockets`` (the
#: default of the client's ``slot_retry_interval``): steady, so a slot another process frees is
#: taken within this long plus one open attempt.
SLOT_RETRY_INTERVAL = 3.0
#: Seconds between aborts of an open attempt that is past its deadline and not over yet.
ABORT_RETRY = 0.5


class ConnectionState(enum.Enum):
    """The life of one connection."""

    CONNECTING = "connecting"  #: URL being issued, WebSocket handshake under way
    AWAITING_HELLO = "awaiting_hello"  #: handshake done, no ``hello`` yet
    CONNECTED = "connected"  #: ``hello`` received; serving
    DRAINING = "draining"  #: replaced; waiting for acks of envelopes it delivered
    CLOSING = "closing"  #: close frame sent; waiting for the server's
    CLOSED = "closed"  #: gone


class ClientState(enum.Enum):
    """The life of the client as a whole."""

    IDLE = "idle"  #: never connected
    CONNECTING = "connecting"  #: connect() called, no ``hello`` yet
    CONNECTED = "connected"  #: at least one connection has said ``hello``
    RECONNECTING = "reconnecting"  #: every connection is gone; opening new ones
    DISCONNECTED = "disconnected"  #: disconnect() was called; connect() may be called again
    FAILED = "failed"  #: a fatal error ended reconnecting; connect() may be called again
    #: close() began: no new envelope is dispatched and no connection opened; the open ones stay
    #: for the acks of the listeners still running, then close (``CLOSED``)
    CLOSING = "closing"
    CLOSED = "closed"  #: close() has closed every connection; final


class DisconnectReason(str, enum.Enum):
    """The ``reason`` values of Slack's ``disconnect`` message that the rules tell apart.

    A ``str`` enum: it compares equal to the reason as Slack sends it. Any other reason (Slack
    may add some) is a refresh, like ``warning``.
    See https://api.slack.com/apis/socket-mode#disconnect.
    """

    WARNING = "warning"  #: the connection will be refreshed soon: replace it, make-before-break
    REFRESH_REQUESTED = "refresh_requested"  #: replace it now, make-before-break
    LINK_DISABLED = "link_disabled"  #: Socket Mode was turned off for the app: fatal
    TOO_MANY_WEBSOCKETS = "too_many_websockets"  #: the app holds Slack's 10 connections: retry the slot steadily


_RUNNING = frozenset({ClientState.CONNECTING, ClientState.CONNECTED, ClientState.RECONNECTING})
#: close() began or ended: the one "closing" of the client (the dispatcher and the facade read it)
CLOSING_STATES = frozenset({ClientState.CLOSING, ClientState.CLOSED})
_LIVE = frozenset({ConnectionState.CONNECTED, ConnectionState.DRAINING})


@record
class Transition(NamedTuple):
    """A state change, for the INFO log and lifecycle listeners.

    ``connection_id`` is None for the client's own state.
    """

    connection_id: Optional[int]
    old: Union[ClientState, ConnectionState, None]
    new: Union[ClientState, ConnectionState]
    reason: str


@record
class Open(NamedTuple):
    """Open connection ``connection_id``: get a fresh URL, handshake, report back."""

    connection_id: int


@record
class Drain(NamedTuple):
    """Let connection ``connection_id`` finish acking what it delivered; report :meth:`Supervisor.drained`."""

    connection_id: int


@record
class Close(NamedTuple):
    """Send a close frame on ``connection_id`` and wait for the server's."""

    connection_id: int
    reason: str


@record
class Abort(NamedTuple):
    """Shut ``connection_id``'s socket down now, without a close handshake."""

    connection_id: int
    reason: str


@record
class Fail(NamedTuple):
    """Reconnecting is over: deliver ``error`` to the application."""

    error: FatalError


@record
class Warn(NamedTuple):
    """Log ``message`` at WARNING: news for the operator, given once per episode (the rules decide when)."""

    message: str


Action = Union[Open, Drain, Close, Abort, Fail, Warn, Transition]


def rotation_delay(approximate_connection_time: Optional[float]) -> Optional[float]:
    """Seconds after ``hello`` at which to replace a connection proactively.

    A minute before Slack's ``approximate_connection_time`` runs out (or at 90 % of it,
    whichever is later), so the replacement is up before Slack's own ``warning``. A time
    below :data:`MIN_CONNECTION_TIME` is taken as that minimum (a peer cannot make the
    client rotate in a tight loop).
    """
    if approximate_connection_time is None:
        return None
    approximate_connection_time = max(approximate_connection_time, MIN_CONNECTION_TIME)
    return max(approximate_connection_time * 0.9, approximate_connection_time - 60.0)


class _Window:
    """The start times of the latest ``size`` attempts of one kind: at most ``size`` start within ``span`` seconds."""

    __slots__ = ("_starts", "size", "span")

    def __init__(self, size: int, span: float) -> None:
        self.size = size
        self.span = span
        self._starts: list[float] = []  # oldest first, at most ``size``

    def earliest(self) -> float:
        """The earliest time the next attempt may start."""
        if len(self._starts) < self.size:
            return 0.0
        return self._starts[0] + self.span

    def add(self, now: float) -> None:
        """An attempt starts at ``now``."""
        self._starts = [*self._starts, now][-self.size :]


class _Conn:
    """The supervisor's record of one connection (mutable; owned by the supervisor)."""

    __slots__ = ("deadline", "id", "replace_reason", "rotate_at", "served_since", "state")

    def __init__(self, id: int, state: ConnectionState) -> None:
        self.id = id
        self.state = state
        # When the client began to be served without a gap through it: its hello, or, when it said
        # hello while another connection still served (a rotation, make-before-break), that one's.
        self.served_since: Optional[float] = None
        self.rotate_at: Optional[float] = None
        # Set when Slack asked for its end (a planned rotation, or too_many_websockets): it is to be
        # replaced, and losing it is no failure.
        self.replace_reason: Optional[str] = None
        self.deadline: Optional[float] = None  # for CONNECTING, AWAITING_HELLO, DRAINING and CLOSING

    def healthy(self, now: float, healthy_after: float) -> bool:
        """Whether the client has been served through it for ``healthy_after`` seconds at ``now``.

        Counted from its ``hello``, or from its predecessor's when it took over from a connection
        still serving: a chain of planned rotations (Slack's, every few hours, or every 60 s with
        ``debug_reconnects``) is one healthy run, so a drop after it is news, not a pattern.
        """
        return self.served_since is not None and now - self.served_since >= healthy_after


class Supervisor:
    """Decides which connections to open, drain, close or abort, and when.

    Args:
        policy: reconnect backoff (see :class:`~slack_socket_mode.policy.Backoff`).
        connections: how many connections to keep (1 to 10).
        hello_timeout: seconds a new connection may take to say ``hello``.
        drain_timeout: seconds a replaced connection may wait for its acks before closing.
        close_timeout: seconds to wait for the server's close frame before aborting.
        open_timeout: seconds one open attempt (the Web API call and the WebSocket handshake)
            may take before it is aborted; None for no deadline.
        min_open_interval: seconds; on average at most ``connections`` open attempts after a
            failure start within an interval this long, in bursts of :data:`OPEN_BURST` per slot
            (see the module's rule).
        slot_retry_interval: seconds between open attempts while Slack refuses connections
            with ``too_many_websockets``.

    Attributes:
        attempt: consecutive failed attempts (the backoff's attempt number for the next one).

    Not thread-safe.
    """

    def __init__(
        self,
        policy: ReconnectPolicy,
        *,
        connections: int = 1,
        hello_timeout: float = 10.0,
        drain_timeout: float = 5.0,
        close_timeout: float = 1.0,
        open_timeout: Optional[float] = None,
        min_open_interval: float = MIN_OPEN_INTERVAL,
        slot_retry_interval: float = SLOT_RETRY_INTERVAL,
    ) -> None:
        self.policy = policy
        self.target = connections
        self.hello_timeout = hello_timeout
        self.drain_timeout = drain_timeout
        self.close_timeout = close_timeout
        self.open_timeout = open_timeout
        self.slot_retry_interval = slot_retry_interval
        self._open_floor = _Window(OPEN_BURST * connections, OPEN_BURST * min_open_interval)
        self._rotation_floor = _Window(ROTATION_BURST * connections, ROTATION_BURST * MIN_ROTATION_INTERVAL)
        self.state = ClientState.IDLE
        self._reset(0.0)
        self._conns: dict[int, _Conn] = {}
        self._next_id = 1
        self._out: list[Action] = []

    def _reset(self, now: float) -> None:
        """A fresh start: no failed attempt, no rotation owed, no refusal."""
        self.attempt = 0
        self.next_open_at = now  # no open after a failure before this (monotonic seconds)
        self._rotations_owed = 0  # planned rotations whose replacement has not started yet
        self._refused_at: Optional[float] = None  # the first refusal of the episode (too_many_websockets)

    # ---- queries -------------------------------------------------------------------------------

    @property
    def waiting_for_slot(self) -> bool:
        """True from a ``too_many_websockets`` refusal until a connection says ``hello`` (or
        ``start()``): the episode its :class:`Warn` is given once for."""
        return self._refused_at is not None

    def connection_state(self, connection_id: int) -> ConnectionState:
        """The state of a connection (CLOSED if unknown)."""
        c = self._conns.get(connection_id)
        return c.state if c else ConnectionState.CLOSED

    def connected_ids(self) -> list[int]:
        """Ids of connections that have said ``hello`` and are not closing, oldest first."""
        return [c.id for c in self._conns.values() if c.state in _LIVE]

    def serving_ids(self) -> list[int]:
        """Ids of connected connections not marked for replacement, newest first (for routing)."""
        return [
            c.id
            for c in reversed(self._conns.values())
            if c.state is ConnectionState.CONNECTED and c.replace_reason is None
        ]

    def next_deadline(self) -> Optional[float]:
        """The monotonic time at which :meth:`tick` has something to do, or None."""
        times = [c.deadline for c in self._conns.values() if c.deadline is not None]
        times += [
            c.rotate_at
            for c in self._conns.values()
            if c.rotate_at is not None and c.replace_reason is None and c.state is ConnectionState.CONNECTED
        ]
        if self.state in _RUNNING and not self._opening():
            wanted = self._wanted()
            owed = min(self._rotations_owed, wanted)
            if owed > 0:
                times.append(self._rotation_floor.earliest())
            if wanted > owed:
                times.append(max(self.next_open_at, self._open_floor.earliest()))
        return min(times) if times else None

    # ---- inputs --------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """connect() was called. Opens connections at once (no-op if already running)."""
        if self.state in _RUNNING or self.state in CLOSING_STATES:
            return []
        self._reset(now)
        self._set_state(ClientState.CONNECTING, "connect() called")
        return self._plan(now)

    def begin_close(self) -> list[Action]:
        """close() began (``CLOSING``): nothing new is dispatched or opened; the connections stay for the acks.

        :meth:`stop` with ``final=True`` then closes them. No-op once closing or closed.
        """
        if self.state in CLOSING_STATES:
            return []
        self._set_state(ClientState.CLOSING, "close() called")
        return self._flush()

    def closing(self) -> bool:
        """True from close()'s start (``CLOSING``, then ``CLOSED``); read without the lock by any thread."""
        state = self.state  # identity, not a set lookup: Enum.__hash__ is Python code, and this is on every envelope
        return state is ClientState.CLOSING or state is ClientState.CLOSED

    def stop(self, now: float, *, final: bool) -> list[Action]:
        """disconnect() (``final=False``) or close() (``final=True``): close every connection.

        disconnect() during close() (``CLOSING``) changes nothing: close() goes on.
        """
        if self.state is ClientState.CLOSED or (self.state is ClientState.CLOSING and not final):
            return []
        reason = "close() called" if final else "disconnect() called"
        self._set_state(ClientState.CLOSED if final else ClientState.DISCONNECTED, reason)
        self._close_all(now, reason)
        return self._flush()

    def opened(self, connection_id: int, now: float) -> list[Action]:
        """The WebSocket handshake of ``connection_id`` succeeded."""
        c = self._conns.get(connection_id)
        if c is None or c.state is not ConnectionState.CONNECTING:
            return []
        if self.state not in _RUNNING:  # stopped while it was opening
            self._to(c, ConnectionState.CLOSING, "client is stopping", now + self.close_timeout)
            self._out.append(Close(c.id, "client is stopping"))
            return self._flush()
        self._to(c, ConnectionState.AWAITING_HELLO, "handshake done", now + self.hello_timeout)
        return self._flush()

    def open_failed(self, connection_id: int, error: Exception, now: float) -> list[Action]:
        """Opening ``connection_id`` failed with ``error``.

        A :class:`FatalError` ends reconnecting; a
        :class:`~slack_socket_mode.errors.RateLimitedError` waits at least its ``retry_after``;
        anything else backs off.
        """
        c = self._conns.pop(connection_id, None)
        if c is not None:
            self._emit(c.id, c.state, ConnectionState.CLOSED, f"open failed: {_describe(error)}")
        if isinstance(error, FatalError):
            return self._fail(error, now)
        if self.state not in _RUNNING:
            return self._flush()
        retry_after = float(getattr(error, "retry_after", 0.0) or 0.0)
        self._back_off(now, minimum=retry_after)
        self._update_client_state(f"open failed: {_describe(error)}")
        return self._plan(now)

    def hello(self, connection_id: int, approximate_connection_time: Optional[float], now: float) -> list[Action]:
        """``connection_id`` received ``hello``."""
        c = self._conns.get(connection_id)
        if c is None or c.state is not ConnectionState.AWAITING_HELLO:
            return []
        serving = [
            o.served_since
            for o in self._conns.values()
            if o is not c
            and o.served_since is not None
            and o.state in (ConnectionState.CONNECTED, ConnectionState.DRAINING)
        ]
        c.served_since = min(serving, default=now)
        self._refused_at = None  # Slack gave a slot: a refusal from now on is news again
        delay = rotation_delay(approximate_connection_time)
        c.rotate_at = now + delay if delay is not None else None
        self._to(c, ConnectionState.CONNECTED, "hello received", None)
        return self._plan(now)

    def disconnect(self, connection_id: int, reason: str, now: float) -> list[Action]:
        """``connection_id`` received ``disconnect`` with ``reason``."""
        c = self._conns.get(connection_id)
        if reason == DisconnectReason.LINK_DISABLED:
            return self._fail(
                LinkDisabledError(
                    "Slack disabled Socket Mode for this app (disconnect reason link_disabled); "
                    "turn Socket Mode on in the app settings and connect again",
                    error="link_disabled",
                ),
                now,
            )
        if c is None or c.state not in (ConnectionState.CONNECTED, ConnectionState.AWAITING_HELLO):
            return []
        if reason == DisconnectReason.TOO_MANY_WEBSOCKETS:
            self._refused(c, now)
        else:
            self._rotate(c, f"disconnect {reason}", now)
        return self._plan(now)

    def refresh(self, reason: str, now: float) -> list[Action]:
        """Replace every connected connection, make-before-break (``connect_to_new_endpoint(force=True)``)."""
        for c in self._conns.values():
            if c.state is ConnectionState.CONNECTED:
                self._rotate(c, reason, now)
        return self._plan(now)

    def lost_unexpectedly(self, connection_id: int) -> bool:
        """Whether losing ``connection_id`` now would be a surprise.

        It would not be if it was draining or closing, or if Slack asked for its end: a planned
        rotation, or ``too_many_websockets``.
        """
        c = self._conns.get(connection_id)
        ended = (ConnectionState.DRAINING, ConnectionState.CLOSING)
        return c is not None and c.replace_reason is None and c.state not in ended

    def lost(self, connection_id: int, reason: str, now: float, *, reconnect: bool = True) -> list[Action]:
        """``connection_id``'s socket is gone (closed, reset, aborted or failed).

        The auto-reconnect rule: with ``reconnect`` False (the app turned ``auto_reconnect_enabled``
        off), a connection lost unexpectedly while no other one is connected stops the client
        (``DISCONNECTED``, as :meth:`stop` with ``final=False``) before anything is planned, so no
        replacement is opened; while others are connected they go on serving. Rotations Slack
        asks for (``disconnect``) are followed either way, even if Slack closes the old connection
        before the replacement's ``hello``, and a slot Slack refused is tried again.
        """
        actions: list[Action] = []
        if (
            not reconnect
            and self.state not in CLOSING_STATES
            and self.lost_unexpectedly(connection_id)
            and not [i for i in self.connected_ids() if i != connection_id]
        ):
            actions = self.stop(now, final=False)
        if self._lost(connection_id, reason, now):
            return actions + self._plan(now)
        return actions + self._flush()

    def drained(self, connection_id: int, now: float) -> list[Action]:
        """Every envelope ``connection_id`` delivered has been acked (or it is given up on)."""
        self._drained(connection_id, now)
        return self._flush()

    def dead(self, connection_id: int, reason: str, now: float) -> list[Action]:
        """``connection_id`` failed a liveness check (no pong, no frames): abort and replace it."""
        c = self._conns.get(connection_id)
        if c is None or c.state is ConnectionState.CONNECTING:
            return []
        self._out.append(Abort(c.id, reason))
        return self.lost(connection_id, reason, now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: fire whatever deadline is due."""
        for c in list(self._conns.values()):
            if c.state is ConnectionState.CONNECTED and c.rotate_at is not None and now >= c.rotate_at:
                self._rotate(c, "approximate_connection_time nearly spent", now)
            if c.deadline is None or now < c.deadline:
                continue
            if c.state is ConnectionState.CONNECTING:
                c.deadline = now + ABORT_RETRY  # until the client reports the attempt over
                self._out.append(Abort(c.id, f"open attempt took more than {self.open_timeout:g} s"))
            elif c.state is ConnectionState.AWAITING_HELLO:
                self._out.append(Abort(c.id, f"no hello within {self.hello_timeout:g} s"))
                self._lost(c.id, f"no hello within {self.hello_timeout:g} s", now)
            elif c.state is ConnectionState.DRAINING:
                self._drained(c.id, now)
            elif c.state is ConnectionState.CLOSING:
                c.deadline = None
                self._out.append(Abort(c.id, f"no close frame within {self.close_timeout:g} s"))
        return self._plan(now)

    # ---- internals -----------------------------------------------------------------------------

    def _lost(self, connection_id: int, reason: str, now: float) -> bool:
        """Forget a connection; back off if the drop was unexpected. True if a replacement may be due."""
        c = self._conns.pop(connection_id, None)
        if c is None:
            return False
        expected = c.state in (ConnectionState.DRAINING, ConnectionState.CLOSING)
        self._emit(c.id, c.state, ConnectionState.CLOSED, reason)
        if expected or self.state not in _RUNNING:
            self._update_client_state(reason)
            return False
        if c.replace_reason is None:  # else Slack asked for its end (refused, or to be refreshed): no failure
            if c.healthy(now, self.policy.healthy_after):
                self.attempt = 0  # this drop is news, not a pattern
            self._back_off(now, minimum=0.0)
        self._update_client_state(f"connection {c.id} lost: {reason}")
        return True

    def _rotate(self, c: _Conn, reason: str, now: float) -> None:
        """A planned rotation of ``c``: its replacement is owed, to open at once (the rotation floor aside).

        Not a failure: the attempt count is left alone, or reset if ``c`` stayed up ``healthy_after``.
        """
        if c.replace_reason is not None:
            return
        c.replace_reason = reason
        self._rotations_owed += 1
        if c.healthy(now, self.policy.healthy_after):
            self.attempt = 0

    def _refused(self, c: _Conn, now: float) -> None:
        """Slack refused ``c`` (``too_many_websockets``): its slot is tried again after ``slot_retry_interval``."""
        if self._refused_at is None:
            self._refused_at = now
            self._out.append(_no_slot_warning(c.id, len(self.connected_ids()), self.slot_retry_interval))
        self.next_open_at = max(self.next_open_at, now + self.slot_retry_interval)
        if c.replace_reason is None:
            c.replace_reason = f"disconnect {DisconnectReason.TOO_MANY_WEBSOCKETS.value}"

    def _drained(self, connection_id: int, now: float) -> None:
        c = self._conns.get(connection_id)
        if c is None or c.state is not ConnectionState.DRAINING:
            return
        self._to(c, ConnectionState.CLOSING, "drained", now + self.close_timeout)
        self._out.append(Close(c.id, c.replace_reason or "drained"))

    def _opening(self) -> bool:
        return any(c.state is ConnectionState.CONNECTING for c in self._conns.values())

    def _wanted(self) -> int:
        serving = pending = 0
        for c in self._conns.values():
            if c.state is ConnectionState.CONNECTED and c.replace_reason is None:
                serving += 1
            elif c.state in (ConnectionState.CONNECTING, ConnectionState.AWAITING_HELLO):
                pending += 1
        return self.target - serving - pending

    def _back_off(self, now: float, *, minimum: float) -> None:
        delay = max(self.policy.delay(self.attempt), minimum)
        self.next_open_at = max(self.next_open_at, now + delay)
        self.attempt += 1

    def _plan(self, now: float) -> list[Action]:
        if self.state in _RUNNING:
            wanted = self._wanted()
            owed = min(self._rotations_owed, wanted)  # neither branch is taken unless wanted > 0
            if not self._opening():
                if owed > 0 and now >= self._rotation_floor.earliest():
                    # a planned rotation's replacement: whatever the backoff and the open floor say
                    self._rotations_owed -= 1
                    self._rotation_floor.add(now)
                    self._start_open(now)
                elif wanted > owed and now >= self.next_open_at and now >= self._open_floor.earliest():
                    self._start_open(now)
            serving = sum(
                1 for c in self._conns.values() if c.state is ConnectionState.CONNECTED and c.replace_reason is None
            )
            for c in list(self._conns.values()):  # oldest first
                if serving < self.target:
                    break
                if c.state is ConnectionState.CONNECTED and c.replace_reason is not None:
                    self._to(
                        c,
                        ConnectionState.DRAINING,
                        f"replaced ({c.replace_reason})",
                        now + self.drain_timeout,
                    )
                    self._out.append(Drain(c.id))
            self._update_client_state("")
        return self._flush()

    def _start_open(self, now: float) -> None:
        c = _Conn(self._next_id, ConnectionState.CONNECTING)
        if self.open_timeout is not None:
            c.deadline = now + self.open_timeout
        self._open_floor.add(now)  # every attempt counts towards the floor, a rotation's too
        self._next_id += 1
        self._conns[c.id] = c
        self._emit(c.id, None, ConnectionState.CONNECTING, "opening")
        self._out.append(Open(c.id))

    def _update_client_state(self, reason: str) -> None:
        if self.state not in _RUNNING:
            return
        if any(c.state in _LIVE for c in self._conns.values()):
            self._set_state(ClientState.CONNECTED, reason or "hello received")
        elif self.state is ClientState.CONNECTED:
            self._set_state(ClientState.RECONNECTING, reason or "no connection left")

    def _fail(self, error: FatalError, now: float) -> list[Action]:
        self._set_state(ClientState.FAILED, f"{type(error).__name__}: {error.error}")
        self._close_all(now, error.error)
        self._out.append(Fail(error))
        return self._flush()

    def _close_all(self, now: float, reason: str) -> None:
        for c in list(self._conns.values()):
            if c.state is ConnectionState.CONNECTING:  # the open attempt is cut short; it reports back
                self._out.append(Abort(c.id, reason))
            elif c.state in (
                ConnectionState.AWAITING_HELLO,
                ConnectionState.CONNECTED,
                ConnectionState.DRAINING,
            ):
                self._to(c, ConnectionState.CLOSING, reason, now + self.close_timeout)
                self._out.append(Close(c.id, reason))

    def _to(self, c: _Conn, state: ConnectionState, reason: str, deadline: Optional[float]) -> None:
        self._emit(c.id, c.state, state, reason)
        c.state = state
        c.deadline = deadline

    def _set_state(self, state: ClientState, reason: str) -> None:
        if state is not self.state:
            self._out.append(Transition(None, self.state, state, reason))
            self.state = state

    def _emit(self, cid: int, old: Optional[ConnectionState], new: ConnectionState, reason: str) -> None:
        self._out.append(Transition(cid, old, new, reason))

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out


def _no_slot_warning(connection_id: int, held: int, retry_interval: float) -> Warn:
    """What the operator is told, once per episode, when Slack refuses a connection for want of a slot."""
    return Warn(
        f"connection {connection_id}: Slack refused it (disconnect reason too_many_websockets): the app "
        f"already holds Slack's limit of 10 Socket Mode connections, across all its processes "
        f"({held} of them here); retrying every {retry_interval:g} s until one frees"
    )


def _describe(error: Exception) -> str:
    code = getattr(error, "error", None)
    return f"{type(error).__name__} ({code})" if code else type(error).__name__
