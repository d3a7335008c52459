"""The asyncio client's listeners: run as coroutines on the application's event loop, watched from a thread.

:class:`AsyncListeners` is what the engine's dispatcher calls for each envelope (the same
:class:`~slack_socket_mode.listeners.Listeners` interface as the thread client's), on a reader or
a worker thread. It does not wait there: :meth:`AsyncListeners.run` schedules one task on the loop
(``loop.call_soon_threadsafe``) that awaits the envelope's ``message_listeners`` and
``socket_mode_request_listeners`` in turn, and calls the dispatcher's ``finish`` on the loop when
they are done. The connection work (readers, ``health``, ``session``) stays on the client's
threads; the loop only runs the app's coroutines and the ack writes that cannot wait
(:meth:`~slack_socket_mode.connection.Connection.try_send_text`), handing the others to the
``aio_ack`` threads (:meth:`AsyncListeners.handoff`).

A listener that blocks the loop is seen. Each step of a listener's coroutine (from one ``await``
that yields to the next) is timed; the ``aio_watch`` thread, awake only while envelopes are in
flight, logs a WARNING naming the listener whose step has run longer than ``slow_queue_warning``
seconds while envelopes wait to start (once per listener and burst), and counts it
(``loop_blocked`` in :meth:`AsyncListeners.counts`); an envelope that waited longer than that to
start is counted too (``loop_delayed``). If the loop stops running or is closed with envelopes
still waiting to start, those are given back (as if a listener raised
:class:`~slack_socket_mode.errors.Redeliver`), so that Slack's redelivery runs them, here once
the loop runs again or on another replica: none is left unacked without an ERROR.

Listeners may be coroutine functions (slack_sdk's asyncio signatures) or plain functions; what a
plain function returns is awaited if it is awaitable. A plain function runs on the loop's thread:
it must not block.

Threads: ``aio_watch`` (one, while envelopes are in flight) and ``aio_ack_<k>`` (at most 2, for
acks that must wait), both stopped by :meth:`AsyncListeners.shutdown` at the end of ``close()``.
Locks: ``_lock`` guards the in-flight records and counters; it is taken after every lock of the
engine's order and nothing is called with it held.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Coroutine, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

from slack_sdk.socket_mode.request import SocketModeRequest

from ..errors import Redeliver
from ..listeners import ListenerLists, Listeners, Redelivery, contained, hook_name
from ..redaction import redact

if TYPE_CHECKING:
    from ..lifecycle import Transition
    from ..messages import Envelope

__all__ = ["AsyncListeners", "TextMessage", "in_listener"]

Finish = Callable[["Envelope", Optional[Redelivery]], None]

#: Set in the task that runs an envelope's listeners (and the tasks it starts): close() called there
#: does not wait for that run.
in_listener: contextvars.ContextVar[bool] = contextvars.ContextVar("slack_socket_mode_in_listener", default=False)

#: Seconds between the watch thread's looks while envelopes are in flight.
_WATCH_INTERVAL = 0.1
#: Seconds with no envelope in flight after which the watch thread sleeps until the next one.
_IDLE_AFTER = 1.0


if sys.version_info >= (3, 12):

    def _new_task(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """A task started eagerly (Python 3.12+): it runs at once up to its first suspension, with no loop
        iteration to begin; a listener that acks without waiting ends here."""
        return asyncio.Task(coro, loop=loop, eager_start=True)

else:

    def _new_task(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """A task, started on the loop's next iteration (eager start needs Python 3.12)."""
        return loop.create_task(coro)


class TextMessage(str):
    """What ``on_message_listeners`` are called with: the text message itself (a ``str``), also shaped like
    aiohttp's ``WSMessage``, which slack_sdk's aiohttp client passes there: ``.data`` (the text), ``.type``
    (1, equal to ``aiohttp.WSMsgType.TEXT``) and ``.extra`` (None). Immutable."""

    __slots__ = ()

    @property
    def data(self) -> str:
        """The text (a plain ``str``), as ``WSMessage.data``."""
        return str(self)

    @property
    def type(self) -> int:
        """1: ``aiohttp.WSMsgType.TEXT`` (an ``IntEnum``), as ``WSMessage.type``."""
        return 1

    @property
    def extra(self) -> None:
        """None, as ``WSMessage.extra`` for a text message."""
        return None


