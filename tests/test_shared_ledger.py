"""The shared ledger on real Redis: two replicas (two clients, each with its own connection) of one app.

Each test uses its own namespace in the tests' Redis database; outage tests run a redis-server of
their own on a free port and stop and restart it.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from slack_socket_mode import Redeliver, SocketModeClient
from slack_socket_mode.shared import DONE_DELAY, Claim
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout
from .netem import Relay
from .services import RedisServer, delete_keys, redis_url, require_module, unique_namespace

require_module("redis", "the redis extra")
from slack_socket_mode.redis import RedisLedger  # noqa: E402


class LogWaiter(logging.Handler):
    """Collects one client's log records; waits for a message containing some text."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        self.records: list[logging.LogRecord] = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def count(self, text: str, level: int = logging.DEBUG) -> int:
        with self.cond:
            return sum(1 for r in self.records if text in r.getMessage() and r.levelno >= level)

    def wait_for(self, text: str, count: int = 1, seconds: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.count(text) >= count, timeout(seconds)):
                raise AssertionError(f"no log message with {text!r} (x{count}) within {seconds} s")

    def messages(self, containing: str, level: int = logging.INFO) -> list[str]:
        """The messages at ``level`` or above that contain ``containing``, connection ids written as N."""
        with self.cond:
            return [
                re.sub(r"connection \d+:", "connection N:", r.getMessage())
                for r in self.records
                if containing in r.getMessage() and r.levelno >= level
            ]

    def close(self) -> None:
        self.logger.removeHandler(self)
        super().close()


class Gated:
    """A request listener that records each run, waits for its gate, then acks (with a payload if allowed)."""

    def __init__(self, payload: dict[str, Any] | None = None, *, hold: float = 10.0) -> None:
        self.payload = payload
        self.hold = hold  # seconds (scaled) a run waits for the gate at most
        self.gate = threading.Event()
        self.gate.set()
        self.runs: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        with self.cond:
            self.runs.append(request.envelope_id)
            self.cond.notify_all()
        self.gate.wait(timeout(self.hold))
        body: dict[str, Any] = {"envelope_id": request.envelope_id}
        if self.payload is not None and request.accepts_response_payload:
            body["payload"] = self.payload
        client.send_socket_mode_response(body)

    def wait_runs(self, count: int, seconds: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.runs) >= count, timeout(seconds)):
                raise AssertionError(f"listener ran {len(self.runs)} times, expected {count}")


class Replicas:
    """Two clients of one app on one server, each holding one connection, sharing one Redis namespace."""

    def __init__(self, server: SocketModeServer, url: str, **ledger: Any) -> None:
        self.server = server
        self.namespace = unique_namespace()
        self.url = url
        self.clients: list[SocketModeClient] = []
        self.listeners: list[Gated] = []
        self.logs: list[LogWaiter] = []
        self.connections: list[Any] = []
        self.stores: list[RedisLedger] = []
        for n in range(2):
            store = RedisLedger(url, namespace=self.namespace, **ledger)
            log = LogWaiter(f"test_shared_ledger.{self.namespace}.{n}")
            client = SocketModeClient(
                APP_TOKEN, logger=log.logger, web_client=WebClient(base_url=server.api_url), dedupe=store
            )
            listener = Gated(payload={"text": f"answer from replica {n}"})
            client.socket_mode_request_listeners.append(listener)
            self.stores.append(store)
            self.logs.append(log)
            self.clients.append(client)
            self.listeners.append(listener)
            client.connect(timeout(5))
            self.connections.append(server.wait_for_connections(n + 1, timeout(5))[n])

    def close(self) -> None:
        for client, log, store in zip(self.clients, self.logs, self.stores):
            client.close()
            log.close()
            store.close()
        delete_keys(self.url, f"slack_socket_mode:{self.namespace}:*")


@pytest.fixture
def replicas(server: SocketModeServer) -> Iterator[Replicas]:
    r = Replicas(server, redis_url())
    yield r
    r.close()


def wait_done(store: RedisLedger, key: str, seconds: float = 5.0) -> str:
    """Wait until ``key`` is recorded done (the listeners returned after their ack); return the record."""
    deadline = time.monotonic() + timeout(seconds)
    while True:  # the record is written by another thread just after the ack: nothing to wait on but Redis
        value = store.state(key)
        if value is not None and value.startswith("d:"):
            return value
        assert time.monotonic() < deadline, f"{key} not done: {value}"
        time.sleep(0.01)


def wait_gone(store: RedisLedger, key: str, before: float) -> None:
    """Wait until the claim of ``key`` is gone from Redis, within ``before`` seconds (less than a lease)."""
    deadline = time.monotonic() + before
    while store.state(key) is not None:  # dropped by the lease thread: nothing to wait on but Redis
        assert time.monotonic() < deadline, f"{key} still claimed after {before} s: {store.state(key)}"
        time.sleep(0.01)


class Hanging:
    """A TCP server that accepts connections and never answers (a Redis that hangs); counts connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="test-hanging-redis", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted.append(conn)

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    h = Hanging()
    yield h
    h.close()


def wait_ok(client: SocketModeClient, seconds: float) -> float:
    """Wait until the client's shared ledger is "ok" again (within ``seconds``, scaled); return how long it took."""
    start = time.monotonic()
    deadline = start + timeout(seconds)
    while client.stats().shared_ledger != "ok":  # a state the lease thread's probe changes: nothing to wait on
        assert time.monotonic() < deadline, f"still {client.stats().shared_ledger!r} after {seconds} s"
        time.sleep(0.01)
    return time.monotonic() - start


