"""The hand-off to Celery, with a real worker process on Redis and on RabbitMQ (publisher confirms)."""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout
from .netem import Relay
from .processes import OutputProcess
from .services import RedisServer, amqp_url, delete_keys, free_port, redis_url, require_module, unique_namespace

require_module("celery", "the celery extra")
import redis  # noqa: E402

from slack_socket_mode.celery import CeleryHandoff  # noqa: E402
from slack_socket_mode.errors import ConfigurationError  # noqa: E402

from .celery_app import make_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Worker(OutputProcess):
    """A ``celery worker`` process (solo pool) of tests/celery_app.py; its log read by a thread."""

    def __init__(
        self, broker: str, queue_name: str, store_url: str, namespace: str, visibility_timeout: float = 60.0
    ) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TEST_CELERY_BROKER": broker,
            "TEST_CELERY_QUEUE": queue_name,
            "TEST_REDIS_URL": store_url,
            "TEST_NAMESPACE": namespace,
            "TEST_VISIBILITY_TIMEOUT": str(visibility_timeout),
        }
        args = [
            *(sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool=solo"),
            *("--loglevel=INFO", "--without-heartbeat", "--without-gossip", "--without-mingle", "-Q", queue_name),
            *("-n", f"{unique_namespace('worker')}@%h"),  # a node name of its own: two may run at once
        ]
        super().__init__(args, cwd=ROOT, env=env, read="stderr", name="test-celery-worker-log")

    def wait_ready(self, seconds: float = 30.0) -> None:
        self.wait_for(" ready.", seconds)


class Setup:
    """One broker, one queue, one worker, one namespace for effects and claims."""

    def __init__(self, broker: str, visibility_timeout: float = 60.0) -> None:
        self.store_url = redis_url()
        self.namespace = unique_namespace("celery")
        self.queue = f"slack_socket_mode_test_{self.namespace}"
        self.broker = broker
        self.visibility_timeout = visibility_timeout
        self.app = make_app(broker, self.queue)
        self.effects: Any = redis.Redis.from_url(self.store_url, decode_responses=True)
        self.worker = self.new_worker()

    def new_worker(self) -> Worker:
        return Worker(self.broker, self.queue, self.store_url, self.namespace, self.visibility_timeout)

    def effect_counts(self) -> dict[str, int]:
        key = f"slack_socket_mode:{self.namespace}:effects"
        return {k: int(v) for k, v in self.effects.hgetall(key).items()}

    def wait_effects(self, ids: list[str], seconds: float = 60.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout(seconds)
        while True:  # the worker writes to Redis: poll it
            counts = self.effect_counts()
            if all(eid in counts for eid in ids):
                return counts
            if time.monotonic() >= deadline:
                missing = [e for e in ids if e not in counts]
                raise AssertionError(
                    f"{len(missing)} effects missing ({', '.join(missing)}); the worker's log ends:\n"
                    + "\n".join(self.worker.log[-30:])
                )
            time.sleep(0.05)

    def close(self) -> None:
        self.worker.stop()
        delete_keys(self.store_url, f"slack_socket_mode:{self.namespace}:*")
        self.effects.close()


def _broker(kind: str) -> str:
    if kind == "redis":
        return redis_url(db=14)  # the broker's own database
    return amqp_url()


@pytest.fixture(params=["redis", "rabbitmq"])
def celery_setup(request: Any) -> Iterator[Setup]:
    setup = Setup(_broker(request.param))
    try:
        setup.worker.wait_ready()
        yield setup
    finally:
        setup.close()


def test_envelopes_are_acked_after_the_publish_and_their_effects_run_once(
    server: SocketModeServer, celery_setup: Setup
) -> None:
    handoff = CeleryHandoff(celery_setup.app, "tests.handle", respond=lambda request: {"text": "on it"})
    client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
    client.socket_mode_request_listeners.append(handoff)
    try:
        client.connect(timeout(5))
        ids = [server.push(server.make_envelope("events_api", {"event_id": f"Ev{n}"})) for n in range(20)]
        flaky = server.push(server.make_envelope("interactive", {"type": "block_actions", "fail_times": 2}))
        command = server.push(
            server.make_envelope("slash_commands", {"command": "/deploy"}, accepts_response_payload=True)
        )
        acks = server.wait_for_acks(envelope_ids=[*ids, flaky, command], timeout=timeout(10))
        assert acks[-1].payload == {"text": "on it"}  # answered in-process, after the publish
        assert all(ack.payload is None for ack in acks[:-1])
        # The same envelope published again (a redelivery that reached another replica, an
        # Events API retry in a new envelope): the effect does not run again.
        again = {"envelope_id": ids[0], "type": "events_api", "payload": {"event_id": "Ev0"}}
        retry = {"envelope_id": "another-envelope", "type": "events_api", "payload": {"event_id": "Ev1"}}
        celery_setup.app.send_task("tests.handle", args=[again])
        celery_setup.app.send_task("tests.handle", args=[retry])
        marker = server.make_envelope("events_api", {"event_id": "EvLast"})
        server.push(marker)
        everything = [*ids, flaky, command, marker["envelope_id"]]
        # A task retried on RabbitMQ is sometimes received again only 10 or 20 s later (the worker's
        # consumer, not our code): wait long enough for that; the count is what this test checks.
        counts = celery_setup.wait_effects(everything)
        assert counts == dict.fromkeys(everything, 1)
        assert handoff.published == len(everything) and handoff.failed == 0
    finally:
        client.close()
        handoff.close()


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_a_worker_killed_mid_task_its_task_is_delivered_again_and_its_effect_runs_once(kind: str) -> None:
    # SIGKILL of a real worker process in the middle of a task (acks_late). On RabbitMQ the broker
    # requeues the unacked task as the worker's connection drops. On Redis nothing tells the broker:
    # kombu gives the task to a worker only once visibility_timeout has passed since it was taken (an
    # hour by default; 3 s here), in a sweep a worker runs when it starts and then periodically (every
    # second here with kombu 5.7's unacked_restore_interval; kombu 5.6, the last for Python 3.9, sweeps
    # only every 100 s, so there the second worker is started after the timeout, as a supervisor
    # restarting the dead worker would, and its start-up sweep gives it the task).
    setup = Setup(_broker(kind), visibility_timeout=3.0)
    second: Worker | None = None
    try:
        setup.worker.wait_ready()
        envelope = {"envelope_id": "stalled-1", "type": "interactive", "payload": {"stall_first": True}}
        setup.app.send_task("tests.handle", args=[envelope])
        store_keys = f"slack_socket_mode:{setup.namespace}:stalls"
        deadline = time.monotonic() + timeout(10)
        while not setup.effects.hget(store_keys, "stalled-1"):  # the worker is in the effect, lease held
            assert time.monotonic() < deadline, "the worker never started the task"
            time.sleep(0.02)
        taken = time.time()  # no earlier than kombu's record of the delivery (its wall clock)
        if kind == "rabbitmq":
            # The second worker is ready before the kill, so the requeued task reaches it while the
            # dead worker's lease (1 s) still holds: started after the kill, a slow start let the lease
            # lapse first and the EnvelopeBusy path below went unexercised (a flaky failure on a loaded
            # machine).
            second = setup.new_worker()
            second.wait_ready()
        setup.worker.process.kill()  # SIGKILL: no goodbye to the broker
        if kind == "redis":
            time.sleep(max(0.0, taken + setup.visibility_timeout + 0.5 - time.time()))  # a clock, not a guess
            second = setup.new_worker()  # its start-up sweep finds the task past its visibility timeout
            second.wait_ready()
        counts = setup.wait_effects(["stalled-1"], seconds=60.0)
        assert counts == {"stalled-1": 1}
        assert setup.effects.hget(store_keys, "stalled-1") == "2"  # the task ran twice; its effect once
        if kind == "rabbitmq":
            assert any("EnvelopeBusy" in line for line in second.log)  # it waited for the dead worker's lease
    finally:
        if second is not None:
            second.stop()
        setup.close()


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_a_failed_publish_is_not_acked_and_says_why(
    server: SocketModeServer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    _broker(kind)  # skips when the service is missing, like the others
    port = free_port()  # nothing listens there: the broker is down
    broker = f"redis://127.0.0.1:{port}/0" if kind == "redis" else f"amqp://guest:guest@127.0.0.1:{port}//"
    handoff = CeleryHandoff(make_app(broker, "unused"), "tests.handle", publish_timeout=0.5)
    client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
    client.socket_mode_request_listeners.append(handoff)
    caplog.set_level(logging.WARNING, logger="slack_socket_mode.celery")
    try:
        client.connect(timeout(5))
        eid = server.push(server.make_envelope("events_api", {"event_id": "EvDown"}))
        deadline = time.monotonic() + timeout(10)
        while handoff.failed == 0:  # the publish fails within its bounded retries
            assert time.monotonic() < deadline, "the publish neither failed nor succeeded"
            time.sleep(0.02)
        client.close()  # waits for the listener: had it acked, the ack would be on the server now
        assert server.envelope(eid).acks == []
        assert handoff.published == 0
        assert any(f"envelope {eid}" in r.getMessage() and "not acking" in r.getMessage() for r in caplog.records)
    finally:
        client.close()
        handoff.close()


def test_an_unroutable_publish_on_rabbitmq_is_not_acked_and_its_redelivery_is_published(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The queue is deleted behind Celery's back once the producer's connection has declared it
    # (kombu caches the declaration per connection): RabbitMQ routes the next publish to no queue
    # and, unless it was published as mandatory, confirms it and drops it. The hand-off must
    # not ack that envelope; Slack's redelivery is then published (to the queue declared again).
    import kombu

    broker = amqp_url()
    queue_name = f"slack_socket_mode_test_{unique_namespace('noroute')}"
    handoff = CeleryHandoff(make_app(broker, queue_name), "tests.handle")
    caplog.set_level(logging.WARNING, logger="slack_socket_mode.celery")
    with (
        SocketModeServer(redelivery_delay=1.0) as server,
        kombu.Connection(broker, connect_timeout=timeout(5)) as admin,
    ):
        # With the default ledger: the failed publish raises Redeliver, so the redelivery is dispatched.
        client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
        client.socket_mode_request_listeners.append(handoff)
        try:
            client.connect(timeout(5))
            first = server.push(server.make_envelope("events_api", {"event_id": "EvFirst"}))
            server.wait_for_acks(envelope_ids=[first], timeout=timeout(5))  # the queue declared, cached
            admin.default_channel.queue_delete(queue_name)
            lost = server.push(server.make_envelope("events_api", {"event_id": "EvUnroutable"}))
            server.wait_for_acks(envelope_ids=[lost], timeout=timeout(10))
            record = server.envelope(lost)
            # Not acked on its first delivery: the ack answers the redelivery (retry_attempt 1).
            assert [d.attempt for d in record.deliveries] == [0, 1]
            assert len(record.acks) == 1 and record.acks[0].received_at > record.deliveries[1].sent_at
            assert (handoff.published, handoff.failed) == (2, 1)
            reasons = [  # the hand-off's own line (the dispatcher adds one of its own for Redeliver)
                r.getMessage()
                for r in caplog.records
                if r.name == "slack_socket_mode.celery" and f"envelope {lost}" in r.getMessage()
            ]
            assert len(reasons) == 1 and "NO_ROUTE" in reasons[0] and "not acking" in reasons[0], reasons
            # What the queue holds: the first envelope's task was deleted with the queue; the
            # redelivery's task is there (the queue was declared again), the dropped one is not.
            tasks = []
            while (message := admin.default_channel.basic_get(queue_name, no_ack=True)) is not None:
                [[argument], _, _] = json.loads(message.body)
                tasks.append((argument["envelope_id"], argument["retry_attempt"]))
            assert tasks == [(lost, 1)]
        finally:
            client.close()
            handoff.close()
            admin.default_channel.queue_delete(queue_name)


def test_the_task_message_names_the_envelope_in_its_argsrepr_without_the_payload(server: SocketModeServer) -> None:
    # No worker: the message is read from the broker's list as Celery left it. Its argsrepr (what
    # the worker logs, task events and Flower show) names the envelope; the payload stays in the
    # body only (it carries users' messages, and its saferepr cost a fifth of a publish).
    broker = redis_url(db=14)
    queue_name = f"slack_socket_mode_test_{unique_namespace('argsrepr')}"
    handoff = CeleryHandoff(make_app(broker, queue_name), "tests.handle")
    client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
    client.socket_mode_request_listeners.append(handoff)
    store: Any = redis.Redis.from_url(broker)
    try:
        client.connect(timeout(5))
        eid = server.push(server.make_envelope("events_api", {"event_id": "EvSecret", "text": "a private message"}))
        server.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
        [raw] = store.lrange(queue_name, 0, -1)
        message = json.loads(raw)
        assert message["headers"]["argsrepr"] == f"(<envelope {eid} events_api>,)"
        assert message["headers"]["kwargsrepr"] == "{}"
        assert "a private message" not in json.dumps(message["headers"])
        [[argument], kwargs, _] = json.loads(base64.b64decode(message["body"]))
        assert argument["envelope_id"] == eid and argument["payload"]["text"] == "a private message"
        assert kwargs == {}
    finally:
        client.close()
        handoff.close()
        store.delete(queue_name, f"_kombu.binding.{queue_name}")
        store.close()


def test_rabbitmq_without_publisher_confirms_is_refused() -> None:
    from celery import Celery

    with pytest.raises(ConfigurationError, match="confirm_publish"):
        CeleryHandoff(Celery(broker="amqp://guest:guest@127.0.0.1:5672//"), "tests.handle")


def _wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout(seconds)
    while not condition():  # counters set by the client's threads: poll them
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_failed_publish_is_published_by_slacks_redelivery_with_dedupe_on(tmp_path: Any) -> None:
    # The broker is a redis-server of the test's own, down for the first delivery and up again
    # for Slack's redelivery. With the default dedupe=True the redelivery must run the hand-off
    # again (its listener raised Redeliver): the task reaches the queue once and the envelope is acked.
    broker = RedisServer(str(tmp_path))
    queue_name = f"slack_socket_mode_test_{unique_namespace('redeliver')}"
    handoff = CeleryHandoff(make_app(broker.url, queue_name), "tests.handle", publish_timeout=0.5)
    with SocketModeServer(redelivery_delay=1.5) as server:
        client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
        client.socket_mode_request_listeners.append(handoff)
        try:
            client.connect(timeout(5))
            eid = server.push(server.make_envelope("events_api", {"event_id": "EvRetried"}))
            _wait(lambda: handoff.failed >= 1, 10, "the publish to a broker that is down never failed")
            broker.start()
            [ack] = server.wait_for_acks(envelope_ids=[eid], timeout=timeout(10))
            record = server.envelope(eid)
            assert len(record.deliveries) >= 2 and ack.received_at > record.deliveries[1].sent_at
            assert handoff.published == 1 and handoff.failed >= 1
            store: Any = redis.Redis.from_url(broker.url)
            try:
                [raw] = store.lrange(queue_name, 0, -1)  # published exactly once
            finally:
                store.close()
            [[argument], _, _] = json.loads(base64.b64decode(json.loads(raw)["body"]))
            assert argument["envelope_id"] == eid and argument["retry_attempt"] >= 1
            assert client.stats().envelopes_acked == 1
        finally:
            client.close()
            handoff.close()
            broker.stop()


def test_a_failed_publish_on_one_replica_is_published_by_the_other_on_slacks_redelivery() -> None:
    # Two replicas share a RedisLedger (a lease far longer than the test: only an explicit release
    # of the claim lets the other replica run it). Replica A's broker is down; its publish fails and
    # it leaves; Slack's redelivery reaches replica B, which must claim and publish it.
    require_module("redis", "the redis extra")
    from slack_socket_mode.redis import RedisLedger

    store_url = redis_url()
    good_broker = redis_url(db=14)
    namespace = unique_namespace("redeliver")
    queue_name = f"slack_socket_mode_test_{namespace}"
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    failing = CeleryHandoff(make_app(dead_broker, queue_name), "tests.handle", publish_timeout=0.5)
    working = CeleryHandoff(make_app(good_broker, queue_name), "tests.handle")
    stores = [RedisLedger(store_url, namespace=namespace, lease=30.0) for _ in range(2)]
    queue: Any = redis.Redis.from_url(good_broker)
    with SocketModeServer(redelivery_delay=1.5) as server:
        a = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), dedupe=stores[0])
        b = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), dedupe=stores[1])
        a.socket_mode_request_listeners.append(failing)
        b.socket_mode_request_listeners.append(working)
        try:
            a.connect(timeout(5))
            eid = server.push(server.make_envelope("events_api", {"event_id": "EvReplica"}))
            _wait(lambda: failing.failed >= 1, 10, "replica A's publish never failed")
            b.connect(timeout(5))
            a.close()  # the redelivery can only reach replica B now
            [ack] = server.wait_for_acks(envelope_ids=[eid], timeout=timeout(10))
            assert server.envelope(eid).deliveries[0].sent_at < ack.received_at
            assert failing.published == 0 and working.published == 1
            assert len(queue.lrange(queue_name, 0, -1)) == 1
        finally:
            a.close()
            b.close()
            failing.close()
            working.close()
            queue.delete(queue_name, f"_kombu.binding.{queue_name}")
            queue.close()
            for store in stores:
                store.close()
            delete_keys(store_url, f"slack_socket_mode:{namespace}:*")


