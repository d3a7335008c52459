"""The application's listeners, called: what each is given, on which thread, and what a failure does.

:class:`Listeners` calls the lists the app keeps on the client (slack_sdk's public attributes,
read at each call, so an app may change them at any time, even replace them):

* ``message_listeners`` and ``socket_mode_request_listeners`` — each envelope (:meth:`Listeners.envelope`,
  on its reader or a worker of the pool, from :mod:`.dispatch`); ``message_listeners`` also every
  other message but ``disconnect`` (``hello``, …, and text that is not a JSON object, as ``{}``), as
  slack_sdk's clients call them, the same way with an ``envelope_id`` of ``""`` (no request, no ack);
* ``on_message_listeners`` — each raw text message (:meth:`Listeners.message`, on the reader);
* ``on_error_listeners`` — each :class:`.ConnectionFailedError` and :class:`.FatalError`
  (:meth:`Listeners.error`, on the session thread or the thread that saw the failure);
* ``on_close_listeners`` — each connection that ended (:meth:`Listeners.close`, on its reader);
* ``lifecycle_listeners`` — each :class:`~slack_socket_mode.lifecycle.Transition` (:meth:`Listeners.lifecycle`);
* ``listener_hooks`` — around each envelope's listeners, on the same thread (below).

A listener that raises is logged with its traceback and the others still run; nothing is raised
to the caller (``SystemExit`` included, except on the main thread: see :func:`contained`). An
envelope listener that raises :class:`~slack_socket_mode.errors.Redeliver` is not an error: no
traceback is logged, and :meth:`Listeners.envelope` returns its reason so that the dispatcher
lets Slack's redelivery run the envelope again. Every call is made with no lock of the client
held (:mod:`.session` releases its lock first). :mod:`slack_socket_mode.websocket_client`
calls its flavour's listeners its own way with a subclass.

Listener hooks
--------------

An app keeps its hooks in ``client.listener_hooks`` (or passes ``listener_hooks=[…]`` to the
constructor): objects with an optional ``start(request)`` method and an optional
``complete(request, error)`` method, in the shape of Bolt's ``ListenerStartHandler`` and
``ListenerCompletionHandler`` and of ``concurrent.futures``' ``initializer``. For each envelope
the client dispatches, on every path (inline on the reader that read it, on a take-over reader,
on a worker of the pool, ``enqueue_message`` before ``connect()``, and ``run_message_listeners``):

1. each hook's ``start(request)``, in list order;
2. every listener of the envelope (``message_listeners``, then ``socket_mode_request_listeners``);
3. the ``complete(request, error)`` of each hook whose ``start`` returned (or that has none), in
   reverse order, whatever the listeners did.

All three run on the same thread, one call after the other, with no lock of the client held;
``request`` is the envelope's ``slack_sdk.socket_mode.request.SocketModeRequest`` (None for an
envelope without a payload), the same object the request listeners get, and ``error`` is the first
``Exception`` a listener raised (logged already; :class:`~slack_socket_mode.errors.Redeliver`
is not one), else None. A hook that raises is logged at ERROR with its name and traceback, and
nothing else changes: the listeners still run, the other hooks still run, the ack still goes.
A ``start`` that raised is not followed by that hook's ``complete``.

:class:`ListenerHookRunner` is what calls them; the thread client's :class:`Listeners` uses it, and so can
another facade (the asyncio client, which will await a hook method that returns a coroutine on
its event loop instead). The thread client refuses a hook whose ``start`` or
``complete`` is a coroutine function with a :class:`TypeError` when it is added
(:class:`ListenerHookList`), and at dispatch closes a coroutine a hook returns and logs an ERROR.
:func:`add_default_hook` gives every client made afterwards a hook (``slack_socket_mode.django``
adds its own that way), and a hook's optional ``prepare_bolt_app(app)`` is called by
:class:`slack_socket_mode.bolt.SocketModeHandler` with the Bolt app it runs.
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

__all__ = [
    "FAILED",
    "ListenerHook",
    "ListenerHookList",
    "ListenerHookRunner",
    "ListenerList",
    "ListenerLists",
    "Listeners",
    "add_default_hook",
    "call_listeners",
    "contained",
    "default_hooks",
    "hook_name",
    "refuse_coroutine",
    "remove_default_hook",
]

#: Where an asyncio app's listeners belong, named by every refusal of a coroutine function.
_ASYNC_ADVICE = (
    "this client calls its listeners on threads and would never await a coroutine; an asyncio app needs "
    "the asyncio client, slack_socket_mode.aio.SocketModeClient (or, for Bolt's AsyncApp, "
    "slack_socket_mode.bolt.AsyncSocketModeHandler)"
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
            self._check(listener)
        super().__init__(items)

    def _check(self, listener: Any) -> None:
        """Raise :class:`TypeError` for what this list refuses (a coroutine function)."""
        refuse_coroutine(listener, self.name)

    def append(self, listener: Any) -> None:
        self._check(listener)
        super().append(listener)

    def insert(self, index: Any, listener: Any) -> None:
        self._check(listener)
        super().insert(index, listener)

    def extend(self, listeners: Any) -> None:
        items = list(listeners)
        for listener in items:
            self._check(listener)
        super().extend(items)

    def __iadd__(self, listeners: Any) -> ListenerList:  # type: ignore[misc]  # list's, checked
        self.extend(listeners)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        items = list(value) if isinstance(index, slice) else [value]
        for listener in items:
            self._check(listener)
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


# ---- listener hooks ---------------------------------------------------------------------------


class ListenerHook(Protocol):
    """What a listener hook may have (both methods are optional; see the module's docstring).

    ``start(request)`` runs before an envelope's listeners, ``complete(request, error)`` after them,
    on the thread that runs them. ``request`` is a ``SocketModeRequest`` or None; ``error`` the first
    ``Exception`` a listener raised, or None. What they return is ignored (a coroutine is refused).
    A hook object may also have ``prepare_bolt_app(app)``: :class:`slack_socket_mode.bolt.SocketModeHandler`
    calls it once with the Bolt app, for a hook that must reach Bolt's own listener threads too.
    """

    def start(self, request: Optional[SocketModeRequest]) -> None: ...

    def complete(self, request: Optional[SocketModeRequest], error: Optional[BaseException]) -> None: ...


def hook_name(hook: Any) -> str:
    """A hook's name for the log: its class's qualified name, or the function's (``mymodule.DbHook``)."""
    target = hook if inspect.isfunction(hook) or inspect.isclass(hook) else type(hook)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or repr(hook)
    return f"{module}.{name}" if module else name


def _refuse_coroutine_hook(hook: Any, where: str) -> None:
    """Raise :class:`TypeError` for a hook with neither method, or with a coroutine function as one."""
    start = getattr(hook, "start", None)
    complete = getattr(hook, "complete", None)
    if start is None and complete is None:
        raise TypeError(f"{where}: {hook!r} has neither a start(request) nor a complete(request, error) method")
    for method in (start, complete):
        if method is not None:
            refuse_coroutine(method, where)


class ListenerHookList(ListenerList):
    """``client.listener_hooks``: a ``list`` of hooks that refuses what would never run.

    Each way of adding a hook checks it: a hook needs ``start`` or ``complete``, and neither may be
    a coroutine function on the thread client (:class:`TypeError`, naming ``slack_socket_mode.aio``).
    """

    def _check(self, item: Any) -> None:
        _refuse_coroutine_hook(item, self.name)


# ---- process-wide defaults --------------------------------------------------------------------

_defaults: list[Any] = []  # hooks each new client starts with (slack_socket_mode.django adds one)
_defaults_lock = threading.Lock()


def add_default_hook(hook: Any) -> None:
    """Give every client made from now on ``hook`` first in its ``listener_hooks`` (once per hook object).

    ``slack_socket_mode.django`` adds its hook this way when Django loads the app. Clients made
    before are not changed. Thread-safe.

    Raises:
        TypeError: the hook has neither method, or a coroutine function as one.
    """
    _refuse_coroutine_hook(hook, "default listener hooks")
    with _defaults_lock:
        if not any(h is hook for h in _defaults):
            _defaults.append(hook)


def remove_default_hook(hook: Any) -> None:
    """Undo :func:`add_default_hook` for clients made from now on (nothing if it is not there). Thread-safe."""
    with _defaults_lock:
        _defaults[:] = [h for h in _defaults if h is not hook]


def default_hooks() -> list[Any]:
    """A copy of the hooks each new client starts with. Thread-safe."""
    with _defaults_lock:
        return list(_defaults)


# ---- calling them -----------------------------------------------------------------------------

_FAILED = object()  # what call() returns for a hook method that raised (or returned a coroutine)


class ListenerHookRunner:
    """Calls listener hooks around one envelope's listeners; never raises what a hook raises.

    Use: ``started = runner.start(hooks, request)``, run the listeners, then
    ``runner.complete(started, request, error)`` (in a ``finally``). ``hooks`` is a copy of the
    list taken once per envelope, so a hook added meanwhile takes effect from the next envelope.
    An asyncio facade may drive the same steps with :meth:`call` and await what it returns.

    Args:
        logger: where a failing hook is logged (ERROR, with its name and traceback).

    Thread-safety: stateless beyond the logger; any number of threads may use one runner at once.
    """

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def call(self, hook: Any, method: str, *args: Any) -> Any:
        """Call ``hook.method(*args)`` if it has the method; what it returned, or a failure marker.

        Returns None for a hook without the method; :data:`FAILED` (test with :meth:`failed`) for one that
        raised, which is logged. ``SystemExit`` raised on the main thread is raised on (see
        :func:`~.listeners.contained`). A coroutine returned is not looked at here: see :meth:`start`.
        """
        function = getattr(hook, method, None)
        if function is None:
            return None
        try:
            return function(*args)
        except (Exception, SystemExit) as e:
            if not contained(e):
                raise
            self._logger.exception(
                "listener hook %s.%s failed; the listeners and their acks are not affected", hook_name(hook), method
            )
            return _FAILED

    @staticmethod
    def failed(result: Any) -> bool:
        """Whether :meth:`call`'s ``result`` says the hook method raised."""
        return result is _FAILED

    def _sync(self, hook: Any, method: str, *args: Any) -> bool:
        """:meth:`call` on a thread: True if the method returned (a coroutine it returns is closed: False)."""
        result = self.call(hook, method, *args)
        if result is None:
            return True
        if result is _FAILED:
            return False
        if inspect.iscoroutine(result):
            result.close()  # never awaited: closed, so that Python does not warn at exit as well
            self._logger.error(
                "listener hook %s.%s returned a coroutine, which never runs on this thread client "
                "(an asyncio app needs slack_socket_mode.aio)",
                hook_name(hook),
                method,
            )
            return False
        return True

    def start(self, hooks: list[Any], request: Optional[SocketModeRequest]) -> list[Any]:
        """Call each hook's ``start(request)`` in order; the hooks whose ``complete`` is due, in that order."""
        started = []
        for hook in hooks:
            if self._sync(hook, "start", request):
                started.append(hook)
        return started

    def complete(
        self, started: list[Any], request: Optional[SocketModeRequest], error: Optional[BaseException]
    ) -> None:
        """Call ``complete(request, error)`` of each hook :meth:`start` returned, in reverse order."""
        for hook in reversed(started):
            self._sync(hook, "complete", request, error)


#: The marker :meth:`ListenerHookRunner.call` returns for a hook method that raised.
FAILED = _FAILED


_UNBUILT = object()  # Listeners._run: no SocketModeRequest built yet


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
        self._hooks = ListenerHookRunner(logger)

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
        """Run the hooks' ``start``, ``message_listeners`` with ``(client, body, text)``, then
        ``socket_mode_request_listeners``, then the hooks' ``complete`` (see :class:`ListenerHookRunner`).

        Returns None, or, when a listener raised :class:`~slack_socket_mode.errors.Redeliver`
        (the first one, if several did), a description of it for the log: which listener, and
        its reason. Every listener runs either way, and so does every hook.
        """
        # not in ListenerLists: a facade that runs envelopes its own way (the asyncio client) may have none
        hooks = getattr(self._client, "listener_hooks", None)
        if hooks:
            return self._envelope_with_hooks(envelope, text, list(hooks))
        return self._run(envelope, text, _UNBUILT, None)  # the usual case: no hook, nothing built for one

    def _envelope_with_hooks(self, envelope: Envelope, text: str, hooks: list[Any]) -> Optional[Redelivery]:
        """:meth:`envelope` with hooks: their ``start``, the listeners, their ``complete``, on this thread."""
        request: object
        try:
            request = SocketModeRequest.from_dict(envelope.body)
        except (ValueError, TypeError) as e:  # parse_message refuses such shapes; a caller may not have
            request = e
        shown = request if isinstance(request, SocketModeRequest) else None
        started = self._hooks.start(hooks, shown)
        errors: list[BaseException] = []
        try:
            return self._run(envelope, text, request, errors)
        finally:
            self._hooks.complete(started, shown, errors[0] if errors else None)

    def _run(
        self, envelope: Envelope, text: str, request: object, errors: Optional[list[BaseException]]
    ) -> Optional[Redelivery]:
        """Run the envelope's listeners; the first :class:`Redeliver`'s description, if one was raised.

        ``request``: ``_UNBUILT`` to build the ``SocketModeRequest`` here once request listeners are
        found, else what building it for the hooks gave (the request, None, or the error).
        ``errors``: where to put each ``Exception`` a listener raised (for the hooks), or None.
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
                if errors is not None:
                    errors.append(e)
                if envelope.envelope_id:
                    self._logger.exception(
                        "message listener %r failed on envelope %s (%s)", listener, envelope.envelope_id, envelope.type
                    )
                else:  # hello and other messages without an envelope_id
                    self._logger.exception("message listener %r failed on a %s message", listener, envelope.type)
        if client.socket_mode_request_listeners and envelope.envelope_id:  # no envelope_id: no request (hello)
            if request is _UNBUILT:
                try:
                    request = SocketModeRequest.from_dict(body)
                except (ValueError, TypeError) as e:  # parse_message refuses such shapes; a caller may not have
                    request = e
            if isinstance(request, Exception):
                self._logger.warning(
                    "envelope %s (%s): request listeners skipped: %s",
                    redact(envelope.envelope_id),
                    redact(envelope.type)[:64],
                    type(request).__name__,
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
                    if errors is not None:
                        errors.append(e)
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