def redelivery(envelope: dict[str, Any], attempt: int) -> dict[str, Any]:
    return {**envelope, "retry_attempt": attempt, "retry_reason": "timeout"}


def test_a_redelivery_to_another_replica_waits_for_the_claim_then_gets_the_same_ack(
    server: SocketModeServer, replicas: Replicas
) -> None:
    a, b = replicas.listeners
    a.gate.clear()
    envelope = server.make_envelope("slash_commands", {"command": "/deploy"}, accepts_response_payload=True)
    eid = envelope["envelope_id"]
    server.push(envelope, connection=replicas.connections[0])
    a.wait_runs(1)
    # Slack redelivers it to replica B while A's listener runs: B neither runs nor acks it.
    server.push(redelivery(envelope, 1), connection=replicas.connections[1])
    replicas.logs[1].wait_for("neither running nor acking")
    assert b.runs == []
    assert server.envelope(eid).acks == []
    a.gate.set()
    server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
    wait_done(replicas.stores[0], f"envelope:{eid}")
    # A later redelivery to B finds it done: acked at once with A's payload, not run.
    server.push(redelivery(envelope, 2), connection=replicas.connections[1])
    replicas.logs[1].wait_for("was handled by another replica; acking it as it did")
    server.wait_for_acks(2, timeout=timeout(5))
    acks = server.envelope(eid).acks
    assert [ack.connection_id for ack in acks] == [replicas.connections[0].id, replicas.connections[1].id]
    assert acks[0].payload == acks[1].payload == {"text": "answer from replica 0"}
    assert a.runs == [eid] and b.runs == []
    # B's own ledger now knows that ack went out on its connection: one more redelivery there crossed it
    server.push(redelivery(envelope, 3), connection=replicas.connections[1])
    marker = server.push(server.make_envelope(), connection=replicas.connections[1])
    server.wait_for_acks(envelope_ids=[marker], timeout=timeout(5))  # B has read the redelivery by now
    assert len(server.envelope(eid).acks) == 2
    assert a.runs == [eid] and b.runs == [marker]
    assert replicas.logs[1].messages(eid, logging.DEBUG) == [
        f"connection N: envelope {eid} (retry_attempt 1) is held by another replica, or the shared ledger is "
        "unavailable; neither running nor acking it",
        f"connection N: envelope {eid} (retry_attempt 2) was handled by another replica; acking it as it did",
        f"connection N: envelope {eid} redelivered (retry_attempt 3) as its ack went out on this connection; "
        "that ack settles it",
    ]


def test_a_redelivery_asked_for_on_one_replica_runs_on_the_other_at_once(
    server: SocketModeServer, replicas: Replicas
) -> None:
    """A listener on A raises Redeliver: A drops its claim, so Slack's redelivery runs on B at
    once (not only after A's lease expires)."""
    b = replicas.listeners[1]
    asked: list[str] = []

    def refuse(client: SocketModeClient, request: SocketModeRequest) -> None:
        asked.append(request.envelope_id)
        raise Redeliver("the backend is down")

    replicas.clients[0].socket_mode_request_listeners[:] = [refuse]
    envelope = server.make_envelope("interactive", {"type": "block_actions"})
    eid = envelope["envelope_id"]
    server.push(envelope, connection=replicas.connections[0])
    replicas.logs[0].wait_for("Slack's redelivery runs its listeners again")
    wait_gone(replicas.stores[0], f"envelope:{eid}", before=replicas.stores[0].lease * 0.75)  # not left to expire
    server.push(redelivery(envelope, 1), connection=replicas.connections[1])
    server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
    assert asked == [eid] and b.runs == [eid]
    assert wait_done(replicas.stores[1], f"envelope:{eid}") == 'd:{"ack":true}'


def test_a_redelivery_of_an_envelope_another_replica_ran_without_an_ack_is_neither_run_nor_acked(
    server: SocketModeServer, replicas: Replicas
) -> None:
    b = replicas.listeners[1]
    ran = threading.Event()
    replicas.clients[0].socket_mode_request_listeners[:] = [lambda client, request: ran.set()]  # no ack
    envelope = server.make_envelope("interactive", {"type": "block_actions"})
    eid = envelope["envelope_id"]
    server.push(envelope, connection=replicas.connections[0])
    assert ran.wait(timeout(5))
    wait_done(replicas.stores[0], f"envelope:{eid}")
    server.push(redelivery(envelope, 1), connection=replicas.connections[1])
    replicas.logs[1].wait_for("neither running nor acking")
    assert b.runs == [] and server.envelope(eid).acks == []
    assert replicas.logs[1].messages(eid) == [
        f"connection N: envelope {eid} (retry_attempt 1) was handled by another replica without an ack; "
        "neither running nor acking it",
    ]


