"""A ledger shared by replicas: one envelope is run by one replica at a time (no sockets here).

Slack sends each envelope to one of the app's open connections (up to 10, across every
process) and redelivers an unacked one to any of them, often another replica
(https://api.slack.com/apis/socket-mode). The per-process :class:`~slack_socket_mode.ledger.EnvelopeLedger`
cannot see a redelivery that lands elsewhere; a :class:`SharedStore` (for example
:class:`slack_socket_mode.redis.RedisLedger`) passed as the client's ``dedupe=`` can:

* before dispatch, the replica **claims** the envelope's keys atomically with a **lease**
  of :attr:`SharedStore.lease` seconds. Each claim carries an owner value of its own (the
  process's id and the claim's number), so a second envelope of one event is held like any
  other claim, on this replica too, and a release frees only what its own claim holds;
* while the listeners run, the ``slack_socket_mode-<n>-lease`` thread renews **every claim
  held in one store call** (:meth:`SharedStore.sync`: one round trip) every third of a lease;
* when the listeners return it records the envelope **done**, with the ack's payload, for
  :attr:`SharedStore.done_ttl` seconds: the lease thread writes the done records that are
  ready in the same call as the renewals, never over a claim another replica now holds (so
  that the thread that ran the listeners, often a connection's reader, does not wait for
  the store);
* a delivery that finds the envelope done is acked at once, identically, without running;
* a delivery that finds a live claim (of another replica, or of another envelope of the same
  event here) is neither run nor acked: if that replica dies, its lease expires and Slack's
  next redelivery (3 s later) runs it;
* when a listener raised :class:`~slack_socket_mode.errors.Redeliver` and nothing acked the
  envelope, the claim is dropped without a done record (:meth:`SharedLedger.redeliver`): Slack's
  redelivery is claimed and run by whichever replica it reaches.

**A lost lease.** A claim not renewed within its lease (the process was paused longer than
that, by a VM pause, a long GC or SIGSTOP; or the store answered too slowly) expires, and a
redelivery may then run the envelope on another replica while its listeners still run
here. Every such claim is logged at WARNING and counted (:attr:`SharedLedger.leases_lost`,
``stats().shared_leases_lost``): one the lease thread finds free again is claimed again; one
another replica took is left to it (not renewed, and its done record is not written over
that replica's claim).

**Foreign keys.** A key in the namespace that no replica wrote as it is (a value with neither
the claim nor the done prefix, a claim without a TTL, a value too long to be ours, a key of
another type) holds nothing: it is logged at WARNING once when found, counted
(:attr:`SharedLedger.foreign_keys`, ``stats().shared_foreign_keys``), and the envelope is
claimed over it and run. It never makes the store unavailable.

Keys: ``envelope:<envelope_id>``, and for ``events_api`` also ``event:<event_id>`` (the
payload's ``event_id`` is stable across the Events API's own retries, which carry a new
``envelope_id``). The store namespaces them per app.

When the store is unreachable (:class:`StoreUnavailableError`), :attr:`SharedStore.on_unavailable`
decides: ``"local"`` (the default) keeps dispatching with the local ledger alone (a
redelivery to another replica may then run twice); ``"skip"`` neither runs nor acks, so
Slack redelivers (after its last retry, 3 in all, the envelope is lost: choose it only
when a duplicate is worse than a loss). Either way a WARNING is logged once per outage,
:meth:`SharedLedger.status` (in ``health()`` and ``stats()``) says so, and no reader asks
the store again until it is back: the lease thread probes it (:meth:`SharedStore.ping`)
every :attr:`SharedStore.retry_after` seconds, and the first answer ends the outage. So an
outage costs a reader one timeout, not one per envelope, and ends within ``retry_after``
(plus a round trip) of the store's recovery. Done records and releases that could not be
written wait for it; renewals resume at once.

Thread-safe: one lock guards the claims held and the outage state; no store call is made
under it.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import platform
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional, Protocol

from .errors import SocketModeError
from .messages import Envelope, plain_ack
from .records import record
from .redaction import redact

__all__ = [
    "DONE_DELAY",
    "MAX_RECORD",
    "Admission",
    "Claim",
    "ClaimResult",
    "Finished",
    "Held",
    "Lease",
    "RoundResult",
    "SharedLedger",
    "SharedStore",
    "StoreUnavailableError",
    "envelope_keys",
]

_ON_UNAVAILABLE = ("local", "skip")

#: The longest done record (characters) the client writes; a longer ack is recorded as a plain ack,
#: and a store may take a longer value for a foreign one.
MAX_RECORD = 1 << 20

#: Seconds between probes of an unreachable store at the least, whatever ``retry_after`` says.
_MIN_PROBE_PERIOD = 0.05

#: Seconds a done record waits for others to go with it to the store, at most (less where the
#: renewal its claim was due comes first, as with a lease under 0.15 s): at a steady rate the
#: records of many envelopes share one round trip, instead of one each on top of the claim. A
#: redelivery that reaches another replica in the meantime finds the claim, still live, and is
#: neither run nor acked (Slack redelivers it again, and that one finds the record).
DONE_DELAY = 0.05

#: Done records that are written at once, without waiting for :data:`DONE_DELAY`.
_DONES_AT_ONCE = 1000

#: Envelope ids named in one WARNING about lost leases; the rest are counted.
_IDS_LOGGED = 20


class StoreUnavailableError(SocketModeError):
    """The shared store could not be reached, or did not answer in time."""


class Claim(enum.Enum):
    """What a claim found."""

    CLAIMED = "claimed"  #: no one had it: it is ours for one lease
    DONE = "done"  #: a replica already ran it; :attr:`ClaimResult.record` says how it was acked
    HELD = "held"  #: another claim (of another replica, or of another envelope here) holds it


@record
class ClaimResult(NamedTuple):
    """The answer to :meth:`SharedStore.claim`.

    Attributes:
        outcome: what the claim found.
        record: the done record for :attr:`Claim.DONE` (``None``: a record the store could not
            read, such as one that is not UTF-8), else "".
        foreign: the foreign keys found, each as ``"<key> (<why>)"``: claimed over with
            :attr:`Claim.CLAIMED`, left as they are otherwise.
    """

    outcome: Claim
    record: Optional[str] = ""
    foreign: tuple[str, ...] = ()


@record
class Held(NamedTuple):
    """A claim held: the envelope's logical keys and the claim's owner value (one per claim)."""

    keys: tuple[str, ...]
    owner: str


@record
class Finished(NamedTuple):
    """A claimed envelope whose listeners returned: its keys, its claim's owner value, its done record."""

    keys: tuple[str, ...]
    owner: str
    record: str


