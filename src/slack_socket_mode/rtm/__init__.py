"""The RTM API client: a drop-in for ``slack_sdk.rtm_v2.RTMClient``, on the Socket Mode client's engine.

Replace ``from slack_sdk.rtm_v2 import RTMClient`` with ``from slack_socket_mode.rtm import RTMClient``.
Slack offers the RTM API to classic apps only; Socket Mode (:class:`slack_socket_mode.SocketModeClient`)
is the path for new apps. See docs/how-to/rtm.md.

* :mod:`.client`: :class:`RTMClient`, the facade;
* :mod:`.protocol`: what the RTM API speaks (``rtm.connect``, the JSON ping, routing by ``type``);
* :mod:`.listeners`: ``@rtm.on(type)`` and how events reach ``message_listeners``;
* :mod:`.errors`: :class:`RTMAuthError`.
"""

from __future__ import annotations

from .client import RTMClient
from .errors import RTMAuthError

__all__ = ["RTMAuthError", "RTMClient"]