def test_an_envelope_held_by_a_reader_at_max_queue_when_close_begins_is_released_for_the_other_replica(
    server: SocketModeServer, replicas: Replicas
) -> None:
    """Replica C's reader waits for room (max_queue) with a claimed envelope when close() begins:
    C does not run it, and drops the claim, so its redelivery runs on another replica at once."""
    store = RedisLedger(replicas.url, namespace=replicas.namespace)
    log = LogWaiter(f"test_shared_ledger.{replicas.namespace}.c")
    client = SocketModeClient(
        APP_TOKEN,
        logger=log.logger,
        web_client=WebClient(base_url=server.api_url),
        dedupe=store,
        concurrency=1,
        max_queue=1,
    )
    stuck = Gated()
    stuck.gate.clear()
    client.socket_mode_request_listeners.append(stuck)
    try:
        client.connect(timeout(5))
        (conn,) = [c for c in server.wait_for_connections(3, timeout(5)) if c not in replicas.connections]
        first = server.push(server.make_envelope("interactive", {"n": 1}), connection=conn)
        stuck.wait_runs(1)
        held = server.make_envelope("interactive", {"n": 2})
        server.push(held, connection=conn)
        log.wait_for("pausing reads while workers catch up")
        assert store.state(f"envelope:{held['envelope_id']}") is not None  # claimed before the reader waited
        client.close(timeout=0.2)  # the first listener is still stuck
        wait_gone(store, f"envelope:{held['envelope_id']}", before=store.lease * 0.75)  # not left to expire
    finally:
        stuck.gate.set()
        client.close()
        log.close()
        store.close()
    assert stuck.runs == [first]
    server.push(redelivery(held, 1), connection=replicas.connections[1])
    server.wait_for_acks(envelope_ids=[held["envelope_id"]], timeout=timeout(5))
    assert replicas.listeners[1].runs == [held["envelope_id"]]


def test_events_api_retries_with_a_new_envelope_id_are_not_run_again(
    server: SocketModeServer, replicas: Replicas
) -> None:
    a, b = replicas.listeners
    first = server.make_envelope("events_api", {"event_id": "Ev0TEST1", "event": {"type": "app_mention"}})
    server.push(first, connection=replicas.connections[0])
    server.wait_for_acks(envelope_ids=[first["envelope_id"]], timeout=timeout(5))
    wait_done(replicas.stores[0], "event:Ev0TEST1")
    # The Events API retries the same event_id in a new envelope, to the other replica.
    again = server.make_envelope("events_api", {"event_id": "Ev0TEST1", "event": {"type": "app_mention"}})
    server.push(again, connection=replicas.connections[1])
    server.wait_for_acks(envelope_ids=[again["envelope_id"]], timeout=timeout(5))
    assert a.runs == [first["envelope_id"]] and b.runs == []
    # Another event is run where it lands.
    other = server.make_envelope("events_api", {"event_id": "Ev0TEST2", "event": {"type": "app_mention"}})
    server.push(other, connection=replicas.connections[1])
    server.wait_for_acks(envelope_ids=[other["envelope_id"]], timeout=timeout(5))
    assert b.runs == [other["envelope_id"]]


def test_a_retry_of_an_event_in_a_new_envelope_is_held_on_the_replica_still_running_it(
    server: SocketModeServer, replicas: Replicas
) -> None:
    """The Events API retries an event in a new envelope with the same event_id; it lands on the
    replica whose listener still runs the first: it is held there like anywhere else (not run), and
    once the first is done, Slack's redelivery of the second is acked as the first was."""
    a = replicas.listeners[0]
    a.gate.clear()
    event = {"event_id": "Ev0SAME", "event": {"type": "app_mention"}}
    first = server.make_envelope("events_api", event)
    server.push(first, connection=replicas.connections[0])
    a.wait_runs(1)
    claim = replicas.stores[0].state("event:Ev0SAME")
    again = server.make_envelope("events_api", event)
    server.push(again, connection=replicas.connections[0])
    replicas.logs[0].wait_for(f"envelope {again['envelope_id']} (retry_attempt 0) is held by another")
    assert a.runs == [first["envelope_id"]]
    assert replicas.stores[0].state("event:Ev0SAME") == claim  # still the first envelope's claim
    assert server.envelope(again["envelope_id"]).acks == []
    a.gate.set()
    server.wait_for_acks(envelope_ids=[first["envelope_id"]], timeout=timeout(5))
    wait_done(replicas.stores[0], "event:Ev0SAME")
    server.push(redelivery(again, 1), connection=replicas.connections[0])
    server.wait_for_acks(envelope_ids=[again["envelope_id"]], timeout=timeout(5))
    assert a.runs == [first["envelope_id"]]
    assert replicas.clients[0].stats().shared_leases_lost == 0


def test_a_release_frees_only_what_its_own_claim_holds() -> None:
    """Two envelopes of one event on one replica: the second is held, and dropping the second's claim
    (a redelivery asked for, a close) leaves the first's event key claimed."""
    from slack_socket_mode.messages import parse_message
    from slack_socket_mode.shared import Admission, SharedLedger

    url, namespace = redis_url(), unique_namespace()
    store = RedisLedger(url, namespace=namespace, lease=30.0)
    shared = SharedLedger(store, logger=logging.getLogger("test_shared_ledger.own"), thread_name="test-lease")
    try:
        first, second = (
            parse_message(f'{{"envelope_id": "{e}", "type": "events_api", "payload": {{"event_id": "Ev1"}}}}')
            for e in ("e-first", "e-second")
        )
        assert shared.admit(first) == (Admission.RUN, None)  # type: ignore[arg-type]
        assert shared.admit(second) == (Admission.SKIP, None)  # type: ignore[arg-type]
        assert store.state("envelope:e-second") is None
        held = store.state("event:Ev1")
        assert held is not None and held == store.state("envelope:e-first")
        store.release(["envelope:e-second", "event:Ev1"], held[2:] + "-other")  # another claim's owner value
        assert store.state("event:Ev1") == held
        shared.redeliver("e-second")  # not claimed here: nothing to drop
        shared.release("e-first")
        wait_gone(store, "event:Ev1", before=timeout(5))
        assert shared.admit(second) == (Admission.RUN, None)  # type: ignore[arg-type]
    finally:
        shared.close()
        store.close()
        delete_keys(url, f"slack_socket_mode:{namespace}:*")


