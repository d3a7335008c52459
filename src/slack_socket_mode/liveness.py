"""When to ping a connection and when to declare it dead, with no I/O.

A connection is alive while frames arrive. The client pings every ``ping_interval``
seconds; if neither a pong nor any other frame arrives within ``ping_timeout`` seconds of
a ping, or no frame at all arrives for ``receive_timeout`` seconds, the connection is
dead (a half-open TCP connection, a silent peer) and is replaced. Any frame counts as an
answer, so a pong queued behind a burst of envelopes does not cause a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

from .ends import End, EndKind
from .records import record

__all__ = ["Liveness", "LivenessVerdict"]


@record
class LivenessVerdict(NamedTuple):
    """What to do with one connection now.

    Attributes:
        dead: how the connection ends (an :class:`~.ends.End`: no pong, no frames) if it must be replaced, else None.
        ping: True if a ping is due now.
        next_check: monotonic time (seconds) of the next check this connection needs.
    """

    dead: Optional[End]
    ping: bool
    next_check: float


@dataclass(frozen=True)
class Liveness:
    """Liveness settings, all in seconds.

    Attributes:
        ping_interval: seconds between our pings; None disables pinging.
        ping_timeout: seconds to wait for a pong (or any frame) after a ping.
        receive_timeout: seconds without any frame after which the connection is dead.

    With the defaults a silent connection is replaced at most
    ``ping_interval + ping_timeout`` = 8 s after its last frame. Immutable and thread-safe.
    """

    ping_interval: Optional[float] = 5.0
    ping_timeout: float = 3.0
    receive_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise ValueError("ping_interval must be a positive number of seconds, or None")
        if self.ping_timeout <= 0 or self.receive_timeout <= 0:
            raise ValueError("ping_timeout and receive_timeout must be positive numbers of seconds")

    def check(self, now: float, *, last_received: float, last_ping: Optional[float]) -> LivenessVerdict:
        """Judge one connection.

        Args:
            now: monotonic time, seconds.
            last_received: when the last frame of any kind arrived (or the handshake ended).
            last_ping: when our last ping was sent, or None if never.
        """
        silent_for = now - last_received
        if silent_for >= self.receive_timeout:
            return LivenessVerdict(End(EndKind.NO_FRAMES, f"for {silent_for:.1f} s"), False, now)
        unanswered = last_ping is not None and last_ping > last_received
        if unanswered and last_ping is not None and now - last_ping >= self.ping_timeout:
            return LivenessVerdict(End(EndKind.NO_PONG, f"within {self.ping_timeout:g} s"), False, now)
        next_check = last_received + self.receive_timeout
        ping = False
        if unanswered and last_ping is not None:
            next_check = min(next_check, last_ping + self.ping_timeout)
        elif self.ping_interval is not None:
            due = (last_ping if last_ping is not None else last_received) + self.ping_interval
            if now >= due:
                ping = True
                next_check = min(next_check, now + self.ping_timeout)
            else:
                next_check = min(next_check, due)
        return LivenessVerdict(None, ping, next_check)
