"""Faults the local Socket Mode server injects into connections: disconnect, close, reset, silence.

Each function acts on the connections it is given (the server's facade picks them: one, or
every open connection) through the connection's server-side interface, and takes no server
lock. The Web API's faults (failed opens, refused connections) are in :mod:`._api_fake`.
"""

from __future__ import annotations

from ._connection import CLOSE_TIMEOUT, ServerConnection
from .records import dumps

__all__ = ["close_connections", "reset_connections", "send_disconnect", "silence_connections"]


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
