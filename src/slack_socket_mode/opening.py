"""Opening connections: the URL from ``apps.connections.open``, and the :class:`~.connection.Connection` to it.

Which Web API method issues the URL is a :class:`UrlMethod` the connector is given:
:data:`SOCKET_MODE_URLS` (``apps.connections.open`` with the app-level token) by default; the
RTM client (:mod:`slack_socket_mode.rtm`) gives its own (``rtm.connect`` with a bot or user token).

:class:`Connector` keeps what every connection of a client is opened with (the proxy, TLS, the size
bound, the trace flags) and makes each one. Its errors are mapped at the one boundary,
:mod:`slack_socket_mode.boundary`; what leaves this module is one of our own
:class:`~slack_socket_mode.errors.SocketModeError` classes, raised outside the ``except`` clause
that caught the cause, so that nothing the request held (its ``Authorization`` header, the
``WebClient``) stays reachable from it.

No thread and no lock of the client's is used here: the ``session`` thread calls
:meth:`Connector.issue_url` and :meth:`Connector.connection` with no lock held.

One open attempt, one owner of its sockets (:class:`OpenAttempt`): slack_sdk's urllib call,
websocket-client's TCP, proxy and TLS steps and python-socks all make their sockets inside and
hand none back until they are done, so a peer that trickles (each byte within the per-read
timeout) could hold the attempt for ever. Every one of them connects through
``socket.connect``, which raises the standard ``socket.connect`` audit event (PEP 578) on the
thread that connects: while the ``session`` thread runs an attempt, each socket it connects is
adopted by that attempt at once, before a byte is sent, and :meth:`OpenAttempt.abort` (the
health thread at the deadline, or ``close()``) shuts them all down, which wakes any read
blocked on them.
"""

from __future__ import annotations

import copy
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryHandler, RetryState
from slack_sdk.web import WebClient

from .boundary import api_error, call_error
from .connection import Connection
from .ends import End
from .errors import AuthError, ConnectionFailedError, SocketModeError
from .redaction import Hidden, Secret
from .urls import check_socket_url

if TYPE_CHECKING:
    from .proxies import ProxySettings  # imported when a proxy is configured: most apps have none

__all__ = ["SOCKET_MODE_URLS", "Connector", "OpenAttempt", "UrlMethod"]

#: Characters of each message logged by ``trace_enabled`` (``all_message_trace_enabled``: all of it).
_TRACE_SOME = 1000
_TRACE_ALL = 1 << 62


@dataclass(frozen=True)
class UrlMethod:
    """The Web API method that issues each connection's single-use URL, and what its refusals mean.

    Attributes:
        name: the method's name, for messages (``apps.connections.open``).
        call: ``(web_client, token) -> response``: calls it with the token (a ``SlackResponse``
            whose ``"url"`` is the URL); raises what slack_sdk raises.
        token_kind: the token it is called with, for messages (``the app-level token``).
        auth_error: the :class:`~.errors.AuthError` class raised when the token is refused.

    Immutable and thread-safe.
    """

    name: str
    call: Callable[[WebClient, str], Any]
    token_kind: str
    auth_error: type[AuthError] = AuthError


def _apps_connections_open(web_client: WebClient, token: str) -> Any:
    return web_client.apps_connections_open(app_token=token)


#: Socket Mode's: ``apps.connections.open`` with the app-level token (``xapp-…``).
SOCKET_MODE_URLS = UrlMethod("apps.connections.open", _apps_connections_open, "the app-level token")


class OpenAttempt:
    """The sockets one open attempt connects (Web API call, proxy, TLS, handshake): another thread can cut them off.

    The thread that runs the attempt enters :meth:`owning`; while it is inside, every socket
    that thread connects is adopted (a duplicate of its file descriptor is kept, so that a
    socket library that hands its descriptor on to an ``SSLSocket`` or closes it stays
    reachable and no descriptor number is ever reused under us). :meth:`abort` shuts every
    adopted socket down (``SHUT_RDWR``: a blocked ``recv`` returns at once) and makes any later
    connect of the attempt fail. Leaving :meth:`owning` closes the duplicates (the sockets
    themselves stay with whoever made them).

    Thread-safety: :meth:`abort` may be called from any thread, at any time, any number of times.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _adopted, _aborted and _ended; no blocking call under it
        self._adopted: list[socket.socket] = []
        self._aborted = False
        self._ended = False
        self.retried_after: Optional[BaseException] = None  # the error a Web API retry followed, if one did

    @property
    def aborted(self) -> bool:
        """True once :meth:`abort` was called."""
        return self._aborted

    @contextmanager
    def owning(self) -> Iterator[OpenAttempt]:
        """Adopt every socket the calling thread connects until the block ends."""
        _install_audit_hook()
        _attempt_of_thread.current = self
        try:
            yield self
        finally:
            _attempt_of_thread.current = None
            self.retried_after = None  # it holds a traceback: not kept past the attempt
            with self._lock:
                self._ended = True
                adopted, self._adopted = self._adopted, []
            for dup in adopted:
                dup.close()

    def abort(self) -> None:
        """Shut down every socket of the attempt now; a connect still to come fails. Never blocks."""
        with self._lock:
            self._aborted = True
            adopted = list(self._adopted)
        for dup in adopted:
            _shut(dup)

    def _adopt(self, sock: socket.socket) -> None:
        """Called on the attempt's thread as it connects ``sock``, before any byte goes out."""
        with self._lock:
            if self._aborted:
                raise _Refused("the open attempt was aborted (deadline passed, or the client is closing)")
            if self._ended:
                return
            self._adopted.append(sock.dup())


