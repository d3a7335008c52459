"""Django's database connections released around each listener run, as Django does around each request.

Django keeps one connection per thread and per database alias, and closes the old ones
(``CONN_MAX_AGE`` passed, ``CONN_HEALTH_CHECKS`` failed, or an error left it unusable) only when a
request starts or ends: ``django.db.close_old_connections()``, connected to its ``request_started``
and ``request_finished`` signals. A Socket Mode client's threads serve no request, so without help a
listener that uses the ORM keeps its thread's connection for the thread's whole life, and a
connection the database dropped stays broken in that thread.

:data:`CLOSE_OLD_CONNECTIONS` is a listener hook (:mod:`slack_socket_mode.listeners`) that calls
``close_old_connections()`` before and after each envelope's listeners, on their thread; the app
config adds it to every client made once Django has loaded ``slack_socket_mode.django``. For a
Bolt app on :class:`slack_socket_mode.bolt.SocketModeHandler` it also installs, on the app's
listener runner, a ``listener_start_handler`` and ``listener_completion_handler`` that do the
same on Bolt's own listener threads, and Bolt's ``DjangoThreadLazyListenerRunner`` for lazy
listeners (:func:`prepare_bolt_app`).

No call is doubled on one thread: while this hook wraps a run, a Bolt handler of ours that runs
inside it on the same thread (``process_before_response=True`` runs Bolt's listener there) does
nothing, since the hook's ``complete`` closes what the run left. Bolt's own
``DjangoListenerStartHandler`` and ``DjangoListenerCompletionHandler`` (which Bolt's Django
adapter, ``SlackRequestHandler``, sets) are replaced by ours, which do the same but know of the
hook; a handler of the app's own (any other class) is left as it is, as Bolt's adapter does.

Thread-safety: the nesting is counted per thread (a ``threading.local``); any number of threads
may run listeners at once. Under the asyncio client (:mod:`slack_socket_mode.aio`) the hook's
closes run through ``sync_to_async`` (thread-sensitive), in the thread where the app's ORM calls
made with ``sync_to_async`` run, and only once no envelope's run is under way there, since
overlapping runs share that thread's connections. Django's rule that the ORM is not used from a
running event loop's thread is the application's to keep.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Optional

import django.db
from asgiref.sync import sync_to_async

__all__ = ["CLOSE_OLD_CONNECTIONS", "CloseOldConnections", "in_listener_run", "prepare_bolt_app", "release"]

_logger = logging.getLogger("slack_socket_mode.django")
_state = threading.local()  # depth: CloseOldConnections runs under way on this thread (0 or 1, nested: more)


def _on_event_loop() -> bool:
    """Whether the calling thread runs an event loop now (the asyncio client's listeners)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def in_listener_run() -> bool:
    """Whether :data:`CLOSE_OLD_CONNECTIONS` wraps a listener run on the calling thread just now."""
    return getattr(_state, "depth", 0) > 0


def release(where: str) -> None:
    """Call ``django.db.close_old_connections()`` unless the hook wraps this thread's run (it will, after).

    ``where`` names the caller for the DEBUG line (``"bolt-listener-start"``).
    """
    if in_listener_run():
        return
    django.db.close_old_connections()
    if _logger.isEnabledFor(logging.DEBUG):
        _logger.debug("released old database connections (%s, thread %s)", where, threading.current_thread().name)


class CloseOldConnections:
    """The listener hook: ``close_old_connections()`` before and after each envelope's listeners.

    Add it to ``client.listener_hooks`` yourself when the app is not in ``INSTALLED_APPS``.
    ``start``'s close is skipped, and ``complete``'s, when another run of this hook already wraps
    the thread (``run_message_listeners`` from a listener): the outermost run closes.
    """

    def __repr__(self) -> str:
        return "<slack_socket_mode.django CloseOldConnections>"

    def start(self, request: Any) -> Any:
        """Before the listeners: close the thread's old connections (then count this run).

        On an event loop's thread (the asyncio client) this returns a coroutine, which the client
        awaits: the close runs in the thread where ``sync_to_async`` runs the app's ORM calls
        (asgiref's thread-sensitive one), as Django requires.
        """
        if _on_event_loop():
            return sync_to_async(self._start, thread_sensitive=True)()
        self._start()
        return None

    def complete(self, request: Any, error: Optional[BaseException]) -> Any:
        """After the listeners (whatever they did): close the thread's old connections (see :meth:`start`)."""
        if _on_event_loop():
            return sync_to_async(self._complete, thread_sensitive=True)()
        self._complete()
        return None

    @staticmethod
    def _start() -> None:
        depth = getattr(_state, "depth", 0)
        if depth == 0:
            django.db.close_old_connections()  # raises: depth unchanged, and complete() is not called
        _state.depth = depth + 1

    @staticmethod
    def _complete() -> None:
        # Under the asyncio client, runs overlap on the one thread-sensitive thread: the last to end closes.
        depth = getattr(_state, "depth", 1) - 1
        _state.depth = max(depth, 0)
        if depth <= 0:
            django.db.close_old_connections()

    def prepare_bolt_app(self, app: Any) -> None:
        """Called by :class:`slack_socket_mode.bolt.SocketModeHandler` with its app: :func:`prepare_bolt_app`."""
        prepare_bolt_app(app)


#: The one hook the app config adds to every client (a hook is added to the defaults once).
CLOSE_OLD_CONNECTIONS = CloseOldConnections()


def prepare_bolt_app(app: Any) -> None:
    """Release connections on a Bolt app's own listener threads too (idempotent; needs slack_bolt).

    On ``app.listener_runner`` (Bolt's ``ThreadListenerRunner``): a ``listener_start_handler`` and a
    ``listener_completion_handler`` that call :func:`release`, in place of Bolt's defaults or of
    Bolt's own Django handlers (so the calls are not doubled), and Bolt's
    ``DjangoThreadLazyListenerRunner`` in place of its plain lazy runner. Handlers of the app's own
    classes are left as they are (an INFO says so: they should call ``close_old_connections()``). A
    custom listener runner is left alone with a WARNING, as Bolt's Django adapter refuses one.
    """
    from .bolt_listeners import install  # noqa: PLC0415 - imports slack_bolt, there with a Bolt app

    install(app, release, _logger)
