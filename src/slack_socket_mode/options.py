"""The constructor's options, checked: :func:`check_options` makes a frozen :class:`ClientOptions`.

Every rule about what :class:`~slack_socket_mode.SocketModeClient` accepts lives here: the app-level
token's shape (never echoed in the error), the ranges of the numeric options, the Web API base URL
(``http://`` or ``https://`` with a host: at any other ``apps.connections.open`` can never
succeed, so it is refused, not retried like an outage), the proxy settings
(``proxy=`` or websocket-client's ``http_proxy_*``), the TLS context (the ``WebClient``'s when none is
given, as slack_sdk does), and the ``WebClient`` the client builds when the app passes none. No
threads, no sockets: a bad option raises :class:`~slack_socket_mode.errors.ConfigurationError`
before the client makes anything.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union
from urllib.parse import urlsplit

from slack_sdk.web import WebClient

from .errors import ConfigurationError
from .liveness import Liveness
from .policy import Backoff, ReconnectPolicy
from .redaction import Hidden, RedactingFilter, Secret, redact

if TYPE_CHECKING:
    from .proxies import ProxySettings  # imported when a proxy is configured: most apps have none
    from .shared import SharedStore

__all__ = ["APP_TOKEN_RULE", "OPTION_NAMES", "ClientOptions", "TokenRule", "check_options"]


@dataclass(frozen=True)
class TokenRule:
    """Which token a client connects with: its shape, and what the error says when it is not that.

    Attributes:
        pattern: the whole token must match it.
        name: the parameter, for the message (``app_token``).
        wanted: what it must be, in words (``an app-level token: 'xapp-' followed by …``).
        advice: where to get one.
    """

    pattern: re.Pattern[str]
    name: str
    wanted: str
    advice: str


#: Socket Mode's: an app-level token, ``xapp-`` and printable ASCII with no spaces (what may go in a header).
APP_TOKEN_RULE = TokenRule(
    re.compile(r"xapp-[\x21-\x7e]+"),
    "app_token",
    "an app-level token: 'xapp-' followed by printable characters with no spaces",
    "create one under Basic Information > App-Level Tokens",
)


@dataclass(frozen=True, repr=False)  # no repr: the fields hold credentials
class ClientOptions:
    """The options that :func:`check_options` checked or derived.

    Attributes:
        app_token: the app-level token, redacted.
        proxy: the proxy for the WebSocket, or None (the environment's proxies apply).
        proxy_headers: the extra ``CONNECT`` headers as given (or None), hidden.
        ssl_context: the ``ssl.SSLContext`` for the WebSocket, or None.
        web_client: the app's ``WebClient``, or the one built for it.
        liveness: the ping and timeout rules.
        policy: the reconnect backoff.

    The other attributes are the constructor's options of the same names (``auto_reconnect`` is
    ``auto_reconnect_enabled``), checked; :class:`~slack_socket_mode.engine.Engine` hands each to
    the part that uses it.
    """

    app_token: Secret
    proxy: Optional[ProxySettings]
    proxy_headers: Hidden[Optional[dict[str, str]]]
    ssl_context: Any
    web_client: WebClient
    liveness: Liveness
    policy: ReconnectPolicy
    dedupe: Union[bool, SharedStore]
    auto_reconnect: bool
    connections: int
    concurrency: int
    max_queue: int
    ledger_max_entries: int
    ledger_max_age: float
    max_ack_bytes: int
    handoff_after: float
    inline_dispatch: bool
    slow_queue_warning: float
    worker_idle_timeout: float
    max_message_size: int
    connect_timeout: float
    hello_timeout: float
    drain_timeout: float
    close_timeout: float
    write_timeout: float
    slot_retry_interval: float
    trace_enabled: bool
    all_message_trace_enabled: bool
    ping_pong_trace_enabled: bool
    allow_insecure_urls: bool
    debug_reconnects: bool


def check_options(
    app_token: object,
    *,
    logger: logging.Logger,
    web_client: Optional[WebClient],
    base_url: Optional[str],
    ssl_context: Any,
    proxy: Optional[str],
    proxy_headers: Optional[dict[str, str]],
    http_proxy_host: Optional[str],
    http_proxy_port: Optional[int],
    http_proxy_auth: Optional[tuple[str, str]],
    proxy_type: Optional[str],
    connections: int,
    concurrency: int,
    max_queue: int,
    ledger_max_entries: int,
    ledger_max_age: float,
    max_ack_bytes: int,
    handoff_after: float,
    max_message_size: int,
    receive_buffer_size: int,
    connect_timeout: float,
    ping_interval: Optional[float],
    ping_timeout: float,
    receive_timeout: float,
    reconnect_policy: Optional[ReconnectPolicy],
    dedupe: Union[bool, SharedStore],
    auto_reconnect_enabled: bool,
    inline_dispatch: bool,
    slow_queue_warning: float,
    worker_idle_timeout: float,
    hello_timeout: float,
    drain_timeout: float,
    close_timeout: float,
    write_timeout: float,
    slot_retry_interval: float,
    trace_enabled: bool,
    all_message_trace_enabled: bool,
    ping_pong_trace_enabled: bool,
    allow_insecure_urls: bool,
    debug_reconnects: bool,
    token_rule: TokenRule = APP_TOKEN_RULE,
) -> ClientOptions:
    """Check the constructor's options (see :class:`~slack_socket_mode.SocketModeClient`) and derive the rest.

    ``token_rule`` says which token ``app_token`` must be (:data:`APP_TOKEN_RULE`; the RTM
    client's is a bot or user token). Every other parameter but ``logger`` is the constructor's
    parameter of the same name and type (:data:`OPTION_NAMES`): the constructor passes them on by name, and
    ``tests/test_structure.py`` checks that the two signatures agree.

    Raises:
        ConfigurationError: an invalid option, an app token that is not ``xapp-…``, or a Web API
            base URL (``base_url``, or the ``web_client``'s) that is not ``http(s)://`` with a host.
    """
    if isinstance(app_token, str):
        app_token = app_token.strip()  # a token read from a file or a Kubernetes secret keeps its newline
    if not isinstance(app_token, str) or not token_rule.pattern.fullmatch(app_token):
        raise ConfigurationError(
            f"{token_rule.name} must be {token_rule.wanted} (got {_token_kind(app_token)}); {token_rule.advice}"
        )
    if not 1 <= connections <= 10:
        raise ConfigurationError("connections must be between 1 and 10 (Slack's limit per app)")
    if concurrency < 1:
        raise ConfigurationError("concurrency must be at least 1")
    if max_queue < 1:
        raise ConfigurationError("max_queue must be at least 1")
    if ledger_max_entries < 1:
        raise ConfigurationError("ledger_max_entries must be at least 1")
    if not ledger_max_age > 0:
        raise ConfigurationError("ledger_max_age must be a positive number of seconds")
    if max_ack_bytes < 0:
        raise ConfigurationError("max_ack_bytes must be at least 0")
    if not handoff_after > 0:
        raise ConfigurationError("handoff_after must be a positive number of seconds")
    if max_message_size < 1024:
        raise ConfigurationError("max_message_size must be at least 1024 bytes")
    if not slot_retry_interval > 0:
        raise ConfigurationError("slot_retry_interval must be a positive number of seconds")
    if receive_buffer_size < 16:
        raise ConfigurationError("receive_buffer_size must be at least 16 bytes (as in slack_sdk)")
    proxy_: Optional[ProxySettings] = None  # the environment's proxies apply (see .proxies)
    if proxy or http_proxy_host:
        from .proxies import ProxySettings  # noqa: PLC0415 -- only apps with a proxy pay for it
    if proxy:
        proxy_ = ProxySettings.parse(proxy)
    elif http_proxy_host:
        proxy_ = ProxySettings.from_websocket_client_options(
            http_proxy_host, http_proxy_port, http_proxy_auth, proxy_type
        )
    proxy_headers_ = Hidden(dict(proxy_headers) if proxy_headers else None)
    if proxy_headers:
        if proxy_ is not None and proxy_.is_http:
            proxy_ = proxy_.with_headers(proxy_headers)
        else:
            logger.warning(
                "proxy_headers are sent only to an http:// proxy given with proxy= or http_proxy_host=; ignored"
            )
    if ssl_context is None and web_client is not None:
        ssl_context = getattr(web_client, "ssl", None)  # slack_sdk connects with web_client.ssl too
    if web_client is None:
        web_logger = logging.getLogger(f"{logger.name}.web_client")
        if not any(isinstance(f, RedactingFilter) for f in web_logger.filters):
            web_logger.addFilter(RedactingFilter())  # a peer's answer may echo the request's headers
        web_client = WebClient(
            base_url=base_url or WebClient.BASE_URL,
            proxy=proxy_.url if proxy_ is not None and proxy_.is_http else None,
            ssl=ssl_context,
            timeout=max(1, math.ceil(connect_timeout)),  # slack_sdk's own is 30 s per attempt
            logger=web_logger,
        )
    elif base_url is not None:
        raise ConfigurationError("pass base_url or web_client, not both (set base_url on your WebClient)")
    _check_api_url(getattr(web_client, "base_url", None))
    try:
        liveness = Liveness(ping_interval, ping_timeout, receive_timeout)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None
    return ClientOptions(
        app_token=Secret(app_token),
        proxy=proxy_,
        proxy_headers=proxy_headers_,
        ssl_context=ssl_context,
        web_client=web_client,
        liveness=liveness,
        policy=reconnect_policy if reconnect_policy is not None else Backoff(),
        dedupe=dedupe,
        auto_reconnect=auto_reconnect_enabled,
        connections=connections,
        concurrency=concurrency,
        max_queue=max_queue,
        ledger_max_entries=ledger_max_entries,
        ledger_max_age=ledger_max_age,
        max_ack_bytes=max_ack_bytes,
        handoff_after=handoff_after,
        inline_dispatch=inline_dispatch,
        slow_queue_warning=slow_queue_warning,
        worker_idle_timeout=worker_idle_timeout,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        hello_timeout=hello_timeout,
        drain_timeout=drain_timeout,
        close_timeout=close_timeout,
        write_timeout=write_timeout,
        slot_retry_interval=slot_retry_interval,
        trace_enabled=trace_enabled,
        all_message_trace_enabled=all_message_trace_enabled,
        ping_pong_trace_enabled=ping_pong_trace_enabled,
        allow_insecure_urls=allow_insecure_urls,
        debug_reconnects=debug_reconnects,
    )


#: The constructor's parameters that :func:`check_options` takes, by name (all but ``logger``, which it
#: gets already chosen, and ``token_rule``); the others (the listener lists) stay on the client as they are.
OPTION_NAMES = frozenset(inspect.signature(check_options).parameters) - {"logger", "token_rule"}


def _check_api_url(url: object) -> None:
    """Refuse a Web API base URL that cannot be called: a permanent misconfiguration, not an outage.

    A WebClient-like object without a ``base_url`` str is left alone. The URL is echoed redacted.
    """
    if not isinstance(url, str):
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        problem = "does not parse"
    else:
        if parts.scheme not in ("http", "https"):
            problem = f"has the scheme {parts.scheme!r}" if parts.scheme else "has no scheme"
        elif not parts.hostname:
            problem = "has no host"
        else:
            return
    raise ConfigurationError(
        f"the Web API base_url must be an http:// or https:// URL with a host, such as {WebClient.BASE_URL}; "
        f"{redact(url)[:200]!r} {problem}"
    )


def _token_kind(token: object) -> str:
    """What kind of value ``token`` is, in words that never echo it."""
    if not isinstance(token, str):
        return type(token).__name__
    if not token:
        return "an empty string"
    kind = Secret(token).kind
    if kind == "xapp":
        return "an xapp- token with spaces or control characters in it"
    return f"a {kind}- token" if kind != "secret" else "a value of another shape"
