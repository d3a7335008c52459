"""slack_socket_mode.stats: what stats() and health() report, and the bounded count of replacements by cause."""

from __future__ import annotations

import threading
from typing import Any

from slack_socket_mode.stats import MAX_CAUSE_LENGTH, MAX_CAUSES, CauseCounter, percentile
from slack_socket_mode.testing import SocketModeServer

from .conftest import ClientFactory, Recorder, timeout


def test_stats_and_health(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    assert not client.health().healthy
    assert client.health().reason == "not connected (idle)"
    client.socket_mode_request_listeners.append(Recorder())
    client.connect()
    ids = [server.push(server.make_envelope()) for _ in range(20)]
    server.wait_for_acks(envelope_ids=ids)
    health = client.health()
    assert health.healthy and health.reason == "" and health.state == "connected"
    stats = client.stats()
    assert stats.envelopes_received == 20 and stats.envelopes_acked == 20
    assert stats.ack_latency_p50 is not None and stats.ack_latency_p99 is not None
    assert 0 < stats.ack_latency_p50 <= stats.ack_latency_p99
    client.disconnect()
    assert client.health().reason == "not connected (disconnected)"


def test_reconnect_causes_are_bounded(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    release = threading.Event()
    recorder = Recorder()

    def listener(client_: Any, request: Any) -> None:
        if request.payload.get("block"):
            release.wait(timeout(10.0))  # keeps the connection busy: it drains only once this acks
        recorder(client_, request)

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    (conn,) = server.connections
    try:
        blocked = server.push(server.make_envelope("events_api", {"block": True}), connection=conn)
        reasons = [f"reason-{n}-" + "r" * 100 for n in range(MAX_CAUSES + 8)]  # a peer's new reason each time
        for reason in reasons:
            server.disconnect(reason, connection=conn)
        marker = server.push(server.make_envelope("events_api", {"marker": True}), connection=conn)
        server.wait_for_acks(envelope_ids=[marker], timeout=timeout(5.0))  # read after every disconnect
    finally:
        release.set()
    server.wait_for_acks(envelope_ids=[blocked], timeout=timeout(5.0))
    causes = client.stats().reconnects
    assert len(causes) == MAX_CAUSES
    assert all(len(cause) <= MAX_CAUSE_LENGTH for cause in causes)
    assert causes["other"] == len(reasons) - (MAX_CAUSES - 1)
    assert sum(causes.values()) == len(reasons)


def test_a_percentile_is_the_nearest_rank_of_the_sorted_times() -> None:
    ordered = [float(n) for n in range(1, 11)]  # 1.0 to 10.0
    assert [percentile(ordered, q) for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0)] == [1.0, 1.0, 5.0, 9.0, 10.0, 10.0]
    assert percentile([0.25], 0.99) == 0.25
    assert percentile([], 0.5) is None  # before the first ack: stats() reports None


def test_the_cause_counter_cuts_long_causes_and_counts_new_ones_past_its_bound_as_other() -> None:
    causes = CauseCounter()
    causes["disconnect " + "r" * 200] += 1  # a peer's reason, cut to the bound
    assert list(causes) == [("disconnect " + "r" * 200)[:MAX_CAUSE_LENGTH]]
    new = [f"cause {n}" for n in range(MAX_CAUSES + 5)]
    for cause in new:
        causes[cause] += 1
    counted_apart = MAX_CAUSES - 2  # the long one, these, and "other" make MAX_CAUSES keys
    assert len(causes) == MAX_CAUSES
    assert causes["other"] == len(new) - counted_apart
    causes[new[0]] += 1  # a cause counted apart goes on being counted apart
    causes[new[-1]] += 1  # one that was not goes on to "other"
    assert causes[new[0]] == 2 and causes["other"] == len(new) - counted_apart + 1
    assert new[-1] not in causes and sum(causes.values()) == 1 + len(new) + 2
