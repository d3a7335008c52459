"""Replicas: separate client processes of one app against one local server that applies Slack's limits.

The server (:class:`~slack_socket_mode.testing.app_model.AppModel`) sends each envelope to a
random open connection of the app, redelivers an unacked one after 3 s to a random one, and
refuses an 11th connection with ``too_many_websockets``. The replicas share a RedisLedger; their
listeners count completions in a Redis hash (tests/replica_main.py).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pytest

from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.app_model import AppModel

from .conftest import timeout
from .replicas import Replica, push_paced
from .services import delete_keys, missing, redis_url, require_module, unique_namespace

require_module("redis", "the redis extra")
import redis  # noqa: E402


class App:
    """The replicas of one app: their server, their Redis namespace and their completions."""

    def __init__(self, server: SocketModeServer) -> None:
        self.server = server
        self.url = redis_url()
        self.namespace = unique_namespace("replicas")
        self.completions_key = f"slack_socket_mode:{self.namespace}:test-completions"
        self.redis: Any = redis.Redis.from_url(self.url, decode_responses=True)
        self.replicas: list[Replica] = []

    def start(self, connections: int, *, extra: Sequence[str] = (), logs: bool = False) -> Replica:
        replica = Replica(
            self.server.api_url, self.url, self.namespace, self.completions_key, connections, extra=extra, logs=logs
        )
        self.replicas.append(replica)
        return replica

    def completions(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.redis.hgetall(self.completions_key).items()}

    def close(self) -> None:
        for replica in self.replicas:
            replica.stop()
        delete_keys(self.url, f"slack_socket_mode:{self.namespace}:*")
        self.redis.close()


@pytest.fixture
def model() -> AppModel:
    return AppModel()


@pytest.fixture
def slack(model: AppModel) -> Iterator[SocketModeServer]:
    with SocketModeServer(app=model, redelivery_delay=3.0) as s:
        yield s


@pytest.fixture
def app(slack: SocketModeServer) -> Iterator[App]:
    a = App(slack)
    yield a
    a.close()


def test_a_replica_killed_mid_run_loses_nothing_and_runs_nothing_twice(slack: SocketModeServer, app: App) -> None:
    for n in range(3):
        app.start(connections=2).expect("ready")
        slack.wait_for_connections(2 * (n + 1), timeout(10))
    killed = {conn.id for conn in slack.connections[:2]}  # the first replica's connections
    ids: list[str] = []
    # One envelope in 60 keeps its listener busy past Slack's 3 s: Slack redelivers it, often to
    # another replica, which must neither run it nor ack it while the first one still runs it.
    push_paced(slack, 300, 300.0, ids, work=3.5)
    app.replicas[0].process.send_signal(signal.SIGKILL)
    push_paced(slack, 300, 300.0, ids, work=3.5)
    # Slack redelivers what the dead replica had not acked, 3 s later, to the live connections.
    slack.wait_for_acks(envelope_ids=ids, timeout=timeout(20))
    completions = app.completions()
    lost = [eid for eid in ids if eid not in completions]
    twice = [eid for eid in ids if completions.get(eid, 0) > 1]
    assert lost == []
    # Completions twice only in the documented window: the dead replica ran the listener's effect
    # and died before recording it done. Such an envelope was delivered to it and never acked by it.
    for eid in twice:
        record = slack.envelope(eid)
        assert any(d.connection_id in killed for d in record.deliveries), eid
        assert not any(a.connection_id in killed for a in record.acks), eid
    redelivered = [eid for eid in ids if len(slack.envelope(eid).deliveries) > 1]
    assert len(twice) <= len(redelivered)
    print(f"600 envelopes, {len(redelivered)} redelivered, {len(twice)} completed twice")


def test_a_replica_paused_past_its_lease_reports_every_lost_lease_and_leaves_the_other_replicas_claims(
    tmp_path: Path,
) -> None:
    """Replica A is stopped (SIGSTOP: a VM pause, a long GC) for 4.5 s, over its 2 s lease, while 8
    slow listeners (5 s) run: Slack redelivers them 3 s in, and those that reach B run there (the
    pause is longer than the lease: not guaranteed). When A goes on, it logs and counts every lost
    lease, and its done records do not replace B's claims: B keeps its leases and records them done."""
    with SocketModeServer(redelivery_delay=3.0) as slack:  # redeliveries go round the connections in turn
        app = App(slack)
        try:
            a = app.start(connections=1, extra=["--stats"], logs=True)
            a.expect("ready")
            (to_a,) = slack.wait_for_connections(1, timeout(10))
            b = app.start(connections=1, extra=["--stats"], logs=True)
            b.expect("ready")
            slack.wait_for_connections(2, timeout(10))
            envelopes = [slack.make_envelope("events_api", {"event_id": f"Ev0P{n}", "work": 5.0}) for n in range(8)]
            ids = slack.push_many(envelopes, connection=to_a)
            base = f"slack_socket_mode:{app.namespace}:envelope:"
            until(lambda: all((app.redis.get(base + eid) or "").startswith("c:") for eid in ids), 5, "A's claims")
            a.process.send_signal(signal.SIGSTOP)
            assert app.completions() == {}, "A's listeners (5 s each) ended before the pause"
            time.sleep(4.5)  # the pause is what is under test: past the lease (2 s) and the redelivery (3 s)
            a.process.send_signal(signal.SIGCONT)
            slack.wait_for_acks(envelope_ids=ids, timeout=timeout(20))
            # Each envelope's last run records it done: B's after A's, where B took it.
            until(lambda: all((app.redis.get(base + eid) or "").startswith("d:") for eid in ids), 10, "done records")
            stats = [stop(replica) for replica in (a, b)]
            completions = app.completions()
        finally:
            app.close()
    on_b = [eid for eid in ids if completions[eid] == 2]
    assert on_b, "no redelivery reached B while A was paused: the scenario did not happen"
    assert sorted(completions.values()) == [1] * (8 - len(on_b)) + [2] * len(on_b)
    assert not [line for line in b.log if "WARNING" in line and "lease" in line], b.log  # B's claims stood
    reported = [eid for line in a.log if "WARNING" in line and "lease" in line for eid in ids if eid in line]
    assert sorted(reported) == sorted(ids), a.log  # every claim of A lapsed in the pause: each named once
    assert stats[0].get("shared_leases_lost") == 8 and stats[1].get("shared_leases_lost") == 0
    print(f"8 slow envelopes, A paused 4.5 s: {len(on_b)} ran on B too; A reported 8 lost leases, B none")


