"""The websocket_client flavour: a drop-in for ``slack_sdk.socket_mode.websocket_client.SocketModeClient``.

slack_sdk has two thread-based Socket Mode clients: the built-in one
(``slack_sdk.socket_mode.SocketModeClient``, replaced by :class:`slack_socket_mode.SocketModeClient`)
and one on websocket-client's ``WebSocketApp``, replaced by this module's :class:`SocketModeClient`::

    # from slack_sdk.socket_mode.websocket_client import SocketModeClient
    from slack_socket_mode.websocket_client import SocketModeClient

Both of ours run the same engine (connections, acks, dedupe, rotations); this one takes that
flavour's constructor arguments and calls its listeners the way it does, with a
``WebSocketApp``-like object (:class:`WebSocketAppView`) first:

* ``on_open_listeners``: ``f(ws)`` when a connection's handshake completes;
* ``on_message_listeners``: ``f(ws, text)`` for each text message;
* ``on_error_listeners``: ``f(ws, error)`` with each :class:`.ConnectionFailedError` or :class:`.FatalError`;
* ``on_close_listeners``: ``f(ws)`` when a connection ends.

``send_message`` without an open connection raises :class:`WebSocketNotConnectedError`, which
is websocket-client's ``WebSocketConnectionClosedException`` (what that flavour raises) as well
as our :class:`.NotConnectedError`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import websocket
from slack_sdk.web import WebClient

from .client import SocketModeClient as _BuiltinSocketModeClient
from .errors import NotConnectedError
from .lifecycle import ConnectionState, Transition
from .listeners import ListenerList, Listeners, call_listeners
from .urls import safe_url

__all__ = ["SocketModeClient", "WebSocketAppView", "WebSocketNotConnectedError"]


class WebSocketNotConnectedError(NotConnectedError, websocket.WebSocketConnectionClosedException):
    """No open connection to send on: websocket-client's ``WebSocketConnectionClosedException``, as
    slack_sdk's websocket_client flavour raises, and also our :class:`.NotConnectedError`."""


class WebSocketAppView:
    """What this flavour's listeners get as their first argument, in place of a ``WebSocketApp``.

    There is no ``WebSocketApp`` underneath (the engine reads each connection on websocket-client's
    low-level ``WebSocket``); this view offers the part of its interface a listener may use.
    One view per client; thread-safe.

    Attributes:
        url: the newest connection's URL without its query (the single-use ticket), or "".
    """

    __slots__ = ("_client",)

    def __init__(self, client: SocketModeClient) -> None:
        self._client = client

    @property
    def url(self) -> str:
        """The newest connection's URL without its query, or "" before the first connection."""
        uri = self._client.wss_uri
        return safe_url(uri) if uri else ""

    @property
    def sock(self) -> Optional[object]:
        """Something true while a connection is open, else None (``WebSocketApp.sock`` is None when closed)."""
        return self if self._client.is_connected() else None

    def send(self, data: str, opcode: int = websocket.ABNF.OPCODE_TEXT) -> None:
        """Send a text message on the newest connection (acks are routed like :meth:`SocketModeClient.send_message`).

        Raises:
            ValueError: ``opcode`` is not text (Socket Mode carries only text).
            WebSocketNotConnectedError: no open connection.
        """
        if opcode != websocket.ABNF.OPCODE_TEXT:
            raise ValueError("Socket Mode messages are text: only opcode OPCODE_TEXT can be sent")
        self._client.send_message(data)

    def close(self, **_: Any) -> None:
        """Close the client's connections and stop reconnecting (:meth:`SocketModeClient.disconnect`)."""
        self._client.disconnect()

    def __repr__(self) -> str:
        return f"<WebSocketAppView {self.url or 'not connected'}>"


class _WebSocketAppListeners(Listeners):
    """Calls this flavour's listeners: with the client's :class:`WebSocketAppView` first, in its signatures."""

    def __init__(self, client: SocketModeClient, logger: logging.Logger) -> None:
        super().__init__(client, logger)
        self._flavour = client
        self._view = WebSocketAppView(client)

    def lifecycle(self, transition: Transition) -> None:
        """``on_open_listeners`` when a connection's handshake is done (its transition to ``awaiting_hello``)."""
        if transition.new is ConnectionState.AWAITING_HELLO:
            call_listeners(self._flavour.on_open_listeners, self._logger, "on_open", self._view)
        super().lifecycle(transition)

    def message(self, text: str) -> None:
        call_listeners(self._flavour.on_message_listeners, self._logger, "on_message", self._view, text)

    def error(self, error: Exception) -> None:
        call_listeners(self._flavour.on_error_listeners, self._logger, "error", self._view, error)

    def close(self, code: int, reason: str) -> None:
        call_listeners(self._flavour.on_close_listeners, self._logger, "on_close", self._view)


