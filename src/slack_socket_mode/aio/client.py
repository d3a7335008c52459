"""The asyncio Socket Mode client: a drop-in for slack_sdk's ``aiohttp`` and ``websockets`` clients.

A facade over the same engine as the thread client (:mod:`slack_socket_mode.engine`): the
connections, their readers, the ``health`` and ``session`` threads, the ledger and the dispatcher
are the thread client's, with every guarantee of it. What differs is who runs the listeners:
:class:`~slack_socket_mode.aio.listeners.AsyncListeners` runs them as coroutines on the
application's event loop. The methods slack_sdk awaits are coroutines here; those that wait on
the engine (``connect``, ``disconnect``, ``close``, ``issue_new_wss_url``) run it on a thread of
this client's own, named and gone when the step returns (not the loop's default executor), so that
the loop keeps running, and acks are written without blocking the
loop (:meth:`~slack_socket_mode.acks.AckRouter.send_ack` with a hand-off).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import threading
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, Union

from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from .. import errors
from ..client import SocketModeClient as ThreadClient
from ..connection import Connection
from ..engine import Engine, EngineView
from ..errors import ConfigurationError
from ..listeners import default_hooks
from ..messages import Envelope, Hello, parse_message
from ..options import OPTION_NAMES, check_options
from ..stats import ClientStats, HealthStatus
from .listeners import AsyncListeners, in_listener

__all__ = ["NotConnectedError", "SocketModeClient"]

_numbers = itertools.count(1)

#: The thread client's defaults, by option name: the one place they are written (client.py).
_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(ThreadClient.__init__).parameters.items()
    if name in OPTION_NAMES and parameter.default is not inspect.Parameter.empty
}
#: Listener runs at once on the loop (the thread client's default is 10 threads; coroutines are cheap).
DEFAULT_CONCURRENCY = 100


def _sync_twin(web_client: Any, logger: logging.Logger) -> WebClient:
    """A ``WebClient`` with ``web_client``'s (an ``AsyncWebClient``'s) settings, for the engine's threads."""
    return WebClient(
        token=None,
        base_url=getattr(web_client, "base_url", WebClient.BASE_URL),
        timeout=getattr(web_client, "timeout", 30),
        ssl=getattr(web_client, "ssl", None),
        proxy=getattr(web_client, "proxy", None),
        headers=dict(getattr(web_client, "headers", None) or {}),
        logger=logging.getLogger(f"{logger.name}.web_client"),
    )


T = TypeVar("T")

#: Seconds the loop waits for a step's thread to end once the step returned (it has only to return).
_STEP_JOIN = 0.1


async def _off_loop(name: str, call: Callable[[], T]) -> T:
    """Run the blocking engine step ``call`` on a thread named ``name`` and await its result.

    The thread is this client's (named, daemon, started for the step and joined once it returned),
    not the loop's default executor, so that no thread outlives ``close()``. The caller's
    context variables are carried over, as ``asyncio.to_thread`` does. Cancelling the awaiting
    task does not stop the step; its result is then dropped.

    Raises:
        whatever ``call`` raises.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: Optional[BaseException]) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        result: Any = None
        error: Optional[BaseException] = None
        try:
            result = context.run(call)
        except BaseException as e:  # handed to the awaiting task, which raises it
            error = e
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop was closed meanwhile: no one awaits the step any more
            pass

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        return await done
    finally:
        if done.done() and not done.cancelled():
            thread.join(_STEP_JOIN)  # it has only to return from run(): microseconds


try:  # slack_sdk's websockets client raises websockets' error where ours raises NotConnectedError
    from websockets.exceptions import WebSocketException as _WebSocketsError
except ImportError:  # websockets is not installed: no code here catches its error
    _WebSocketsError = Exception  # type: ignore[misc,assignment]


class NotConnectedError(errors.NotConnectedError, ConnectionError, _WebSocketsError):
    """:meth:`SocketModeClient.send_message` with no open connection: also the built-in ``ConnectionError``
    that slack_sdk's aiohttp client raises there, and, where websockets is installed, its
    ``websockets.exceptions.WebSocketException``, which slack_sdk's websockets client raises (slack_sdk's
    own tests expect each)."""


class _EngineSide:
    """What the engine calls on its facade (:class:`slack_socket_mode.engine.Facade`), for the asyncio client.

    The listener lists are the client's (read at each call); ``issue_new_wss_url`` is the sync
    one the engine's threads call; ``hello`` is set by the session on each ``hello``.
    """

    def __init__(self, client: SocketModeClient) -> None:
        self._client = client
        self.hello: Optional[Hello] = None
        self.message_tap: Optional[Callable[[int, str], None]] = None

    @property
    def message_listeners(self) -> list[Any]:
        return self._client.message_listeners

    @property
    def socket_mode_request_listeners(self) -> list[Any]:
        return self._client.socket_mode_request_listeners

    @property
    def on_message_listeners(self) -> list[Any]:
        return self._client.on_message_listeners

    @property
    def on_error_listeners(self) -> list[Any]:
        return self._client.on_error_listeners

    @property
    def on_close_listeners(self) -> list[Any]:
        return self._client.on_close_listeners

    @property
    def lifecycle_listeners(self) -> list[Any]:
        return self._client.lifecycle_listeners

    def issue_new_wss_url(self) -> str:
        """A fresh URL, on the session thread: an app's override of the coroutine runs on its loop."""
        return self._client.issue_url_now()


