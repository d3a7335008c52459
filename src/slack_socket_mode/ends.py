"""Why a connection ended, as a value: an :class:`EndKind` and its detail, never prose parsed back.

The reader of a connection (:mod:`.connection`), the liveness rules (:mod:`.liveness`) and the
health thread (:mod:`.health`) each say how a connection ends with an :class:`End`. The session
counts replacements by :attr:`End.kind` (``stats().reconnects``, keyed by :attr:`EndKind.value`:
these are the labels of ``slack_socket_mode_reconnects_total`` in the Kubernetes how-to), and logs
and hands ``str(end)`` to ``on_close_listeners``. No I/O; immutable, so safe to share between threads.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Optional

__all__ = ["End", "EndKind"]


class EndKind(enum.Enum):
    """How a connection ended (its value is the key under which ``stats().reconnects`` counts it)."""

    CLIENT_CLOSED = "closed by client"  #: our close frame was answered (a drain, close(), disconnect())
    ABORTED = "aborted"  #: the client shut the socket down (given up on; see the abort's own reason)
    SERVER_CLOSED = "server closed the connection"  #: the server's close frame (``code`` set)
    TCP_CLOSED = "server closed the TCP connection"  #: the TCP connection ended without a close frame
    TRANSPORT_ERROR = "transport error"  #: a socket, TLS or WebSocket protocol error (``detail`` names it)
    OVERSIZE = "message over max_message_size"  #: a message larger than ``max_message_size``
    READER_ERROR = "reader error"  #: a bug of ours on the reader thread (logged with its traceback)
    NO_PONG = "no pong"  #: a ping was not answered within ``ping_timeout``
    NO_FRAMES = "no frames"  #: no frame of any kind for ``receive_timeout``
    WRITE_TIMEOUT = "write timeout"  #: a write ran longer than ``write_timeout`` (the peer does not read)


class End(NamedTuple):
    """A connection's end: what happened (``kind``), and what it is told with.

    Attributes:
        kind: the :class:`EndKind`.
        detail: more about it for the log (an exception's type and message, a size, a timeout), or "".
        code: the WebSocket close code the server sent (:attr:`EndKind.SERVER_CLOSED`), else None.
    """

    kind: EndKind
    detail: str = ""
    code: Optional[int] = None

    def __str__(self) -> str:
        """The end as one line for the log and ``on_close_listeners``: ``"no pong within 3 s"``."""
        kind, detail = self.kind, self.detail
        if kind is EndKind.SERVER_CLOSED:
            return f"{kind.value} (code {self.code})"
        if kind is EndKind.TRANSPORT_ERROR:
            return detail or kind.value
        if kind in (EndKind.NO_PONG, EndKind.WRITE_TIMEOUT, EndKind.OVERSIZE, EndKind.READER_ERROR):
            return f"{kind.value} {detail}" if detail else kind.value
        if kind is EndKind.NO_FRAMES:
            return f"no frame {detail}" if detail else kind.value
        return f"{kind.value} ({detail})" if detail else kind.value