class SocketModeClient(_BuiltinSocketModeClient):
    """A thread-based Socket Mode client with the interface of slack_sdk's websocket_client flavour.

    Takes that flavour's arguments, in its order, then every keyword-only option of
    :class:`slack_socket_mode.SocketModeClient` (``connections``, ``dedupe``, ``ssl_context``, …).

    Args:
        app_token: the app-level token (``xapp-…``).
        logger: where to log (default ``logging.getLogger("slack_socket_mode")``).
        web_client: the ``slack_sdk.WebClient`` for ``apps.connections.open``.
        auto_reconnect_enabled: reopen a connection that dropped.
        ping_interval: seconds between our pings (default 5, not slack_sdk's 10: a connection
            silent for ``receive_timeout``, 10 s, is replaced, so a ping must come first).
        concurrency: worker threads that run listeners.
        trace_enabled: log every text message and every ping and pong at DEBUG, tokens redacted
            (slack_sdk turns on websocket-client's global trace instead).
        http_proxy_host: the proxy's host.
        http_proxy_port: the proxy's port.
        http_proxy_auth: ``(user, password)`` for the proxy.
        proxy_type: ``"http"`` (the default) or a SOCKS scheme.
        on_open_listeners: ``f(ws)`` when a connection's handshake completes (session thread).
        on_message_listeners: ``f(ws, text)`` for each text message (reader thread).
        on_error_listeners: ``f(ws, error)`` for each :class:`.ConnectionFailedError` and :class:`.FatalError`.
        on_close_listeners: ``f(ws)`` when a connection ends (its reader thread).
        **options: keyword-only options of :class:`slack_socket_mode.SocketModeClient`.

    Raises:
        ConfigurationError: invalid options or an app token that is not ``xapp-…``.
    """

    _listeners_type = _WebSocketAppListeners

    def __init__(
        self,
        app_token: str,
        logger: Optional[logging.Logger] = None,
        web_client: Optional[WebClient] = None,
        auto_reconnect_enabled: bool = True,
        ping_interval: Optional[float] = 5.0,
        concurrency: int = 10,
        trace_enabled: bool = False,
        http_proxy_host: Optional[str] = None,
        http_proxy_port: Optional[int] = None,
        http_proxy_auth: Optional[tuple[str, str]] = None,
        proxy_type: Optional[str] = None,
        on_open_listeners: Optional[list[Callable[[WebSocketAppView], None]]] = None,
        on_message_listeners: Optional[list[Callable[[WebSocketAppView, str], None]]] = None,
        on_error_listeners: Optional[list[Callable[[WebSocketAppView, Exception], None]]] = None,
        on_close_listeners: Optional[list[Callable[[WebSocketAppView], None]]] = None,
        **options: Any,
    ) -> None:
        super().__init__(
            app_token,
            logger=logger,
            web_client=web_client,
            auto_reconnect_enabled=auto_reconnect_enabled,
            ping_interval=ping_interval,
            concurrency=concurrency,
            trace_enabled=trace_enabled,
            http_proxy_host=http_proxy_host,
            http_proxy_port=http_proxy_port,
            http_proxy_auth=http_proxy_auth,
            proxy_type=proxy_type,
            **options,
        )
        self.on_open_listeners: list[Callable[[WebSocketAppView], None]] = ListenerList(
            "on_open_listeners", on_open_listeners or []
        )
        # this flavour's signatures: the lists its listeners object calls (_WebSocketAppListeners)
        self.on_message_listeners: list[Callable[[WebSocketAppView, str], None]] = ListenerList(  # type: ignore[assignment]
            "on_message_listeners", on_message_listeners or []
        )
        self.on_error_listeners: list[Callable[[WebSocketAppView, Exception], None]] = ListenerList(  # type: ignore[assignment]
            "on_error_listeners", on_error_listeners or []
        )
        self.on_close_listeners: list[Callable[[WebSocketAppView], None]] = ListenerList(  # type: ignore[assignment]
            "on_close_listeners", on_close_listeners or []
        )

    def __repr__(self) -> str:
        return "<websocket_client." + super().__repr__()[1:]

    def send_message(self, message: str) -> None:
        """Send a text message; an ack is routed like :meth:`send_socket_mode_response`.

        Raises:
            WebSocketNotConnectedError: no open connection (for a message that is not an ack).
        """
        try:
            super().send_message(message)
        except WebSocketNotConnectedError:
            raise
        except NotConnectedError as e:
            raise WebSocketNotConnectedError(str(e)) from None