def until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll Redis until ``predicate()`` (within ``seconds``, scaled): another process changes it, nothing to wait on."""
    deadline = time.monotonic() + timeout(seconds)
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.02)


def stop(replica: Replica) -> dict[str, Any]:
    """SIGTERM a replica started with ``--stats``; return its ``stats()`` after close()."""
    replica.process.send_signal(signal.SIGTERM)
    line = replica.next_line(20, "no stats line")
    while line.startswith("replica "):  # a log line
        line = replica.next_line(20, "no stats line")
    assert line.startswith("stats "), line
    replica.expect("closed")
    result: dict[str, Any] = json.loads(line[len("stats ") :])
    return result


def test_a_rolling_deploy_over_the_connection_limit_backs_off_and_loses_nothing(
    slack: SocketModeServer, app: App, model: AppModel
) -> None:
    for n in range(3):
        app.start(connections=3).expect("ready")
        slack.wait_for_connections(3 * (n + 1), timeout(10))
    ids: list[str] = []
    push_paced(slack, 100, 200.0, ids)
    # The new version starts before an old one stops: 12 connections wanted, 10 allowed.
    new = app.start(connections=3)
    new.expect("ready")  # its first connection took the 10th place
    slack.wait_until(lambda: model.refused >= 1, timeout(10), "a refusal")
    push_paced(slack, 100, 200.0, ids)
    old = app.replicas[0]
    old.process.send_signal(signal.SIGTERM)  # the old pod's grace period: close(timeout)
    old.expect("closed")
    # The new replica's refused connections are retried every slot_retry_interval and get the freed places.
    slack.wait_for_connections(9, timeout(20))
    push_paced(slack, 100, 200.0, ids)
    slack.wait_for_acks(envelope_ids=ids, timeout=timeout(20))
    completions = app.completions()
    assert [eid for eid in ids if eid not in completions] == []
    assert [eid for eid in ids if completions[eid] > 1] == []
    # Never more than 10 open at once: each connection's open span overlaps fewer than 10 others'.
    spans = [(c.opened_at, c.closed_at or float("inf")) for c in slack.all_connections if c.hello_sent]
    assert max(sum(1 for a, b in spans if a <= start < b) for start, _ in spans) <= 10


def test_a_short_soak_of_replicas_with_faults_loses_nothing_and_completes_nothing_twice_unexplained(
    tmp_path: Path,
) -> None:
    """``python -m benchmarks.soak --replicas`` for a few seconds (see docs/topics/scaling-out.md).

    Two replicas under the soak's protocol faults, a SIGKILL and restart, a rolling restart and
    an outage of their redis-server: nothing lost, and a completion twice only where the soak
    explains it (the killed replica's in-flight envelopes, the Redis outage).
    """
    from benchmarks.soak import SoakSettings
    from benchmarks.soak_replicas import run_replica_soak

    if shutil.which("redis-server") is None:
        missing("redis-server is not on PATH")
    settings = SoakSettings(
        duration=14.0,
        rate=60.0,
        slow_fraction=0.05,
        fault_gap=(0.3, 1.0),
        drain=25.0,
        seed=20261205,
        replicas=2,
        redis_outage=1.5,
        replica_fault_every=1.0,  # then a protocol fault (up to a few seconds), then the next replica fault
    )
    report = run_replica_soak(settings, effects_url=redis_url(), log_dir=tmp_path)
    print(report.render())
    assert {"replica_kill", "rolling_restart", "redis_outage"} <= set(report.faults), report.faults
    assert report.lost == [] and report.not_completed == []
    assert report.twice_unexplained == [], report.twice_details
    assert len(report.twice_killed) <= report.killed_in_flight
    assert report.run_twice == [] and report.token_in_logs == 0
    (outage,) = report.outages
    assert outage.reported and outage.back_s is not None  # stats() said so, and then "ok" again
    by_name = {replica.name: replica for replica in report.replicas}
    assert all(by_name[name].unavailable_warnings == 1 for name in outage.reported)  # one WARNING per outage
    closed = [replica.seen for replica in report.replicas if replica.end == "closed"]
    assert closed and all(seen["client_threads_after"] == 0 for seen in closed)
    assert all(seen["fds_after"] <= seen["fds_before"] for seen in closed)  # every socket closed
    assert report.ok
