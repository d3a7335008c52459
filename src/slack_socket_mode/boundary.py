"""The one boundary where transport and Web API errors become ours: every mapping, in one module.

What websocket-client, the socket layer, TLS, python-socks, proxies and slack_sdk raise is turned
into this library's own values here and nowhere else, as httpcore's ``map_exceptions`` does for
its backends:

* an open attempt's errors, into a :class:`~slack_socket_mode.errors.SocketModeError`:
  a Web API answer (:func:`api_error`), a Web API call that failed below HTTP (:func:`call_error`),
  a WebSocket handshake (:func:`handshake_error`), anything else an attempt raised (:func:`open_error`);
* a connection's reader ending on an error, into an :class:`~slack_socket_mode.ends.End` (:func:`transport_end`);
* a failed write, into a :class:`~slack_socket_mode.errors.NotConnectedError` (:func:`write_error`).

:data:`TRANSPORT_ERRORS` is the tuple of exception classes a connection's socket calls may raise;
the callers catch exactly that and hand the error here. The callers raise what is returned
outside their ``except`` clause and :func:`~slack_socket_mode.errors.detached`, so that nothing a
request held (its ``Authorization`` header, the ``WebClient``) stays reachable from it; no message
built here holds a token or a URL's query (peers' texts go through :func:`~.redaction.redact`).
Pure functions: no I/O, no lock, safe from any thread.
"""

from __future__ import annotations

import logging
import struct
from typing import Optional

import websocket
from slack_sdk.errors import SlackApiError

from .ends import End, EndKind
from .errors import (
    FATAL_API_ERRORS,
    AuthError,
    ConnectionFailedError,
    FatalError,
    NotConnectedError,
    ProxyAuthError,
    RateLimitedError,
    SocketModeError,
    detached,
)
from .redaction import redact
from .urls import safe_url

__all__ = [
    "TRANSPORT_ERRORS",
    "api_error",
    "brief",
    "call_error",
    "handshake_error",
    "open_error",
    "transport_end",
    "write_error",
]

#: What websocket-client and the socket layer raise when a connection's read or write fails
#: (``struct.error`` and ``ValueError`` from a frame the parser cannot take, or a closed socket).
TRANSPORT_ERRORS = (OSError, websocket.WebSocketException, struct.error, ValueError)


def transport_end(e: BaseException, *, closing: bool, aborted: bool) -> End:
    """The :class:`End` of a connection whose reader raised ``e`` (one of :data:`TRANSPORT_ERRORS`).

    Args:
        e: the error.
        closing: our close frame had been sent (the server then closed the socket: a normal end).
        aborted: the client had shut the socket down.
    """
    if closing:
        return End(EndKind.CLIENT_CLOSED)
    if aborted:
        return End(EndKind.ABORTED)
    if isinstance(e, websocket.WebSocketConnectionClosedException):
        return End(EndKind.TCP_CLOSED)
    return End(EndKind.TRANSPORT_ERROR, f"{type(e).__name__}: {brief(e)}")


def write_error(connection_id: int, e: BaseException) -> NotConnectedError:
    """The error a caller of a failed write gets (``e``: one of :data:`TRANSPORT_ERRORS`), naming only its type."""
    return NotConnectedError(f"connection {connection_id} failed: {type(e).__name__}")


def call_error(cause: BaseException, *, method: str = "apps.connections.open") -> ConnectionFailedError:
    """Map an error of the URL's Web API call (``method``) below HTTP (urllib, socket, TLS) to ours."""
    return ConnectionFailedError(
        f"{method} failed: {type(cause).__name__}: {redact(str(cause))[:200]}",
        error=type(cause).__name__,
    )


def open_error(
    connection_id: int, e: Exception, logger: logging.Logger, *, aborted_after: Optional[float] = None
) -> SocketModeError:
    """Map an error an open attempt raised to ours, detached (call it inside the ``except`` clause).

    Our own errors are kept as they are; anything else (a library error we did not foresee) is
    logged and becomes a :class:`ConnectionFailedError` naming only its type, so that it never
    stalls reconnecting. ``aborted_after``: the attempt was aborted (its :class:`OpenAttempt` says
    so) and had that many seconds (``connect_timeout``); an error that is not fatal and does not
    already say so becomes a :class:`ConnectionFailedError` ``open_aborted`` that names the deadline.
    """
    if isinstance(e, SocketModeError):
        error = detached(e)  # the one error boundary: nothing the request held stays reachable
    else:
        logger.error(
            "connection %d: unexpected error while opening: %s: %s",
            connection_id,
            type(e).__name__,
            redact(str(e))[:200],
        )
        error = detached(
            ConnectionFailedError(f"could not open a connection: {type(e).__name__}", error=type(e).__name__)
        )
    known = getattr(error, "error", None) == "open_aborted"
    if aborted_after is None or known or isinstance(error, FatalError):
        return error
    return ConnectionFailedError(
        f"{error} (aborted: the open attempt's deadline, connect_timeout {aborted_after:g} s, passed, "
        "or the client is closing)",
        error="open_aborted",
    )


