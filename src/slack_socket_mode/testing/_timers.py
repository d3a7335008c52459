"""The local Socket Mode server's timers: redeliveries and close timeouts, on one thread.

:class:`TimerQueue` is a heap of ``(when, action, arg)`` entries run by one thread
(``slack_socket_mode.testing-timers``, started and joined by the server). Nothing polls: the
thread sleeps on a condition until the earliest entry is due or an earlier one is added.
Every time is a :func:`time.monotonic` time, in seconds.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable

__all__ = ["TimerQueue"]

logger = logging.getLogger("slack_socket_mode.testing")

#: A timer action: called on the timers thread with the ``arg`` it was scheduled with.
Action = Callable[[Any], None]


class TimerQueue:
    """Run ``action(arg)`` at a given monotonic time, in time order, on the thread that calls :meth:`run`.

    An action that raises is logged at DEBUG and the next one runs. Thread-safe; actions run
    with no lock of the queue held, so they may schedule more.
    """

    def __init__(self) -> None:
        # _cond guards _timers and _stopped; it is a leaf: nothing else is locked under it.
        self._cond = threading.Condition(threading.Lock())
        self._timers: list[tuple[float, int, Action, Any]] = []
        self._seq = itertools.count()  # ties run in scheduling order
        self._stopped = False

    def schedule(self, when: float, action: Action, arg: Any) -> None:
        """Run ``action(arg)`` at monotonic time ``when`` (seconds)."""
        with self._cond:
            entry = (when, next(self._seq), action, arg)
            heapq.heappush(self._timers, entry)
            if self._timers[0] is entry:
                self._cond.notify()

    def schedule_many(self, entries: list[tuple[float, Action, Any]]) -> None:
        """:meth:`schedule` each ``(when, action, arg)``, waking the thread at most once."""
        with self._cond:
            head = self._timers[0] if self._timers else None
            for when, action, arg in entries:
                heapq.heappush(self._timers, (when, next(self._seq), action, arg))
            if self._timers and self._timers[0] is not head:
                self._cond.notify()

    def stop(self) -> None:
        """Make :meth:`run` return; entries not yet due are dropped."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def run(self) -> None:
        """Run due actions until :meth:`stop` (the body of the timers thread)."""
        timers = self._timers
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    now = time.monotonic()
                    if timers and timers[0][0] <= now:
                        break
                    self._cond.wait(timers[0][0] - now if timers else None)
                due = []
                while timers and timers[0][0] <= now:
                    due.append(heapq.heappop(timers))
            for _, _, action, arg in due:
                try:
                    action(arg)
                except Exception:
                    logger.debug("timer action failed", exc_info=True)
