"""Stats and health records: what :meth:`slack_socket_mode.SocketModeClient.stats` and
:meth:`~slack_socket_mode.SocketModeClient.health` return.

Plain immutable records (see :mod:`.records`) and the percentile they use; no locks, no threads.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import NamedTuple, Optional

from .records import record

__all__ = ["MAX_CAUSES", "CauseCounter", "ClientStats", "HealthStatus", "percentile"]

#: At most this many causes are counted apart in ``stats().reconnects``; later new ones count as ``"other"``.
MAX_CAUSES = 32
#: A cause longer than this (a ``disconnect`` reason is the server's text) is cut to it.
MAX_CAUSE_LENGTH = 80


class CauseCounter(Counter[str]):
    """Connection replacements by cause, bounded: at most :data:`MAX_CAUSES` keys of at most :data:`MAX_CAUSE_LENGTH`.

    The causes are mostly the client's own words, but a ``disconnect`` reason is whatever the
    server sent: a peer that sent a new reason each time would otherwise grow the counter
    without end. Once :data:`MAX_CAUSES` causes are counted, a new one is counted as
    ``"other"`` (that key included in the bound). Not thread-safe: the session changes it with
    its lock held.
    """

    def __setitem__(self, key: str, value: int) -> None:
        key = key[:MAX_CAUSE_LENGTH]
        if key not in self and len(self) >= MAX_CAUSES - 1 and key != "other":
            key, value = "other", self.get("other", 0) + value  # a new key's value is its increment
        super().__setitem__(key, value)


@record
class ClientStats(NamedTuple):
    """A snapshot of the client's counters (see :meth:`slack_socket_mode.SocketModeClient.stats`).

    Times are seconds. Counts are since the client was created. ``queue_depth`` counts
    envelopes waiting for a worker; ``oldest_wait`` is how long the oldest of them has waited.
    ``reader_takeovers`` counts the times a reader's own listeners ran past ``handoff_after``
    and a new reader thread took over the connection. ``acks_crossed`` counts redeliveries
    settled by an ack already sent on their connection (see :mod:`.ledger`).
    ``ack_latency_p50/p90/p99`` are percentiles of the time from an envelope's arrival to its
    ack being sent, over the last 1,024 acks (None before the first ack). A ``NamedTuple``:
    ``stats()._asdict()`` gives a dict (for metrics exporters).
    """

    state: str
    connections_open: int
    num_connections: Optional[int]
    connections_opened: int
    reconnects: dict[str, int]
    last_disconnect_reason: Optional[str]
    envelopes_received: int
    envelopes_acked: int
    envelopes_deduplicated: int
    acks_suppressed: int
    acks_crossed: int
    malformed_messages: int
    reader_takeovers: int
    queue_depth: int
    oldest_wait: float
    ack_latency_p50: Optional[float]
    ack_latency_p90: Optional[float]
    ack_latency_p99: Optional[float]
    #: the shared ledger's state: "" (none), "ok", or "unavailable (…): why" (see :mod:`.shared`)
    shared_ledger: str = ""
    #: envelopes whose listeners raised :class:`~slack_socket_mode.errors.Redeliver` and did not ack
    #: them: left to Slack's redelivery, which runs them again
    redeliveries_asked: int = 0
    #: claims of the shared ledger whose lease was lost while their listeners ran (not renewed
    #: within the lease: a pause of the process, or a slow store); each is logged at WARNING
    shared_leases_lost: int = 0
    #: keys found in the shared ledger's namespace that no replica wrote as they are (logged at
    #: WARNING, claimed over)
    shared_foreign_keys: int = 0
    #: envelopes the ledger remembers (in flight and settled); at most ``ledger_max_entries`` settled
    ledger_entries: int = 0
    #: characters of the ack texts with a payload that the ledger keeps to send again (at most ``max_ack_bytes``)
    ledger_ack_bytes: int = 0
    #: settled envelopes the ledger forgot because a bound (age, count or ack bytes) was reached
    ledger_evicted: int = 0
    #: acks kept for the next ``hello`` because no connection could send them (at most 10,000, and at most
    #: ``max_ack_bytes`` characters of them; the newest is always kept)
    acks_deferred: int = 0
    #: acks dropped from that list when it was full (Slack redelivers them; the redelivery is acked)
    acks_deferred_dropped: int = 0
    #: (asyncio client) times a listener was seen blocking the event loop while envelopes waited to start
    loop_blocked: int = 0
    #: (asyncio client) envelopes that waited longer than ``slow_queue_warning`` for the loop to start them
    loop_delayed: int = 0
    #: (asyncio client) envelopes given back unacked, for Slack's redelivery, because the loop was not running
    envelopes_given_back: int = 0


@record
class HealthStatus(NamedTuple):
    """The answer to a health probe (see :meth:`slack_socket_mode.SocketModeClient.health`).

    Attributes:
        healthy: connected, and no envelope has waited for a worker, nor a reader for the shared
            ledger, longer than allowed.
        reason: why not, in a few words ("" when healthy).
        state: the client's state (``"connected"``, ``"reconnecting"``, …).
        oldest_wait: seconds the oldest queued envelope has waited.
        shared_ledger: the shared ledger's state: "" (none), "ok", or "unavailable (…): why".
            An unavailable shared ledger does not make the client unhealthy: it goes on
            dispatching as its ``on_unavailable`` policy says.
    """

    healthy: bool
    reason: str
    state: str
    oldest_wait: float
    shared_ledger: str = ""


def percentile(ordered: list[float], q: float) -> Optional[float]:
    """Nearest-rank percentile of an already sorted list (None if empty)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