def api_error(
    e: SlackApiError,
    *,
    method: str = "apps.connections.open",
    token_kind: str = "the app-level token",
    auth_error: type[AuthError] = AuthError,
) -> SocketModeError:
    """Translate a Web API error from the call that issues a URL (never keeping the request).

    Args:
        e: what slack_sdk raised.
        method: the Web API method (``apps.connections.open``, or ``rtm.connect`` for the RTM client).
        token_kind: the token the method was called with, for the message (``the app-level token``).
        auth_error: the :class:`AuthError` class raised for a refused token (a protocol's own subclass).
    """
    response = e.response
    status = getattr(response, "status_code", None)
    error = response.get("error") if hasattr(response, "get") else None
    error = redact(error)[:100] if isinstance(error, str) else "unknown_error"  # the peer's text
    if status == 407:
        return ProxyAuthError(
            f"the proxy refused {method}: HTTP 407 proxy authentication required "
            "(check the user and password in the proxy URL)",
            error="proxy_auth_required",
        )
    if status == 429 or error == "ratelimited":
        headers = getattr(response, "headers", {}) or {}
        raw = headers.get("Retry-After") or headers.get("retry-after") or "30"
        try:
            retry_after = max(0.0, float(raw))
        except ValueError:
            retry_after = 30.0
        return RateLimitedError(
            f"{method} is rate limited; retrying after {retry_after:g} s",
            retry_after=retry_after,
            status=status,
        )
    if error in FATAL_API_ERRORS:
        return auth_error(f"{method} refused {token_kind}: {error}", error=error)
    return ConnectionFailedError(f"{method} failed: {error} (HTTP {status})", error=error, status=status)


def handshake_error(e: Exception, ws: websocket.WebSocket, url: str, *, aborted: bool) -> SocketModeError:
    """Map an error of a WebSocket handshake to ours (call it inside the ``except`` clause; raise it outside).

    Args:
        e: what the handshake raised (websocket-client, the socket layer, TLS, the proxy).
        ws: the websocket-client ``WebSocket`` (its ``handshake_response`` tells a redirect).
        url: the URL without its query, for the message.
        aborted: the attempt was aborted (its deadline passed, or the client is closing).
    """
    if isinstance(e, SocketModeError):  # from open_socket: the proxy refused the tunnel
        return e
    if isinstance(e, websocket.WebSocketProxyException):
        if "407" in str(e):
            return ProxyAuthError(
                "the proxy refused the connection: HTTP 407 proxy authentication required "
                "(check the user and password in the proxy URL)",
                error="proxy_auth_required",
            )
        return ConnectionFailedError(f"the proxy failed: {brief(e)}", error="proxy_error")
    if isinstance(e, websocket.WebSocketBadStatusException):
        return ConnectionFailedError(
            f"WebSocket handshake with {url} was answered with HTTP {e.status_code}",
            error="handshake_rejected",
            status=e.status_code,
        )
    return _redirect_refused(ws, url) or ConnectionFailedError(
        f"could not open {url}: {type(e).__name__}: {brief(e)}"
        + (" (aborted: the open attempt's deadline passed, or the client is closing)" if aborted else ""),
        error="open_aborted" if aborted else type(e).__name__,
    )


def _redirect_refused(ws: websocket.WebSocket, url: str) -> Optional[ConnectionFailedError]:
    """The error for a handshake answered with a redirect (refused: Slack never redirects), or None."""
    response = getattr(ws, "handshake_response", None)
    status = getattr(response, "status", None)
    if not isinstance(status, int) or not 300 <= status < 400:
        return None
    headers = getattr(response, "headers", None) or {}
    location = headers.get("location") if isinstance(headers, dict) else None
    target = safe_url(location) if isinstance(location, str) else "nowhere (no Location header)"
    return ConnectionFailedError(
        f"WebSocket handshake with {url} was answered with HTTP {status}, a redirect to {target}; "
        "refused (Slack never redirects)",
        error="redirect_refused",
        status=status,
    )


def brief(error: BaseException) -> str:
    """The first line of ``error``'s text, at most 200 characters (for a message; redact what a peer sent)."""
    text = str(error).splitlines()[0] if str(error) else ""
    return text[:200]
