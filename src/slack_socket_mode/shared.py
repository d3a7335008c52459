"""A ledger shared by replicas: one envelope is run by one replica at a time (no sockets here).

Slack sends each envelope to one of the app's open connections (up to 10, across every
process) and redelivers an unacked one to any of them, often another replica
(https://api.slack.com/apis/socket-mode). The per-process :class:`~slack_socket_mode.ledger.EnvelopeLedger`
cannot see a redelivery that lands elsewhere; a :class:`SharedStore` (for example
:class:`slack_socket_mode.redis.RedisLedger`) passed as the client's ``dedupe=`` can:

* before dispatch, the replica **claims** the envelope's keys atomically with a **lease**
  of :attr:`SharedStore.lease` seconds, renewed every third of it by the
  ``slack_socket_mode-<n>-lease`` thread while the listeners run;
* when the listeners return it records the envelope **done**, with the ack's payload, for
  :attr:`SharedStore.done_ttl` seconds (the lease thread writes it, so that the thread that ran
  the listeners does not wait for the store);
* a delivery that finds the envelope done is acked at once, identically, without running;
* a delivery that finds a live claim of another replica is neither run nor acked: if that
  replica dies, its lease expires and Slack's next redelivery (3 s later) runs it;
* when a listener raised :class:`~slack_socket_mode.errors.Redeliver` and nothing acked the
  envelope, the claim is dropped without a done record (:meth:`SharedLedger.redeliver`): Slack's
  redelivery is claimed and run by whichever replica it reaches.

Keys: ``envelope:<envelope_id>``, and for ``events_api`` also ``event:<event_id>`` (the
payload's ``event_id`` is stable across the Events API's own retries, which carry a new
``envelope_id``). The store namespaces them per app.

When the store is unreachable (:class:`StoreUnavailableError`), :attr:`SharedStore.on_unavailable`
decides: ``"local"`` (the default) keeps dispatching with the local ledger alone (a
redelivery to another replica may then run twice); ``"skip"`` neither runs nor acks, so
Slack redelivers (after its last retry, 3 in all, the envelope is lost: choose it only
when a duplicate is worse than a loss). Either way a WARNING is logged once per outage,
:meth:`SharedLedger.status` (in ``health()`` and ``stats()``) says so, and the store is
not asked again for ``retry_after`` seconds, so an outage costs one timeout, not one per
envelope.

Thread-safe: one lock guards the claims held and the outage state; no store call is made
under it.
"""

from __future__ import annotations

import enum
import json
import logging
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
    "Admission",
    "Claim",
    "ClaimResult",
    "SharedLedger",
    "SharedStore",
    "StoreUnavailableError",
    "envelope_keys",
]

_ON_UNAVAILABLE = ("local", "skip")


class StoreUnavailableError(SocketModeError):
    """The shared store could not be reached, or did not answer in time."""


class Claim(enum.Enum):
    """What a claim found."""

    CLAIMED = "claimed"  #: no one had it: it is ours for one lease
    DONE = "done"  #: a replica already ran it; :attr:`ClaimResult.record` says how it was acked
    HELD = "held"  #: another replica holds a live claim on it


@record
class ClaimResult(NamedTuple):
    """The answer to :meth:`SharedStore.claim`; ``record`` is the done record for :attr:`Claim.DONE`, else ""."""

    outcome: Claim
    record: str = ""


class SharedStore(Protocol):
    """What a shared ledger store does. Keys are logical (``envelope:…``); the store namespaces them.

    Every method raises :class:`StoreUnavailableError` when the store cannot be reached
    within its own timeouts; none blocks longer than those.
    """

    #: seconds a claim lives unless renewed
    lease: float
    #: seconds a done record is kept
    done_ttl: float
    #: ``"local"`` or ``"skip"`` (see the module docstring)
    on_unavailable: str
    #: seconds not to ask the store again after it was found unreachable
    retry_after: float

    def claim(self, keys: Sequence[str], owner: str) -> ClaimResult:
        """Atomically: if any key is done, return its record; if any is claimed by another, HELD; else claim all."""

    def renew(self, keys: Sequence[str], owner: str) -> bool:
        """Extend ``owner``'s claim on ``keys`` by one lease; False if it was lost (expired, or taken)."""

    def done(self, keys: Sequence[str], record: str) -> None:
        """Record ``keys`` as done with ``record`` (an opaque string), for ``done_ttl`` seconds."""

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


