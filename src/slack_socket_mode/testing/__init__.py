"""Test helpers: a local fake of Slack's Socket Mode service and real-shaped samples.

:class:`SocketModeServer` needs the ``testing`` extra (``pip install
"slack-socket-mode[testing]"``, which brings the ``websockets`` library). The samples in
:mod:`slack_socket_mode.testing.samples` need nothing extra.

The server module is imported on first use, so importing this package (the pytest
plugin does, in every test run) works without the extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import (
        Ack,
        ApiCall,
        Delivery,
        EnvelopeRecord,
        Forgotten,
        ReceivedMessage,
        ServerConnection,
        SocketModeServer,
    )

__all__ = [
    "Ack",
    "ApiCall",
    "Delivery",
    "EnvelopeRecord",
    "Forgotten",
    "ReceivedMessage",
    "ServerConnection",
    "SocketModeServer",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server  # noqa: PLC0415 - deferred: it needs the 'testing' extra

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