def test_the_lease_is_renewed_while_listeners_run(server: SocketModeServer) -> None:
    lease = timeout(0.5)  # renewed every third of it: a loaded machine needs more room
    replicas = Replicas(server, redis_url(), lease=lease)
    try:
        a, b = replicas.listeners
        a.gate.clear()
        envelope = server.make_envelope("interactive", {"type": "block_actions"})
        server.push(envelope, connection=replicas.connections[0])
        a.wait_runs(1)
        # Lease expiry is what is under test: let several leases pass while A's listener runs.
        time.sleep(lease * 4)
        server.push(redelivery(envelope, 1), connection=replicas.connections[1])
        replicas.logs[1].wait_for("neither running nor acking")
        assert b.runs == []
        a.gate.set()
        server.wait_for_acks(envelope_ids=[envelope["envelope_id"]], timeout=timeout(5))
        assert replicas.logs[0].count("lease in the shared ledger was lost") == 0
    finally:
        replicas.close()


def _lease_thread_switches(name: str) -> int:
    """Voluntary context switches of the thread called ``name`` so far (Linux's /proc): its wake-ups."""
    thread = next(t for t in threading.enumerate() if t.name == name)
    with open(f"/proc/self/task/{thread.native_id}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("voluntary_ctxt_switches:"))
    return int(line.split()[1])


def test_a_steady_stream_costs_one_round_trip_per_envelope_and_the_lease_thread_wakes_per_batch(
    server: SocketModeServer, own_redis: RedisServer
) -> None:
    """60 envelopes one after the other, each acked before the next is pushed: each is claimed on
    the reader (one script call each), and their done records go out together, a round trip
    for the records of up to 50 ms, not one each; the lease thread wakes for a batch, not for
    every claim. All 60 are recorded done."""
    if not sys.platform.startswith("linux"):
        pytest.skip("counts the lease thread's wake-ups in /proc")
    import redis

    store = RedisLedger(own_redis.url, namespace="steady")
    counter = redis.Redis.from_url(own_redis.url, socket_timeout=5)
    client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), dedupe=store)
    client.socket_mode_request_listeners.append(Gated())
    try:
        client.connect(timeout(5))
        first = server.push(server.make_envelope("events_api", {"event_id": "Ev0WARM"}))  # loads the scripts
        server.wait_for_acks(envelope_ids=[first], timeout=timeout(5))
        wait_done(store, f"envelope:{first}")
        lease_thread = f"{repr(client).split()[1]}-lease"  # <SocketModeClient slack_socket_mode-N ...>
        counter.config_resetstat()
        woken = _lease_thread_switches(lease_thread)
        ids = []
        started = time.monotonic()
        for n in range(60):
            ids.append(server.push(server.make_envelope("events_api", {"event_id": f"Ev0S{n}"})))
            server.wait_for_acks(envelope_ids=ids[-1:], timeout=timeout(5))
        elapsed = time.monotonic() - started
        for eid in ids:
            wait_done(store, f"envelope:{eid}")
        woken = _lease_thread_switches(lease_thread) - woken
        calls = counter.info("commandstats")["cmdstat_evalsha"]["calls"]
        # 60 claims, and the rounds: one per DONE_DELAY that had done records, one per renewal period,
        # a few for the last records; a round trip per done record would make 120
        rounds = min(40.0, 4 + elapsed / DONE_DELAY + elapsed / (store.lease / 3))
        assert 60 <= calls <= 60 + rounds, f"{calls} script calls for 60 envelopes in {elapsed:.2f} s"
        # a wake-up per round and one per wait for the ledger's lock (a few per round under load): fewer
        # than one per envelope, against 3 per envelope when each claim wakes it
        assert woken < 60 + 2 * rounds, f"the lease thread woke {woken} times for 60 envelopes in {elapsed:.2f} s"
    finally:
        client.close()
        store.close()
        counter.close()


def test_with_a_lease_shorter_than_the_done_delay_allows_a_done_record_never_outlives_its_claim(
    server: SocketModeServer,
) -> None:
    """A 60 ms lease: a claim lives 60 ms from its last renewal, renewed every 20 ms, so a done
    record that waited the whole 50 ms of DONE_DELAY after the last claim finished could come
    after the claim expired, and a redelivery meanwhile would run the envelope again (found by an
    outside attack: 3 to 5 of 60 run twice). The record goes out by the renewal the claim was due:
    every envelope goes from claimed to done with no gap, and no lease is lost."""
    namespace = unique_namespace()
    store = RedisLedger(redis_url(), namespace=namespace, lease=0.06)
    client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), dedupe=store)
    gaps: list[str] = []

    def listener(client: SocketModeClient, request: SocketModeRequest) -> None:
        time.sleep(0.035)  # work between two renewals: the last one is up to 20 ms before the end
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect(timeout(5))
        for n in range(20):
            eid = server.push(server.make_envelope("events_api", {"event_id": f"Ev0L{n}"}))
            server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
            deadline = time.monotonic() + timeout(5)
            while not (value := store.state(f"envelope:{eid}") or "").startswith("d:"):
                if not value.startswith("c:"):  # neither claimed nor done: another replica would run it
                    gaps.append(eid)
                    break
                assert time.monotonic() < deadline, f"{eid} not recorded done"
        assert gaps == [] and client.stats().shared_leases_lost <= 1, (gaps, client.stats().shared_leases_lost)
    finally:
        client.close()
        store.close()
        delete_keys(redis_url(), f"slack_socket_mode:{namespace}:*")


