"""Test helpers: a local fake of Slack's Socket Mode service and real-shaped samples.

:class:`SocketModeServer` needs the ``testing`` extra (``pip install
"slack-socket-mode[testing]"``, which brings the ``websockets`` library). The samples in
:mod:`slack_socket_mode.testing.samples` need nothing extra.
"""

from __future__ import annotations

from .server import (
    Ack,
    ApiCall,
    Delivery,
    EnvelopeRecord,
    ReceivedMessage,
    ServerConnection,
    SocketModeServer,
)

__all__ = [
    "Ack",
    "ApiCall",
    "Delivery",
    "EnvelopeRecord",
    "ReceivedMessage",
    "ServerConnection",
    "SocketModeServer",
]
