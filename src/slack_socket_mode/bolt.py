"""Run a Bolt for Python app over this package's Socket Mode clients.

A drop-in for Bolt's own Socket Mode handlers (``slack_bolt.adapter.socket_mode.SocketModeHandler``
and ``slack_bolt.adapter.socket_mode.websocket_client.SocketModeHandler``): change one import::

    # from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_socket_mode.bolt import SocketModeHandler

    SocketModeHandler(app, os.environ["SLACK_APP_TOKEN"]).start()

Needs the ``bolt`` extra: ``pip install "slack-socket-mode[bolt]"``. Each envelope becomes a
``slack_bolt.request.BoltRequest`` in ``"socket_mode"`` mode, ``App.dispatch`` runs it on one of
the client's worker threads, and Bolt's response becomes the envelope's ack (see
:meth:`SocketModeHandler.handle`). See https://api.slack.com/apis/socket-mode and
https://docs.slack.dev/tools/bolt-python/concepts/socket-mode/.

An ``AsyncApp`` runs on :class:`AsyncSocketModeHandler`, a drop-in for Bolt's three asyncio
handlers (``slack_bolt.adapter.socket_mode.aiohttp.AsyncSocketModeHandler``, ``.websockets`` and
``.async_handler``) over :class:`slack_socket_mode.aio.SocketModeClient`; it needs the ``bolt``
and ``async`` extras (``pip install "slack-socket-mode[bolt,async]"``: ``AsyncApp`` needs aiohttp).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

try:
    from slack_bolt import App  # the package first: a missing slack_bolt fails here, whatever is cached
    from slack_bolt.request import BoltRequest
    from slack_bolt.response import BoltResponse
    from slack_bolt.util.utils import get_boot_message
except ImportError as e:  # tests/test_bolt.py hides slack_bolt to check this message
    raise ImportError(
        "slack_socket_mode.bolt needs Bolt for Python (the slack_bolt package): pip install 'slack-socket-mode[bolt]'"
    ) from e

from .aio import SocketModeClient as AsyncSocketModeClient
from .client import SocketModeClient
from .errors import ConfigurationError, FatalError, SocketModeError
from .stopping import StopWaiter, default_stop_signals

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from slack_bolt.app.async_app import AsyncApp

__all__ = ["AsyncSocketModeHandler", "SocketModeHandler"]

RETRY_NUM_HEADER = "x-slack-retry-num"
RETRY_REASON_HEADER = "x-slack-retry-reason"


class SocketModeHandler:
    """Connects a ``slack_bolt.App`` to Slack over Socket Mode, with :class:`SocketModeClient`.

    The same constructor arguments and methods as Bolt's Socket Mode handlers: ``start()``,
    ``connect()``, ``disconnect()``, ``close()`` and ``handle()``; attributes ``app``,
    ``app_token`` and ``client``.

    Args:
        app: the Bolt app (``slack_bolt.App``; an ``AsyncApp`` runs on :class:`AsyncSocketModeHandler`).
        app_token: the app-level token (``xapp-…``); default: the environment variable
            ``SLACK_APP_TOKEN``.
        logger: the client's logger; default ``app.logger``, as in Bolt.
        web_client: the ``slack_sdk.WebClient`` the client calls ``apps.connections.open``
            with; default ``app.client`` (so ``WebClient(base_url=…)`` on the app moves both).
        **client_options: passed to :class:`SocketModeClient` (``concurrency``,
            ``ping_interval``, ``connections``, ``proxy``, ``ssl_context``, ``listener_hooks``, …; see
            ``docs/configuration.md``). Without ``proxy`` (or ``http_proxy_host``), the web
            client's ``proxy``, if it has one, is used for the WebSocket too, as Bolt's built-in
            handler does; pass ``proxy=None`` to leave the WebSocket to the environment's proxy
            settings instead.

    Raises:
        ConfigurationError: no app-level token (neither ``app_token`` nor ``SLACK_APP_TOKEN``),
            a token that is not ``xapp-…``, or invalid ``client_options``.
        TypeError: ``app`` is not a ``slack_bolt.App``.

    Listener hooks (``client.listener_hooks``, see :class:`SocketModeClient`) run around each
    envelope's :meth:`handle`, that is around ``App.dispatch`` (Bolt's middleware, and the wait for
    ``ack()``), on the client's thread that runs it; Bolt runs a listener itself on its own executor
    unless ``process_before_response=True``, with its ``listener_start_handler`` and
    ``listener_completion_handler`` around it. A hook with a ``prepare_bolt_app(app)`` method is
    given the app once, here, to reach those threads too (``slack_socket_mode.django`` does).

    Thread-safety: every method may be called from any thread; ``handle`` runs on the client's
    worker threads, several at once (``concurrency``), as ``App.dispatch`` allows.
    """

    app: App
    client: SocketModeClient

    def __init__(
        self,
        app: App,
        app_token: Optional[str] = None,
        logger: Optional[logging.Logger] = None,
        web_client: Optional[WebClient] = None,
        **client_options: Any,
    ) -> None:
        if type(app).__name__ == "AsyncApp":  # not imported: it needs aiohttp, which App does not
            raise TypeError(
                "app is a slack_bolt AsyncApp: its listeners are coroutines, which this thread-based handler "
                "would never await; run it on slack_socket_mode.bolt.AsyncSocketModeHandler (over "
                "slack_socket_mode.aio.SocketModeClient): await AsyncSocketModeHandler(app).start_async()"
            )
        if not isinstance(app, App):
            raise TypeError(f"app must be a slack_bolt.App (got {type(app).__name__})")
        token = app_token or os.environ.get("SLACK_APP_TOKEN")
        if not token:
            raise ConfigurationError(
                "no app-level token: pass app_token or set the environment variable SLACK_APP_TOKEN (xapp-…)"
            )
        web_client = web_client if web_client is not None else app.client
        if "proxy" not in client_options and "http_proxy_host" not in client_options and web_client.proxy:
            client_options["proxy"] = web_client.proxy
        self.app = app
        self._waiter: Optional[StopWaiter] = None  # start()'s wait: ended by close(), disconnect() or a fatal error
        self._stop_requested = False  # close() or disconnect() began (start() may still be connecting)
        self._fatal: Optional[FatalError] = None
        self.client = SocketModeClient(
            app_token=token,
            logger=logger if logger is not None else app.logger,
            web_client=web_client,
            **client_options,
        )
        self.client.socket_mode_request_listeners.append(self.handle)
        self.client.on_error_listeners.append(self._on_error)
        for hook in list(self.client.listener_hooks):
            prepare = getattr(hook, "prepare_bolt_app", None)
            if callable(prepare):  # a hook that must reach Bolt's own listener threads (slack_socket_mode.django)
                prepare(app)

    @property
    def app_token(self) -> str:
        """The app-level token (kept by the client, never logged or shown in ``repr()``)."""
        return self.client.app_token

    def __repr__(self) -> str:
        return f"<SocketModeHandler app={self.app.name!r} client={self.client!r}>"

    # ---- dispatch --------------------------------------------------------------------------

    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        """Run one envelope through the app and ack it with the app's response.

        Called by the client on a worker thread for each envelope it dispatches. The
        ``BoltRequest`` has ``mode="socket_mode"``, the envelope's ``payload`` as its body and,
        whenever the envelope carries ``retry_attempt`` / ``retry_reason`` (``events_api``
        envelopes do, 0 and "" on a first delivery), the headers ``x-slack-retry-num`` /
        ``x-slack-retry-reason``, exactly as Bolt's own Socket Mode handlers set them. The ack, sent with
        ``client.send_socket_mode_response`` once ``App.dispatch`` returns (that is, once the
        listener called ``ack()``; lazy listeners keep running in Bolt's executor), is:

        * a bare ``{"envelope_id": …}`` for an empty response body (``ack()``);
        * ``{"envelope_id": …, "payload": {…}}`` for a JSON object body
          (``ack(response_action="errors", errors={…})``, ``ack(blocks=[…])``);
        * ``{"envelope_id": …, "payload": {"text": …}}`` for a text body (``ack("Hi!")``).

        A status other than 200 (no listener matched: 404; a listener raised: 500; failed
        authorization: 401) sends no ack, as in Bolt: Slack redelivers the envelope up to three
        times, and the client's dedupe does not dispatch it again in this process.

        Args:
            client: the Socket Mode client that received the envelope.
            req: the envelope.
        """
        started = time.monotonic()
        response: BoltResponse = self.app.dispatch(
            BoltRequest(mode="socket_mode", body=req.payload, headers=_retry_headers(req))
        )
        logger = self.client.logger
        if response.status != 200:
            logger.info(
                "envelope %s (%s): the Bolt app answered HTTP %d; not acking it (body: %s)",
                req.envelope_id,
                req.type,
                response.status,
                response.body[:200],
            )
            return
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=_ack_payload(response))
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "envelope %s (%s): acked after %.1f ms in the Bolt app",
                req.envelope_id,
                req.type,
                (time.monotonic() - started) * 1000,
            )

    def _on_error(self, error: Exception) -> None:
        if isinstance(error, FatalError):
            self._fatal = error
            self._end_wait()

    def _end_wait(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            waiter.stop()

    # ---- lifecycle ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, and return once Slack said ``hello`` (reconnects then run in the background).

        Raises:
            FatalError: the app-level token was refused (``AuthError``), Socket Mode is off
                for the app (``LinkDisabledError``), …
            ConnectTimeoutError: no ``hello`` within 30 seconds.
            SocketModeError: the handler was closed.
        """
        self.client.connect()

    def disconnect(self) -> None:
        """Close the connections and stop reconnecting; :meth:`start` returns.

        :meth:`connect` or :meth:`start` may be called again afterwards.
        """
        self._stop_requested = True
        try:
            self.client.disconnect()
        finally:
            self._end_wait()

    def close(self) -> None:
        """Shut down for good; :meth:`start` returns.

        Stops dispatching, waits up to 5 seconds for running listeners and sends their acks,
        closes the connections with close frames, and joins every ``slack_socket_mode-…``
        thread. Idempotent. Bolt's own listener executor (lazy listeners) is the app's and
        keeps running.
        """
        self._stop_requested = True
        try:
            self.client.close()
        finally:
            self._end_wait()

    def start(self) -> None:
        """Connect, then block until :meth:`close` or :meth:`disconnect` (from another thread, or a
        listener), a fatal error, SIGINT (Ctrl+C) or SIGTERM.

        A :meth:`close` or :meth:`disconnect` that comes while ``start()`` is still connecting
        also ends it: ``start()`` returns without waiting.

        Like Bolt's handlers, it announces "Bolt app is running!" (logged by ``app.logger`` at
        INFO, or written to stdout when that logger does not log INFO). The wait is a
        :class:`~slack_socket_mode.stopping.StopWaiter` (no polling, and a signal that lands
        as the wait begins is not lost). When called on the main thread, SIGINT and SIGTERM
        end the wait unless the application installed handlers of its own for them; the
        handler is then closed (acks for running listeners go out, connections get close
        frames) and ``start()`` returns normally. The signal handlers are put back before
        ``start()`` returns. On Windows, Ctrl+C ends the process at once, as with Bolt.

        Raises:
            FatalError: at connect, or later when reconnecting ended for good (the token was
                revoked, Socket Mode was turned off): the handler is closed first.
            ConnectTimeoutError: no ``hello`` within 30 seconds.
            SocketModeError: the handler was closed before.
        """
        self._stop_requested = False
        self._fatal = None
        try:
            self.connect()
        except SocketModeError:
            if self._stop_requested and self._fatal_error() is None:
                return  # close() or disconnect() was called while connecting: that is a stop too
            raise
        self._announce()
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread and sys.platform == "win32":
            # A lock wait cannot be interrupted by Ctrl+C on Windows (https://bugs.python.org/issue35935).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        signals = default_stop_signals() if on_main_thread and sys.platform != "win32" else ()
        signum: Optional[int] = None
        try:
            with StopWaiter(signals) as waiter:
                self._waiter = waiter
                # close(), disconnect() or a fatal error before the line above did not reach the waiter
                if not self._stop_requested and self._fatal_error() is None:
                    signum = waiter.wait()
                self._waiter = None
        except KeyboardInterrupt:  # Ctrl-C just before the waiter took SIGINT over
            signum = signal.SIGINT
        if signum is not None:
            self.client.logger.info("%s received; closing the Socket Mode handler", signal.Signals(signum).name)
            self.close()
        else:
            fatal = self._fatal_error()
            if fatal is not None:
                self.close()
                raise fatal

    def _fatal_error(self) -> Optional[FatalError]:
        """The fatal error that ended the latest :meth:`start`, if any (set on a client thread)."""
        return self._fatal

    def _announce(self) -> None:
        _announce(self.app.logger)


def _announce(app_logger: logging.Logger) -> None:
    """Say "Bolt app is running!" as Bolt's handlers do: at INFO on the app's logger, else on stdout."""
    message = get_boot_message()
    if app_logger.isEnabledFor(logging.INFO):
        app_logger.info(message)
        return
    try:
        sys.stdout.write(message + "\n")
    except UnicodeEncodeError:
        sys.stdout.write("Bolt app is running!\n")
    sys.stdout.flush()


class AsyncSocketModeHandler:
    """Connects a ``slack_bolt.async_app.AsyncApp`` to Slack over Socket Mode, with
    :class:`slack_socket_mode.aio.SocketModeClient`.

    A drop-in for Bolt's asyncio handlers (``slack_bolt.adapter.socket_mode.aiohttp.AsyncSocketModeHandler``,
    ``slack_bolt.adapter.socket_mode.websockets.AsyncSocketModeHandler`` and
    ``slack_bolt.adapter.socket_mode.async_handler.AsyncSocketModeHandler``): the coroutines
    ``start_async()``, ``connect_async()``, ``disconnect_async()``, ``close_async()`` and
    ``handle()``; attributes ``app``, ``app_token`` and ``client``. The app's listeners run on the
    event loop that awaits :meth:`connect_async` (or :meth:`start_async`); the connections stay
    on the client's threads.

    Args:
        app: the Bolt app (``slack_bolt.async_app.AsyncApp``).
        app_token: the app-level token (``xapp-…``); default: the environment variable
            ``SLACK_APP_TOKEN``.
        logger: the client's logger; default ``app.logger``, as in Bolt.
        web_client: the ``AsyncWebClient`` given to the client (``apps.connections.open`` goes to
            its ``base_url``); default ``app.client``.
        **client_options: passed to :class:`slack_socket_mode.aio.SocketModeClient` (``proxy``,
            ``ping_interval`` in seconds, ``loop``, ``concurrency``, ``connections``, …, with that
            client's defaults). Without ``proxy`` (or ``http_proxy_host``), the web client's
            ``proxy``, if it has one, is used for the WebSocket too, as :class:`SocketModeHandler` does.

    Raises:
        ConfigurationError: no app-level token, a token that is not ``xapp-…``, or invalid
            ``client_options``.
        TypeError: ``app`` is not an ``AsyncApp`` (a ``slack_bolt.App`` runs on :class:`SocketModeHandler`).
        ImportError: aiohttp (which ``AsyncApp`` needs) is missing; the message names the ``async`` extra.

    Thread-safety: the coroutines are awaited on the event loop the listeners run on;
    :meth:`close_async` and :meth:`disconnect_async` end :meth:`start_async` from any task on it.
    """

    app: AsyncApp
    client: AsyncSocketModeClient

    def __init__(
        self,
        app: AsyncApp,
        app_token: Optional[str] = None,
        logger: Optional[logging.Logger] = None,
        web_client: Optional[Any] = None,
        **client_options: Any,
    ) -> None:
        given: Any = app  # checked at run time: mypy knows it is an AsyncApp
        if isinstance(given, App):
            raise TypeError(
                "app is a slack_bolt App, not an AsyncApp: run it on slack_socket_mode.bolt.SocketModeHandler"
            )
        if not isinstance(given, _async_bolt().AsyncApp):
            raise TypeError(f"app must be a slack_bolt AsyncApp (got {type(given).__name__})")
        token = app_token or os.environ.get("SLACK_APP_TOKEN")
        if not token:
            raise ConfigurationError(
                "no app-level token: pass app_token or set the environment variable SLACK_APP_TOKEN (xapp-…)"
            )
        web_client = web_client if web_client is not None else app.client
        if "proxy" not in client_options and "http_proxy_host" not in client_options and web_client.proxy:
            client_options["proxy"] = web_client.proxy
        self.app = app
        self._wait: Optional[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = None  # start_async()'s
        self._stop_requested = False  # close_async() or disconnect_async() began
        self._fatal: Optional[FatalError] = None
        self._signalled: Optional[int] = None
        self.client = AsyncSocketModeClient(
            app_token=token,
            logger=logger if logger is not None else app.logger,
            web_client=web_client,
            **client_options,
        )
        self.client.socket_mode_request_listeners.append(self.handle)
        self.client.on_error_listeners.append(self._on_error)

    @property
    def app_token(self) -> str:
        """The app-level token (kept by the client, never logged or shown in ``repr()``)."""
        return self.client.app_token

    def __repr__(self) -> str:
        return f"<AsyncSocketModeHandler app={self.app.name!r} client={self.client!r}>"

    # ---- dispatch --------------------------------------------------------------------------

    async def handle(self, client: Any, req: SocketModeRequest) -> None:
        """Run one envelope through the app (``AsyncApp.async_dispatch``) and ack it with the app's response.

        The ``AsyncBoltRequest`` is built as :meth:`SocketModeHandler.handle` builds its
        ``BoltRequest`` (``mode="socket_mode"``, the payload as body, the retry headers as Bolt
        sets them), and the ack has the same shape. The ack is written as soon as the listener's
        ``await ack(…)`` is called (the ``ack`` in the request's context sends it), not when
        Bolt's runner notices it: Bolt polls for ``ack()`` every 10 ms. With the app's
        ``process_before_response=True`` the ack waits for the listener to finish, as in Bolt.
        A status other than 200 sends no ack (no listener matched: 404; a listener raised before
        ``ack()``: 500), as in Bolt. Runs on the client's event loop.

        Args:
            client: the asyncio Socket Mode client that received the envelope.
            req: the envelope.
        """
        started = time.monotonic()
        bolt = _async_bolt()
        sent = False
        logger = self.client.logger

        async def send(response: BoltResponse) -> None:
            nonlocal sent
            if sent or response.status != 200:
                return
            sent = True
            try:
                await client.send_socket_mode_response(
                    SocketModeResponse(envelope_id=req.envelope_id, payload=_ack_payload(response))
                )
            except BaseException:
                sent = False  # the ack after dispatch tries again (and raises)
                raise
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "envelope %s (%s): acked after %.1f ms in the Bolt app",
                    req.envelope_id,
                    req.type,
                    (time.monotonic() - started) * 1000,
                )

        context: dict[str, Any] = {}
        if not self.app.process_before_response:
            context["ack"] = bolt.early_ack(send)
        request = bolt.AsyncBoltRequest(
            mode="socket_mode", body=req.payload, headers=_retry_headers(req), context=context
        )
        response: BoltResponse = await self.app.async_dispatch(request)
        if response.status != 200:
            if not sent:
                logger.info(
                    "envelope %s (%s): the Bolt app answered HTTP %d; not acking it (body: %s)",
                    req.envelope_id,
                    req.type,
                    response.status,
                    response.body[:200],
                )
            return
        await send(response)

    def _on_error(self, error: Exception) -> None:
        if isinstance(error, FatalError):
            self._fatal = error
            self._end_wait()

    def _end_wait(self) -> None:
        wait = self._wait
        if wait is not None:
            loop, stopped = wait
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:  # the loop is closed: nothing waits any more
                pass

    # ---- lifecycle ------------------------------------------------------------------------

    async def connect_async(self) -> None:
        """Connect, and return once Slack said ``hello``; listeners run on the running loop.

        Raises:
            FatalError: the app-level token was refused (``AuthError``), Socket Mode is off
                for the app (``LinkDisabledError``), …
            ConnectTimeoutError: no ``hello`` within 30 seconds.
            SocketModeError: the handler was closed.
        """
        await self.client.connect()

    async def disconnect_async(self) -> None:
        """Close the connections and stop reconnecting; :meth:`start_async` returns.

        :meth:`connect_async` or :meth:`start_async` may be awaited again afterwards.
        """
        self._stop_requested = True
        try:
            await self.client.disconnect()
        finally:
            self._end_wait()

    async def close_async(self) -> None:
        """Shut down for good; :meth:`start_async` returns.

        Stops dispatching, waits up to 5 seconds for running listeners (the loop keeps running
        them) and sends their acks, closes the connections with close frames, and joins every
        ``slack_socket_mode-…`` thread. Idempotent.
        """
        self._stop_requested = True
        try:
            await self.client.close()
        finally:
            self._end_wait()

    async def start_async(self) -> None:
        """Connect, then wait until :meth:`close_async` or :meth:`disconnect_async`, a fatal error,
        SIGINT (Ctrl+C) or SIGTERM.

        Announces "Bolt app is running!" as Bolt's handlers do. The wait is an
        :class:`asyncio.Event` (no sleeping loop). When the loop runs on the main thread and
        supports ``loop.add_signal_handler`` (not on Windows), SIGINT and SIGTERM end the wait,
        unless the application installed handlers of its own for them (``asyncio.run``'s own
        SIGINT handler counts as the default): the handler is then closed (running listeners
        finish on the loop and their acks go out, connections get close frames) and
        ``start_async()`` returns normally, so the process exits 0. The previous handlers are put
        back before it returns. If the task is cancelled while waiting, the handler is closed and
        the cancellation goes on.

        Raises:
            FatalError: at connect, or later when reconnecting ended for good: the handler is closed first.
            ConnectTimeoutError: no ``hello`` within 30 seconds.
            SocketModeError: the handler was closed before.
        """
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        self._stop_requested = False
        self._fatal = None
        self._signalled = None
        self._wait = (loop, stopped)
        try:
            try:
                await self.connect_async()
            except SocketModeError:
                if self._stop_requested and self._fatal_error() is None:
                    return  # close_async() or disconnect_async() while connecting: a stop too
                raise
            _announce(self.app.logger)
            restore = _stop_on_signals(loop, functools.partial(self._on_signal, stopped))
            try:
                if not self._stop_requested and self._fatal_error() is None:
                    await stopped.wait()
            except asyncio.CancelledError:
                await self.close_async()
                raise
            finally:
                restore()
        finally:
            self._wait = None
        signum = self._signal_received()
        fatal = self._fatal_error()
        if signum is not None:
            self.client.logger.info("%s received; closing the Socket Mode handler", signal.Signals(signum).name)
            await self.close_async()
        elif fatal is not None:
            await self.close_async()
            raise fatal

    def _fatal_error(self) -> Optional[FatalError]:
        """The fatal error that ended the latest :meth:`start_async`, if any (set by an error listener)."""
        return self._fatal

    def _signal_received(self) -> Optional[int]:
        """The signal that ended the latest :meth:`start_async`, if any."""
        return self._signalled

    def _on_signal(self, stopped: asyncio.Event, signum: int) -> None:
        self._signalled = signum
        stopped.set()


class _AsyncBolt:
    """What :class:`AsyncSocketModeHandler` needs from slack_bolt's asyncio side (it needs aiohttp)."""

    def __init__(self) -> None:
        try:
            import aiohttp  # noqa: F401, PLC0415 - AsyncApp's web client; named in the error below
            from slack_bolt.app.async_app import AsyncApp  # noqa: PLC0415
            from slack_bolt.context.ack.async_ack import AsyncAck  # noqa: PLC0415
            from slack_bolt.request.async_request import AsyncBoltRequest  # noqa: PLC0415
        except ImportError as e:
            raise ImportError(
                f"slack_socket_mode.bolt.AsyncSocketModeHandler needs aiohttp for Bolt's AsyncApp ({e}): "
                "pip install 'slack-socket-mode[bolt,async]'"
            ) from e
        self.AsyncApp = AsyncApp
        self.AsyncBoltRequest = AsyncBoltRequest

        class EarlyAck(AsyncAck):
            """Bolt's ``ack`` that also sends the ack at once (a copy, for a lazy listener, is Bolt's own)."""

            def __init__(self, send: Callable[[BoltResponse], Awaitable[None]]) -> None:
                super().__init__()  # type: ignore[no-untyped-call]
                self._send = send

            async def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
                response: BoltResponse = await super().__call__(*args, **kwargs)
                await self._send(response)
                return response

            def __deepcopy__(self, memo: dict[int, Any]) -> Any:
                plain = AsyncAck()  # type: ignore[no-untyped-call]
                plain.response = copy.deepcopy(self.response, memo)
                return plain

        self.early_ack = EarlyAck


@functools.lru_cache(maxsize=1)
def _async_bolt() -> _AsyncBolt:
    return _AsyncBolt()


def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[int], None]) -> Callable[[], None]:
    """Call ``stop(signum)`` on SIGINT / SIGTERM while their handlers are the defaults; returns the undo.

    Only on the main thread, with a loop that has ``add_signal_handler`` (not Windows'). ``asyncio.run``'s
    SIGINT handler (3.11+) is a default: it would cancel the main task instead of closing cleanly.
    """
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return lambda: None
    taken: list[tuple[int, Any]] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if signum not in default_stop_signals() and not _is_asyncio_runner_handler(previous):
            continue
        try:
            loop.add_signal_handler(signum, stop, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # a loop without signal support
            continue
        taken.append((signum, previous))

    def restore() -> None:
        for signum, previous in taken:
            try:
                loop.remove_signal_handler(signum)
                signal.signal(signum, previous)
            except (RuntimeError, ValueError):  # the loop is closing
                pass

    return restore


def _is_asyncio_runner_handler(handler: Any) -> bool:
    """Whether ``handler`` is ``asyncio.run``'s own SIGINT handler (``asyncio.Runner._on_sigint``, 3.11+), which
    cancels the main task: the handler takes SIGINT over instead, and puts it back."""
    runner = getattr(asyncio, "Runner", None)
    if runner is None:
        return False
    if isinstance(handler, functools.partial):  # functools.partial(runner._on_sigint, main_task=task)
        handler = handler.func
    return getattr(handler, "__func__", None) is getattr(runner, "_on_sigint", None)


def _retry_headers(req: SocketModeRequest) -> Optional[dict[str, Union[str, Sequence[str]]]]:
    """``x-slack-retry-num`` / ``x-slack-retry-reason`` whenever the envelope has ``retry_attempt`` /
    ``retry_reason`` (0 and "" included, as Bolt's own handlers set them); None when it has neither."""
    headers: dict[str, Union[str, Sequence[str]]] = {}
    if req.retry_attempt is not None:
        headers[RETRY_NUM_HEADER] = str(req.retry_attempt)
    if req.retry_reason is not None:
        headers[RETRY_REASON_HEADER] = req.retry_reason
    return headers or None


def _ack_payload(response: BoltResponse) -> Optional[dict[str, Any]]:
    """The ack's ``payload`` for a 200 response: None (bare ack), the JSON object, or ``{"text": body}``."""
    body = response.body
    if not body:
        return None
    content_type = next(iter(response.headers.get("content-type", [])), "")
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return {"text": body}
