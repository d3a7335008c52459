"""The RTM client: a drop-in for ``slack_sdk.rtm_v2.RTMClient``, on the Socket Mode client's engine.

A facade over the same :class:`~slack_socket_mode.engine.Engine` as
:class:`~slack_socket_mode.SocketModeClient`: the connection, its reader, the ``health`` and
``session`` threads, liveness, reconnects with backoff, full jitter and the storm floor, the
dispatcher (inline on the reader, a worker pool of ``concurrency``), the bounded ``close()``, the
proxy and TLS options and the redaction of tokens are the Socket Mode client's. What is RTM's
own is given to the engine as a :class:`~slack_socket_mode.wire.Wire`
(:func:`~slack_socket_mode.rtm.protocol.rtm_wire`): ``rtm.connect``, the JSON ping, routing by
``type``, ``hello`` and ``goodbye``; and the listeners' shape (:mod:`slack_socket_mode.rtm.listeners`).

One connection at a time (every RTM connection gets every event of the workspace), replaced
make-before-break on ``goodbye``, when found dead (no pong within ``ping_timeout``, no frame for
``receive_timeout``) or when lost. See https://api.slack.com/rtm.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import re
import threading
from typing import Any, Callable, Optional, Union

from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient

from ..boundary import call_error
from ..client import SocketModeClient
from ..connection import Connection
from ..engine import Engine, EngineView
from ..errors import FATAL_API_ERRORS, FatalError, NotConnectedError, SocketModeError, detached
from ..lifecycle import ClientState
from ..listeners import ListenerList
from ..messages import Envelope, Hello
from ..options import OPTION_NAMES, TokenRule, check_options
from ..redaction import RedactingFilter, Secret
from ..stats import ClientStats, HealthStatus
from .errors import RTMAuthError
from .listeners import RTMListeners, typed_listener
from .protocol import parse_event, rtm_wire

__all__ = ["RTMClient"]

_numbers = itertools.count(1)

#: A bot or user token: ``xoxb-`` or ``xoxp-`` and printable ASCII with no spaces.
_TOKEN_RULE = TokenRule(
    re.compile(r"xox[bp]-[\x21-\x7e]+"),
    "token",
    "a bot or user token: 'xoxb-' or 'xoxp-' followed by printable characters with no spaces",
    "the RTM API takes a classic app's bot token (or a user token), from OAuth & Permissions",
)

#: The Socket Mode client's defaults, by option name (written once, in its signature).
_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(SocketModeClient.__init__).parameters.items()
    if name in OPTION_NAMES and parameter.default is not inspect.Parameter.empty
}
#: The Socket Mode options that an RTM client takes as keywords too, with the same meaning.
_EXTRA_OPTIONS = frozenset(
    {
        "ping_timeout",
        "receive_timeout",
        "reconnect_policy",
        "connect_timeout",
        "hello_timeout",
        "drain_timeout",
        "close_timeout",
        "write_timeout",
        "max_message_size",
        "max_queue",
        "slow_queue_warning",
        "worker_idle_timeout",
        "inline_dispatch",
        "handoff_after",
        "allow_insecure_urls",
        "proxy_headers",
        "ssl_context",
    }
)


class _EngineSide:
    """What the engine calls on its facade (:class:`slack_socket_mode.engine.Facade`), for the RTM client.

    The listener lists are the client's, read at each call (``message_listeners`` is called by
    :class:`~.listeners.RTMListeners` with the RTM shape; none is a Socket Mode request listener).
    """

    def __init__(self, client: RTMClient) -> None:
        self._client = client
        self.hello: Optional[Hello] = None
        self.message_tap: Optional[Callable[[int, str], None]] = None
        self.socket_mode_request_listeners: list[Any] = []

    @property
    def message_listeners(self) -> list[Any]:
        return self._client.message_listeners

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
        """A fresh URL, on the session thread: the client's (an app's override of it runs)."""
        return self._client.issue_new_wss_url()


def _goodbye_listener(client: RTMClient, event: dict[str, Any]) -> None:
    """slack_sdk's first listener: says so on ``goodbye`` (the engine replaces the connection itself)."""
    if event.get("type") == "goodbye":
        client.logger.info("Got a goodbye message; a new connection replaces this one (make-before-break)")


