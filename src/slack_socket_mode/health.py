"""The ``health`` thread: it sleeps until the next deadline of the connections and fires it.

:class:`HealthMonitor` runs one step at each deadline, and when woken (a deadline may have moved
closer): the supervisor's timers (a ``hello`` or drain timeout, a rotation, a backoff, an open
attempt's deadline), a write past ``write_timeout``, liveness (a ping due, no pong, no frames), a
reader's listeners past ``handoff_after`` (the dispatcher's take-over watch) and the idle worker
pool's retirement. A connection found dead or stuck is replaced through the supervisor.

It never waits on a connection's I/O: it reads the connection table under the session's lock,
where no socket call is made, and once the lock is released it sends the pings that are due,
each only if it cannot block (:meth:`~slack_socket_mode.connection.Connection.ping`). A peer that
stops reading is noticed by the write's deadline, not by a write of this thread.

Locks: none of its own. It takes the session's lock (order 1, through ``rules``) for the table and
the supervisor, then, with no lock held, the dispatcher's (orders 2 and 3) for its watches.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Callable, Optional

from .connection import Connection
from .ends import EndKind
from .interval_runner import IntervalRunner
from .lifecycle import Abort, Action, Supervisor
from .liveness import Liveness

if TYPE_CHECKING:
    from .dispatch import Dispatcher

__all__ = ["HealthMonitor"]


class HealthMonitor:
    """Runs the ``health`` thread over the session's connection table (see the module's docstring).

    Args:
        supervisor: the rules (their timers, and ``dead`` for a connection to replace).
        connections: the session's connection table, ``{id: Connection}``; read only with ``rules`` held.
        reconnects: the session's counters of replacements by cause; changed only with ``rules`` held.
        rules: the session's ``rules()``: holds its lock (order 1), and makes the socket calls the
            rules asked for once it is released.
        in_rules: True when the calling thread is inside ``rules`` (the helpers assert it).
        perform: carries out the supervisor's actions (called inside ``rules``).
        liveness: the ping and timeout rules.
        write_timeout: seconds a write may run before its connection is aborted and replaced.
        name: the thread's name, ``<prefix>-health``.
        logger: where to log.
        ping: sends one connection's keepalive if that cannot block, True if sent (default
            :meth:`Connection.ping`: a WebSocket ping frame; the RTM client's sends its JSON ping).

    Attributes:
        dispatcher: the dispatcher whose watches (take-over, idle pool) run at each step, or None
            (set once made: it wakes this thread).

    Thread-safety: ``wake`` may be called from any thread; the step runs on the ``health`` thread only.
    """

    def __init__(
        self,
        *,
        supervisor: Supervisor,
        connections: dict[int, Connection],
        reconnects: Counter[str],
        rules: Callable[[], AbstractContextManager[None]],
        in_rules: Callable[[], bool],
        perform: Callable[[list[Action]], None],
        liveness: Liveness,
        write_timeout: float,
        name: str,
        logger: logging.Logger,
        ping: Callable[[Connection], bool] = Connection.ping,
    ) -> None:
        self._supervisor = supervisor
        self._ping = ping
        self._connections = connections
        self._reconnects = reconnects
        self._rules = rules
        self._in_rules = in_rules
        self._perform = perform
        self._liveness = liveness
        self._write_timeout = write_timeout
        self._logger = logger
        self.dispatcher: Optional[Dispatcher] = None
        self._runner = IntervalRunner(self.step, name=name, logger=logger)
        #: Run a step as soon as possible: a deadline may have moved closer. Any thread; the runner's own
        #: ``wake``, with no layer of ours (the dispatcher calls it as an inline run starts after a quiet spell).
        self.wake: Callable[[], None] = self._runner.wake

    def start(self) -> None:
        """Start the thread (once)."""
        self._runner.start()

    def stop(self) -> None:
        """Ask the thread to stop, without waiting (close() joins every thread of the client)."""
        self._runner.stop(0.0)

    def step(self) -> Optional[float]:
        """Fire due deadlines; ping; replace dead connections. Returns seconds until the next one, or None.

        Never waits on a connection's I/O: a ping is sent only if it cannot block
        (:meth:`Connection.ping`), and a write that has run past ``write_timeout`` gets its
        connection aborted and replaced.
        """
        now = time.monotonic()
        pings: list[Connection] = []
        with self._rules():
            actions = self._supervisor.tick(now)
            next_at = _earliest(self._supervisor.next_deadline(), self._check_writes(now, actions))
            next_at = _earliest(next_at, self._check_liveness(now, actions, pings))
            if actions:
                self._perform(actions)
                next_at = self._supervisor.next_deadline() if next_at is None else next_at
        ping = self._ping
        for conn in pings:
            ping(conn)
        dispatcher = self.dispatcher
        if dispatcher is not None:
            next_at = _earliest(next_at, dispatcher.watch_inline(now))
            next_at = _earliest(next_at, dispatcher.retire_idle_workers(now))
        return None if next_at is None else max(0.0, next_at - time.monotonic())

    def _check_writes(self, now: float, actions: list[Action]) -> Optional[float]:
        """Replace each connection whose write has run past ``write_timeout`` (its actions added to ``actions``).

        Returns when to look again (the earliest write's deadline), or None.
        """
        assert self._in_rules(), "the connection table is read inside the session's rules()"
        next_at: Optional[float] = None
        for writer in list(self._connections.values()):
            overdue = writer.write_overdue(now)
            if overdue is not None:
                reason = f"a write has not finished in {overdue:.1f} s (the peer does not read)"
                self._logger.warning("connection %d: %s; replacing it", writer.id, reason)
                self._reconnects[EndKind.WRITE_TIMEOUT.value] += 1
                actions.extend(self._supervisor.dead(writer.id, reason, now) or [Abort(writer.id, reason)])
                continue
            due = writer.write_deadline()
            if due is None:  # a write that starts while this thread sleeps is seen within write_timeout
                due = now + self._write_timeout
            next_at = _earliest(next_at, due)
        return next_at

    def _check_liveness(self, now: float, actions: list[Action], pings: list[Connection]) -> Optional[float]:
        """Replace each silent connection (its actions added to ``actions``), list those due a ping in ``pings``.

        Returns when to look again, or None.
        """
        assert self._in_rules(), "the connection table is read inside the session's rules()"
        next_at: Optional[float] = None
        for cid in self._supervisor.connected_ids():
            conn = self._connections.get(cid)
            if conn is None:
                continue
            if conn.backpressured:  # our own pause, not the server's silence: look again later
                next_at = _earliest(next_at, now + self._liveness.ping_timeout)
                continue
            verdict = self._liveness.check(now, last_received=conn.last_received, last_ping=conn.last_ping)
            if verdict.dead is not None:
                self._logger.warning("connection %d: %s; replacing it", cid, verdict.dead)
                self._reconnects[verdict.dead.kind.value] += 1
                actions.extend(self._supervisor.dead(cid, str(verdict.dead), now))
                continue
            if verdict.ping:
                pings.append(conn)
            next_at = _earliest(next_at, verdict.next_check)
        return next_at


def _earliest(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """The earlier of two deadlines, either of which may be None (none)."""
    if a is None:
        return b
    return a if b is None else min(a, b)