class _Refused(ConnectionAbortedError):
    """A connect by an aborted open attempt (raised by the audit hook, so the connect never happens)."""


_attempt_of_thread = threading.local()  # .current: the OpenAttempt the thread runs, or None
_hook_lock = threading.Lock()
_hook_installed = False


def _install_audit_hook() -> None:
    """Install the ``socket.connect`` audit hook, once per process (an audit hook cannot be removed).

    It costs one comparison per audit event for threads that run no open attempt.
    """
    global _hook_installed  # noqa: PLW0603 -- one hook per process, whatever the number of clients
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_on_audit_event)
            _hook_installed = True


def _on_audit_event(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        attempt: Optional[OpenAttempt] = getattr(_attempt_of_thread, "current", None)
        if attempt is not None and isinstance(args[0], socket.socket):
            attempt._adopt(args[0])


class _UnlessAborted(RetryHandler):
    """One of the WebClient's retry handlers, declining once the calling thread's open attempt is aborted.

    slack_sdk's retries sleep before they try again (``ConnectionErrorRetryHandler``: up to
    1.5 s), and a sleep cannot be cut short: an aborted attempt must not start one.
    """

    def __init__(self, handler: RetryHandler) -> None:
        super().__init__(max_retry_count=handler.max_retry_count, interval_calculator=handler.interval_calculator)
        self._handler = handler

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: Optional[HttpResponse] = None,
        error: Optional[Exception] = None,
    ) -> bool:
        attempt: Optional[OpenAttempt] = getattr(_attempt_of_thread, "current", None)
        if attempt is not None and attempt.aborted:
            return False
        retry = self._handler.can_retry(state=state, request=request, response=response, error=error)
        if retry and attempt is not None and error is not None:
            attempt.retried_after = error  # if the retry is refused (aborted meanwhile), this is the error to report
        return retry

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: Optional[HttpResponse] = None,
        error: Optional[Exception] = None,
    ) -> None:
        self._handler.prepare_for_next_attempt(state=state, request=request, response=response, error=error)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected yet, or already closed by the peer
        pass