def test_a_hundred_claims_behind_a_20_ms_round_trip_keep_their_leases(
    server: SocketModeServer, own_redis: RedisServer
) -> None:
    """100 listeners running at once, their replica's Redis 20 ms away (a relay): every claim is
    renewed in one round trip per round, so none is lost (renewed one after the other, a round
    took 100 round trips, 2 s, longer than the 1 s lease). The done records go out together too."""
    relay = Relay("127.0.0.1", delay=0.01, loss=0.0).start(("127.0.0.1", own_redis.port))
    store = RedisLedger(f"redis://127.0.0.1:{relay.address[1]}/0", namespace="rtt", lease=1.0)
    direct = RedisLedger(own_redis.url, namespace="rtt")  # what another replica would find, with no delay
    log = LogWaiter("test_shared_ledger.rtt")
    client = SocketModeClient(
        APP_TOKEN, logger=log.logger, web_client=WebClient(base_url=server.api_url), dedupe=store, concurrency=100
    )
    listener = Gated(hold=60)
    listener.gate.clear()
    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect(timeout(5))
        ids = server.push_many([server.make_envelope("events_api", {"event_id": f"Ev0R{n}"}) for n in range(100)])
        listener.wait_runs(100, seconds=20)  # one claim per round trip on the reader: about 2 s
        time.sleep(store.lease * 3)  # leases are what is under test: let three pass with every listener running
        claims = [direct.state(f"event:Ev0R{n}") for n in range(100)]
        assert [c for c in claims if c is None or not c.startswith("c:")] == []
        assert client.stats().shared_leases_lost == 0 and log.count("lease lost") == 0
        listener.gate.set()
        server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
        for eid in ids:
            wait_done(direct, f"envelope:{eid}")
        assert client.stats().shared_leases_lost == 0 and log.count("lease lost") == 0
    finally:
        listener.gate.set()
        client.close()
        log.close()
        store.close()
        direct.close()
        relay.close()


def lapse_while_running(server: SocketModeServer, replicas: Replicas) -> tuple[str, str]:
    """Push an envelope to replica A, whose listener waits for its gate; delete A's claim (as if it
    lapsed) while it runs. Returns the envelope id and the claim's value."""
    replicas.listeners[0].gate.clear()
    envelope = server.make_envelope("interactive", {"type": "block_actions"})
    eid = server.push(envelope, connection=replicas.connections[0])
    replicas.listeners[0].wait_runs(1)
    claim = replicas.stores[0].state(f"envelope:{eid}")
    assert claim is not None and claim.startswith("c:")
    replicas.stores[0].redis.delete(f"slack_socket_mode:{replicas.namespace}:envelope:{eid}")
    return eid, claim


def test_a_lapsed_lease_is_reported_once_counted_and_claimed_again(server: SocketModeServer) -> None:
    """A claim that expired while its listeners ran (here: deleted), with no other holder: the lease
    thread reports it once, counts it, claims it again, and the envelope is recorded done."""
    lease = 0.3
    replicas = Replicas(server, redis_url(), lease=lease)
    try:
        a = replicas.listeners[0]
        eid, claim = lapse_while_running(server, replicas)
        replicas.logs[0].wait_for("no other replica had taken them")
        time.sleep(lease * 2)  # a few more renewal periods: renewed again, and not reported again
        assert replicas.logs[0].count("lease lost") == 1
        assert replicas.stores[0].state(f"envelope:{eid}") == claim  # claimed again, by the same claim
        assert replicas.clients[0].stats().shared_leases_lost == 1
        a.gate.set()
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
        assert wait_done(replicas.stores[0], f"envelope:{eid}") == 'd:{"ack":true}'
        assert replicas.logs[0].count("lease lost") == 1 and replicas.clients[0].stats().shared_leases_lost == 1
    finally:
        replicas.close()