class Lease(enum.Enum):
    """What a renewal or a done record found of a claim in the store."""

    KEPT = "kept"  #: still ours: renewed, or replaced by the done record
    LAPSED = "lapsed"  #: expired, and no one else had it: claimed again, or the done record written
    TAKEN = "taken"  #: another owner's claim holds a key: left to it (nothing written there)
    DONE = "done"  #: a done record holds a key (another replica's, or this one's from a call that timed out): kept


@record
class RoundResult(NamedTuple):
    """The answer to :meth:`SharedStore.sync`: one :class:`Lease` per renewal and per done record, in order.

    ``foreign`` lists the foreign keys found (``"<key> (<why>)"``); a renewal or a done record
    is written over them.
    """

    renewed: tuple[Lease, ...] = ()
    recorded: tuple[Lease, ...] = ()
    foreign: tuple[str, ...] = ()


class SharedStore(Protocol):
    """What a shared ledger store does. Keys are logical (``envelope:…``); the store namespaces them.

    ``owner`` is a claim's owner value: the client gives each claim one of its own (a
    process's claims never share one), so a key holding another value is held by another
    claim. A value the store did not write as a claim or a done record is foreign: it holds
    nothing, and is reported (:attr:`ClaimResult.foreign`, :attr:`RoundResult.foreign`).

    Every method raises :class:`StoreUnavailableError` when the store cannot be reached
    within its own timeouts; none blocks longer than those. One bad key never makes a call fail.
    """

    #: seconds a claim lives unless renewed
    lease: float
    #: seconds a done record is kept
    done_ttl: float
    #: ``"local"`` or ``"skip"`` (see the module docstring)
    on_unavailable: str
    #: seconds between probes of the store while it is unreachable
    retry_after: float

    def claim(self, keys: Sequence[str], owner: str) -> ClaimResult:
        """Atomically: if any key is done, its record; if any is claimed by another owner, HELD; else claim all."""

    def sync(self, renew: Sequence[Held], done: Sequence[Finished], release: Sequence[Held]) -> RoundResult:
        """In one round trip: renew each claim of ``renew``, record each of ``done``, drop each of ``release``.

        A renewal of a claim that expired with no other holder claims it again
        (:attr:`Lease.LAPSED`); a done record is written over the owner's own claim, an
        expired one or a foreign value, never over another owner's claim (:attr:`Lease.TAKEN`)
        or a done record (:attr:`Lease.DONE`); a release drops only keys still holding the
        owner's value. Each call's keys are its items' keys: at most 9 per item.
        """

    def ping(self) -> None:
        """Return once the store answers (the probe while it is unavailable)."""

    def renew(self, keys: Sequence[str], owner: str) -> bool:
        """Extend ``owner``'s claim on ``keys`` by one lease (one claim); False if another owner holds one."""

    def done(self, keys: Sequence[str], record: str, owner: Optional[str] = None) -> None:
        """Record ``keys`` done with ``record`` (opaque) for ``done_ttl`` seconds; with ``owner``, as :meth:`sync`."""

    def release(self, keys: Sequence[str], owner: str) -> None:
        """Drop ``owner``'s claim on ``keys`` (the envelope was not run); others' claims stay."""