class SharedLedger:
    """The client's side of a :class:`SharedStore`: claims, the lease thread, the outage policy.

    Args:
        store: the store (its ``lease``, ``done_ttl``, ``on_unavailable`` and ``retry_after`` apply).
        logger: where to log.
        thread_name: the name of the lease-renewal thread (started with the first claim).

    Raises:
        ValueError: the store's ``on_unavailable`` or ``lease`` is invalid.
    """

    def __init__(self, store: SharedStore, *, logger: logging.Logger, thread_name: str) -> None:
        if store.on_unavailable not in _ON_UNAVAILABLE:
            raise ValueError(f"on_unavailable must be one of {_ON_UNAVAILABLE}, not {store.on_unavailable!r}")
        if not store.lease > 0:
            raise ValueError("the store's lease must be a positive number of seconds")
        self.store = store
        self.logger = logger
        #: who we are in the store: host, process and a random part (a restarted process is someone else)
        self.owner = f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._thread_name = thread_name
        # Guards _claims, _down_until, _outage and the counters; no store call is made under it.
        # Lock order 4 (docs/threading.md, "Locks"): a leaf like the ledger's, taken under the
        # client's _lock (stats) or _queue_lock (release); nothing is taken under it.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the lease thread waits here
        self._claims: dict[str, tuple[str, ...]] = {}  # envelope_id -> keys claimed and not yet done
        self._lost: set[str] = set()  # claims in _claims whose lease was lost: no longer renewed
        self._releases: list[tuple[str, ...]] = []  # claims to drop in the store (the lease thread does it)
        self._dones: list[tuple[tuple[str, ...], str]] = []  # done records to write (the lease thread does it)
        self._down_until = 0.0  # monotonic time before which the store is not asked again
        self._outage: Optional[str] = None  # why the store is unreachable, while it is
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self.claimed = 0  #: envelopes claimed and run
        self.acked_done = 0  #: deliveries acked from another replica's done record
        self.held_elsewhere = 0  #: deliveries neither run nor acked: another replica held them
        self.run_unshared = 0  #: envelopes run with the local ledger alone (store unreachable)
        self.skipped_unavailable = 0  #: envelopes neither run nor acked (store unreachable, policy "skip")
        self.leases_lost = 0  #: claims that expired or were taken while their listeners ran
        self.redelivery_releases = 0  #: claims dropped because the listeners raised Redeliver

    # ---- called by the client ------------------------------------------------------------------

    def admit(self, envelope: Envelope) -> tuple[Admission, Optional[str]]:
        """Claim a first delivery. Returns what to do, and for :attr:`Admission.ACK` the ack's text.

        Blocks for one store round trip at most (the store's own timeouts); never raises.
        """
        keys = envelope_keys(envelope)
        if not self._store_down():
            try:
                result = self.store.claim(keys, self.owner)
            except Exception as e:
                self._failed(e)
            else:
                self._came_back()
                return self._admitted(envelope, keys, result)
        with self._lock:
            if self.store.on_unavailable == "skip":
                self.skipped_unavailable += 1
                return Admission.SKIP, None
            self.run_unshared += 1
        return Admission.RUN, None

    def finish(self, envelope_id: str, acked: bool, ack_text: Optional[str]) -> None:
        """The listeners of ``envelope_id`` returned: record it done (with its ack) and stop renewing.

        ``ack_text`` is the ack sent (None for the plain ack, or when ``acked`` is False). Never
        raises, and does not wait for the store: the lease thread writes the done record (so the
        thread that ran the listeners, often a connection's reader, goes back to reading at once);
        once :meth:`close` stopped that thread, the caller writes it.
        """
        with self._lock:
            keys = self._claims.pop(envelope_id, None)
            self._lost.discard(envelope_id)
            if keys is None:
                return  # not claimed: the store was down at admission
            done_record = _done_record(acked, ack_text)
            if not self._stopping:
                self._dones.append((keys, done_record))
                if len(self._dones) == 1:
                    self._wake.notify_all()
                return
        self._record([(keys, done_record)])

    def redeliver(self, envelope_id: str) -> None:
        """The listeners of ``envelope_id`` returned without acking and asked for Slack's redelivery.

        Drops this replica's claim without recording the envelope done, so that Slack's
        redelivery is claimed and run by whichever replica it reaches (this one included).
        Never raises, and does not wait for the store: the lease thread drops the claim; once
        :meth:`close` stopped that thread, the caller drops it (one store call, bounded by the
        store's timeouts). If the store cannot be reached, the claim expires with its lease.
        """
        with self._lock:
            keys = self._claims.pop(envelope_id, None)
            self._lost.discard(envelope_id)
            if keys is None:
                return  # not claimed: the store was down at admission
            self.redelivery_releases += 1
            if not self._stopping:
                self._releases.append(keys)
                if len(self._releases) == 1:
                    self._wake.notify_all()
                return
        self._drop([keys])

    def release(self, envelope_id: str) -> None:
        """A claimed envelope will not be run (the client is closing): let another replica have it.

        Never blocks (the caller may hold a lock): the lease thread drops the claim in the store
        soon after; if it cannot (closed first), the claim expires with its lease.
        """
        with self._lock:
            keys = self._claims.pop(envelope_id, None)
            self._lost.discard(envelope_id)
            if keys is not None:
                self._releases.append(keys)
                self._wake.notify_all()

    def status(self) -> str:
        """``"ok"``, or why the store is not used just now (for ``health()`` and ``stats()``)."""
        with self._lock:
            if self._outage is None:
                return "ok"
            policy = "using the local ledger" if self.store.on_unavailable == "local" else "skipping envelopes"
            return f"unavailable ({policy}): {self._outage}"

    def close(self, timeout: float = 1.0) -> None:
        """Stop the lease thread (claims still held expire with their lease). Idempotent."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ---- internals -----------------------------------------------------------------------------

    def _admitted(
        self, envelope: Envelope, keys: tuple[str, ...], result: ClaimResult
    ) -> tuple[Admission, Optional[str]]:
        if result.outcome is Claim.CLAIMED:
            with self._lock:
                self._claims[envelope.envelope_id] = keys
                self.claimed += 1
                if self._releases:  # released by us a moment ago and claimed again: keep the new claim
                    self._releases = [k for k in self._releases if k != keys]
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._renew_loop, name=self._thread_name, daemon=True)
                    self._thread.start()
                if len(self._claims) == 1:
                    self._wake.notify_all()  # the lease thread waits without a timeout while nothing is claimed
            return Admission.RUN, None
        if result.outcome is Claim.HELD:
            with self._lock:
                self.held_elsewhere += 1
            return Admission.SKIP, None
        ack = _ack_from_record(envelope.envelope_id, result.record)
        with self._lock:
            self.acked_done += 1
        return (Admission.ACK, ack) if ack is not None else (Admission.SETTLED, None)

    def _store_down(self) -> bool:
        with self._lock:
            return self._outage is not None and time.monotonic() < self._down_until

    def _failed(self, error: Exception) -> None:
        """A store call failed: unreachable (a :class:`StoreUnavailableError`), or a store error we do not know."""
        if not isinstance(error, StoreUnavailableError):  # logged as an outage: a store that fails is not used
            error = StoreUnavailableError(f"{type(error).__name__}: {redact(str(error))[:160]}")
        self._went_down(error)

    def _went_down(self, error: StoreUnavailableError) -> None:
        with self._lock:
            first = self._outage is None
            self._outage = redact(str(error))[:200]
            self._down_until = time.monotonic() + self.store.retry_after
        if first:
            policy = (
                "dispatching with the local ledger only (a redelivery to another replica may run again)"
                if self.store.on_unavailable == "local"
                else "neither running nor acking envelopes (Slack redelivers them)"
            )
            self.logger.warning("shared ledger unavailable: %s; %s", self._outage, policy)

    def _came_back(self) -> None:
        if self._outage is None:  # the common case: no lock
            return
        with self._lock:
            was, self._outage = self._outage, None
        if was is not None:
            self.logger.info("shared ledger reachable again")

    def _renew_loop(self) -> None:
        """Write done records and drop released claims as they come; renew every claim every third of a lease."""
        period = self.store.lease / 3
        next_renewal = time.monotonic() + period  # kept across wake-ups: a stream of done records never delays it
        while True:
            with self._lock:
                while not (self._stopping or self._releases or self._dones):
                    if not self._claims:
                        self._wake.wait()
                        continue
                    remaining = next_renewal - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                releases, self._releases = self._releases, []
                dones, self._dones = self._dones, []
                stopping = self._stopping
                due = bool(self._claims) and time.monotonic() >= next_renewal
                held = [(e, keys) for e, keys in self._claims.items() if e not in self._lost] if due else []
            self._drop(releases)
            self._record(dones)
            if stopping:
                return
            if not due:
                continue
            next_renewal = time.monotonic() + period
            if not self._store_down():
                self._renew(held)

    def _renew(self, held: list[tuple[str, tuple[str, ...]]]) -> None:
        for envelope_id, keys in held:
            try:
                kept = self.store.renew(keys, self.owner)
            except Exception as e:
                self._failed(e)
                return
            self._came_back()
            if not kept:
                with self._lock:
                    still = envelope_id in self._claims
                    if still:
                        self.leases_lost += 1
                        self._lost.add(envelope_id)
                if still:
                    self.logger.warning(
                        "envelope %s: its lease in the shared ledger was lost while its listeners ran; "
                        "another replica may run it too",
                        envelope_id,
                    )

    def _record(self, dones: list[tuple[tuple[str, ...], str]]) -> None:
        for keys, done_record in dones:
            if self._store_down():
                return  # the claims expire with their lease
            try:
                self.store.done(keys, done_record)
            except Exception as e:
                self._failed(e)

    def _drop(self, releases: list[tuple[str, ...]]) -> None:
        for keys in releases:
            if self._store_down():
                return  # the claims expire with their lease
            try:
                self.store.release(keys, self.owner)
            except Exception as e:
                self._failed(e)


def _done_record(acked: bool, ack_text: Optional[str]) -> str:
    """The done record: ``{"ack": false}``, ``{"ack": true}``, or ``{"ack": true, "payload": …}``."""
    if not acked:
        return '{"ack":false}'
    if ack_text is None:
        return '{"ack":true}'
    try:
        body: Any = json.loads(ack_text)
    except ValueError:
        body = None
    if isinstance(body, dict) and "payload" in body:
        return json.dumps({"ack": True, "payload": body["payload"]}, separators=(",", ":"))
    return '{"ack":true}'


def _ack_from_record(envelope_id: str, text: str) -> Optional[str]:
    """The ack for ``envelope_id`` that a done record calls for, or None (it was not acked)."""
    try:
        done: Any = json.loads(text)
    except ValueError:
        done = None
    if not isinstance(done, dict):
        return plain_ack(envelope_id)  # a record we cannot read: it ran; the plain ack settles it
    if not done.get("ack", True):
        return None
    if "payload" not in done:
        return plain_ack(envelope_id)
    return json.dumps({"envelope_id": envelope_id, "payload": done["payload"]}, separators=(",", ":"))