class RTMClient(EngineView):
    """An RTM API client with slack_sdk's ``rtm_v2.RTMClient`` interface, on the Socket Mode client's engine.

    Replace ``from slack_sdk.rtm_v2 import RTMClient`` with ``from slack_socket_mode.rtm import RTMClient``.

    Args:
        token: a bot (``xoxb-…``) or user (``xoxp-…``) token of a classic app; never logged. May be
            omitted when ``web_client`` has one.
        web_client: the ``WebClient`` for ``rtm.connect``, ``auth.test`` and the listeners
            (``client.web_client``); default: one with ``token``, ``base_url``, ``timeout``, ``ssl``,
            ``proxy`` and ``headers``.
        auto_reconnect_enabled: reopen a dropped connection (``goodbye`` is always followed).
        ssl: an ``ssl.SSLContext`` for the WebSocket and the built ``WebClient``.
        proxy: a proxy URL for the WebSocket and the built ``WebClient``.
        timeout: seconds for each Web API call of the built ``WebClient``.
        base_url: the Web API's base URL (``https://slack.com/api/``).
        headers: extra HTTP headers of the built ``WebClient``.
        ping_interval: seconds between our ``{"type": "ping"}`` messages; None disables them.
        concurrency: events whose listeners run at once.
        logger: where to log (default ``logging.getLogger("slack_socket_mode.rtm")``).
        on_message_listeners: called with each raw text message, a ``str``, on the reader.
        on_error_listeners: called with each :class:`~slack_socket_mode.errors.ConnectionFailedError`
            and :class:`~slack_socket_mode.errors.FatalError`.
        on_close_listeners: called with ``(code, reason)`` when a connection ends.
        trace_enabled: log messages (up to 1,000 characters) and pings at DEBUG, tokens redacted.
        all_message_trace_enabled: log messages whole at DEBUG, tokens redacted.
        ping_pong_trace_enabled: log pings and pongs at DEBUG.
        lifecycle_listeners: called with each :class:`~slack_socket_mode.lifecycle.Transition`.
        options: the Socket Mode client's keyword options of the same names and meaning:
            ``ping_timeout`` (3 s), ``receive_timeout`` (10 s), ``reconnect_policy``, ``connect_timeout``,
            ``hello_timeout``, ``drain_timeout``, ``close_timeout``, ``write_timeout``,
            ``max_message_size``, ``max_queue``, ``slow_queue_warning``, ``worker_idle_timeout``,
            ``inline_dispatch``, ``handoff_after``, ``allow_insecure_urls``, ``proxy_headers``,
            ``ssl_context`` (the WebSocket's, when it differs from ``ssl``).

    Raises:
        ConfigurationError: invalid options, or a token that is neither ``xoxb-…`` nor ``xoxp-…``
            (also slack_sdk's ``SlackClientConfigurationError``).
        TypeError: an option of an unknown name.

    Listeners: ``message_listeners`` are called with ``(client, event: dict)`` for each event,
    on the reader that read it or a worker (at most ``concurrency`` at once); register them with
    :meth:`on`. A listener that raises is logged, and the others run.

    Thread-safety: every method may be called from any thread, listeners included.
    """

    def __init__(
        self,
        *,
        token: Optional[str] = None,
        web_client: Optional[WebClient] = None,
        auto_reconnect_enabled: bool = True,
        ssl: Any = None,
        proxy: Optional[str] = None,
        timeout: int = 30,
        base_url: str = WebClient.BASE_URL,
        headers: Optional[dict[str, str]] = None,
        ping_interval: Optional[float] = 5,
        concurrency: int = 10,
        logger: Optional[logging.Logger] = None,
        on_message_listeners: Optional[list[Callable[[str], None]]] = None,
        on_error_listeners: Optional[list[Callable[[Exception], None]]] = None,
        on_close_listeners: Optional[list[Callable[[int, Optional[str]], None]]] = None,
        trace_enabled: bool = False,
        all_message_trace_enabled: bool = False,
        ping_pong_trace_enabled: bool = False,
        lifecycle_listeners: Optional[list[Callable[..., Any]]] = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - _EXTRA_OPTIONS)
        if unknown:
            raise TypeError(f"RTMClient() got unexpected keyword arguments: {', '.join(unknown)}")
        self.logger = logger or logging.getLogger("slack_socket_mode.rtm")
        if token is None and web_client is not None and isinstance(getattr(web_client, "token", None), str):
            token = web_client.token
        if isinstance(token, str):
            token = token.strip()
        if web_client is None:
            web_logger = logging.getLogger(f"{self.logger.name}.web_client")
            if not any(isinstance(f, RedactingFilter) for f in web_logger.filters):
                web_logger.addFilter(RedactingFilter())  # a peer's answer may echo the request's headers
            web_client = WebClient(
                token=token if isinstance(token, str) else None,  # any other value: refused by check_options
                base_url=base_url,
                timeout=timeout,
                ssl=ssl,
                proxy=proxy,
                headers=headers,
                logger=web_logger,
            )
        arguments: dict[str, Any] = {**_DEFAULTS, **options}
        arguments.update(
            app_token=token,
            web_client=web_client,
            base_url=None,
            proxy=proxy,
            ping_interval=ping_interval,
            concurrency=concurrency,
            auto_reconnect_enabled=auto_reconnect_enabled,
            trace_enabled=trace_enabled,
            all_message_trace_enabled=all_message_trace_enabled,
            ping_pong_trace_enabled=ping_pong_trace_enabled,
            connections=1,  # every RTM connection gets every event: one at a time
            dedupe=False,  # no envelope ids
        )
        if arguments.get("ssl_context") is None:
            arguments["ssl_context"] = ssl
        checked = check_options(logger=self.logger, token_rule=_TOKEN_RULE, **arguments)
        self._token: Secret = checked.app_token
        self._proxy = checked.proxy
        self.web_client = checked.web_client
        self.ssl = ssl
        self.timeout = timeout
        self.base_url = str(getattr(self.web_client, "base_url", base_url))
        self.headers = headers
        self.ping_interval = ping_interval
        self.concurrency = concurrency
        self.trace_enabled = trace_enabled
        self.all_message_trace_enabled = all_message_trace_enabled
        self.ping_pong_trace_enabled = ping_pong_trace_enabled
        self.default_auto_reconnect_enabled = auto_reconnect_enabled
        #: The bot's id from ``auth.test`` (on the first :meth:`connect`): its own events are not
        #: handed to :meth:`on` listeners. None before, or for a user token.
        self.bot_id: Optional[str] = None
        self.message_listeners: list[Any] = ListenerList("message_listeners", [_goodbye_listener])
        self.socket_mode_request_listeners: list[Any] = []
        self.on_message_listeners: list[Any] = ListenerList("on_message_listeners", on_message_listeners or [])
        self.on_error_listeners: list[Any] = ListenerList("on_error_listeners", on_error_listeners or [])
        self.on_close_listeners: list[Any] = ListenerList("on_close_listeners", on_close_listeners or [])
        self.lifecycle_listeners: list[Any] = ListenerList("lifecycle_listeners", lifecycle_listeners or [])
        # slack_sdk's attribute, kept for code that takes it; this client never does.
        self.connect_operation_lock = threading.Lock()
        self._prefix = f"slack_socket_mode-rtm{next(_numbers)}"
        self._side = _EngineSide(self)
        self._listeners = RTMListeners(self, self._side, self.logger)
        self._engine = Engine(
            self._side,
            checked,
            listeners=self._listeners,
            prefix=self._prefix,
            logger=self.logger,
            wire=rtm_wire(self._side),
        )
        self._session = self._engine.session

    # ---- slack_sdk's attributes ------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The bot or user token (not stored in ``vars(client)``; never logged)."""
        return self._token.reveal()

    @property
    def current_session(self) -> Optional[Connection]:
        """The connection that serves now (a :class:`~slack_socket_mode.connection.Connection`), or None."""
        return self._session.primary()

    @property
    def message_workers(self) -> Any:
        """The worker pool (a ``ThreadPoolExecutor`` of ``concurrency`` threads, started on demand)."""
        return self._engine.dispatcher.workers

    def __repr__(self) -> str:
        live = self._session.live_count
        return f"<slack_socket_mode.rtm.RTMClient {self._prefix} state={self.state.value} connections={live}>"

    # ---- listeners -------------------------------------------------------------------------------

    def on(self, event_type: str) -> Callable[..., Any]:
        """Register a listener for events of ``event_type`` (``"message"``, ``"reaction_added"``, ``"*"``: all).

        Use it as a decorator (``@rtm.on("message")``) or a call (``rtm.on("message")(func)``);
        ``func(client, event)`` is returned unchanged. Events the bot itself caused (their
        ``bot_id`` is :attr:`bot_id`) are not given to it.

        Raises:
            ConfigurationError: (when applied) ``func`` is not callable or does not take ``(client, event)``
                (also slack_sdk's ``SlackClientError``).
        """

        def register(func: Any) -> Any:
            self.message_listeners.append(typed_listener(self, event_type, func))
            return func

        return register

    # ---- connections -----------------------------------------------------------------------------

    def is_connected(self) -> bool:
        """True while a connection has said ``hello`` and is open."""
        return self._session.live_count > 0

    def session_id(self) -> Optional[str]:
        """An identifier of the connection that serves now, or None."""
        conn = self._session.primary()
        return None if conn is None else f"{self._prefix}-{conn.id}"

    def issue_new_wss_url(self) -> str:
        """Call ``rtm.connect`` and return the new URL (called on the session thread for each connection).

        Raises:
            RTMAuthError: the token was refused (``invalid_auth``, ``not_allowed_token_type``, …).
            RateLimitedError: HTTP 429; the engine waits ``retry_after`` seconds (it never sleeps here).
            ConnectionFailedError: any other failure.
            InsecureURLError: the URL is neither ``wss://`` nor ``ws://`` on loopback.
        """
        return self._engine.issue_url(self.web_client, self._token)

    def connect(self, timeout: Optional[float] = 30.0) -> None:
        """Open a connection and return once it has said ``hello`` (within ``timeout`` seconds).

        The first call asks ``auth.test`` for :attr:`bot_id`. Resets ``auto_reconnect_enabled``
        to ``default_auto_reconnect_enabled``, as slack_sdk does.

        Raises:
            ConnectionFailedError: ``auth.test`` failed below HTTP (network, TLS): call it again.
            RTMAuthError: Slack refused the token (a :class:`~slack_socket_mode.errors.FatalError`; also
                slack_sdk's ``SlackApiError``).
            FatalError: retrying cannot help.
            ConnectTimeoutError: no ``hello`` within ``timeout`` seconds.
            SocketModeError: the client was closed, or close()/disconnect() interrupted the wait.
        """
        if self.closed:
            raise SocketModeError("the client is closed; create a new one")
        if self.bot_id is None:
            self.bot_id = self._auth_test()
        self._engine.connect(timeout, auto_reconnect=bool(self.default_auto_reconnect_enabled))

    def _auth_test(self) -> Optional[str]:
        """``auth.test``'s ``bot_id`` (None for a user token).

        Raises:
            RTMAuthError: the token was refused (also said to the error listeners, once).
            SlackApiError: another refusal, in slack_sdk's words (no request in it).
            ConnectionFailedError: the call failed below HTTP (network, TLS).
        """
        failure: Optional[Exception] = None
        try:
            response = self.web_client.auth_test()
        except SlackApiError as e:
            error = e.response.get("error") if hasattr(e.response, "get") else None
            code = error if isinstance(error, str) else "unknown_error"
            answer = {"ok": False, "error": code}
            url = f"{self.base_url.rstrip('/')}/auth.test"
            message = f"The request to the Slack API failed. (url: {url})\nThe server responded with: {answer}"
            if code in FATAL_API_ERRORS:
                failure = RTMAuthError(message, error=code, response=answer)
            else:
                failure = SlackApiError(message, answer)  # type: ignore[no-untyped-call]
        except Exception as e:  # urllib, socket and TLS errors: ours, naming only the cause's type and text
            failure = call_error(e, method="auth.test")
        if failure is not None:  # raised outside the except clause: nothing of the request chained
            if isinstance(failure, RTMAuthError):
                self.logger.error("RTM stopped: auth.test refused the token: %s", failure.error)
                self._listeners.error(failure)
            raise detached(failure)
        bot_id = response.get("bot_id")
        return bot_id if isinstance(bot_id, str) else None

    def connect_to_new_endpoint(self, force: bool = False) -> None:
        """Connect if not connected; with ``force``, replace the connection (make-before-break)."""
        self._engine.connect_to_new_endpoint(force, auto_reconnect=bool(self.default_auto_reconnect_enabled))

    def start(self) -> None:
        """Connect, then block until :meth:`close` or :meth:`disconnect`, or until the client stops for good.

        Ctrl-C (``KeyboardInterrupt``) closes the client and is raised on.

        Raises:
            FatalError: at connect, or later (the token was revoked): the client stopped for good.
            ConnectTimeoutError, SocketModeError: as :meth:`connect`.
        """
        try:
            try:
                self.connect()
            except SocketModeError as e:
                interrupted = self.state in (ClientState.CLOSING, ClientState.CLOSED, ClientState.DISCONNECTED)
                if isinstance(e, FatalError) or not interrupted:
                    raise
                return  # close() or disconnect() came while connecting: what start() waits for
            session = self._session
            stopped = (ClientState.CLOSED, ClientState.DISCONNECTED, ClientState.FAILED, ClientState.CLOSING)
            with session.lock:
                while session.supervisor.state not in stopped:
                    session.changed.wait()
                fatal = session.fatal
            if fatal is not None:
                raise fatal
        except KeyboardInterrupt:
            self.close()
            raise

    def disconnect(self) -> None:
        """Close the connection (a close frame, a bounded handshake) and stop reconnecting."""
        self._engine.disconnect()

    def close(self, timeout: float = 5.0) -> None:
        """Shut down for good within ``timeout`` seconds: running listeners finish, every thread is joined.

        Idempotent.
        """
        self._engine.close(timeout)

    def send(self, payload: Union[dict[str, Any], str, None]) -> None:
        """Send a message (a dict as JSON, a str as it is) on the connection that serves now; None sends nothing.

        Raises:
            NotConnectedError: no open connection ("The RTM client is not connected to the Slack
                servers"; also slack_sdk's ``SlackClientError``).
        """
        if payload is None:
            return
        text = payload if isinstance(payload, str) else json.dumps(payload)
        conn = self._session.primary()
        if conn is None:
            raise NotConnectedError("The RTM client is not connected to the Slack servers")
        conn.send_text(text)

    # ---- slack_sdk's message processing, kept ---------------------------------------------------

    def enqueue_message(self, message: str) -> None:
        """Run the listeners for ``message`` (a raw RTM message) on a worker, as if a connection had read it.

        Raises:
            SocketModeError: the client is closed.
        """
        event = parse_event(message)
        if event is None:
            self.logger.info("enqueue_message: not a JSON object; ignored")
            return
        self._engine.dispatcher.submit_unconnected(Envelope("", event.type or "", event.body, 0), message)

    def process_message(self) -> None:
        """Not used: messages are dispatched as they arrive. Kept for slack_sdk compatibility."""

    def process_messages(self) -> None:
        """Not used: messages are dispatched as they arrive. Kept for slack_sdk compatibility."""

    def run_message_listeners(self, message: dict[str, Any]) -> None:
        """Call every listener of ``message_listeners`` with ``(self, message)`` on this thread."""
        self._listeners.envelope(Envelope("", str(message.get("type") or ""), message, 0), json.dumps(message))

    def run_all_message_listeners(self, message: str) -> None:
        """Handle a raw message as a connection would: ``on_message_listeners``, then the listeners on a worker."""
        self._listeners.message(message)
        self.enqueue_message(message)

    def run_all_error_listeners(self, error: Exception) -> None:
        """Call ``on_error_listeners`` with ``error``."""
        self._listeners.error(error)

    def run_all_close_listeners(self, code: int, reason: Optional[str] = None) -> None:
        """Call ``on_close_listeners`` with ``(code, reason)``."""
        self._listeners.close(code, reason or "")

    # ---- visible state ---------------------------------------------------------------------------

    def stats(self) -> ClientStats:
        """A consistent snapshot of the client's counters (the Socket Mode client's; envelope counts stay 0)."""
        return self._engine.stats()

    def health(self, max_queue_wait: float = 2.0) -> HealthStatus:
        """Whether the client is connected and its listeners keep up (see ``SocketModeClient.health``)."""
        return self._engine.health(max_queue_wait)
