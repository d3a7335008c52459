"""slack_socket_mode: a thread-based Slack Socket Mode client that never loses an envelope.

A drop-in for ``slack_sdk.socket_mode.SocketModeClient``::

    from slack_socket_mode import SocketModeClient

See https://api.slack.com/apis/socket-mode for the protocol.
"""

from __future__ import annotations

from .client import ClientStats, HealthStatus, SocketModeClient
from .errors import (
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    ConnectTimeoutError,
    FatalError,
    InsecureURLError,
    LinkDisabledError,
    NotConnectedError,
    ProxyAuthError,
    RateLimitedError,
    Redeliver,
    SocketModeError,
)
from .lifecycle import ClientState, ConnectionState, Transition
from .liveness import Liveness
from .policy import Backoff, ReconnectPolicy

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Backoff",
    "ClientState",
    "ClientStats",
    "ConfigurationError",
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "ConnectionState",
    "FatalError",
    "HealthStatus",
    "InsecureURLError",
    "LinkDisabledError",
    "Liveness",
    "NotConnectedError",
    "ProxyAuthError",
    "RateLimitedError",
    "ReconnectPolicy",
    "Redeliver",
    "SocketModeClient",
    "SocketModeError",
    "Transition",
    "__version__",
]
