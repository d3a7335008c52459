"""Run a blocking call with a deadline: the caller waits at most the deadline; the call goes on on a pool thread.

One job: bound how long a caller waits for a call that may block on a peer past its own
timeouts (the Celery hand-off's publish: kombu retries a publish on a new connection, and a
broker that accepts a connection and then stops answering costs each attempt its full
timeouts). :class:`BoundedCalls` runs each call on one of its threads and waits for it at
most ``deadline`` seconds. A call still running then is *given up*: the caller gets
:class:`DeadlineExceeded` at once, the call goes on until its own timeouts end it, and what it
finally did is passed to ``on_late``. A call given up before a thread took it never runs.

The threads are made on demand, up to ``max_threads``, and stay for the next calls. Calls
given up keep their threads busy: with every thread busy a call is refused at once
(:class:`PoolExhausted`) rather than queued behind calls that may never end.

Thread-safe.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from typing import Any, Callable, Generic, Optional, TypeVar

from .errors import SocketModeError

__all__ = ["BoundedCalls", "DeadlineExceeded", "PoolExhausted"]

T = TypeVar("T")


class DeadlineExceeded(SocketModeError):
    """The call did not return within its deadline; it goes on on its thread."""


class PoolExhausted(SocketModeError):
    """Every thread of the pool is busy (calls given up still running among them): the call was not made."""


class _State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    GIVEN_UP = "given up"


class _Call(Generic[T]):
    """One call on its way: the function, its outcome, and who is still waiting for it."""

    def __init__(self, function: Callable[[], T], context: Any) -> None:
        self.function = function
        self.context = context  # handed to on_late with the outcome
        self.state = _State.QUEUED  # guarded by the pool's _lock
        self.done = threading.Event()
        self.result: Optional[T] = None
        self.error: Optional[BaseException] = None
        self.started = 0.0


_STOP: Any = object()  # a worker's sentinel: end the thread


class BoundedCalls:
    """A pool of threads that run calls for callers who wait at most a deadline.

    Args:
        name: the threads' name prefix (``slack_socket_mode-…-<n>``).
        max_threads: threads at most: calls running at once, given-up calls included.
        on_late: called on the pool's thread with ``(context, result, error, seconds)`` when a
            call given up ends (``error`` None: it returned ``result``). It must not raise.
    """

    def __init__(
        self,
        name: str,
        *,
        max_threads: int,
        on_late: Callable[[Any, Any, Optional[BaseException], float], None],
    ) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._name = name
        self._max_threads = max_threads
        self._on_late = on_late
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _threads, _idle, _given_up, _closed and every call's state
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call (an idle thread takes the next call queued)
        self._given_up = 0  # calls given up and still running
        self._closed = False
        self._made = 0

    @property
    def given_up_running(self) -> int:
        """Calls given up at their deadline that are still running on their threads."""
        with self._lock:
            return self._given_up

    def call(self, function: Callable[[], T], deadline: float, context: Any = None) -> T:
        """Run ``function()`` on a pool thread; return its result or raise its exception, within ``deadline`` seconds.

        Raises:
            DeadlineExceeded: it had not returned after ``deadline`` seconds (it goes on; ``on_late``
                hears how it ended).
            PoolExhausted: every thread is busy, or the pool is closed; ``function`` was not called.
        """
        entry: _Call[T] = _Call(function, context)
        with self._lock:
            if self._closed:
                raise PoolExhausted("the pool is closed")
            if self._idle > 0:
                self._idle -= 1  # this call is that thread's
            elif len(self._threads) < self._max_threads:
                self._start_thread()
            else:
                raise PoolExhausted(
                    f"all {self._max_threads} threads busy ({self._given_up} with calls given up at their deadline)"
                )
            self._queue.put(entry)
        if not entry.done.wait(deadline):
            with self._lock:
                if entry.state is not _State.FINISHED:
                    if entry.state is _State.RUNNING:
                        self._given_up += 1
                    entry.state = _State.GIVEN_UP
                    raise DeadlineExceeded(f"no answer within {deadline:.2f} s")
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]

    def close(self, timeout: float = 1.0) -> list[str]:
        """Stop the threads and join them within ``timeout`` seconds; returns the names of those still running."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        end = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        return [thread.name for thread in threads if thread.is_alive()]

    def _start_thread(self) -> None:
        assert self._lock.locked()
        self._made += 1
        thread = threading.Thread(target=self._work, name=f"{self._name}-{self._made}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is _STOP:
                break
            with self._lock:
                skip = entry.state is _State.GIVEN_UP  # given up before it started: never run
                if not skip:
                    entry.state = _State.RUNNING
            if not skip:
                self._run(entry)
            with self._lock:
                if self._closed:
                    break
                self._idle += 1
        with self._lock:
            self._threads.remove(threading.current_thread())

    def _run(self, entry: _Call[Any]) -> None:
        entry.started = time.monotonic()
        try:
            entry.result = entry.function()
        except BaseException as e:  # handed to the caller (or to on_late)
            entry.error = e
        with self._lock:
            late = entry.state is _State.GIVEN_UP
            if late:
                self._given_up -= 1
            else:
                entry.state = _State.FINISHED
        entry.done.set()
        if late:
            self._on_late(entry.context, entry.result, entry.error, time.monotonic() - entry.started)