class Connector:
    """Makes the client's connections: a fresh URL, then a :class:`Connection` to it, with the transport options.

    Args:
        prefix: the client's thread-name prefix (``slack_socket_mode-<n>``).
        logger: where to log.
        proxy: the proxy for the WebSocket, or None (the environment's proxies apply).
        ssl_context: an ``ssl.SSLContext`` for the WebSocket, or None.
        max_message_size: bytes; a larger inbound message replaces its connection.
        write_timeout: seconds a write may take before its connection is given up.
        trace_enabled: log messages (up to 1,000 characters) and pings at DEBUG.
        all_message_trace_enabled: log messages whole at DEBUG.
        ping_pong_trace_enabled: log pings and pongs at DEBUG.
        allow_insecure_urls: allow ``ws://`` URLs to non-loopback hosts.
        debug_reconnects: add Slack's ``debug_reconnects=true`` to each issued URL.
        url_method: the Web API method that issues the URLs (:data:`SOCKET_MODE_URLS` by default).
        hold_acks: the connections' ``hold_acks`` (:class:`~slack_socket_mode.connection.Connection`).
        on_unsent: the connections' ``on_unsent``: where held acks a connection could not write go.

    Thread-safety: immutable once made; any thread may call it.
    """

    def __init__(
        self,
        *,
        prefix: str,
        logger: logging.Logger,
        proxy: Optional[ProxySettings],
        ssl_context: Any,
        max_message_size: int,
        write_timeout: float,
        trace_enabled: bool,
        all_message_trace_enabled: bool,
        ping_pong_trace_enabled: bool,
        allow_insecure_urls: bool,
        debug_reconnects: bool,
        url_method: UrlMethod = SOCKET_MODE_URLS,
        hold_acks: bool = True,
        on_unsent: Optional[Callable[[list[str]], None]] = None,
    ) -> None:
        self._prefix = prefix
        self._hold_acks = hold_acks
        self._on_unsent = on_unsent
        self._url_method = url_method
        self._logger = logger
        self._max_message_size = max_message_size
        self._write_timeout = write_timeout
        self._trace_limit: Optional[int] = (
            _TRACE_ALL if all_message_trace_enabled else (_TRACE_SOME if trace_enabled else None)
        )
        self._trace_pings = trace_enabled or ping_pong_trace_enabled
        self.allow_insecure_urls = allow_insecure_urls
        self._debug_reconnects = debug_reconnects
        self._connect_options = Hidden(proxy.websocket_options() if proxy is not None else {})
        self._open_socket = proxy.open_tunnel if proxy is not None and proxy.has_headers else None
        self._sslopt = {"context": ssl_context} if ssl_context is not None else None
        if ssl_context is not None and (
            getattr(ssl_context, "verify_mode", None) == ssl.CERT_NONE
            or not getattr(ssl_context, "check_hostname", True)
        ):
            logger.warning(
                "ssl_context: certificate verification is off; anyone on the network path can read and forge envelopes"
            )

    def issue_url(self, web_client: WebClient, app_token: Secret) -> str:
        """Call the connector's :class:`UrlMethod` (``apps.connections.open``); return the new single-use URL (checked).

        Raises:
            AuthError: the token was refused (``invalid_auth``, ``token_revoked``, …): the
                method's ``auth_error`` class.
            RateLimitedError: HTTP 429; ``retry_after`` says how long to wait.
            ConnectionFailedError: any other failure (network, ``internal_error``).
            InsecureURLError: the URL is neither ``wss://`` nor ``ws://`` on loopback.
        """
        # The error is raised after the except clause, so that it keeps no __context__: slack_sdk's
        # exception holds the response, the request's Authorization header and the WebClient.
        failure: Optional[SocketModeError] = None
        # The same client, but its retry handlers never retry (nor sleep first) once the attempt is aborted
        call = web_client
        handlers = getattr(web_client, "retry_handlers", None)
        if isinstance(handlers, list) and handlers:
            call = copy.copy(web_client)
            call.retry_handlers = [_UnlessAborted(handler) for handler in handlers]
        method = self._url_method
        try:
            response = method.call(call, app_token.reveal())
        except SlackApiError as e:
            failure = api_error(e, method=method.name, token_kind=method.token_kind, auth_error=method.auth_error)
        except Exception as e:  # urllib, socket and TLS errors from the Web API call
            attempt: Optional[OpenAttempt] = getattr(_attempt_of_thread, "current", None)
            cause: BaseException = e
            if isinstance(getattr(e, "reason", e), _Refused) and attempt is not None and attempt.retried_after:
                cause = attempt.retried_after  # the retry was refused (aborted): the error before it says why
            failure = call_error(cause, method=method.name)
            del cause
        if failure is not None:
            raise failure
        url = response.get("url")
        del response  # the request's headers: not in this frame's locals when an error below is raised
        if not isinstance(url, str):
            raise ConnectionFailedError(f"{method.name} returned no url", error="no_url")
        check_socket_url(url, allow_insecure=self.allow_insecure_urls)
        if self._debug_reconnects and "debug_reconnects=" not in url:
            url += ("&" if "?" in url else "?") + "debug_reconnects=true"
        return url

    def connection(
        self,
        connection_id: int,
        url: str,
        *,
        on_text: Callable[[Connection, str], None],
        on_closed: Callable[[Connection, End], None],
    ) -> Connection:
        """A new :class:`Connection` to ``url``, not yet open (its reader is ``<prefix>-reader-<id>``)."""
        from .connection import Connection  # noqa: PLC0415 -- connection.py uses this module's error mapping

        return Connection(
            connection_id,
            url,
            on_text=on_text,
            on_closed=on_closed,
            logger=self._logger,
            thread_name=f"{self._prefix}-reader-{connection_id}",
            max_message_size=self._max_message_size,
            connect_options=self._connect_options.value,
            sslopt=self._sslopt,
            write_timeout=self._write_timeout,
            open_socket=self._open_socket,
            trace_limit=self._trace_limit,
            trace_pings=self._trace_pings,
            hold_acks=self._hold_acks,
            on_unsent=self._on_unsent,
        )
