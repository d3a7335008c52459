"""Slack's limits for one app shared by several client processes, for :class:`SocketModeServer`.

Slack delivers each envelope to one of the app's open connections, redelivers an unacked
one (after about 3 s) to any of them, possibly another process's, and allows up to 10
connections per app across all processes: the 11th gets ``disconnect`` with reason
``too_many_websockets`` (https://api.slack.com/apis/socket-mode). Pass an :class:`AppModel`
as ``SocketModeServer(app=AppModel())`` and the server behaves so: every delivery and
redelivery goes to a connection chosen at random among the live ones, and a connection
beyond ``max_connections`` is sent the ``too_many_websockets`` disconnect instead of
``hello`` and closed; it never counts as open and never gets an envelope.

No sockets, no threads: the server calls :meth:`choose` and :meth:`admits` under its lock.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Optional, TypeVar

from .samples import load_sample

__all__ = ["SLACK_MAX_CONNECTIONS", "AppModel"]

#: Slack's limit of open Socket Mode connections per app, across every process.
SLACK_MAX_CONNECTIONS = 10

T = TypeVar("T")


class AppModel:
    """One Slack app's delivery rules across replicas.

    Args:
        max_connections: open connections the app may hold (Slack: 10).
        seed: seed for the random choice of connection (None: unpredictable), so that a
            failing test can be replayed.

    Raises:
        ValueError: ``max_connections`` is below 1.

    Not thread-safe on its own: the server calls it under its lock.
    """

    def __init__(self, max_connections: int = SLACK_MAX_CONNECTIONS, *, seed: Optional[int] = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.max_connections = max_connections
        self._random = random.Random(seed)
        self.refused = 0  #: connections refused with too_many_websockets

    def choose(self, targets: Sequence[T]) -> T:
        """The connection an envelope (or a redelivery) goes to: any live one, at random."""
        return targets[self._random.randrange(len(targets))]

    def admits(self, open_connections: int) -> bool:
        """Whether one more connection may open when ``open_connections`` are open; counts a refusal."""
        if open_connections < self.max_connections:
            return True
        self.refused += 1
        return False

    @staticmethod
    def refusal() -> bytes:
        """The text of the ``disconnect`` a refused connection gets (Slack's sample, as recorded)."""
        return json.dumps(load_sample("disconnect_too_many_websockets"), separators=(",", ":")).encode()