def test_a_lease_taken_by_another_replica_is_left_to_it_and_its_claim_not_overwritten_by_the_done_record(
    server: SocketModeServer,
) -> None:
    """A's claim lapsed and another replica claimed the envelope (a pause longer than the lease):
    A reports it once, counts it, stops renewing it, and its done record does not replace the other
    replica's claim (that replica's own done record settles it)."""
    lease = 0.3
    replicas = Replicas(server, redis_url(), lease=lease)
    other = RedisLedger(replicas.url, namespace=replicas.namespace, lease=30.0)
    try:
        a = replicas.listeners[0]
        eid, _ = lapse_while_running(server, replicas)
        assert other.claim([f"envelope:{eid}"], "replica-b:1").outcome is Claim.CLAIMED
        replicas.logs[0].wait_for("taken by another replica")
        time.sleep(lease * 2)  # a few more renewal periods: not renewed (it is not A's), not reported again
        assert other.state(f"envelope:{eid}") == "c:replica-b:1"
        a.gate.set()
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
        # The lease thread writes done records in order: once a later envelope's is in Redis, A's was handled.
        later = server.push(server.make_envelope("interactive", {"n": "later"}), connection=replicas.connections[0])
        wait_done(replicas.stores[0], f"envelope:{later}")
        assert other.state(f"envelope:{eid}") == "c:replica-b:1"  # not replaced by A's done record
        assert replicas.logs[0].count("lease lost") == 1
        assert replicas.clients[0].stats().shared_leases_lost == 1
    finally:
        other.close()
        replicas.close()


def test_a_dead_replicas_claim_expires_and_the_next_redelivery_runs(
    server: SocketModeServer, replicas: Replicas
) -> None:
    a, b = replicas.listeners
    envelope = server.make_envelope("interactive", {"type": "block_actions"})
    eid = envelope["envelope_id"]
    # A replica that claimed it and died (no renewal): a claim with a short lease and no owner alive.
    ghost = RedisLedger(replicas.url, namespace=replicas.namespace, lease=0.3)
    try:
        ghost.claim([f"envelope:{eid}"], "ghost")
        server.push(envelope, connection=replicas.connections[1])
        replicas.logs[1].wait_for("neither running nor acking")
        assert b.runs == [] and server.envelope(eid).acks == []
        deadline = time.monotonic() + timeout(5)
        while ghost.state(f"envelope:{eid}") is not None:  # Redis expires it: nothing to wait on but time
            assert time.monotonic() < deadline, "the dead replica's claim did not expire"
            time.sleep(0.05)
    finally:
        ghost.close()
    server.push(redelivery(envelope, 1), connection=replicas.connections[1])
    server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
    assert b.runs == [eid] and a.runs == []
    assert wait_done(replicas.stores[1], f"envelope:{eid}") == 'd:{"ack":true}'


def test_redis_outage_falls_back_to_the_local_ledger_and_recovers(
    server: SocketModeServer, own_redis: RedisServer
) -> None:
    store = RedisLedger(own_redis.url, namespace="outage")  # probed every 0.5 s while unavailable
    log = LogWaiter("test_shared_ledger.outage")
    client = SocketModeClient(APP_TOKEN, logger=log.logger, web_client=WebClient(base_url=server.api_url), dedupe=store)
    listener = Gated()
    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect(timeout(5))
        first = server.push(server.make_envelope("interactive", {"n": 1}))
        server.wait_for_acks(envelope_ids=[first], timeout=timeout(5))
        assert store.state(f"envelope:{first}") is not None
        assert client.health().shared_ledger == "ok"

        own_redis.stop()
        during = [server.push(server.make_envelope("interactive", {"n": n})) for n in range(2, 7)]
        server.wait_for_acks(envelope_ids=during, timeout=timeout(5))
        time.sleep(store.retry_after * 2.5)  # a few probes fail meanwhile (nothing to wait on but time)
        during += [server.push(server.make_envelope("interactive", {"n": n})) for n in range(7, 12)]
        server.wait_for_acks(envelope_ids=during, timeout=timeout(5))
        assert sorted(listener.runs) == sorted([first, *during])  # nothing dropped
        assert log.count("shared ledger unavailable", logging.WARNING) == 1  # once per outage
        assert client.health().healthy
        assert client.health().shared_ledger.startswith("unavailable (using the local ledger)")
        assert client.stats().shared_ledger.startswith("unavailable")
        # A redelivery is still deduplicated by the local ledger.
        server.push(redelivery(server.make_envelope("interactive", {"n": 2}, envelope_id=during[0]), 1))
        log.wait_for("redelivered (retry_attempt 1)")

        own_redis.start()
        back = wait_ok(client, seconds=1.5)  # the lease thread's probe, with no envelope to ask Redis
        print(f"back on the shared ledger {back:.2f} s after Redis")
        log.wait_for("shared ledger reachable again")
        later = server.push(server.make_envelope("interactive", {"n": "later"}))
        server.wait_for_acks(envelope_ids=[later], timeout=timeout(5))
        assert store.state(f"envelope:{later}") is not None  # claims go to Redis again
        assert listener.runs.count(during[0]) == 1
    finally:
        client.close()
        log.close()
        store.close()


def test_redis_outage_with_the_skip_policy_neither_runs_nor_acks(
    server: SocketModeServer, own_redis: RedisServer
) -> None:
    store = RedisLedger(own_redis.url, namespace="outage", on_unavailable="skip", retry_after=0.2)
    log = LogWaiter("test_shared_ledger.skip")
    client = SocketModeClient(APP_TOKEN, logger=log.logger, web_client=WebClient(base_url=server.api_url), dedupe=store)
    listener = Gated()
    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect(timeout(5))
        own_redis.stop()
        eid = server.push(server.make_envelope("interactive", {"n": 1}))
        log.wait_for("neither running nor acking")
        assert listener.runs == [] and server.envelope(eid).acks == []
        assert client.health().shared_ledger.startswith("unavailable (skipping envelopes)")
        own_redis.start()
        wait_ok(client, seconds=1.5)
        server.push(redelivery(server.make_envelope("interactive", {"n": 1}, envelope_id=eid), 1))
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
        assert listener.runs == [eid]
        assert client.health().shared_ledger == "ok"
    finally:
        client.close()
        log.close()
        store.close()