def envelope_keys(envelope: Envelope) -> tuple[str, ...]:
    """The logical keys of an envelope: its ``envelope_id``, and for ``events_api`` its ``event_id``."""
    keys = [f"envelope:{envelope.envelope_id}"]
    if envelope.type == "events_api":
        payload = envelope.body.get("payload")
        event_id = payload.get("event_id") if isinstance(payload, dict) else None
        if isinstance(event_id, str) and 0 < len(event_id) <= 256:
            keys.append(f"event:{event_id}")
    return tuple(keys)


class Admission(enum.Enum):
    """What the client does with a first delivery, once the shared store was asked."""

    RUN = "run"  #: run the listeners (claimed, or the store is down and the policy is "local")
    ACK = "ack"  #: done elsewhere: send the ack that came with the answer, do not run
    SKIP = "skip"  #: claimed elsewhere, or the store is down and the policy is "skip": neither run nor ack
    SETTLED = "settled"  #: done elsewhere and not acked there: neither run nor ack


class _Done(NamedTuple):
    """A done record waiting for the lease thread; ``retried``: a store call that failed may have written it."""

    envelope_id: str
    finished: Finished
    retried: bool = False


class SharedLedger:
    """The client's side of a :class:`SharedStore`: claims, the lease thread, the outage policy.

    Args:
        store: the store (its ``lease``, ``done_ttl``, ``on_unavailable`` and ``retry_after`` apply).
        logger: where to log.
        thread_name: the name of the lease thread (started with the first claim, or the first outage).

    Raises:
        ValueError: the store's ``on_unavailable``, ``lease`` or ``retry_after`` is invalid, or it lacks a
            method the client calls (``claim``, ``sync``, ``ping``).
    """

    def __init__(self, store: SharedStore, *, logger: logging.Logger, thread_name: str) -> None:
        if store.on_unavailable not in _ON_UNAVAILABLE:
            raise ValueError(f"on_unavailable must be one of {_ON_UNAVAILABLE}, not {store.on_unavailable!r}")
        if not store.lease > 0:
            raise ValueError("the store's lease must be a positive number of seconds")
        if not store.retry_after >= 0:
            raise ValueError("the store's retry_after must be a number of seconds, 0 or more")
        missing = [name for name in ("claim", "sync", "ping") if not callable(getattr(store, name, None))]
        if missing:
            raise ValueError(f"the shared store {type(store).__name__} has no {', '.join(missing)}() (see SharedStore)")
        self.store = store
        self.logger = logger
        #: who we are in the store: host, process and a random part (a restarted process is someone
        #: else); each claim's owner value adds the claim's number to it
        self.owner = f"{platform.node()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._thread_name = thread_name
        # Guards everything below but the store; no store call is made under it.
        # Lock order 4 (docs/threading.md, "Locks"): a leaf like the ledger's, taken under the
        # client's _lock (stats) or _queue_lock (release); nothing is taken under it.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the lease thread waits here
        self._claims: dict[str, Held] = {}  # envelope_id -> the claim held, its listeners not yet returned
        self._taken: set[str] = set()  # owner values of claims in _claims another owner took: not renewed
        self._counted: set[str] = set()  # owner values of claims whose lost lease was logged and counted
        self._releases: list[Held] = []  # claims to drop in the store (the lease thread does it)
        self._dones: list[_Done] = []  # done records to write (the lease thread does it)
        self._dones_due = 0.0  # monotonic time by which the lease thread writes the oldest of _dones
        # monotonic time the lease thread sleeps until: inf without a timeout, 0.0 while it is awake (it
        # checks everything above before it sleeps again, so it is woken only if it would sleep past
        # what is now due: one wake-up per batch of done records, not one per envelope)
        self._sleeps_until = 0.0
        self._admitting: dict[int, float] = {}  # claim number -> monotonic time its store call began
        self._claim_number = 0
        self._outage: Optional[str] = None  # why the store is unreachable, while it is
        self._outage_since = 0.0  # monotonic time the outage was found
        self._probe_at = 0.0  # monotonic time of the next probe, during an outage
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self.claimed = 0  #: envelopes claimed and run
        self.acked_done = 0  #: deliveries acked from another replica's done record
        self.held_elsewhere = 0  #: deliveries neither run nor acked: another claim held them
        self.run_unshared = 0  #: envelopes run with the local ledger alone (store unreachable)
        self.skipped_unavailable = 0  #: envelopes neither run nor acked (store unreachable, policy "skip")
        self.leases_lost = 0  #: claims that lapsed or were taken while their listeners ran
        self.redelivery_releases = 0  #: claims dropped because the listeners raised Redeliver
        self.foreign_keys = 0  #: keys found in the namespace that no replica wrote as they are

    # ---- called by the client ------------------------------------------------------------------

    def admit(self, envelope: Envelope) -> tuple[Admission, Optional[str]]:
        """Claim a first delivery. Returns what to do, and for :attr:`Admission.ACK` the ack's text.

        Blocks for one store round trip at most (the store's own timeouts), none while the store
        is unavailable; never raises.
        """
        keys = envelope_keys(envelope)
        with self._lock:
            number = 0
            if self._outage is None:
                self._claim_number = number = self._claim_number + 1
                self._admitting[number] = time.monotonic()
        if number:
            held = Held(keys, f"{self.owner}:{number}")
            try:
                result = self.store.claim(keys, held.owner)
            except Exception as e:
                with self._lock:
                    waited = time.monotonic() - self._admitting.pop(number)
                self._failed(e, f"envelope {envelope.envelope_id} waited {waited:.1f} s for it")
            else:
                return self._admitted(envelope, number, held, result)
        with self._lock:
            if self.store.on_unavailable == "skip":
                self.skipped_unavailable += 1
                return Admission.SKIP, None
            self.run_unshared += 1
        return Admission.RUN, None

    def admission_wait(self) -> float:
        """Seconds the oldest store call of :meth:`admit` still running has waited (0.0 if none): a stuck reader."""
        with self._lock:
            if not self._admitting:
                return 0.0
            return max(0.0, time.monotonic() - min(self._admitting.values()))

    def finish(self, envelope_id: str, acked: bool, ack_text: Optional[str]) -> None:
        """The listeners of ``envelope_id`` returned: record it done (with its ack) and stop renewing.

        ``ack_text`` is the ack sent (None for the plain ack, or when ``acked`` is False). Never
        raises, and does not wait for the store: the lease thread writes the done record within
        :data:`DONE_DELAY` (with the others due by then, in one round trip), so the thread that
        ran the listeners, often a connection's reader, goes back to reading at once; once
        :meth:`close` stopped that thread, the caller writes it.
        """
        with self._lock:
            held = self._claims.pop(envelope_id, None)
            if held is None:
                return  # not claimed: the store was down at admission
            self._taken.discard(held.owner)
            done = _Done(envelope_id, Finished(held.keys, held.owner, _done_record(acked, ack_text)))
            if not self._stopping:
                self._dones.append(done)
                if len(self._dones) == 1:
                    self._dones_due = time.monotonic() + DONE_DELAY
                    if self._sleeps_until > self._dones_due:
                        self._wake.notify_all()
                elif len(self._dones) == _DONES_AT_ONCE:
                    self._wake.notify_all()
                return
        self._now([], [done], [])

    def redeliver(self, envelope_id: str) -> None:
        """The listeners of ``envelope_id`` returned without acking and asked for Slack's redelivery.

        Drops this replica's claim without recording the envelope done, so that Slack's
        redelivery is claimed and run by whichever replica it reaches (this one included).
        Never raises, and does not wait for the store: the lease thread drops the claim; once
        :meth:`close` stopped that thread, the caller drops it (one store call, bounded by the
        store's timeouts). If the store cannot be reached, the claim expires with its lease.
        """
        with self._lock:
            held = self._claims.pop(envelope_id, None)
            if held is None:
                return  # not claimed: the store was down at admission
            self._taken.discard(held.owner)
            self.redelivery_releases += 1
            if not self._stopping:
                self._releases.append(held)
                if len(self._releases) == 1:
                    self._wake.notify_all()
                return
        self._now([], [], [held])

    def release(self, envelope_id: str) -> None:
        """A claimed envelope will not be run (the client is closing): let another replica have it.

        Never blocks (the caller may hold a lock): the lease thread drops the claim in the store
        soon after; if it cannot (closed first), the claim expires with its lease.
        """
        with self._lock:
            held = self._claims.pop(envelope_id, None)
            if held is not None:
                self._taken.discard(held.owner)
                self._releases.append(held)
                self._wake.notify_all()

    def status(self) -> str:
        """``"ok"``, or why the store is not used just now (for ``health()`` and ``stats()``)."""
        with self._lock:
            if self._outage is None:
                return "ok"
            policy = "using the local ledger" if self.store.on_unavailable == "local" else "skipping envelopes"
            return f"unavailable ({policy}): {self._outage}"

    def close(self, timeout: float = 1.0) -> None:
        """Stop the lease thread (claims still held expire with their lease). Idempotent.

        The thread writes the done records and releases that are waiting, in one last store
        call, unless the store is unavailable.
        """
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ---- internals -----------------------------------------------------------------------------

    def _admitted(
        self, envelope: Envelope, number: int, held: Held, result: ClaimResult
    ) -> tuple[Admission, Optional[str]]:
        outcome = result.outcome
        with self._lock:
            del self._admitting[number]
            if outcome is Claim.CLAIMED:
                self._claims[envelope.envelope_id] = held
                self.claimed += 1
                self._start_thread()
                if self._sleeps_until == math.inf:
                    self._wake.notify_all()  # it sleeps without a timeout while nothing is claimed or due
            elif outcome is Claim.HELD:
                self.held_elsewhere += 1
            else:
                self.acked_done += 1
        self._came_back()
        if result.foreign or result.record is None:
            self._found_foreign(result, envelope.envelope_id)
        if outcome is Claim.CLAIMED:
            return Admission.RUN, None
        if outcome is Claim.HELD:
            return Admission.SKIP, None
        ack = _ack_from_record(envelope.envelope_id, result.record)
        return (Admission.ACK, ack) if ack is not None else (Admission.SETTLED, None)

    def _found_foreign(self, result: ClaimResult, envelope_id: str) -> None:
        found = list(result.foreign)
        if result.record is None:
            found.append(f"envelope {envelope_id}'s done record (not readable: taken for a plain ack)")
        self._count_foreign(found)
        if result.outcome is Claim.CLAIMED:
            then = f"it holds nothing: envelope {envelope_id} is claimed over it and run"
        else:
            then = f"left as it is: envelope {envelope_id} was found {result.outcome.value}"
        for what in found:
            self.logger.warning("shared ledger: a key not written by a replica, %s; %s", what, then)

    def _count_foreign(self, found: Sequence[str]) -> None:
        with self._lock:
            self.foreign_keys += len(found)

    def _start_thread(self) -> None:
        """Start the lease thread if it is not running (lock held)."""
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def _failed(self, error: Exception, waited: str = "") -> None:
        """A store call failed: unreachable (a :class:`StoreUnavailableError`), or a store error we do not know."""
        if not isinstance(error, StoreUnavailableError):  # logged as an outage: a store that fails is not used
            error = StoreUnavailableError(f"{type(error).__name__}: {redact(str(error))[:160]}")
        with self._lock:
            first = self._outage is None
            if first:
                self._outage = redact(str(error))[:200]
                self._outage_since = now = time.monotonic()
                self._probe_at = now + max(_MIN_PROBE_PERIOD, self.store.retry_after)
                self._start_thread()  # it probes the store
                self._wake.notify_all()
            outage = self._outage
        if first:
            policy = (
                "dispatching with the local ledger only (a redelivery to another replica may run again)"
                if self.store.on_unavailable == "local"
                else "neither running nor acking envelopes (Slack redelivers them)"
            )
            self.logger.warning(
                "shared ledger unavailable: %s%s; %s until it answers again (probed every %g s)",
                outage,
                f" ({waited})" if waited else "",
                policy,
                max(_MIN_PROBE_PERIOD, self.store.retry_after),
            )

    def _came_back(self) -> None:
        if self._outage is None:  # the common case: no lock
            return
        with self._lock:
            was, self._outage = self._outage, None
            lasted = time.monotonic() - self._outage_since
            if self._dones or self._releases:
                self._wake.notify_all()
        if was is not None:
            self.logger.info("shared ledger reachable again (unavailable for %.1f s)", lasted)

    def _run(self) -> None:
        """The lease thread: one store call per round for what is due; probes the store during an outage."""
        period = self.store.lease / 3
        probe_period = max(_MIN_PROBE_PERIOD, self.store.retry_after)
        next_renewal = time.monotonic() + period  # kept across wake-ups: a stream of done records never delays it
        while True:
            with self._lock:
                while not self._stopping:
                    now = time.monotonic()
                    if self._outage is not None:
                        if now >= self._probe_at:
                            break
                        self._sleep(self._probe_at)
                    elif self._releases or len(self._dones) >= _DONES_AT_ONCE:
                        break
                    elif self._dones:
                        # within DONE_DELAY, and never after the renewal the finished claims were due: a
                        # claim lives a lease from its last renewal, and a short lease is shorter than that
                        due = min(self._dones_due, next_renewal)
                        if now >= due:
                            break
                        self._sleep(due)
                    elif not self._claims:
                        self._sleep(math.inf)
                        next_renewal = time.monotonic() + period  # a claim made now lives a whole lease
                    elif now >= next_renewal:
                        break
                    else:
                        self._sleep(next_renewal)
                stopping, outage = self._stopping, self._outage is not None
                if outage:
                    self._probe_at = time.monotonic() + probe_period
                    releases, dones, renew = [], [], []
                else:
                    releases, self._releases = self._releases, []
                    dones, self._dones = self._dones, []
                    due = bool(self._claims) and not stopping and time.monotonic() >= next_renewal
                    renew = [(e, h) for e, h in self._claims.items() if h.owner not in self._taken] if due else []
                    if due:
                        next_renewal = time.monotonic() + period
            if outage:
                if stopping:
                    return  # the claims expire with their lease
                if self._probe():
                    next_renewal = time.monotonic()  # renew at once: the outage may have lasted most of a lease
                continue
            if renew or dones or releases:
                self._round(renew, dones, releases, requeue=not stopping)
            if stopping:
                return

    def _sleep(self, until: float) -> None:
        """The lease thread waits until ``until`` (monotonic; inf: until woken), lock held."""
        self._sleeps_until = until
        try:
            self._wake.wait(None if until == math.inf else max(0.0, until - time.monotonic()))
        finally:
            self._sleeps_until = 0.0

    def _probe(self) -> bool:
        """Ask the store whether it is back (the lease thread, during an outage). True if it is."""
        try:
            self.store.ping()
        except Exception:
            return False
        self._came_back()
        return True

    def _now(self, renew: list[tuple[str, Held]], dones: list[_Done], releases: list[Held]) -> None:
        """A store call by the caller, once the lease thread is stopped (unless the store is unavailable)."""
        with self._lock:
            if self._outage is not None:
                return  # the claims expire with their lease
        self._round(renew, dones, releases, requeue=False)

    def _round(self, renew: list[tuple[str, Held]], dones: list[_Done], releases: list[Held], *, requeue: bool) -> None:
        """One store call for a round; on failure the done records and releases wait for the store's return."""
        try:
            result = self.store.sync([h for _, h in renew], [d.finished for d in dones], releases)
        except Exception as e:
            if requeue:
                with self._lock:
                    self._dones[:0] = [d._replace(retried=True) for d in dones]
                    self._releases[:0] = releases
            self._failed(e)
            return
        self._came_back()
        lapsed: list[str] = []
        taken: list[str] = []
        with self._lock:
            for (envelope_id, held), lease in zip(renew, result.renewed):
                if lease is not Lease.KEPT and held.owner not in self._counted:
                    self._counted.add(held.owner)
                    (lapsed if lease is Lease.LAPSED else taken).append(envelope_id)
                if lease in (Lease.TAKEN, Lease.DONE) and self._claims.get(envelope_id) == held:
                    self._taken.add(held.owner)  # left to the other replica: no longer renewed
            for done, lease in zip(dones, result.recorded):
                owner = done.finished.owner
                ours = lease is Lease.KEPT or (lease is Lease.DONE and done.retried)  # written by the failed call
                if not ours and owner not in self._counted:
                    (lapsed if lease is Lease.LAPSED else taken).append(done.envelope_id)
                self._counted.discard(owner)
            for held in releases:
                self._counted.discard(held.owner)
            self.leases_lost += len(lapsed) + len(taken)
        if result.foreign:
            self._count_foreign(result.foreign)
            for what in result.foreign:
                self.logger.warning("shared ledger: a key not written by a replica, %s; written over", what)
        seconds = self.store.lease
        if taken:
            self.logger.warning(
                "shared ledger: lease lost for %d envelope(s) while their listeners ran or their done records "
                "waited: taken by another replica, which may run them too (a pause of this process, or a store slower "
                "than the %g s lease?): %s",
                len(taken),
                seconds,
                _ids(taken),
            )
        if lapsed:
            self.logger.warning(
                "shared ledger: lease lost for %d envelope(s) while their listeners ran or their done records "
                "waited: not renewed within the %g s lease (a pause of this process, or a slow store?); no other "
                "replica had taken them, so "
                "they are claimed (or recorded done) again: %s",
                len(lapsed),
                seconds,
                _ids(lapsed),
            )


