"""The local Socket Mode server's table of connections, and which one gets the next envelope.

:class:`ConnectionTable` holds every connection whose reader runs, the open ones and every
one ever accepted; it registers a completed handshake (with its ``hello``, or the
:class:`~.app_model.AppModel`'s refusal beyond the connection limit) and picks the
connection for each delivery: round-robin over the live ones, or the app model's choice.
Its state is guarded by the server's lock, the lock of the condition it is given.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ._connection import ServerConnection
from .records import dumps

if TYPE_CHECKING:
    from .app_model import AppModel

__all__ = ["ConnectionTable"]

logger = logging.getLogger("slack_socket_mode.testing")


class ConnectionTable:
    """Connections by state, and the routing of envelopes over them.

    Methods ending in ``_locked`` expect the server lock held; the others take it.

    Args:
        cond: the server's condition, notified when a connection opens or closes.
        app: the app model, or ``None`` for round-robin and no connection limit.
    """

    def __init__(self, cond: threading.Condition, app: AppModel | None) -> None:
        self._cond = cond
        self._app = app
        self._next_id = 1
        self._round_robin = 0
        self.readers: set[ServerConnection] = set()  # every connection whose reader runs
        self.open: list[ServerConnection] = []  # handshake done, not closed, oldest first
        self.all: list[ServerConnection] = []  # every connection ever accepted, in order

    def register(self, conn: ServerConnection, hello_template: dict[str, Any] | None) -> bytes | None:
        """Count a connection whose handshake succeeded; returns the hello to send, if any.

        ``hello_template``: the ``hello`` to send (its ``num_connections`` filled in), or
        ``None`` to send none. Beyond the app model's limit the connection gets its refusal
        instead and is never open.
        """
        with self._cond:
            connection_id = self._next_id
            self._next_id += 1
            self.all.append(conn)
            if self._app is not None and not self._app.admits(len(self.open)):
                conn.mark_open(connection_id, hello_sent=False, refused=True)  # never sent an envelope
                self._cond.notify_all()
                return self._app.refusal()
            conn.mark_open(connection_id, hello_sent=hello_template is not None, refused=False)
            self.open.append(conn)
            hello = None
            if hello_template is not None:
                fields = dict(hello_template)
                if "num_connections" in fields:  # Socket Mode's; the RTM API's hello has none
                    fields["num_connections"] = len(self.open)
                hello = dumps(fields).encode("utf-8")
            self._cond.notify_all()
        return hello

    def unregister(self, conn: ServerConnection) -> None:
        """Forget a connection whose reader ended (its socket is closed)."""
        with self._cond:
            conn.mark_closed()
            self.readers.discard(conn)
            if conn in self.open:
                self.open.remove(conn)
            self._cond.notify_all()
        if conn.accepted and logger.isEnabledFor(logging.DEBUG):
            logger.debug("connection %s closed by %s", conn.id, conn.closed_by)

    def targets(self, connection: ServerConnection | None) -> list[ServerConnection]:
        """``[connection]``, or by default every open connection (for faults).

        Raises:
            RuntimeError: no open connection.
        """
        if connection is not None:
            return [connection]
        with self._cond:
            targets = list(self.open)
        if not targets:
            raise RuntimeError("no open connection")
        return targets

    def targets_for_send_locked(self, connection: ServerConnection | None) -> list[ServerConnection]:
        """``[connection]`` if it can take a message, or by default every live connection.

        A connection that was sent a ``disconnect`` stays live until it closes: Slack does
        not promise to stop delivering on it, so a client must take what arrives there.

        Raises:
            RuntimeError: ``connection`` is closed or closing, or no connection is live.
        """
        if connection is not None:
            if not connection.can_send():
                raise RuntimeError(f"connection {connection.id} is closed or closing")
            return [connection]
        live = [conn for conn in self.open if conn.is_live()]
        if not live:
            raise RuntimeError("no live connection to send to")
        return live

    def choose_locked(self, targets: list[ServerConnection]) -> ServerConnection:
        """The next connection to send to: round-robin, or at random with an :class:`~.app_model.AppModel`."""
        if self._app is not None:
            return self._app.choose(targets)
        self._round_robin += 1
        return targets[self._round_robin % len(targets)]