class _Flight:
    """One envelope whose listeners were scheduled on the loop: when, and whether it started or was given back."""

    __slots__ = ("envelope", "finish", "given_back", "scheduled", "started")

    def __init__(self, envelope: Envelope, finish: Finish, scheduled: float) -> None:
        self.envelope = envelope
        self.finish = finish
        self.scheduled = scheduled
        self.started = False
        self.given_back = False


class _Step:
    """The step of a listener's coroutine running now on the loop: which listener, since when (monotonic)."""

    __slots__ = ("envelope_id", "listener", "since")

    def __init__(self, listener: Any, envelope_id: str, since: float) -> None:
        self.listener = listener
        self.envelope_id = envelope_id
        self.since = since


class AsyncListeners(Listeners):
    """Runs the app's listeners as coroutines on its event loop (see the module's docstring).

    Args:
        client: the asyncio facade: its listener lists, and the first argument of each listener.
        logger: where to log.
        prefix: the client's thread-name prefix (``slack_socket_mode-<n>``).
        slow_start: seconds an envelope may wait for the loop to start its listeners before a
            WARNING names the listener blocking the loop (the client's ``slow_queue_warning``).

    Thread-safety: :meth:`run`, :meth:`message`, :meth:`error`, :meth:`close` and
    :meth:`lifecycle` are called from the client's threads; :meth:`bind` and :meth:`handoff`
    from the loop; :meth:`counts` from any thread.
    """

    blocking_ok: ClassVar[bool] = False  # finish() is called on the loop's thread

    def __init__(self, client: ListenerLists, logger: logging.Logger, *, prefix: str, slow_start: float) -> None:
        super().__init__(client, logger)
        self._prefix = prefix
        self._slow_start = slow_start
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._lock = threading.Lock()  # last in the order: the records below
        self._flights: set[_Flight] = set()  # scheduled, not finished
        self._starts: deque[tuple[_Flight, str]] = deque()  # scheduled, for the loop's next _start_all
        self._starts_due = False  # a _start_all is scheduled on the loop
        self._tasks: set[asyncio.Task[Any]] = set()  # a reference to each task, so none is collected mid-run
        self._step: Optional[_Step] = None  # the listener step running on the loop now, if any
        self._warned: set[int] = set()  # ids of listeners named for blocking the loop in this burst
        self._watch: Optional[threading.Thread] = None
        self._watch_asleep = False  # the watch thread waits for the next envelope (see _ensure_watch)
        self._wake = threading.Condition(self._lock)
        self._stopped = False
        self._writers: Optional[ThreadPoolExecutor] = None
        self.loop_blocked = 0  #: times a listener was seen blocking the loop while envelopes waited
        self.loop_delayed = 0  #: envelopes that waited longer than ``slow_start`` for the loop to start them
        self.given_back = 0  #: envelopes given back for Slack's redelivery because the loop did not run

    # ---- the loop ------------------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run listeners on ``loop`` from now on (``connect()`` binds the running loop, unless ``loop=`` was given)."""
        self._loop = loop

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The event loop listeners run on, or None before the first ``connect()``."""
        return self._loop

    def handoff(self, write: Callable[[], None]) -> Future[None]:
        """Run ``write`` (an ack that must wait for its socket) on an ``aio_ack`` thread; its future.

        Raises:
            RuntimeError: after :meth:`shutdown`.
        """
        writers = self._writers
        if writers is None:
            with self._lock:
                if self._stopped:
                    raise RuntimeError("the client is closed")
                writers = self._writers
                if writers is None:
                    writers = self._writers = ThreadPoolExecutor(2, thread_name_prefix=f"{self._prefix}-aio_ack")
        return writers.submit(write)

    # ---- envelopes -----------------------------------------------------------------------------

    def run(self, envelope: Envelope, text: str, finish: Finish) -> None:
        """Schedule the envelope's listeners on the loop; ``finish`` is called there once they returned.

        The envelopes scheduled before the loop gets to them are started together, with one wake-up
        of the loop (``call_soon_threadsafe``) for all of them. With no loop to run them (none bound
        yet, or closed), the envelope is given back at once (``finish`` with a redelivery) and an
        ERROR says why.
        """
        flight = _Flight(envelope, finish, time.monotonic())
        loop = self._loop
        with self._lock:
            self._flights.add(flight)
            self._ensure_watch()
            self._starts.append((flight, text))
            wake = not self._starts_due
            self._starts_due = True
        if not wake:
            return
        try:
            if loop is None:
                raise RuntimeError("no event loop: connect() was not awaited")
            loop.call_soon_threadsafe(self._start_all)
        except RuntimeError as e:  # the loop is closed
            with self._lock:
                pending, self._starts, self._starts_due = list(self._starts), deque(), False
            for stranded, _ in pending:
                self._give_back(stranded, f"its listeners cannot run: {e}")

    def _start_all(self) -> None:
        """On the loop: start a task for each envelope scheduled since the last call (unless given back)."""
        with self._lock:
            pending, self._starts, self._starts_due = self._starts, deque(), False
            now = time.monotonic()
            for flight, _ in pending:
                flight.started = not flight.given_back
                if flight.started and now - flight.scheduled > self._slow_start:
                    self.loop_delayed += 1
        tasks = self._tasks
        loop = asyncio.get_running_loop()
        for flight, text in pending:
            if flight.started:
                task = _new_task(self._envelope_task(flight, text), loop)
                if not task.done():  # an eager task may have run to its end already
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

    async def _envelope_task(self, flight: _Flight, text: str) -> None:
        in_listener.set(True)  # this task's own context (and the tasks it starts)
        redeliver: Optional[Redelivery] = None
        try:
            redeliver = await self.envelope_async(flight.envelope, text)
        except asyncio.CancelledError:  # the loop is shutting down (asyncio.run's end): Slack redelivers it
            redeliver = Redelivery("the event loop cancelled its listeners", False)
            raise
        finally:
            with self._lock:
                self._flights.discard(flight)
            flight.finish(flight.envelope, redeliver)

    async def envelope_async(self, envelope: Envelope, text: str) -> Optional[Redelivery]:
        """Await ``message_listeners`` with ``(client, body, text)``, then ``socket_mode_request_listeners``.

        Returns None or, when a listener raised :class:`~slack_socket_mode.errors.Redeliver`, its
        description (the first one). A listener that raises is logged and the others still run.
        """
        hooks = getattr(self._client, "listener_hooks", None)
        if not hooks:
            return await self._listeners(envelope, text, None)
        try:
            shown: Optional[SocketModeRequest] = SocketModeRequest.from_dict(envelope.body)
        except (ValueError, TypeError):
            shown = None
        started = [hook for hook in list(hooks) if await self._hook(hook, "start", shown)]
        errors: list[BaseException] = []
        try:
            return await self._listeners(envelope, text, errors)
        finally:
            for hook in reversed(started):
                await self._hook(hook, "complete", shown, errors[0] if errors else None)

    async def _hook(self, hook: Any, method: str, *args: Any) -> bool:
        """Call a listener hook's ``method`` (see :class:`~slack_socket_mode.listeners.ListenerHookRunner`) and
        await what it returns if awaitable; False if it raised (logged with its name)."""
        runner = self._hooks
        result = runner.call(hook, method, *args)
        if runner.failed(result):
            return False
        if inspect.isawaitable(result):
            try:
                await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self._logger.exception(
                    "listener hook %s.%s failed; the listeners and their acks are not affected", hook_name(hook), method
                )
                return False
        return True

    async def _listeners(
        self, envelope: Envelope, text: str, errors: Optional[list[BaseException]]
    ) -> Optional[Redelivery]:
        body = envelope.body
        client = self._client
        eid = envelope.envelope_id
        redeliver: Optional[Redelivery] = None
        for listener in list(client.message_listeners):
            found = await self._one(listener, eid, "message", redeliver, errors, client, body, text)
            redeliver = redeliver or found
        if client.socket_mode_request_listeners and eid:  # a message without an envelope_id has no request
            try:
                request = SocketModeRequest.from_dict(body)
            except (ValueError, TypeError) as e:
                self._logger.warning(
                    "envelope %s (%s): request listeners skipped: %s", redact(eid), redact(envelope.type)[:64], e
                )
                return redeliver
            if request is None:
                self._logger.warning("envelope %s (%s) has no payload; request listeners skipped", eid, envelope.type)
                return redeliver
            for listener in list(client.socket_mode_request_listeners):
                found = await self._one(listener, eid, "request", redeliver, errors, client, request)
                redeliver = redeliver or found
        return redeliver

    async def _one(
        self,
        listener: Any,
        envelope_id: str,
        kind: str,
        earlier: Optional[Redelivery],
        errors: Optional[list[BaseException]],
        *args: Any,
    ) -> Optional[Redelivery]:
        """Call one envelope listener and await what it returns, timing each step; log what it raises."""
        try:
            self._step = _Step(listener, envelope_id, time.monotonic())
            try:
                result = listener(*args)
            finally:
                self._step = None
            if inspect.isawaitable(result):
                await _Stepped(self, listener, envelope_id, result)
        except Redeliver as e:
            if earlier is None:
                reason = redact(str(e.reason))[:200] or "no reason given"
                return Redelivery(f"{listener!r}: {reason}", bool(e.logged))
        except asyncio.CancelledError:
            raise
        except (Exception, SystemExit) as e:
            if not contained(e):
                raise
            if errors is not None:
                errors.append(e)
            if envelope_id:
                self._logger.exception("%s listener %r failed on envelope %s", kind, listener, envelope_id)
            else:  # hello and other messages without an envelope_id
                self._logger.exception("%s listener %r failed on a message without an envelope_id", kind, listener)
        return None

    def _give_back(self, flight: _Flight, why: str) -> None:
        """Give an envelope that never started back to the dispatcher, for Slack's redelivery; one ERROR."""
        with self._lock:
            if flight.started or flight.given_back:
                return
            flight.given_back = True
            self._flights.discard(flight)
            self.given_back += 1
        self._logger.error(
            "envelope %s (%s): %s; not acked, so that Slack's redelivery runs it",
            flight.envelope.envelope_id,
            flight.envelope.type,
            why,
        )
        flight.finish(flight.envelope, Redelivery(why, True))

    # ---- the watch -----------------------------------------------------------------------------

    def _ensure_watch(self) -> None:
        """Start the ``aio_watch`` thread, or wake it if it sleeps (``_lock`` held).

        The thread sleeps only after :data:`_IDLE_AFTER` seconds with no envelope in flight, so a
        steady stream costs it no wake-up per envelope (it looks every :data:`_WATCH_INTERVAL`).
        """
        if self._watch is None:
            if not self._stopped:
                self._watch = threading.Thread(target=self._watch_loop, name=f"{self._prefix}-aio_watch", daemon=True)
                self._watch.start()
        elif self._watch_asleep:
            self._watch_asleep = False
            self._wake.notify()

    def _watch_loop(self) -> None:
        """While envelopes are in flight: name a listener blocking the loop; give envelopes back if it stopped."""
        idle_since: Optional[float] = None
        while True:
            with self._lock:
                if self._stopped:
                    return
                if self._flights:
                    idle_since = None
                else:
                    now = time.monotonic()
                    idle_since = now if idle_since is None else idle_since
                    if now - idle_since >= _IDLE_AFTER:  # the burst is over: sleep until the next envelope
                        self._warned.clear()
                        self._watch_asleep = True
                        while self._watch_asleep and not self._stopped:
                            self._wake.wait()
                        idle_since = None
                        continue
                waiting = [f for f in self._flights if not f.started]
                self._wake.wait(_WATCH_INTERVAL)  # paced: nothing notifies it while it is awake
            self._look(waiting)

    def _look(self, waiting: list[_Flight]) -> None:
        loop = self._loop
        now = time.monotonic()
        if waiting and (loop is None or loop.is_closed() or not loop.is_running()):
            for flight in waiting:
                if now - flight.scheduled > _WATCH_INTERVAL:  # not just scheduled on a loop starting up
                    state = "closed" if loop is not None and loop.is_closed() else "not running"
                    self._give_back(flight, f"the event loop its listeners run on is {state}")
            return
        step = self._step
        late = [f for f in waiting if now - f.scheduled > self._slow_start]
        if step is None or not late or now - step.since <= self._slow_start:
            return
        with self._lock:
            first = id(step.listener) not in self._warned
            self._warned.add(id(step.listener))
            if first:
                self.loop_blocked += 1
        if first:
            self._logger.warning(
                "listener %r has blocked the event loop for %.1f s (envelope %s) while %d envelopes wait to start; "
                "Slack redelivers envelopes not acked within 3 s: await slow work, or run it with "
                "asyncio.to_thread / loop.run_in_executor",
                step.listener,
                now - step.since,
                step.envelope_id,
                len(late),
            )

    # ---- the other listeners: scheduled on the loop, not awaited by the client ------------------

    def _soon(self, listeners: list[Any], kind: str, *args: Any) -> None:
        loop = self._loop
        if not listeners or loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._start_side, list(listeners), kind, args)
        except RuntimeError:  # the loop is closed
            self._logger.debug("%s listeners not called: the event loop is closed", kind)

    def _start_side(self, listeners: list[Any], kind: str, args: tuple[Any, ...]) -> None:
        task = asyncio.ensure_future(self._side(listeners, kind, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _side(self, listeners: list[Any], kind: str, args: tuple[Any, ...]) -> None:
        for listener in listeners:
            try:
                result = listener(*args)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self._logger.exception("%s listener %r failed", kind, listener)

    def message(self, text: str) -> None:
        """Schedule ``on_message_listeners`` with a text message, a :class:`TextMessage` (on the loop, not
        awaited by the reader)."""
        self._soon(self._client.on_message_listeners, "on_message", TextMessage(text))

    def error(self, error: Exception) -> None:
        """Schedule ``on_error_listeners`` with a :class:`.ConnectionFailedError` or :class:`.FatalError`."""
        self._soon(self._client.on_error_listeners, "error", error)

    def close(self, code: int, reason: str) -> None:
        """Schedule ``on_close_listeners`` with ``(code, reason)`` once a connection ended."""
        self._soon(self._client.on_close_listeners, "on_close", code, reason)

    def lifecycle(self, transition: Transition) -> None:
        """Schedule ``lifecycle_listeners`` with a :class:`~slack_socket_mode.lifecycle.Transition`."""
        self._soon(self._client.lifecycle_listeners, "lifecycle", transition)

    # ---- the end -------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """``(loop_blocked, loop_delayed, given_back)``: see the attributes of the same names."""
        with self._lock:
            return self.loop_blocked, self.loop_delayed, self.given_back

    def shutdown(self) -> None:
        """close() is done with the connections: stop the watch thread and let the ack threads go."""
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
            writers, self._writers = self._writers, None
        if writers is not None:
            writers.shutdown(wait=False)  # nothing is queued: close() waited for the listeners and their acks


class _Stepped:
    """Awaits a listener's awaitable, timing each step (the owner's ``_step`` says which listener runs now)."""

    __slots__ = ("_awaitable", "_envelope_id", "_listener", "_owner")

    def __init__(self, owner: AsyncListeners, listener: Any, envelope_id: str, awaitable: Any) -> None:
        self._owner = owner
        self._listener = listener
        self._envelope_id = envelope_id
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._awaitable.__await__()
        owner = self._owner
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            owner._step = _Step(self._listener, self._envelope_id, time.monotonic())
            try:
                signal = inner.throw(error) if error is not None else inner.send(value)
            except StopIteration as stop:
                return stop.value
            finally:
                owner._step = None
            value, error = None, None
            try:
                value = yield signal
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as e:  # thrown in by the task (CancelledError, …): passed on to the listener
                error = e