def _ids(envelope_ids: list[str]) -> str:
    """Envelope ids for a log line: the first few, and how many more."""
    shown = ", ".join(envelope_ids[:_IDS_LOGGED])
    more = len(envelope_ids) - _IDS_LOGGED
    return f"{shown} and {more} more" if more > 0 else shown


def _done_record(acked: bool, ack_text: Optional[str]) -> str:
    """The done record: ``{"ack": false}``, ``{"ack": true}``, or ``{"ack": true, "payload": …}``.

    A record longer than :data:`MAX_RECORD` is recorded as the plain ack's.
    """
    if not acked:
        return '{"ack":false}'
    if ack_text is None:
        return '{"ack":true}'
    try:
        body: Any = json.loads(ack_text)
    except ValueError:
        body = None
    if isinstance(body, dict) and "payload" in body:
        text = json.dumps({"ack": True, "payload": body["payload"]}, separators=(",", ":"))
        if len(text) <= MAX_RECORD:
            return text
    return '{"ack":true}'


def _ack_from_record(envelope_id: str, text: Optional[str]) -> Optional[str]:
    """The ack for ``envelope_id`` that a done record calls for, or None (it was not acked)."""
    try:
        done: Any = json.loads(text) if text is not None else None
    except ValueError:
        done = None
    if not isinstance(done, dict):
        return plain_ack(envelope_id)  # a record we cannot read: it ran; the plain ack settles it
    if not done.get("ack", True):
        return None
    if "payload" not in done:
        return plain_ack(envelope_id)
    return json.dumps({"envelope_id": envelope_id, "payload": done["payload"]}, separators=(",", ":"))
