"""Reconnect backoff: a small, immutable, replaceable policy.

The client asks its policy how long to wait before open attempt number ``attempt``
(0 for the first attempt after a healthy connection dropped). Any object with the same
``delay`` method and ``healthy_after`` attribute can be passed as ``reconnect_policy``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Backoff", "ReconnectPolicy"]


@runtime_checkable
class ReconnectPolicy(Protocol):
    """What the client needs from a reconnect policy."""

    @property
    def healthy_after(self) -> float:
        """Seconds a connection must stay up before earlier failures are forgotten."""
        ...

    def delay(self, attempt: int) -> float:
        """Seconds to wait before open attempt ``attempt`` (0-based; 0 should be immediate)."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter and a cap.

    ``delay(0)`` is 0: the first attempt after a drop is immediate. For ``attempt >= 1``
    the delay is uniform in ``[0, min(cap, base * 2 ** (attempt - 1))]`` seconds (full
    jitter, as in https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/),
    or exactly that bound when ``jitter`` is False.

    Attributes:
        base: seconds; the bound for the second attempt.
        cap: seconds; no delay exceeds it.
        healthy_after: seconds a connection must stay up before the attempt count resets.
        jitter: randomize delays (keep True in production: it spreads a fleet's reconnects).

    Immutable and thread-safe.
    """

    base: float = 0.5
    cap: float = 30.0
    healthy_after: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.healthy_after < 0:
            raise ValueError("Backoff base, cap and healthy_after are seconds >= 0")

    def bound(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` can get, in seconds."""
        if attempt <= 0:
            return 0.0
        # min() before pow would overflow for huge attempts: cap the exponent.
        return min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before open attempt ``attempt``."""
        limit = self.bound(attempt)
        return random.uniform(0.0, limit) if self.jitter and limit > 0 else limit