def test_a_redis_that_hangs_costs_one_socket_timeout_and_the_warning_names_the_shared_ledger(
    server: SocketModeServer, hanging: Hanging
) -> None:
    """Redis accepts and never answers: the claim times out once (no second try on a new connection),
    the envelope runs with the local ledger, and the WARNING names the shared ledger, not concurrency:
    the wait for Redis is not counted as a wait for a worker."""
    store = RedisLedger(hanging.url, namespace="hang", socket_timeout=0.5, retry_after=60.0)  # no probe meanwhile
    log = LogWaiter("test_shared_ledger.hang")
    client = SocketModeClient(
        APP_TOKEN,
        logger=log.logger,
        web_client=WebClient(base_url=server.api_url),
        dedupe=store,
        inline_dispatch=False,  # on a worker, where a wait is measured against slow_queue_warning
        slow_queue_warning=0.3,
    )
    listener = Gated()
    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect(timeout(5))
        eid = server.push(server.make_envelope("interactive", {"n": 1}))
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
        more = server.push_many([server.make_envelope("interactive", {"n": n}) for n in range(2, 6)])
        server.wait_for_acks(envelope_ids=more, timeout=timeout(5))  # no reader waits for Redis meanwhile
        assert len(hanging.accepted) == 1  # one attempt: one socket timeout
        # each ran once (the four on workers at once: in any order)
        assert listener.runs[0] == eid and sorted(listener.runs[1:]) == sorted(more)
        warnings = log.messages("", logging.WARNING)
        assert len(warnings) == 1 and warnings[0].startswith("shared ledger unavailable: redis: TimeoutError"), warnings
        assert re.search(rf"\(envelope {eid} waited \d+\.\d s for it\)", warnings[0]), warnings[0]
        assert client.health().healthy and client.health().shared_ledger.startswith("unavailable")
    finally:
        client.close()
        log.close()
        store.close()


def test_health_sees_a_reader_waiting_for_the_shared_ledger(server: SocketModeServer, hanging: Hanging) -> None:
    """A reader blocked in the claim of a first delivery (a Redis that hangs, a long socket_timeout)
    makes health() unhealthy, naming the shared ledger, until the call ends."""
    store = RedisLedger(hanging.url, namespace="hang", socket_timeout=timeout(3), retry_after=60.0)
    log = LogWaiter("test_shared_ledger.stuck")
    client = SocketModeClient(APP_TOKEN, logger=log.logger, web_client=WebClient(base_url=server.api_url), dedupe=store)
    client.socket_mode_request_listeners.append(Gated())
    try:
        client.connect(timeout(5))
        eid = server.push(server.make_envelope("interactive", {"n": 1}))
        deadline = time.monotonic() + timeout(3)
        while client.health(max_queue_wait=0.3).healthy:  # a state, not an event: nothing to wait on but time
            assert time.monotonic() < deadline, "health() stayed healthy while a reader waited for Redis"
            time.sleep(0.02)
        reason = client.health(max_queue_wait=0.3).reason
        assert re.fullmatch(r"a reader has waited \d+\.\d s for the shared ledger", reason), reason
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(10))  # the call timed out: run locally
        assert client.health(max_queue_wait=0.3).healthy
    finally:
        client.close()
        log.close()
        store.close()


def test_a_redis_client_without_timeouts_or_decoding_responses_is_refused() -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from slack_socket_mode import ConfigurationError

    once = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))  # a dead connection, not a timeout
    address = urlsplit(redis_url())
    for bad in (
        redis.Redis.from_url(redis_url(), socket_timeout=None, socket_connect_timeout=None, retry=once),
        redis.Redis.from_url(redis_url(), socket_timeout=1.0, decode_responses=True, retry=once),
        redis.Redis.from_url(redis_url(), socket_timeout=1.0, retry=Retry(NoBackoff(), 3)),  # retries timeouts
        # the constructor's default policy (redis-py 6.0 on) does too
        redis.Redis(host=address.hostname or "127.0.0.1", port=address.port or 6379, socket_timeout=1.0),
    ):
        with pytest.raises(ConfigurationError, match=r"redis\.Redis passed to RedisLedger"):
            RedisLedger(bad, namespace="refused")
        bad.close()
    good = redis.Redis.from_url(redis_url(), socket_timeout=1.0, retry=once)
    RedisLedger(good, namespace="accepted").ping()
    good.close()
    for url in ("not a url", "redis://:s3cret@127.0.0.1:notaport/0"):
        with pytest.raises(ConfigurationError, match="invalid Redis URL") as raised:
            RedisLedger(url, namespace="refused")
        assert "s3cret" not in str(raised.value)