# ---- permanent failures, nacks, a stalled broker (issue 20, items 9, 10, 12) ---------------------


def _handoff_client(server: SocketModeServer, handoff: Any, *listeners: Any) -> SocketModeClient:
    client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
    client.socket_mode_request_listeners.extend([*listeners[:1], handoff, *listeners[1:]])
    return client


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("slack_socket_mode") and r.levelno == level]


@pytest.mark.parametrize("kind", ["rabbitmq-credentials", "rabbitmq-vhost", "bad-url", "missing-module"])
def test_a_permanent_failure_is_logged_once_at_error_makes_the_client_unhealthy_and_is_counted(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Each publish fails for a reason the next one meets again: one ERROR for them all (not a
    # WARNING per envelope, twice: from the hand-off and from the dispatcher), health() says why.
    good = amqp_url()
    broker = {
        "rabbitmq-credentials": good.replace("guest:guest@", "guest:wrong-password@"),
        "rabbitmq-vhost": good.rsplit("/", 1)[0] + "/no-such-vhost",
        "bad-url": "redis://127.0.0.1:not-a-port/0",
        "missing-module": "mongodb://127.0.0.1:1/tasks",  # kombu's MongoDB transport: pymongo is not installed
    }[kind]
    if kind == "missing-module":
        try:
            __import__("pymongo")
            pytest.skip("pymongo is installed here")
        except ImportError:
            pass
    handoff = CeleryHandoff(make_app(broker, "unused"), "tests.handle", publish_timeout=1.0)
    caplog.set_level(logging.DEBUG, logger="slack_socket_mode")
    with SocketModeServer(redelivery_delay=None) as server:
        client = _handoff_client(server, handoff)
        try:
            client.connect(timeout(5))
            assert client.health().healthy
            ids = server.push_many([server.make_envelope("events_api", {"event_id": f"EvP{n}"}) for n in range(10)])
            _wait(lambda: handoff.failed == 10, 10, f"{handoff.failed} of 10 publishes failed")
            health = client.health()
            assert not health.healthy and health.reason.startswith("the Celery hand-off cannot publish: "), health
            stats = handoff.stats()
            assert (stats.published, stats.failed, stats.failed_permanently) == (0, 10, 10)
            assert stats.problem and stats.problem in health.reason
        finally:
            client.close()
            handoff.close()
        assert all(server.envelope(eid).acks == [] for eid in ids)
    [error] = _records(caplog, logging.ERROR)
    assert "cannot succeed until the setup changes" in error and "tests.handle" in error
    assert _records(caplog, logging.WARNING) == []
    assert "wrong-password" not in "\n".join(r.getMessage() for r in caplog.records)  # credentials redacted
    words = {
        "rabbitmq-credentials": "refused the connection",
        "rabbitmq-vhost": "refused the connection",
        "bad-url": "the broker URL or its settings are wrong",
        "missing-module": "a module the broker's transport needs is missing",
    }
    assert words[kind] in error, error


def test_a_permanent_failure_ends_when_a_publish_succeeds_again(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis refuses a user that does not exist (permanent: every publish meets it) until the user
    # is made: then the next publish goes through, health() is healthy again, one WARNING says so.
    broker = own_redis.url.replace("redis://", "redis://handoff:s3cret@")
    handoff = CeleryHandoff(make_app(broker, "recovers"), "tests.handle", publish_timeout=1.0)
    caplog.set_level(logging.WARNING, logger="slack_socket_mode")
    admin: Any = redis.Redis.from_url(own_redis.url)
    with SocketModeServer(redelivery_delay=None) as server:
        client = _handoff_client(server, handoff)
        try:
            client.connect(timeout(5))
            first = server.push(server.make_envelope("events_api", {"event_id": "EvRefused"}))
            _wait(lambda: handoff.failed == 1, 10, "the publish as an unknown user never failed")
            assert handoff.stats().failed_permanently == 1 and not client.health().healthy
            assert "Redis refused the credentials" in handoff.stats().problem
            admin.execute_command("ACL", "SETUSER", "handoff", "on", ">s3cret", "~*", "&*", "+@all")
            second = server.push(server.make_envelope("events_api", {"event_id": "EvAccepted"}))
            server.wait_for_acks(envelope_ids=[second], timeout=timeout(10))
            assert client.health().healthy and handoff.stats().problem == ""
            assert [m for m in _records(caplog, logging.WARNING) if "works again" in m] != []
            assert server.envelope(first).acks == []
        finally:
            client.close()
            handoff.close()
            admin.close()


def test_a_nacked_publish_is_logged_as_nacked(caplog: pytest.LogCaptureFixture) -> None:
    # A queue at its length limit with overflow reject-publish: RabbitMQ nacks every publish.
    queue_name = f"slack_socket_mode_test_{unique_namespace('nack')}"
    app = make_app(amqp_url(), queue_name, queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    handoff = CeleryHandoff(app, "tests.handle", publish_timeout=1.0)
    caplog.set_level(logging.WARNING, logger="slack_socket_mode")
    with SocketModeServer(redelivery_delay=None) as server:
        client = _handoff_client(server, handoff)
        try:
            client.connect(timeout(5))
            eid = server.push(server.make_envelope("events_api", {"event_id": "EvNacked"}))
            _wait(lambda: handoff.failed == 1, 10, "the nacked publish never failed")
        finally:
            client.close()
            handoff.close()
        assert server.envelope(eid).acks == []
    [warning] = _records(caplog, logging.WARNING)
    assert f"envelope {eid}" in warning and "the broker nacked the publish" in warning, warning
    assert handoff.stats().failed_permanently == 0  # transient: the queue may drain


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_a_broker_that_stalls_costs_a_publish_at_most_publish_timeout(kind: str) -> None:
    # The broker accepts and answers, then stops answering on its established connections (a relay
    # that holds every byte): kombu's publish would retry on a new connection and wait out each
    # attempt's timeouts (forever on Redis without a socket timeout, 3 x publish_timeout on RabbitMQ).
    # The hand-off gives the publish up at publish_timeout; it goes on on its thread until its own
    # timeouts end it, and once the broker answers again the next envelope is published.
    target = ("127.0.0.1", 6379) if kind == "redis" else ("127.0.0.1", 5672)
    _broker(kind)  # skips when the service is missing
    relay = Relay("127.0.0.1", delay=0.0, loss=0.0).start(target)
    port = relay.address[1]
    broker = f"redis://127.0.0.1:{port}/14" if kind == "redis" else f"amqp://guest:guest@127.0.0.1:{port}//"
    queue_name = f"slack_socket_mode_test_{unique_namespace('stall')}"
    publish_timeout = 1.0
    handoff = CeleryHandoff(make_app(broker, queue_name), "tests.handle", publish_timeout=publish_timeout)
    spans: dict[str, list[float]] = {}
    before = lambda c, r: spans.setdefault(r.envelope_id, []).append(time.monotonic())  # noqa: E731
    after = lambda c, r: spans[r.envelope_id].append(time.monotonic())  # noqa: E731
    with SocketModeServer(redelivery_delay=None) as server:
        client = _handoff_client(server, handoff, before, after)
        try:
            client.connect(timeout(5))
            warm = server.push(server.make_envelope("events_api", {"event_id": "EvWarm"}))
            server.wait_for_acks(envelope_ids=[warm], timeout=timeout(5))  # a pooled connection, established
            relay.stall()
            stalled = server.push(server.make_envelope("events_api", {"event_id": "EvStalled"}))
            _wait(lambda: handoff.failed == 1, 10, "the publish to a stalled broker never gave up")
            _wait(lambda: len(spans.get(stalled, [])) == 2, 5, "the listener after the hand-off never ran")
            start, end = spans[stalled]
            # The bound under test, with room for a loaded machine: publish_timeout plus the hand-over
            # (well under a millisecond). Unbounded, the wait was 3 x publish_timeout or more.
            assert end - start < publish_timeout * 1.8, f"the hand-off took {end - start:.2f} s"
            assert handoff.stats().given_up_running == 1  # the publish still waits, on its own thread
            _wait(lambda: handoff.stats().given_up_running == 0, 30, "the stalled publish never ended")
            relay.resume()
            last = server.push(server.make_envelope("events_api", {"event_id": "EvAfter"}))
            server.wait_for_acks(envelope_ids=[last], timeout=timeout(10))
            assert server.envelope(stalled).acks == []
        finally:
            client.close()
            handoff.close()
            relay.close()
            if kind == "redis":
                store: Any = redis.Redis.from_url(redis_url(db=14))
                store.delete(queue_name, f"_kombu.binding.{queue_name}")
                store.close()


def test_once_per_envelope_does_not_record_done_over_a_claim_another_worker_took() -> None:
    # The worker's lease lapsed while its effect ran (a pause, a slow store) and another worker
    # claimed the envelope: the first one's done record must not overwrite that claim (the other
    # worker records it done itself), as the client's own done records do not.
    from slack_socket_mode.celery import once_per_envelope
    from slack_socket_mode.redis import RedisLedger

    url = redis_url()
    namespace = unique_namespace("effect")
    store = RedisLedger(url, namespace=namespace, lease=5.0)
    key = f"slack_socket_mode:{namespace}:effect:envelope:E1"

    @once_per_envelope(store)
    def effect(envelope: dict[str, Any]) -> str:
        store.redis.set(key, b"c:another-worker", px=60_000)  # its claim lapsed; another worker's took its place
        return "ran"

    try:
        assert effect({"envelope_id": "E1", "type": "interactive", "payload": {}}) == "ran"
        assert store.state("effect:envelope:E1") == "c:another-worker"
    finally:
        store.close()
        delete_keys(url, f"slack_socket_mode:{namespace}:*")