class SocketModeClient(EngineView):
    """An asyncio Socket Mode client with slack_sdk's asyncio interface, on the thread client's engine.

    Replace ``from slack_sdk.socket_mode.aiohttp import SocketModeClient`` (or ``.websockets``) with
    ``from slack_socket_mode.aio import SocketModeClient``. Follows https://api.slack.com/apis/socket-mode.

    Args:
        app_token: the app-level token (``xapp-…``); never logged.
        logger: where to log (default ``logging.getLogger("slack_socket_mode")``).
        web_client: an ``AsyncWebClient`` (``client.web_client``, for listeners; default: one with
            ``base_url``). ``apps.connections.open`` is called on the engine's threads with a
            ``WebClient`` of the same ``base_url``, ``timeout``, ``ssl``, ``proxy`` and ``headers``,
            unless the app overrides :meth:`issue_new_wss_url` (then that coroutine is run on the loop).
        proxy: a proxy URL for the WebSocket (and the built web clients).
        auto_reconnect_enabled: reopen a dropped connection (Slack's rotations are always followed).
        ping_interval: seconds between our pings; None disables them.
        trace_enabled: log messages sent and received at DEBUG, tokens redacted.
        on_message_listeners: called (awaited if coroutines) with each raw text message, a ``str`` that
            is also shaped like aiohttp's ``WSMessage`` (``.data``, ``.type``), as slack_sdk's aiohttp
            client calls them (:class:`~slack_socket_mode.aio.listeners.TextMessage`).
        on_error_listeners: called with each :class:`~slack_socket_mode.errors.ConnectionFailedError`
            and :class:`~slack_socket_mode.errors.FatalError`.
        on_close_listeners: called with ``(code, reason)`` when a connection ends.
        loop: the event loop listeners run on (default: the loop running when :meth:`connect` is awaited).
        concurrency: envelopes whose listeners run at once on the loop (default 100).
        lifecycle_listeners: called with each :class:`~slack_socket_mode.lifecycle.Transition`.
        listener_hooks: objects with ``start(request)`` and ``complete(request, error)`` (either may be a
            coroutine function), called around each envelope's listeners in the task that runs them.
        options: every other keyword-only option of :class:`slack_socket_mode.SocketModeClient`
            (``connections``, ``ping_timeout``, ``dedupe``, ``close_timeout``, …), with the same
            meaning and defaults; ``slow_queue_warning`` is also how long an envelope may wait for
            the loop to start it before a WARNING names the listener blocking the loop.

    Raises:
        ConfigurationError: invalid options, an app token that is not ``xapp-…``, or no
            ``web_client`` and aiohttp missing (``pip install "slack-socket-mode[async]"``).
        TypeError: an option of an unknown name.

    Listeners: ``message_listeners`` are called with ``(client, message: dict, raw_message: str)``,
    ``socket_mode_request_listeners`` with ``(client, request: SocketModeRequest)``, as slack_sdk's
    asyncio clients call them; coroutine functions are awaited, on the loop. They must not block
    it (see :mod:`slack_socket_mode.aio.listeners`).

    Thread-safety: the coroutines are awaited on one event loop (they may be called from any
    task on it); :meth:`stats`, :meth:`health` and the properties may be read from any thread.
    """

    def __init__(
        self,
        app_token: str,
        logger: Optional[logging.Logger] = None,
        web_client: Optional[Any] = None,
        proxy: Optional[str] = None,
        auto_reconnect_enabled: bool = True,
        ping_interval: Optional[float] = 5.0,
        trace_enabled: bool = False,
        on_message_listeners: Optional[list[Callable[..., Any]]] = None,
        on_error_listeners: Optional[list[Callable[..., Any]]] = None,
        on_close_listeners: Optional[list[Callable[..., Any]]] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        lifecycle_listeners: Optional[list[Callable[..., Any]]] = None,
        listener_hooks: Optional[list[Any]] = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - OPTION_NAMES - {"all_message_trace_enabled", "ping_pong_trace_enabled"})
        if unknown:
            raise TypeError(f"SocketModeClient() got unexpected keyword arguments: {', '.join(unknown)}")
        self.logger = logger or logging.getLogger("slack_socket_mode")
        arguments: dict[str, Any] = {**_DEFAULTS, **options}
        arguments.update(
            app_token=app_token,
            proxy=proxy,
            auto_reconnect_enabled=auto_reconnect_enabled,
            ping_interval=ping_interval,
            trace_enabled=trace_enabled,
            concurrency=concurrency,
            web_client=_sync_twin(web_client, self.logger) if web_client is not None else None,
        )
        checked = check_options(logger=self.logger, **arguments)
        if web_client is None:
            try:
                from slack_sdk.web.async_client import AsyncWebClient  # noqa: PLC0415 - needs aiohttp: optional
            except ImportError as e:  # aiohttp
                raise ConfigurationError(
                    f"the asyncio client builds an AsyncWebClient, which needs aiohttp ({e}); "
                    'pip install "slack-socket-mode[async]", or pass web_client='
                ) from None
            sync = checked.web_client
            web_client = AsyncWebClient(base_url=sync.base_url, timeout=sync.timeout, ssl=sync.ssl, proxy=sync.proxy)
        self.web_client = web_client
        self._sync_web_client = checked.web_client
        self._app_token = checked.app_token
        self._proxy = checked.proxy
        self._connect_timeout = checked.connect_timeout
        self.loop = loop
        self.default_auto_reconnect_enabled = auto_reconnect_enabled
        self.ping_interval = ping_interval
        self.trace_enabled = trace_enabled
        self.message_listeners: list[Any] = []
        self.socket_mode_request_listeners: list[Any] = []
        self.on_message_listeners: list[Any] = list(on_message_listeners or [])
        self.on_error_listeners: list[Any] = list(on_error_listeners or [])
        self.on_close_listeners: list[Any] = list(on_close_listeners or [])
        self.lifecycle_listeners: list[Any] = list(lifecycle_listeners or [])
        #: Listener hooks (see :mod:`slack_socket_mode.listeners`): ``start(request)`` and
        #: ``complete(request, error)`` around each envelope's listeners, in the task that runs them;
        #: what a hook method returns is awaited if awaitable. The defaults (``add_default_hook``) first.
        self.listener_hooks: list[Any] = [*default_hooks(), *(listener_hooks or [])]
        self._connect_lock: Optional[asyncio.Lock] = None
        self._prefix = f"slack_socket_mode-aio{next(_numbers)}"
        self._side = _EngineSide(self)
        self._listeners = AsyncListeners(self, self.logger, prefix=self._prefix, slow_start=checked.slow_queue_warning)
        if loop is not None:
            self._listeners.bind(loop)
        self._engine = Engine(self._side, checked, listeners=self._listeners, prefix=self._prefix, logger=self.logger)
        # the parts (tests and benchmarks may look inside them, as into the thread client's)
        self._session, self._acks, self._dispatcher = self._engine.session, self._engine.acks, self._engine.dispatcher

    # ---- what the engine's threads call --------------------------------------------------------

    def issue_url_now(self) -> str:
        """A fresh URL for the session thread (blocking): the app's override of :meth:`issue_new_wss_url` runs
        on the loop (within ``connect_timeout``); else ``apps.connections.open`` is called here."""
        override = type(self).issue_new_wss_url is not SocketModeClient.issue_new_wss_url
        loop = self._listeners.loop
        if override and loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.issue_new_wss_url(), loop)
            try:
                return str(future.result(self._connect_timeout))
            finally:
                future.cancel()
        return self._engine.issue_url(self._sync_web_client, self._app_token)

    # ---- slack_sdk's asyncio interface ---------------------------------------------------------

    @property
    def app_token(self) -> str:
        """The app-level token (not stored in ``vars(client)``; never logged)."""
        return self._app_token.reveal()

    @property
    def connect_operation_lock(self) -> asyncio.Lock:
        """slack_sdk's attribute (made on first use, on the loop); this client never takes it."""
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        return self._connect_lock

    @property
    def hello(self) -> Optional[Hello]:
        """The latest ``hello``, or None."""
        return self._side.hello

    @property
    def message_tap(self) -> Optional[Callable[[int, str], None]]:
        """Called with ``(connection id, text)`` for each text message read, on its reader thread; or None."""
        return self._side.message_tap

    @message_tap.setter
    def message_tap(self, tap: Optional[Callable[[int, str], None]]) -> None:
        self._side.message_tap = tap

    def __repr__(self) -> str:
        live = self._engine.session.live_count
        return f"<slack_socket_mode.aio.SocketModeClient {self._prefix} state={self.state.value} connections={live}>"

    async def __aenter__(self) -> SocketModeClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def _bind_running_loop(self) -> None:
        if self._listeners.loop is None or self._listeners.loop.is_closed():
            self.loop = asyncio.get_running_loop()
            self._listeners.bind(self.loop)

    async def is_connected(self) -> bool:
        """True while at least one connection has said ``hello`` and is open."""
        return self._engine.session.live_count > 0

    @property
    def current_session(self) -> Optional[Connection]:
        """The newest open connection, or None: what slack_sdk's asyncio clients keep as their WebSocket.

        Here a :class:`slack_socket_mode.connection.Connection`, for :meth:`build_session_id` and
        logs: it has none of aiohttp's or websockets' methods. Read without a lock, from any thread.
        """
        return self._engine.session.primary()

    @classmethod
    def build_session_id(cls, session: Optional[object]) -> str:
        """slack_sdk's asyncio clients' id of a session: "" for None, else ``"s_"`` and its hash, as theirs."""
        return "" if session is None else "s_" + str(hash(session))

    async def session_id(self) -> str:
        """An identifier of the newest open connection, or "" (slack_sdk's value when there is none)."""
        conn = self._engine.session.primary()
        return "" if conn is None else f"{self._prefix}-{conn.id}"

    async def issue_new_wss_url(self) -> str:
        """Call ``apps.connections.open`` (on a thread) and return the new single-use URL.

        Raises:
            AuthError, RateLimitedError, ConnectionFailedError, InsecureURLError: as the thread client's.
        """
        issue = functools.partial(self._engine.issue_url, self._sync_web_client, self._app_token)
        return await _off_loop(f"{self._prefix}-issue_url", issue)

    async def connect(self, timeout: Optional[float] = 30.0) -> None:
        """Open the connections and return once one has said ``hello``; listeners run on the running loop.

        Raises:
            FatalError: retrying cannot help (:class:`~slack_socket_mode.errors.AuthError`, …).
            ConnectTimeoutError: no ``hello`` within ``timeout`` seconds.
            SocketModeError: the client was closed, or close()/disconnect() interrupted the wait.
        """
        self._bind_running_loop()
        auto = bool(self.default_auto_reconnect_enabled)
        await _off_loop(
            f"{self._prefix}-connect", functools.partial(self._engine.connect, timeout, auto_reconnect=auto)
        )

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        """Connect if not connected; with ``force``, replace every connection (make-before-break)."""
        self._bind_running_loop()
        auto = bool(self.default_auto_reconnect_enabled)
        step = functools.partial(self._engine.connect_to_new_endpoint, force, auto_reconnect=auto)
        await _off_loop(f"{self._prefix}-connect", step)

    async def disconnect(self) -> None:
        """Close every connection (close frames, bounded handshake) and stop reconnecting."""
        await _off_loop(f"{self._prefix}-disconnect", self._engine.disconnect)

    async def close(self, timeout: float = 5.0) -> None:
        """Shut down for good within ``timeout`` seconds, as the thread client's ``close()``.

        Running listeners (coroutines on the loop, which keeps running meanwhile) finish and their
        acks are sent; a listener that awaits this is not waited for. Idempotent.
        """
        own = in_listener.get()
        await _off_loop(f"{self._prefix}-close", functools.partial(self._engine.close, timeout, from_listener=own))

    async def send_socket_mode_response(self, response: Union[dict[str, Any], SocketModeResponse]) -> None:
        """Ack an envelope, routed as the thread client routes it; returns once the ack is written (or kept).

        Written on the loop when that cannot wait, else on an ``aio_ack`` thread while this awaits.

        Raises:
            ValueError: the response has no ``envelope_id``.
        """
        future = self._engine.acks.send_response(response, self._listeners.handoff)
        if future is not None:
            await asyncio.wrap_future(future)

    async def send_message(self, message: str) -> None:
        """Send a text message (an ack is routed like :meth:`send_socket_mode_response`), on an ``aio_ack`` thread.

        Raises:
            NotConnectedError: no open connection (for a message that is not an ack); a
                :class:`slack_socket_mode.NotConnectedError` and a ``ConnectionError``.
        """
        try:
            await asyncio.wrap_future(
                self._listeners.handoff(functools.partial(self._engine.acks.send_message, message))
            )
        except errors.NotConnectedError as e:
            raise NotConnectedError(*e.args) from None

    async def enqueue_message(self, message: str) -> None:
        """Handle ``message`` as if a connection had received it (see the thread client's).

        Raises:
            SocketModeError: the client is closed.
        """
        self._bind_running_loop()
        await _off_loop(f"{self._prefix}-enqueue", functools.partial(self._engine.enqueue, message))

    async def process_message(self) -> None:
        """Not used: messages are dispatched as they arrive. Kept for slack_sdk compatibility."""

    async def process_messages(self) -> None:
        """Not used: messages are dispatched as they arrive. Kept for slack_sdk compatibility."""

    async def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        """Await every listener for ``message`` in this task (slack_sdk compatibility)."""
        parsed = parse_message(raw_message)
        if isinstance(parsed, Envelope):
            await self._listeners.envelope_async(parsed, raw_message)

    # ---- visible state -------------------------------------------------------------------------

    @property
    def num_connections(self) -> Optional[int]:
        """``num_connections`` from the latest ``hello``."""
        return self.hello.num_connections if self.hello else None

    @property
    def debug_info(self) -> dict[str, Any]:
        """``debug_info`` from the latest ``hello``."""
        return self.hello.debug_info if self.hello else {}

    @property
    def approximate_connection_time(self) -> Optional[float]:
        """Seconds Slack expects the latest connection to last, from its ``hello``."""
        return self.hello.approximate_connection_time if self.hello else None

    @property
    def queue_depth(self) -> int:
        """Envelopes received and waiting for a free slot of ``concurrency``."""
        return self._engine.dispatcher.queue_depth

    def stats(self) -> ClientStats:
        """The thread client's snapshot, with the loop's counts (``loop_blocked``, ``loop_delayed``,
        ``envelopes_given_back``). Thread-safe."""
        blocked, delayed, given_back = self._listeners.counts()
        return self._engine.stats()._replace(
            loop_blocked=blocked, loop_delayed=delayed, envelopes_given_back=given_back
        )

    def health(self, max_queue_wait: float = 2.0) -> HealthStatus:
        """As the thread client's :meth:`~slack_socket_mode.SocketModeClient.health`; also unhealthy while the
        loop the listeners run on is closed or not running. Cheap, thread-safe."""
        status = self._engine.health(max_queue_wait)
        loop = self._listeners.loop
        if status.healthy and loop is not None and (loop.is_closed() or not loop.is_running()):
            return status._replace(healthy=False, reason="the event loop the listeners run on is not running")
        return status