def test_foreign_keys_are_reported_once_claimed_over_and_never_take_the_ledger_down(
    server: SocketModeServer, replicas: Replicas
) -> None:
    """Keys in the namespace that no replica wrote as they are: a value with neither prefix, a claim
    without a TTL, a 20 MB claim, a key of another type, a done record that is not UTF-8. Each is
    logged once and counted; the envelope runs (or, for the done record, is acked); the ledger stays "ok"."""
    a = replicas.listeners[0]
    raw = replicas.stores[0].redis
    base = f"slack_socket_mode:{replicas.namespace}:"
    envelopes = [server.make_envelope("events_api", {"event_id": f"Ev0F{n}"}) for n in range(4)]
    ids = [e["envelope_id"] for e in envelopes]
    raw.set(f"{base}envelope:{ids[0]}", b"something else")
    raw.set(f"{base}event:Ev0F1", b"c:a-migration-copied-me")  # a claim with no TTL
    raw.set(f"{base}envelope:{ids[2]}", b"c:" + b"x" * (20 << 20))
    raw.rpush(f"{base}event:Ev0F3", b"a list")
    for envelope in envelopes:
        server.push(envelope, connection=replicas.connections[0])
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(5))
    assert a.runs == ids
    for eid in ids:
        wait_done(replicas.stores[0], f"envelope:{eid}")
    assert replicas.stores[0].state("event:Ev0F3") == 'd:{"ack":true}'  # the list was claimed over
    why = [
        f"envelope:{ids[0]} (neither a claim nor a done record)",
        "event:Ev0F1 (a claim without a TTL)",
        f"envelope:{ids[2]} (a value of {(20 << 20) + 2} bytes)",
        "event:Ev0F3 (a list, not a string)",
    ]
    assert replicas.logs[0].messages("not written by a replica", logging.WARNING) == [
        f"shared ledger: a key not written by a replica, {what}; it holds nothing: envelope {eid} is claimed "
        "over it and run"
        for what, eid in zip(why, ids)
    ]
    # A done record that is not UTF-8: the envelope ran somewhere; acked with the plain ack, not run.
    done = server.make_envelope("interactive", {"n": "binary"})
    raw.set(f"{base}envelope:{done['envelope_id']}", b"d:\xff\xfe{", px=60_000)
    server.push(done, connection=replicas.connections[1])
    server.wait_for_acks(envelope_ids=[done["envelope_id"]], timeout=timeout(5))
    assert replicas.listeners[1].runs == []
    assert replicas.logs[1].count("not written by a replica", logging.WARNING) == 1
    # A claim replaced by a key of another type while its listener runs: the renewal claims over it.
    a.gate.clear()
    slow = server.push(server.make_envelope("interactive", {"n": "slow"}), connection=replicas.connections[0])
    a.wait_runs(5)
    raw.delete(f"{base}envelope:{slow}")
    raw.sadd(f"{base}envelope:{slow}", b"a set")
    replicas.logs[0].wait_for(f"envelope:{slow} (a set, not a string); written over", seconds=timeout(5))
    a.gate.set()
    server.wait_for_acks(envelope_ids=[slow], timeout=timeout(5))
    assert wait_done(replicas.stores[0], f"envelope:{slow}") == 'd:{"ack":true}'
    stats = [client.stats() for client in replicas.clients]
    assert [s.shared_foreign_keys for s in stats] == [5, 1]
    assert [s.shared_ledger for s in stats] == ["ok", "ok"]
    assert [s.shared_leases_lost for s in stats] == [0, 0]
    assert [log.count("shared ledger unavailable") for log in replicas.logs] == [0, 0]


def test_a_released_claim_is_dropped_in_redis_by_the_lease_thread() -> None:
    from slack_socket_mode.messages import parse_message
    from slack_socket_mode.shared import Admission, SharedLedger

    url, namespace = redis_url(), unique_namespace()
    store = RedisLedger(url, namespace=namespace, lease=30.0)  # only a release frees it within the test
    shared = SharedLedger(store, logger=logging.getLogger("test_shared_ledger.release"), thread_name="test-lease")
    try:
        envelope = parse_message('{"envelope_id": "e-released", "type": "interactive", "payload": {}}')
        assert shared.admit(envelope) == (Admission.RUN, None)  # type: ignore[arg-type]
        assert store.state("envelope:e-released") == f"c:{shared.owner}:1"  # the claim's own owner value
        shared.release("e-released")  # returns at once; the lease thread makes the store call
        deadline = time.monotonic() + timeout(5)
        while store.state("envelope:e-released") is not None:
            assert time.monotonic() < deadline, "the claim was not dropped"
            time.sleep(0.01)
        assert shared.admit(envelope) == (Admission.RUN, None)  # type: ignore[arg-type]
    finally:
        shared.close()
        store.close()
        delete_keys(url, f"slack_socket_mode:{namespace}:*")


def test_a_done_record_after_close_is_written_by_the_caller() -> None:
    from slack_socket_mode.messages import parse_message
    from slack_socket_mode.shared import Admission, SharedLedger

    url, namespace = redis_url(), unique_namespace()
    store = RedisLedger(url, namespace=namespace)
    shared = SharedLedger(store, logger=logging.getLogger("test_shared_ledger.late"), thread_name="test-lease")
    try:
        envelope = parse_message('{"envelope_id": "e-late", "type": "interactive", "payload": {}}')
        assert shared.admit(envelope) == (Admission.RUN, None)  # type: ignore[arg-type]
        shared.close()  # close(timeout) ran out while this envelope's listeners still ran
        shared.finish("e-late", True, '{"envelope_id":"e-late","payload":{"text":"late"}}')
        assert store.state("envelope:e-late") == 'd:{"ack":true,"payload":{"text":"late"}}'
    finally:
        store.close()
        delete_keys(url, f"slack_socket_mode:{namespace}:*")
