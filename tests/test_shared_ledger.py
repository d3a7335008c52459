"""The shared ledger on real Redis: two replicas (two clients, each with its own connection) of one app.

Each test uses its own namespace in the tests' Redis database; outage tests run a redis-server of
their own on a free port and stop and restart it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from slack_socket_mode import Redeliver, SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout
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

    def __init__(self, payload: dict[str, Any] | None = None) -> None:
        self.payload = payload
        self.gate = threading.Event()
        self.gate.set()
        self.runs: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        with self.cond:
            self.runs.append(request.envelope_id)
            self.cond.notify_all()
        self.gate.wait(timeout(10))
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


def test_a_lease_lost_while_listeners_run_is_reported_once_and_the_envelope_still_recorded_done(
    server: SocketModeServer,
) -> None:
    lease = 0.3
    replicas = Replicas(server, redis_url(), lease=lease)
    try:
        a = replicas.listeners[0]
        a.gate.clear()
        envelope = server.make_envelope("interactive", {"type": "block_actions"})
        eid = envelope["envelope_id"]
        server.push(envelope, connection=replicas.connections[0])
        a.wait_runs(1)
        replicas.stores[0].redis.delete(f"slack_socket_mode:{replicas.namespace}:envelope:{eid}")  # taken away
        replicas.logs[0].wait_for("lease in the shared ledger was lost")
        time.sleep(lease * 2)  # a few more renewal periods: the lost claim is not renewed, nor reported, again
        assert replicas.logs[0].count("lease in the shared ledger was lost") == 1
        assert replicas.stores[0].state(f"envelope:{eid}") is None
        a.gate.set()
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
        assert wait_done(replicas.stores[0], f"envelope:{eid}") == 'd:{"ack":true}'
    finally:
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
    store = RedisLedger(own_redis.url, namespace="outage", retry_after=0.2)
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
        time.sleep(store.retry_after * 1.5)  # time-based: the next envelope asks Redis again, and fails again
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
        deadline = time.monotonic() + timeout(5)
        after: list[str] = []
        while client.stats().shared_ledger != "ok":  # the store is asked again retry_after after the outage
            assert time.monotonic() < deadline, client.stats().shared_ledger
            after.append(server.push(server.make_envelope("interactive", {"n": "after"})))
            server.wait_for_acks(envelope_ids=after, timeout=timeout(5))
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
        time.sleep(store.retry_after * 1.5)  # the policy is time-based: Redis is asked again after retry_after
        server.push(redelivery(server.make_envelope("interactive", {"n": 1}, envelope_id=eid), 1))
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
        assert listener.runs == [eid]
        assert client.health().shared_ledger == "ok"
    finally:
        client.close()
        log.close()
        store.close()


def test_a_released_claim_is_dropped_in_redis_by_the_lease_thread() -> None:
    from slack_socket_mode.messages import parse_message
    from slack_socket_mode.shared import Admission, SharedLedger

    url, namespace = redis_url(), unique_namespace()
    store = RedisLedger(url, namespace=namespace, lease=30.0)  # only a release frees it within the test
    shared = SharedLedger(store, logger=logging.getLogger("test_shared_ledger.release"), thread_name="test-lease")
    try:
        envelope = parse_message('{"envelope_id": "e-released", "type": "interactive", "payload": {}}')
        assert shared.admit(envelope) == (Admission.RUN, None)  # type: ignore[arg-type]
        assert store.state("envelope:e-released") == f"c:{shared.owner}"
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
