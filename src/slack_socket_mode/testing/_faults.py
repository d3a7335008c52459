"""Faults the local Socket Mode server injects into connections: disconnect, close, reset, silence.

:class:`ServerFaults` is a base class of :class:`~.server.SocketModeServer` holding its public
fault methods. Each function below acts on the connections it is given (one, or every open
connection) through the connection's server-side interface, and takes no server lock. The Web
API's faults (failed opens, refused connections) are carried out by :mod:`._api_fake`.
"""

from __future__ import annotations

from ._api_fake import WebApiFake
from ._connection import CLOSE_TIMEOUT, ServerConnection
from ._routing import ConnectionTable
from .records import dumps

__all__ = ["ServerFaults", "close_connections", "reset_connections", "send_disconnect", "silence_connections"]


def send_disconnect(targets: list[ServerConnection], reason: str) -> None:
    """Send ``{"type":"disconnect","reason":reason,"debug_info":{"host":"applink-local"}}`` to each.

    The connections stay live (envelopes still go to them) until they close.

    Raises:
        RuntimeError: no connection could take it.
    """
    data = dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-local"}}).encode()
    sent = False
    for conn in targets:
        conn.disconnect_sent = True
        sent = conn.send(data) or sent
    if not sent:
        raise RuntimeError("no connection could take the disconnect message (closed or closing)")


def close_connections(targets: list[ServerConnection], code: int, reason: str) -> None:
    """Start a clean close of each: a close frame, then the TCP close when the client answers
    or after ``CLOSE_TIMEOUT``. A silenced connection (or one that cannot take the frame) is
    closed at once."""
    for conn in targets:
        if not conn.claim_close("server"):
            continue
        if conn.silenced or not conn.run_protocol(lambda protocol: protocol.send_close(code, reason)):
            conn.abort("server")
            continue
        conn.arm_close_timeout()


def reset_connections(targets: list[ServerConnection]) -> None:
    """Reset each TCP connection (RST, no close frame), then wait up to ``CLOSE_TIMEOUT`` for each to close."""
    for conn in targets:
        conn.abort("reset", rst=True)
    for conn in targets:
        conn.wait_closed(CLOSE_TIMEOUT)


def silence_connections(targets: list[ServerConnection]) -> None:
    """Stop reading from and writing to each, with the TCP connection kept open."""
    for conn in targets:
        conn.silenced = True


class ServerFaults:
    """Fault injection methods of :class:`~.server.SocketModeServer` (a base class; see there)."""

    # Set by SocketModeServer.__init__.
    _table: ConnectionTable
    _web_api: WebApiFake

    def fail_next_opens(
        self,
        error: str | None = None,
        *,
        count: int = 1,
        status: int = 200,
        retry_after: int | None = None,
        echo: bool = False,
    ) -> None:
        """Make the next ``count`` ``apps.connections.open`` calls fail.

        With ``status`` 200 they answer ``{"ok": false, "error": error}``; with 429 they
        answer HTTP 429 ``{"ok": false, "error": "ratelimited"}``; any other status answers
        that status with ``{"ok": false, "error": error}``. A ``Retry-After`` header is added
        when ``retry_after`` (seconds) is given. With ``echo``, the error text quotes the
        request's ``Authorization`` header back, token and all (a broken Web API that echoes
        the request: the client must redact it everywhere). Calls with a missing or
        non-``xapp-`` token fail their own way and do not use these up.

        Args:
            error: the error code; default ``"invalid_auth"`` (``"ratelimited"`` for 429).
            count: how many calls fail.
            status: the HTTP status.
            retry_after: the ``Retry-After`` header value, in seconds.
            echo: quote the request's ``Authorization`` header in the error text.
        """
        if error is None:
            error = "ratelimited" if status == 429 else "invalid_auth"
        self._web_api.fail_next_opens(error, status, retry_after, echo, count)

    def send_next_opens_to(self, url: str, *, count: int = 1) -> None:
        """Make the next ``count`` ``apps.connections.open`` calls answer with ``url``.

        For a peer of the test's own at that URL: one that trickles its handshake, redirects
        it, or misbehaves in another way this server does not.

        Args:
            url: the WebSocket URL to hand out.
            count: how many calls answer with it.
        """
        self._web_api.send_next_opens_to(url, count)

    def refuse_next_connections(self, count: int = 1) -> None:
        """Make the next ``count`` ``apps.connections.open`` calls return a URL nobody listens on.

        The WebSocket connect to it fails with :class:`ConnectionRefusedError`.
        """
        self._web_api.refuse_next_connections(count)

    def disconnect(self, reason: str = "refresh_requested", *, connection: ServerConnection | None = None) -> None:
        """Send ``{"type":"disconnect","reason":reason,"debug_info":{"host":"applink-local"}}``.

        Args:
            reason: ``"warning"``, ``"refresh_requested"``, ``"link_disabled"``,
                ``"too_many_websockets"`` or anything else.
            connection: the connection; by default every open connection.

        Raises:
            RuntimeError: no open connection (or ``connection`` is closed or closing).
        """
        send_disconnect(self._table.targets(connection), reason)

    def close_connection(self, connection: ServerConnection | None = None, code: int = 1000, reason: str = "") -> None:
        """Start a clean close: send a close frame; the TCP connection is closed once the
        client closes it or after 2 s. A silenced connection is closed at once (no frame).

        Args:
            connection: the connection; by default every open connection.
            code: the close code.
            reason: the close reason.

        Raises:
            RuntimeError: no open connection.
        """
        close_connections(self._table.targets(connection), code, reason)

    def reset(self, connection: ServerConnection | None = None) -> None:
        """Reset the TCP connection (RST, no close frame) and wait (up to 2 s) until it is closed.

        Args:
            connection: the connection; by default every open connection.

        Raises:
            RuntimeError: no open connection.
        """
        reset_connections(self._table.targets(connection))

    def silence(self, connection: ServerConnection | None = None) -> None:
        """Go silent with the TCP connection kept open, like a dead network path.

        The server stops reading from the socket (so it answers no ping and sees no
        close) and writes nothing more to it: no pongs, envelopes, redeliveries or pings.
        The connection counts as open until :meth:`close_connection`, :meth:`reset` or
        :meth:`stop`.

        Args:
            connection: the connection; by default every open connection.

        Raises:
            RuntimeError: no open connection.
        """
        silence_connections(self._table.targets(connection))
