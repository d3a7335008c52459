"""asyncio support: :class:`SocketModeClient`, a drop-in for slack_sdk's asyncio Socket Mode clients.

``from slack_socket_mode.aio import SocketModeClient`` replaces
``slack_sdk.socket_mode.aiohttp.SocketModeClient`` and ``slack_sdk.socket_mode.websockets.SocketModeClient``.
The connections are the thread client's engine, on its threads; the listeners are coroutines on the
application's event loop (:mod:`slack_socket_mode.aio.listeners`). The ``async`` extra installs
aiohttp, which slack_sdk's ``AsyncWebClient`` needs.
"""

from .client import SocketModeClient

__all__ = ["SocketModeClient"]
