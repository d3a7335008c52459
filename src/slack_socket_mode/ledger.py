"""The record of envelopes in flight and recently handled: ack routing and redelivery dedup.

Slack redelivers an envelope that was not acked within 3 seconds, with the same
``envelope_id`` and ``retry_attempt`` 1, 2, 3 (https://api.slack.com/apis/socket-mode).
:class:`EnvelopeLedger` remembers each envelope from its first delivery until it is both
acked and old, so that:

* an ack goes out on the connection that delivered the envelope (the latest delivery);
* a redelivery of an envelope whose listeners are still running is not dispatched again:
  the single ack the listeners send settles every delivery;
* a redelivery of an envelope already acked arrives, under load, when Slack sent it before
  our ack reached it (the two crossed). If it arrives on the connection the ack went out on,
  within ``crossing_window`` seconds of the ack, the ack settles it and nothing is sent
  (TCP keeps order, and Slack stops redelivering once it has an ack); otherwise (another
  connection, where the first ack may have been lost with its connection, or later) it is
  acked again at once, with the same payload (an ack without a payload is not kept: it is
  rebuilt from the ``envelope_id``);
* a redelivery of an envelope whose listeners finished without acking is not dispatched
  again (its listeners chose not to ack it);
* an ack for an envelope with no delivery waiting is not sent twice;
* an envelope given up with :meth:`~EnvelopeLedger.release` (a shared ledger found another replica
  running it), or whose listeners raised :class:`~slack_socket_mode.errors.Redeliver` without acking
  it (:meth:`~EnvelopeLedger.redeliver`), is dispatched again if it is delivered again.

The states of an entry: in flight (delivered, listeners running) → acked (an ack was sent), or
→ handled (the listeners returned without acking; a redelivery is ignored), or → released
(given up, or the listeners asked for a redelivery; the next delivery is dispatched, in flight
again). Acked is final.

A connection counts as busy until the ack of every envelope it delivered has been written: an
ack routed to it but not yet written keeps a draining connection open, so that it is not closed
between the two. Either the ledger counts it (:meth:`EnvelopeLedger.inflight`, until
:meth:`~EnvelopeLedger.written`), or, given ``on_routed``, it tells the caller, under its lock, as
the count drops: the caller counts the ack on its way (the client, on the connection, without a
lock) and the ledger is not entered again for it.

One envelope's common path enters the ledger twice: :meth:`~EnvelopeLedger.receive` when it
arrives, :meth:`~EnvelopeLedger.ack` when its listener acks it. After an ack, :meth:`handled`
changes nothing, so a caller that saw the ack need not call it.

Bounds: settled entries are forgotten after ``max_age`` seconds, when more than
``max_entries`` are held, or when the ack texts they keep (acks with a payload; a plain ack
keeps none) add up to more than ``max_ack_bytes`` characters (oldest first, whichever bound
is hit); an envelope forgotten that way and delivered again is dispatched again. Entries still
in flight are never forgotten. With ``dedupe=False`` only in-flight entries are kept (for
routing and draining). What a full ledger costs is in docs/performance.md ("Memory"): about
270 bytes per entry with its id, plus each kept ack text.

Thread-safe: one lock; every method is O(1) amortized.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from typing import Any, Callable, Generic, NamedTuple, Optional, TypeVar

from .messages import plain_ack
from .records import record

__all__ = ["AckRoute", "EnvelopeLedger", "Receipt"]

C = TypeVar("C")


class Receipt(enum.Enum):
    """What to do with a delivery."""

    DISPATCH = "dispatch"  #: new: run the listeners
    WAIT = "wait"  #: listeners are running: the ack they send settles this delivery too
    REACK = "reack"  #: already acked, on another connection or long ago: send the same ack again now
    CROSSED = "crossed"  #: already acked on this connection: the ack crossed this delivery and settles it
    IGNORE = "ignore"  #: listeners finished without acking: do nothing


_INFLIGHT, _HANDLED, _ACKED, _RELEASED = 0, 1, 2, 3


class _Entry(Generic[C]):
    __slots__ = ("ack", "acked_at", "at", "awaiting", "conn", "state")

    def __init__(self, conn: C, at: float) -> None:
        # the connection of the latest delivery; once acked, the one the ack went out on (None: deferred)
        self.conn: Optional[C] = conn
        self.at = at  # first delivery, monotonic seconds
        self.state = _INFLIGHT
        self.awaiting = True  # a delivery is waiting for an ack
        self.ack: Optional[str] = None  # the ack text sent; None for the plain ack (or none sent)
        self.acked_at = 0.0  # when it was sent, monotonic seconds


@record
class AckRoute(NamedTuple):
    """Where an ack should go: ``conn`` (None if unknown), and whether to send it at all.

    ``conn`` is the ledger's connection type ``C`` (a NamedTuple cannot be generic before
    Python 3.11). ``received_at`` is the monotonic time (seconds) of the envelope's first
    delivery, if known. ``held``: ``conn`` counts in :meth:`EnvelopeLedger.inflight` until the
    caller reports the ack written with :meth:`EnvelopeLedger.written` (False with ``on_routed``).
    """

    conn: Any
    send: bool
    received_at: Optional[float] = None
    held: bool = False


class EnvelopeLedger(Generic[C]):
    """See the module docstring. ``C`` is the caller's connection type (opaque here)."""

    def __init__(
        self,
        *,
        dedupe: bool = True,
        max_entries: int = 50_000,
        max_age: float = 900.0,
        crossing_window: float = 10.0,
        max_ack_bytes: int = 16 * 1024 * 1024,
        on_routed: Optional[Callable[[C], None]] = None,
    ) -> None:
        if max_entries < 1 or max_age <= 0 or crossing_window < 0 or max_ack_bytes < 0:
            raise ValueError(
                "max_entries must be >= 1, max_age > 0, crossing_window >= 0 seconds and max_ack_bytes >= 0"
            )
        self.dedupe = dedupe
        self.crossing_window = crossing_window
        self.max_entries = max_entries
        self.max_age = max_age
        self.max_ack_bytes = max_ack_bytes
        # Told, under the lock, that an ack was routed to a connection: the caller then counts it on its
        # way there itself (O(1), no lock taken), and written() is not called. None: the ledger counts it.
        self._on_routed = on_routed
        # Lock order 4 (docs/threading.md, "Locks"): guards every field below. Held for a dict
        # operation or two; nothing is called and no other lock is taken while it is held.
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry[C]] = {}
        # With dedupe, the keys of _entries, oldest first: a dict and a deque of keys take half
        # the memory of an OrderedDict (about 45 bytes per entry less).
        self._order: deque[str] = deque()
        self._evict_due = 0.0  # monotonic time before which no entry is old enough to forget
        self._inflight: dict[int, int] = {}  # id(conn) -> envelopes delivered on it and not acked
        self.received = 0  #: first deliveries
        self.redeliveries = 0  #: deliveries of an envelope already in the ledger
        self.acked = 0  #: acks sent (re-acks included)
        self.deduplicated = 0  #: redeliveries not dispatched
        self.suppressed_acks = 0  #: acks not sent because nothing was waiting for them
        self.crossed_acks = 0  #: redeliveries settled by an ack already sent on their connection
        self.redeliveries_asked = 0  #: envelopes whose listeners raised Redeliver without acking (see redeliver())
        self.ack_bytes = 0  #: characters of the ack texts the entries keep (at most max_ack_bytes once evicted)
        self.evicted = 0  #: settled entries forgotten by a bound (age, count or ack bytes)

    def __len__(self) -> int:
        return len(self._entries)

    def receive(self, envelope_id: str, conn: C, now: float) -> tuple[Receipt, Optional[str]]:
        """Record a delivery of ``envelope_id`` on ``conn`` at ``now`` (monotonic seconds).

        Returns:
            what to do, and for :attr:`Receipt.REACK` the text of the ack to send again (else None).
        """
        with self._lock:
            entry = self._entries.get(envelope_id)
            if entry is None or not self.dedupe or entry.state == _RELEASED:
                if entry is None:  # the common case: _count(conn, +1) written out
                    self._entries[envelope_id] = _Entry(conn, now)
                    inflight, key = self._inflight, id(conn)
                    inflight[key] = inflight.get(key, 0) + 1
                    self.received += 1
                    if self.dedupe:
                        self._order.append(envelope_id)
                        if now >= self._evict_due or len(self._entries) > self.max_entries:
                            self._evict(now)
                else:
                    self._move(entry, conn)
                    entry.state, entry.awaiting = _INFLIGHT, True
                    self.redeliveries += 1
                return Receipt.DISPATCH, None
            self.redeliveries += 1
            self.deduplicated += 1
            if entry.state == _ACKED:
                if entry.conn is conn and now - entry.acked_at <= self.crossing_window:
                    # Our ack went out on this connection just before this delivery arrived: Slack sent
                    # it before our ack reached it (TCP keeps order), and that ack settles it too.
                    self.crossed_acks += 1
                    return Receipt.CROSSED, None
                entry.conn = conn
                entry.acked_at = now  # sent again now, on this connection
                self.acked += 1
                return Receipt.REACK, plain_ack(envelope_id) if entry.ack is None else entry.ack
            if entry.state == _INFLIGHT:
                self._move(entry, conn)
                entry.awaiting = True
                return Receipt.WAIT, None
            return Receipt.IGNORE, None

    def ack(self, envelope_id: str, text: Optional[str], now: float) -> AckRoute:
        """The application acks ``envelope_id`` with ``text`` at ``now`` (monotonic seconds).

        ``text`` is None for the plain ack (:func:`~slack_socket_mode.messages.plain_ack`, no
        payload): that is what most acks are, and keeping no copy of it saves about 100 bytes
        per envelope remembered.

        Returns where to send the ack, and whether to (not for a second ack of one delivery).
        When it says to send it on a connection, that connection counts in :meth:`inflight`
        until the caller reports the ack written (or given up on) with :meth:`written`
        (``held``); with ``on_routed``, it stops counting now, and ``on_routed(conn)`` was
        called first.
        """
        with self._lock:
            entry = self._entries.get(envelope_id)
            if entry is None:
                self.acked += 1
                return AckRoute(None, True)
            conn = entry.conn
            if not entry.awaiting:
                self.suppressed_acks += 1
                return AckRoute(conn, False)
            entry.awaiting = False
            on_routed = self._on_routed
            held = conn is not None and on_routed is None
            if on_routed is not None and conn is not None:
                on_routed(conn)  # first: a drain check that sees the count drop below sees this
                if entry.state == _INFLIGHT:
                    self._count(conn, -1)
            elif held and entry.state != _INFLIGHT:
                self._count(conn, +1)  # counted again until written(); an in-flight one still is
            entry.state = _ACKED
            entry.acked_at = now
            self.acked += 1
            if not self.dedupe:
                del self._entries[envelope_id]
                return AckRoute(conn, True, entry.at, held)
            self._keep_ack(entry, text)
            if self.ack_bytes > self.max_ack_bytes:
                self._evict(now)
            return AckRoute(conn, True, entry.at, held)

    def written(self, conn: C) -> None:
        """An ack that :meth:`ack` routed to ``conn`` (``held``) was written (on it or elsewhere) or given up on."""
        with self._lock:
            self._count(conn, -1)

    def sent_on(self, envelope_id: str, conn: Optional[C]) -> None:
        """The ack for ``envelope_id`` went out on ``conn`` (None: deferred), not where :meth:`ack` routed it."""
        with self._lock:
            entry = self._entries.get(envelope_id)
            if entry is not None and entry.state == _ACKED:
                entry.conn = conn

    def handled(self, envelope_id: str) -> Optional[C]:
        """The listeners for ``envelope_id`` returned (whether or not they acked).

        Returns the connection it was in flight on if this settled it, else None.
        """
        with self._lock:
            entry = self._entries.get(envelope_id)
            if entry is None or entry.state != _INFLIGHT:
                return None
            entry.state = _HANDLED
            self._count(entry.conn, -1)
            if not self.dedupe:
                del self._entries[envelope_id]
            return entry.conn

    def redeliver(self, envelope_id: str) -> tuple[bool, Optional[C]]:
        """The listeners for ``envelope_id`` returned, one having raised :class:`~slack_socket_mode.errors.Redeliver`.

        Unless the envelope was acked meanwhile (an ack stands: it is never run again), its run is
        forgotten as :meth:`release` does: the delivery no longer waits for an ack, and the next
        delivery (Slack's redelivery) is dispatched. A redelivery that arrived while the listeners
        ran was not dispatched and stays unacked: Slack redelivers it again.

        Returns:
            whether it was released (False: it was acked, or is not in flight), and the
            connection it was in flight on when released (as :meth:`handled` returns it).
        """
        with self._lock:
            released, conn = self._release(envelope_id)
            if released:
                self.redeliveries_asked += 1
            return released, conn

    def release(self, envelope_id: str) -> None:
        """Forget that ``envelope_id`` was delivered, without an ack: its next delivery is dispatched.

        For a delivery that was neither run nor acked here (another replica holds it).
        """
        with self._lock:
            self._release(envelope_id)

    def _release(self, envelope_id: str) -> tuple[bool, Optional[C]]:
        """In flight → released (lock held): whether it was in flight, and its connection."""
        entry = self._entries.get(envelope_id)
        if entry is None or entry.state != _INFLIGHT:
            return False, None
        conn = entry.conn
        self._count(conn, -1)
        entry.awaiting = False
        if self.dedupe:
            entry.state = _RELEASED
        else:
            del self._entries[envelope_id]
        return True, conn

    def ack_of(self, envelope_id: str) -> tuple[bool, Optional[str]]:
        """Whether ``envelope_id`` was acked, and the ack's text (None for the plain ack, or none)."""
        with self._lock:
            entry = self._entries.get(envelope_id)
            if entry is None or entry.state != _ACKED:
                return False, None
            return True, entry.ack

    def inflight(self, conn: C) -> int:
        """How many envelopes delivered on ``conn`` are neither handled nor acked with the ack written.

        An envelope counts from its delivery until its listeners return without acking
        (:meth:`handled`), or until its ack is written (:meth:`written`, after :meth:`ack`), or
        with ``on_routed``, until it is acked.
        """
        return self._inflight.get(id(conn), 0)

    def _move(self, entry: _Entry[C], conn: C) -> None:
        if entry.state == _INFLIGHT and entry.conn is not conn:
            self._count(entry.conn, -1)
            self._count(conn, +1)
        elif entry.state != _INFLIGHT:
            self._count(conn, +1)
        entry.conn = conn

    def _keep_ack(self, entry: _Entry[C], text: Optional[str]) -> None:
        """Keep ``text`` as the entry's ack, counted in :attr:`ack_bytes` (lock held)."""
        if entry.ack is not None:
            self.ack_bytes -= len(entry.ack)
        entry.ack = text
        if text is not None:
            self.ack_bytes += len(text)

    def _count(self, conn: Optional[C], delta: int) -> None:
        key = id(conn)
        n = self._inflight.get(key, 0) + delta
        if n > 0:
            self._inflight[key] = n
        else:
            self._inflight.pop(key, None)

    def _evict(self, now: float) -> None:
        entries, order = self._entries, self._order
        oldest = now - self.max_age
        for _ in range(len(order)):
            envelope_id = order[0]
            entry = entries[envelope_id]
            if len(entries) <= self.max_entries and entry.at > oldest and self.ack_bytes <= self.max_ack_bytes:
                self._evict_due = entry.at + self.max_age  # nothing is too old before then
                return
            order.popleft()
            if entry.state == _INFLIGHT:
                order.append(envelope_id)  # never forget what is in flight
                continue
            del entries[envelope_id]
            self.evicted += 1
            if entry.ack is not None:
                self.ack_bytes -= len(entry.ack)
