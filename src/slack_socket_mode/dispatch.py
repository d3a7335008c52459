"""Dispatch: the queue, the worker pool, inline runs on the reader and the reader's take-over.

:class:`Dispatcher` decides, for each first delivery the ledger lets through, where its listeners
run: on the reader that read it (the fast path: no thread hand-off, the ack goes out from the
reader) when no envelope waits for a worker and a slot of ``concurrency`` is free, else on a
worker of the pool. It keeps the queue accounting and its backpressure (at ``max_queue`` the reader
stops reading), lets the idle pool go after ``worker_idle_timeout``, and, from the ``health``
thread, gives a connection a new reader when the old one's listeners run past ``handoff_after``.

Locks (their places in the client's one order; docs/threading.md, "Locks"):

2. ``_queue_lock`` (``_room`` and ``_drained`` are its conditions) — queue accounting.
3. ``_watch_lock`` — inline runs: begin, end and take-over of a reader's listeners.

The client's lock (order 1) is never taken here, and none of ours is held while the application's
listeners run or a frame is written. The listener runs under way, inline and on workers together,
are counted under ``_queue_lock`` (``_running``, at most ``concurrency``; a worker waits on
``_slot_free`` for one to end), in the same lock round trips as the queue accounting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Optional

from .acks import AckRouter
from .connection import Connection
from .errors import SocketModeError
from .ledger import Receipt
from .lifecycle import Supervisor
from .messages import Envelope
from .shared import Admission, SharedLedger

if TYPE_CHECKING:
    from .listeners import Listeners, Redelivery

__all__ = ["Dispatcher"]

#: Seconds after a take-over (a reader's listeners ran past handoff_after) during which
#: envelopes go to the worker pool: the app's listeners are slow just now.
_INLINE_PAUSE = 1.0


def _unaccounted(envelope: Envelope, redeliver: Optional[Redelivery]) -> None:
    """The ``finish`` of an envelope run outside the queue (``enqueue_message`` before connect()): nothing to do."""


class Dispatcher:
    """Runs each envelope's listeners once, on its reader or a worker, and accounts for it.

    Args:
        listeners: calls the application's listeners for each envelope (:meth:`.Listeners.envelope`).
        acks: the ack router (and, through it, the ledger).
        shared: the shared ledger across replicas, or None.
        supervisor: the rules; its state says whether close() began (``closing``), read lock-free.
        connections: returns the open connections now (read by the take-over watch).
        wake_health: wakes the ``health`` thread (a watch or a retirement is due).
        after_drain: called with a draining connection once one of its envelopes was handled.
        prefix: the client's thread-name prefix; workers are ``<prefix>-worker_<k>``.
        logger: where to log.
        concurrency: how many listener runs at once, inline and on workers together.
        max_queue: envelopes waiting for or running in a worker; at the bound the reader waits.
        slow_queue_warning: seconds an envelope may wait for a worker before a WARNING.
        worker_idle_timeout: seconds without an envelope before the pool's threads are let go.
        inline_dispatch: let a reader run an envelope's listeners itself when nothing waits.
        handoff_after: seconds a reader's own listeners may run before a new reader takes over.

    Thread-safety: :meth:`on_envelope` is called by readers, :meth:`watch_inline` and
    :meth:`retire_idle_workers` by the ``health`` thread, the rest by any thread.
    """

    def __init__(
        self,
        listeners: Listeners,
        *,
        acks: AckRouter,
        shared: Optional[SharedLedger],
        supervisor: Supervisor,
        connections: Callable[[], list[Connection]],
        wake_health: Callable[[], None],
        after_drain: Callable[[Connection], None],
        prefix: str,
        logger: logging.Logger,
        concurrency: int,
        max_queue: int,
        slow_queue_warning: float,
        worker_idle_timeout: float,
        inline_dispatch: bool,
        handoff_after: float,
    ) -> None:
        self._listeners = listeners
        self._acks = acks
        self._ledger = acks.ledger
        self._shared = shared
        self._connections = connections
        self._wake_health = wake_health
        self._after_drain = after_drain
        self._prefix = prefix
        self._logger = logger
        self.concurrency = concurrency
        self._supervisor = supervisor  # its state is the one "closing" (read lock-free)
        self.takeovers = 0  # times a reader's own listeners ran past handoff_after
        self._queued = 0  # envelopes submitted to the workers and not finished
        self._max_queue = max_queue
        # A reader stopped at max_queue reads again once the queue is down to this: a quarter of the room
        # (at least one envelope) is free, so that a full queue costs one wake-up per batch, not per envelope.
        self._resume_at = max_queue - max(1, max_queue // 4)
        # Lock order 2: queue accounting (_queued, _waiting_since, _busy_workers, …). It is taken
        # twice per envelope, and must not contend with the supervisor's lock.
        self._queue_lock = threading.Lock()
        self._running = 0  # listener runs under way, inline or on a worker (at most concurrency)
        self._slot_waiters = 0  # workers waiting on _slot_free for a run to end
        self._slot_free = threading.Condition(self._queue_lock)
        self._room = threading.Condition(self._queue_lock)  # the reader waits here at max_queue
        self._drained = threading.Condition(self._queue_lock)  # close() waits here for running listeners
        self._waiting_since: deque[float] = deque()  # enqueue times of envelopes no worker has started
        self._slow_queue_warning = slow_queue_warning
        self._worker_idle_timeout = worker_idle_timeout
        self._inline = inline_dispatch
        self._handoff_after = handoff_after
        # Lock order 3: inline listeners are watched by the health thread, which is woken only when
        # the first starts after a quiet spell; begin/end/take-over of an inline run are serialised here.
        self._watch_lock = threading.Lock()
        self._watching = False
        self._inline_paused_until = 0.0  # after a take-over, the pool takes envelopes for a while
        self._warned_slow = False
        self._warned_full = False
        self.workers = self._new_workers()  # slack_sdk's client.message_workers
        self._in_listener = threading.local()  # .active is True on a worker while it runs listeners
        self._finish = self.finish  # bound once: passed to Listeners.run for each envelope
        #: The listeners' runs are only scheduled by Listeners.run (the asyncio client): no thread need wait
        #: for a slot, so envelopes beyond concurrency wait in _backlog, started by finish() (queue lock).
        self._scheduled_runs = not listeners.blocking_ok
        self._backlog: deque[tuple[Envelope, str]] = deque()
        self._busy_workers = False  # True from the first envelope until the idle pool is retired
        self._retire_scheduled = False  # the health monitor knows a retirement is due
        self._last_dispatch = 0.0  # monotonic time the last listener run finished

    # ---- what the client asks ------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Envelopes received and waiting for a free worker."""
        return len(self._waiting_since)

    def oldest_wait(self) -> float:
        """Seconds the oldest envelope still waiting for a worker has waited (0.0 if none)."""
        try:
            return max(0.0, time.monotonic() - self._waiting_since[0])
        except IndexError:
            return 0.0

    def stop_accepting(self) -> None:
        """close() began (the supervisor is ``CLOSING``): wake a reader waiting for room, so that it sees it."""
        with self._queue_lock:
            self._room.notify_all()

    def wait_for_listeners(
        self, end: float, timeout: float, *, first: bool = True, from_listener: bool = False
    ) -> bool:
        """Wait until ``end`` (monotonic seconds) for the running and queued listeners (close()); True if none is left.

        The ``first`` of close()'s waits says how many it waits for, up to ``timeout`` seconds in all.
        ``from_listener``: close() was called by a listener that is not on this thread (a coroutine of
        the asyncio client), so one run is its own and is not waited for; on a worker or reader this is
        known without it.
        """
        with self._queue_lock:
            self._room.notify_all()
            if self._queued and first:
                self._logger.info(
                    "close(): no new envelopes; waiting up to %g s for %d running or queued",
                    timeout,
                    self._queued,
                )
            own = 1 if from_listener or getattr(self._in_listener, "active", False) else 0  # close() from a listener
            while self._queued > own and time.monotonic() < end:
                self._drained.wait(end - time.monotonic())
            return self._queued <= own

    def shutdown(self) -> None:
        """Let the worker threads go, cancelling envelopes that never started (close())."""
        self.workers.shutdown(wait=False, cancel_futures=True)
        with self._queue_lock:  # the asyncio client's envelopes that never started: Slack redelivers them
            self._backlog.clear()

    def submit_unconnected(self, envelope: Envelope, text: str) -> None:
        """Run an envelope's listeners on a worker, outside the queue (enqueue_message before connect()).

        Raises:
            SocketModeError: the client is closed.
        """
        with self._queue_lock:
            if self._supervisor.closing():
                raise SocketModeError("the client is closed; create a new one")
            self.workers.submit(self._listeners.run, envelope, text, _unaccounted)

    # ---- readers ---------------------------------------------------------------------------------

    def on_envelope(self, conn: Connection, envelope: Envelope, text: str) -> None:
        if self._supervisor.closing():
            self._logger.info("connection %d: not dispatching envelope %s: closing", conn.id, envelope.envelope_id)
            return
        received = time.monotonic()
        receipt, ack = self._ledger.receive(envelope.envelope_id, conn, received)
        if receipt is Receipt.DISPATCH:
            now = received
            if self._shared is not None:
                conn.flush()  # the reader's held-back acks do not wait for the shared ledger's round trip
                if not self._admit_shared(conn, envelope):
                    return
                now = time.monotonic()  # a wait for the shared ledger is not a wait for a worker
            self._queue(conn, envelope, text, now)
            return
        if receipt is Receipt.CROSSED:
            if self._logger.isEnabledFor(logging.DEBUG):
                self._logger.debug(
                    "connection %d: envelope %s redelivered (retry_attempt %d) as its ack went out on this "
                    "connection; that ack settles it",
                    conn.id,
                    envelope.envelope_id,
                    envelope.retry_attempt,
                )
        elif receipt is Receipt.REACK and ack is not None:
            self._logger.info(
                "connection %d: envelope %s redelivered (retry_attempt %d) after its ack; acking again",
                conn.id,
                envelope.envelope_id,
                envelope.retry_attempt,
            )
            self._acks.send_on(conn, ack)
        elif receipt is Receipt.WAIT:
            self._logger.info(
                "connection %d: envelope %s redelivered (retry_attempt %d) while its listeners run; "
                "not dispatching it again",
                conn.id,
                envelope.envelope_id,
                envelope.retry_attempt,
            )
        elif receipt is Receipt.IGNORE:
            self._logger.warning(
                "connection %d: envelope %s redelivered, but its listeners already ran without acking it; "
                "not dispatching it again",
                conn.id,
                envelope.envelope_id,
            )

    def on_message(self, conn: Connection, message: Envelope, text: str) -> None:
        """Run the listeners of a message that is acked by no one (the RTM client's), as an envelope's are run.

        ``message`` is an :class:`Envelope` whose ``envelope_id`` is ``""``: no ledger entry, no
        dedupe, no ack; the queue, ``concurrency``, the inline run on the reader, its take-over
        and the backpressure at ``max_queue`` are the same as for an envelope. On its reader.
        """
        if self._supervisor.closing():
            return
        self._queue(conn, message, text, time.monotonic())

    def _queue(self, conn: Connection, envelope: Envelope, text: str, now: float) -> None:
        """Run a first delivery's listeners on the reader (inline) or queue them for a worker."""
        if self._queued >= self._max_queue:  # the reader may wait for room: its held-back acks go out first
            conn.flush()
        with self._queue_lock:
            if self._queued >= self._max_queue:
                self._wait_for_room(conn)
                now = time.monotonic()
            if self._supervisor.closing():  # close() began meanwhile: Slack redelivers it elsewhere
                if self._shared is not None and envelope.envelope_id:
                    self._shared.release(envelope.envelope_id)  # no store call here: the lease thread makes it
                return
            self._queued += 1
            inline = start = False
            if self._scheduled_runs:  # the asyncio client: starting a run only schedules it
                start = not self._backlog and self._running < self.concurrency
                if start:
                    self._running += 1
                else:  # no thread waits for a slot: finish() starts it once one is free
                    self._waiting_since.append(now)
                    self._backlog.append((envelope, text))
            else:
                # Run it here, on the reader, when no envelope waits for a worker and a slot is free.
                inline = (
                    self._inline
                    and not self._waiting_since
                    and self._queued <= self.concurrency
                    and now >= self._inline_paused_until
                    and self._running < self.concurrency  # a free slot of concurrency (freed by finish)
                    and conn.is_reader()
                )
                if inline:
                    self._running += 1
                else:
                    self._busy_workers = True
                    self._waiting_since.append(now)
                    self.workers.submit(self._dispatch, envelope, text)
        if start:
            self._listeners.run(envelope, text, self._finish)
        elif inline:
            self._dispatch_inline(conn, envelope, text, now)

    def _admit_shared(self, conn: Connection, envelope: Envelope) -> bool:
        """Ask the shared ledger about a first delivery; True to run it (see :mod:`.shared`)."""
        assert self._shared is not None
        admission, ack = self._shared.admit(envelope)
        if admission is Admission.RUN:
            return True
        if admission is Admission.ACK and ack is not None:
            self._logger.info(
                "connection %d: envelope %s (retry_attempt %d) was handled by another replica; acking it as it did",
                conn.id,
                envelope.envelope_id,
                envelope.retry_attempt,
            )
            self._acks.send_ack(envelope.envelope_id, ack)
            return False
        self._logger.info(
            "connection %d: envelope %s (retry_attempt %d) %s; neither running nor acking it",
            conn.id,
            envelope.envelope_id,
            envelope.retry_attempt,
            "was handled by another replica without an ack"
            if admission is Admission.SETTLED
            else "is held by another replica, or the shared ledger is unavailable",
        )
        self._ledger.release(envelope.envelope_id)
        return False

    def _wait_for_room(self, conn: Connection) -> None:
        """Block the reader (queue lock held) until a quarter of ``max_queue`` is free. Pauses liveness meanwhile."""
        assert self._queue_lock.locked(), "_wait_for_room waits on _room: the queue lock must be held"
        if not self._warned_full:  # once per burst: the flag resets when the queue drains
            self._warned_full = True
            self._logger.warning(
                "connection %d: %d envelopes queued (max_queue); pausing reads while workers catch up",
                conn.id,
                self._queued,
            )
        conn.backpressured = True
        try:
            while self._queued > self._resume_at and not self._supervisor.closing():
                self._room.wait()
        finally:
            conn.backpressured = False
            conn.last_received = time.monotonic()  # the pause was ours, not the server's silence

    def _dispatch_inline(self, conn: Connection, envelope: Envelope, text: str, now: float) -> None:
        """Run the listeners on the reader thread, watched by the health thread (see handoff_after)."""
        with self._watch_lock:
            conn.begin_inline(now)
            wake = not self._watching
            self._watching = True
        if wake:
            self._wake_health()
        try:
            self._run_and_settle(envelope, text)
        finally:
            with self._watch_lock:
                conn.end_inline()

    def _dispatch(self, envelope: Envelope, text: str) -> None:
        """Run the listeners on a worker thread."""
        self._note_wait(envelope, time.monotonic())
        with self._queue_lock:  # inline runs count towards concurrency too: wait for one of them to end
            if self._running >= self.concurrency:
                self._slot_waiters += 1
                while self._running >= self.concurrency:
                    self._slot_free.wait()
                self._slot_waiters -= 1
            self._running += 1
        self._run_and_settle(envelope, text)

    def _note_wait(self, envelope: Envelope, started: float) -> None:
        """An envelope that waited leaves the queue: a WARNING, once per burst, if it waited too long."""
        try:
            waited = started - self._waiting_since.popleft()
        except IndexError:
            waited = 0.0
        if waited > self._slow_queue_warning and not self._warned_slow:
            self._warned_slow = True
            self._logger.warning(
                "envelope %s waited %.1f s for a free %s (%d queued); Slack redelivers envelopes not acked "
                "within 3 s: raise concurrency (now %d), or ack before doing slow work",
                envelope.envelope_id,
                waited,
                "slot" if self._scheduled_runs else "worker",
                len(self._waiting_since),
                self.concurrency,
            )

    def _run_and_settle(self, envelope: Envelope, text: str) -> None:
        """Run the listeners (:meth:`.Listeners.run`); :meth:`finish` accounts for the envelope once they returned.

        For the thread client they return before ``run`` does; for the asyncio client
        (:mod:`slack_socket_mode.aio`) ``run`` only starts them on the event loop, which calls
        :meth:`finish` when they are done.
        """
        self._in_listener.active = True
        try:
            self._listeners.run(envelope, text, self._finish)
        finally:
            self._in_listener.active = False

    def finish(self, envelope: Envelope, redeliver: Optional[Redelivery]) -> None:
        """The listeners of ``envelope`` returned: account for it (ledgers, queue, slots, drain, close()).

        ``redeliver``: a listener raised :class:`~slack_socket_mode.errors.Redeliver` (its
        description), or None. Called once per envelope dispatched, by the thread that ran its
        listeners, or the event loop's (the asyncio client): no socket I/O is done here for the
        latter (:attr:`.Listeners.blocking_ok` False): a drained connection is closed on a worker.
        """
        try:
            conn = self._settle(envelope, redeliver)
        finally:
            following: Optional[tuple[Envelope, str]] = None
            with self._queue_lock:
                self._queued -= 1
                self._running -= 1
                if self._slot_waiters:
                    self._slot_free.notify()
                if self._backlog and self._running < self.concurrency:
                    following = self._backlog.popleft()
                    self._running += 1
                    self._note_wait(following[0], time.monotonic())
                self._last_dispatch = time.monotonic()
                if self._queued == 0 and not self._retire_scheduled:
                    self._retire_scheduled = True  # once per burst: the monitor reschedules itself
                    self._wake_health()
                if self._queued <= 1 and self._supervisor.closing():  # close() waits for 0, or 1 from a listener
                    self._drained.notify_all()
                if self._queued == 0:
                    self._warned_slow = self._warned_full = False  # the burst is over: warn again on the next
                if self._queued == self._resume_at:  # a reader stopped at max_queue may read again
                    self._room.notify_all()
        if following is not None:
            self._listeners.run(*following, self._finish)
        if conn is not None and conn.draining:
            if self._listeners.blocking_ok:
                self._after_drain(conn)
            else:  # the event loop's thread: the close frame is written on a worker
                self._submit_quietly(self._after_drain, conn)

    def _submit_quietly(self, work: Callable[[Connection], None], conn: Connection) -> None:
        """Run ``work(conn)`` on a worker; once the pool was shut down (close()), here."""
        try:
            self.workers.submit(work, conn)
        except RuntimeError:  # close() shut the pool down: the connection is being closed anyway
            work(conn)

    def _settle(self, envelope: Envelope, redeliver: Optional[Redelivery]) -> Optional[Connection]:
        """Tell the ledgers the listeners returned; returns the connection it was in flight on, if settled.

        ``redeliver``: a listener raised :class:`~slack_socket_mode.errors.Redeliver` (its
        description). Unless the envelope was acked, its run is then forgotten (locally and in
        the shared ledger) so that Slack's redelivery runs it again, here or on another replica.
        """
        envelope_id = envelope.envelope_id
        if not envelope_id:  # a message that nothing acks (on_message): nothing to settle
            return None
        if redeliver is None:
            acked, ack = self._acks.acked_here(envelope_id)
            if acked:  # its listener acked it on this thread: the ledger settled it then (the common path)
                if self._shared is not None:
                    self._shared.finish(envelope_id, True, ack)
                return None
        else:
            released, conn = self._ledger.redeliver(envelope_id)
            if released:
                if self._shared is not None:
                    self._shared.redeliver(envelope_id)
                self._logger.log(
                    logging.DEBUG if redeliver.logged else logging.WARNING,  # logged: the listener said why
                    "envelope %s (%s, retry_attempt %d) not acked, its listener asked for a redelivery (%s); "
                    "Slack's redelivery runs its listeners again",
                    envelope_id,
                    envelope.type,
                    envelope.retry_attempt,
                    redeliver.description,
                )
                return conn
            self._logger.info(
                "envelope %s (%s): %s asked for a redelivery, but the envelope was acked; it is not run again",
                envelope_id,
                envelope.type,
                redeliver.description,
            )
        if self._shared is not None:
            self._shared.finish(envelope_id, *self._ledger.ack_of(envelope_id))
        return self._ledger.handled(envelope_id)

    def watch_inline(self, now: float) -> Optional[float]:
        """Give a connection a new reader when its reader's own listeners run past ``handoff_after``.

        Returns when to look again, or None when no reader runs listeners (the watch then
        sleeps until the next inline run wakes it).
        """
        if not self._watching:
            return None
        taken: list[tuple[int, float]] = []
        next_at: Optional[float] = None
        with self._watch_lock:
            for conn in self._connections():
                since = conn.inline_since
                if since is None:
                    continue
                due = since + self._handoff_after
                if now >= due:
                    self._inline_paused_until = now + _INLINE_PAUSE  # set before the new reader reads
                    if conn.take_over():
                        taken.append((conn.id, now - since))
                elif next_at is None or due < next_at:
                    next_at = due
            if next_at is None:
                self._watching = False
        for cid, ran in taken:
            self.takeovers += 1
            if self._logger.isEnabledFor(logging.DEBUG):
                self._logger.debug(
                    "connection %d: listeners have run on the reader for %.3f s; a new reader goes on reading",
                    cid,
                    ran,
                )
        return next_at

    def _new_workers(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"{self._prefix}-worker")

    def retire_idle_workers(self, now: float) -> Optional[float]:
        """After a burst, let the worker threads go once the client has been idle for a while.

        ``ThreadPoolExecutor`` keeps every thread it ever started; after ``worker_idle_timeout``
        seconds without an envelope the pool is replaced by an empty one (it starts threads
        again on demand) and the old one's threads exit. Returns when to look again, or None.
        """
        with self._queue_lock:
            if not self._busy_workers or self._supervisor.closing():
                return None
            due = self._last_dispatch + self._worker_idle_timeout
            if self._queued or now < due:
                return max(due, now + 0.001) if not self._queued else now + self._worker_idle_timeout
            old, self.workers = self.workers, self._new_workers()
            self._busy_workers = self._retire_scheduled = False
        old.shutdown(wait=False)
        return None
