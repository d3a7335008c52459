"""The application's listeners, called: what each is given, on which thread, and what a failure does.

:class:`Listeners` calls the lists the app keeps on the client (slack_sdk's public attributes,
read at each call, so an app may change them at any time, even replace them):

* ``message_listeners`` and ``socket_mode_request_listeners`` — each envelope (:meth:`Listeners.envelope`,
  on its reader or a worker of the pool, from :mod:`.dispatch`);
* ``on_message_listeners`` — each raw text message (:meth:`Listeners.message`, on the reader);
* ``on_error_listeners`` — each :class:`.ConnectionFailedError` and :class:`.FatalError`
  (:meth:`Listeners.error`, on the session thread or the thread that saw the failure);
* ``on_close_listeners`` — each connection that ended (:meth:`Listeners.close`, on its reader);
* ``lifecycle_listeners`` — each :class:`~slack_socket_mode.lifecycle.Transition` (:meth:`Listeners.lifecycle`).

A listener that raises is logged with its traceback and the others still run; nothing is raised
to the caller (``SystemExit`` included, except on the main thread: see :func:`contained`). An
envelope listener that raises :class:`~slack_socket_mode.errors.Redeliver` is not an error: no
traceback is logged, and :meth:`Listeners.envelope` returns its reason so that the dispatcher
lets Slack's redelivery run the envelope again. Every call is made with no lock of the client
held (:mod:`.session` releases its lock first). :mod:`slack_socket_mode.websocket_client`
calls its flavour's listeners its own way with a subclass.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, ClassVar, NamedTuple, Optional, Protocol

from slack_sdk.socket_mode.request import SocketModeRequest

from .errors import Redeliver
from .redaction import redact

if TYPE_CHECKING:
    from .lifecycle import Transition
    from .messages import Envelope

__all__ = ["ListenerList", "ListenerLists", "Listeners", "call_listeners", "contained", "refuse_coroutine"]

#: Where an asyncio app's listeners belong, named by every refusal of a coroutine function.
_ASYNC_ADVICE = (
    "this client calls its listeners on threads and would never await a coroutine; an asyncio app needs "
    "an asyncio client (slack_socket_mode.aio, not yet released; until then, a plain function that runs "
    "the coroutine on the app's event loop with asyncio.run_coroutine_threadsafe)"
)


def refuse_coroutine(listener: Any, where: str) -> None:
    """Raise :class:`TypeError` if ``listener`` is a coroutine function (``async def``, or an object whose
    ``__call__`` is one, or a ``functools.partial`` of one): it would be accepted and never run.

    Args:
        listener: what an app registers.
        where: the list's name, for the message (``"socket_mode_request_listeners"``).

    Raises:
        TypeError: naming the listener, the list and ``slack_socket_mode.aio``.
    """
    call = getattr(listener, "__call__", None)  # noqa: B004 - an object's async __call__ counts too
    if inspect.iscoroutinefunction(listener) or (call is not None and inspect.iscoroutinefunction(call)):
        raise TypeError(f"{where}: {listener!r} is a coroutine function; {_ASYNC_ADVICE}")


class ListenerList(list):  # type: ignore[type-arg]
    """A listener list of the client (``message_listeners``, …): a ``list`` that refuses coroutine functions.

    Each way of adding a listener (``append``, ``insert``, ``extend``, ``+=``, item and slice
    assignment, the constructor) checks it with :func:`refuse_coroutine` and raises
    :class:`TypeError` before the list changes. A list the app assigns in its place is not checked
    here: :class:`Listeners` refuses a coroutine at dispatch instead (an ERROR, once per listener).
    Not thread-safe for concurrent changes, as a ``list`` (the client reads a copy at each call).
    """

    def __init__(self, name: str, listeners: Any = ()) -> None:
        self.name = name
        items = list(listeners)
        for listener in items:
            refuse_coroutine(listener, name)
        super().__init__(items)

    def append(self, listener: Any) -> None:
        refuse_coroutine(listener, self.name)
        super().append(listener)

    def insert(self, index: Any, listener: Any) -> None:
        refuse_coroutine(listener, self.name)
        super().insert(index, listener)

    def extend(self, listeners: Any) -> None:
        items = list(listeners)
        for listener in items:
            refuse_coroutine(listener, self.name)
        super().extend(items)

    def __iadd__(self, listeners: Any) -> ListenerList:  # type: ignore[misc]  # list's, checked
        self.extend(listeners)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        items = list(value) if isinstance(index, slice) else [value]
        for listener in items:
            refuse_coroutine(listener, self.name)
        super().__setitem__(index, items if isinstance(index, slice) else value)


class ListenerLists(Protocol):
    """The listener lists an app keeps on the client (slack_sdk's public attributes), as :class:`Listeners` reads them.

    Each is read at each call, so an app may change a list, or replace it, at any time. The
    object that has them is also the first argument of each envelope listener (the client).
    """

    @property
    def message_listeners(self) -> list[Any]: ...

    @property
    def socket_mode_request_listeners(self) -> list[Any]: ...

    @property
    def on_message_listeners(self) -> list[Any]: ...

    @property
    def on_error_listeners(self) -> list[Any]: ...

    @property
    def on_close_listeners(self) -> list[Any]: ...

    @property
    def lifecycle_listeners(self) -> list[Any]: ...


def contained(error: BaseException) -> bool:
    """Whether a listener's ``error`` is logged and the other listeners still run (else it is raised on).

    Every ``Exception`` is. ``SystemExit`` (``sys.exit()`` in a listener) is too on the client's
    own threads, where it would end only that thread (a reader: its connection, and the envelopes
    it had read with it), never the process; call ``close()`` to stop the client. On the main
    thread (``run_message_listeners`` called there) it is raised on, as slack_sdk's client does.
    """
    return isinstance(error, Exception) or threading.current_thread() is not threading.main_thread()


def call_listeners(listeners: list[Any], logger: logging.Logger, kind: str, *args: Any) -> None:
    """Call each of ``listeners`` (a copy of the list) with ``args``; log, never raise, what one raises
    (but see :func:`contained`)."""
    for listener in list(listeners):
        try:
            result = listener(*args)
        except (Exception, SystemExit) as e:
            if not contained(e):
                raise
            logger.exception("%s listener %r failed", kind, listener)
            continue
        if result is not None:
            _refuse_awaitable(listener, result, f"{kind} listener", logger)


_refused: set[int] = set()  # ids of the listeners whose coroutine was refused, logged once each
_refused_lock = threading.Lock()


def _refuse_awaitable(listener: Any, result: Any, kind: str, logger: logging.Logger) -> None:
    """A listener returned ``result``: if it is a coroutine, close it (it never runs) and log an ERROR.

    For an envelope's listener (``kind`` names the envelope) the ERROR is logged for each envelope,
    since each is left unacked by it; the advice of what to do instead, once per listener.
    """
    if not inspect.iscoroutine(result):
        return
    result.close()  # never awaited: closed, so Python does not warn "never awaited" at exit as well
    with _refused_lock:
        first = id(listener) not in _refused
        _refused.add(id(listener))
    if first:
        logger.error("%s %r returned a coroutine, which never runs: %s", kind, listener, _ASYNC_ADVICE)
    elif kind.startswith("envelope"):
        logger.error("%s %r returned a coroutine, which never runs (its ack is not sent)", kind, listener)


class Redelivery(NamedTuple):
    """A listener raised :class:`Redeliver`: which one and why (redacted, bounded), and whether it logged why itself."""

    description: str
    logged: bool


def _describe(listener: Any, error: Redeliver) -> Redelivery:
    """``listener`` and the reason it gave, for the one log line of a :class:`Redeliver`."""
    return Redelivery(f"{listener!r}: {redact(str(error.reason))[:200] or 'no reason given'}", bool(error.logged))


class Listeners:
    """Calls the application's listeners kept on ``client`` (see the module's docstring).

    Args:
        client: the facade: its listener lists, and the first argument of envelope listeners.
        logger: where a failing listener is logged.

    Thread-safety: every method may be called from any thread, with no lock of the client held.
    """

    #: Whether the thread that calls ``finish`` (see :meth:`run`) may block on socket I/O. True here:
    #: it is a reader or a worker. The asyncio client's listeners finish on the event loop's thread.
    blocking_ok: ClassVar[bool] = True

    def __init__(self, client: ListenerLists, logger: logging.Logger) -> None:
        self._client = client
        self._logger = logger

    def run(self, envelope: Envelope, text: str, finish: Callable[[Envelope, Optional[Redelivery]], None]) -> None:
        """Run the envelope's listeners (:meth:`envelope`) on the calling thread, then ``finish(envelope, redelivery)``.

        ``finish`` is called exactly once, whatever the listeners do (the dispatcher's accounting).
        A subclass may run them elsewhere and call ``finish`` later, from its own thread.
        """
        redeliver: Optional[Redelivery] = None
        try:
            redeliver = self.envelope(envelope, text)
        finally:
            finish(envelope, redeliver)

    def shutdown(self) -> None:
        """close() has stopped the connections and the workers: let go of what this object owns (nothing here)."""

    def envelope(self, envelope: Envelope, text: str) -> Optional[Redelivery]:
        """Run ``message_listeners`` with ``(client, body, text)``, then ``socket_mode_request_listeners``.

        Returns None, or, when a listener raised :class:`~slack_socket_mode.errors.Redeliver`
        (the first one, if several did), a description of it for the log: which listener, and
        its reason. Every listener runs either way.
        """
        body = envelope.body
        client = self._client
        redeliver: Optional[Redelivery] = None
        for listener in client.message_listeners:
            try:
                result = listener(client, body, text)
                if result is not None:
                    what = f"envelope {envelope.envelope_id}: message listener"
                    _refuse_awaitable(listener, result, what, self._logger)
            except Redeliver as e:
                redeliver = redeliver or _describe(listener, e)
            except (Exception, SystemExit) as e:
                if not contained(e):
                    raise
                self._logger.exception(
                    "message listener %r failed on envelope %s (%s)",
                    listener,
                    envelope.envelope_id,
                    envelope.type,
                )
        if client.socket_mode_request_listeners:
            try:
                request = SocketModeRequest.from_dict(body)
            except (ValueError, TypeError) as e:  # parse_message refuses such shapes; a caller may not have
                self._logger.warning(
                    "envelope %s (%s): request listeners skipped: %s",
                    redact(envelope.envelope_id),
                    redact(envelope.type)[:64],
                    type(e).__name__,
                )
                return redeliver
            if request is None:
                self._logger.warning(
                    "envelope %s (%s) has no payload; request listeners skipped",
                    envelope.envelope_id,
                    envelope.type,
                )
                return redeliver
            for rl in client.socket_mode_request_listeners:
                try:
                    result = rl(client, request)
                    if result is not None:
                        what = f"envelope {envelope.envelope_id}: request listener"
                        _refuse_awaitable(rl, result, what, self._logger)
                except Redeliver as e:
                    redeliver = redeliver or _describe(rl, e)
                except (Exception, SystemExit) as e:
                    if not contained(e):
                        raise
                    self._logger.exception(
                        "request listener %r failed on envelope %s (%s)",
                        rl,
                        envelope.envelope_id,
                        envelope.type,
                    )
        return redeliver

    def message(self, text: str) -> None:
        """Call ``on_message_listeners`` with a text message (on the reader, before the client acts on it)."""
        call_listeners(self._client.on_message_listeners, self._logger, "on_message", text)

    def error(self, error: Exception) -> None:
        """Call ``on_error_listeners`` with a :class:`.ConnectionFailedError` or :class:`.FatalError`."""
        call_listeners(self._client.on_error_listeners, self._logger, "error", error)

    def close(self, code: int, reason: str) -> None:
        """Call ``on_close_listeners`` with ``(code, reason)`` once a connection ended (on its reader)."""
        call_listeners(self._client.on_close_listeners, self._logger, "on_close", code, reason)

    def lifecycle(self, transition: Transition) -> None:
        """Call ``lifecycle_listeners`` with a client's or a connection's :class:`~.lifecycle.Transition`."""
        if self._client.lifecycle_listeners:
            call_listeners(self._client.lifecycle_listeners, self._logger, "lifecycle", transition)
