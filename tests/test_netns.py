"""Replicas as separate hosts (network namespaces), over a delaying, lossy link, and a partition of one.

Three replica processes of one app, each in its own network namespace (tests/netns.py), reach
the local Slack server through a relay in the root namespace (tests/netem.py) that delays every
chunk 50 ms each way and holds 1 % of them 200 ms more, as a TCP retransmission would: the
kernel's ``tc netem`` is not available on the project's machines. They share a RedisLedger on a
``redis-server`` of the test's own, bound to the bridge, not relayed (Redis is near the
replicas; Slack is far). One replica is then partitioned at the kernel level (its veth pair
down) for longer than Slack's 3 s redelivery and the client's liveness window, while envelopes
keep coming, and joined again.

Needs root and ``ip netns``: skipped otherwise, and a failure where
``SLACK_SOCKET_MODE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.app_model import AppModel

from .conftest import APP_TOKEN, Recorder, timeout
from .netem import Relay
from .replicas import Replica, push_paced
from .services import RedisServer, require_module, require_netns, unique_namespace

require_module("redis", "the redis extra")
import redis  # noqa: E402

#: How long the partition lasts (seconds): past Slack's 3 s redelivery and the client's
#: liveness window (a silent connection is replaced within ping_interval + ping_timeout = 8 s).
PARTITION = 12.0


def test_the_relay_delays_both_ways_and_the_server_hands_out_its_address() -> None:
    """The test helper itself, on loopback: URLs name the relay, and a round trip takes two delays."""
    relay = Relay("127.0.0.1", delay=0.1, loss=0.0)
    with SocketModeServer(redelivery_delay=None, ws_url_address=relay.address) as slack:
        relay.start(("127.0.0.1", slack.ws_port))
        client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=slack.api_url))
        recorder = Recorder()
        client.socket_mode_request_listeners.append(recorder)
        try:
            assert f":{relay.address[1]}/link/" in slack.new_connection_url()
            client.connect(timeout(5))
            (conn,) = slack.wait_for_connections(1, timeout(5))
            assert relay.client_of(conn.peer) == "127.0.0.1"
            eid = slack.push(slack.make_envelope("interactive"))
            (ack,) = slack.wait_for_acks(envelope_ids=[eid], timeout=timeout(5))
            (delivery,) = slack.envelope(eid).deliveries
            assert ack.received_at - delivery.sent_at >= 0.2  # 0.1 s there, 0.1 s back
        finally:
            client.close()
            relay.close()
    assert relay.chunks > 0 and relay.held == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("netem-")]


@pytest.mark.timeout(120)
def test_replicas_on_separate_hosts_lose_nothing_and_run_nothing_twice_through_delay_loss_and_a_partition(
    tmp_path: Any,
) -> None:
    require_netns()
    from .netns import Network

    with contextlib.ExitStack() as stack:
        net = stack.enter_context(Network(hosts=3))
        store = RedisServer(str(tmp_path), host=net.gateway)
        store.start()
        stack.callback(store.stop)
        relay = Relay(net.gateway, delay=0.05, loss=0.01, loss_delay=0.2, user_timeout=3.0)
        stack.callback(relay.close)
        # Slack pings its end of each connection, so a half-open one fails there too (the relay's
        # TCP_USER_TIMEOUT) and the server stops delivering on it.
        slack = SocketModeServer(
            host=net.gateway, app=AppModel(), redelivery_delay=3.0, ping_interval=1.0, ws_url_address=relay.address
        )
        stack.enter_context(slack)
        relay.start((net.gateway, slack.ws_port))
        namespace = unique_namespace("netns")
        completions_key = f"slack_socket_mode:{namespace}:test-completions"
        effects: Any = redis.Redis.from_url(store.url, decode_responses=True)
        stack.callback(effects.close)
        replicas: list[Replica] = []
        for host in range(3):
            replica = Replica(
                slack.api_url,
                store.url,
                namespace,
                completions_key,
                2,
                prefix=net.command(host, []),
                extra=("--reconnect-cap", "2", "--allow-insecure-urls"),
                logs=True,
            )
            stack.callback(replica.stop)
            replicas.append(replica)
        for replica in replicas:
            replica.expect("ready")
        slack.wait_for_connections(6, timeout(10))

        def host_of(conn: Any) -> int:
            return net.addresses.index(relay.client_of(conn.peer) or "")

        # 1. Over the slow, lossy link. One envelope in 60 keeps its listener busy past Slack's
        # 3 s: Slack redelivers it, often to another host, which must neither run nor ack it.
        ids: list[str] = []
        push_paced(slack, 240, 60.0, ids, work=3.5)
        slack.wait_for_acks(envelope_ids=ids, timeout=timeout(20))
        before = len(ids)

        # 2. Host 0 cut off, while envelopes keep coming.
        cut_conns = [conn for conn in slack.connections if host_of(conn) == 0]
        cut = {conn.id for conn in cut_conns}
        assert len(cut) == 2
        cut_at = time.monotonic()
        net.partition(0)
        push_paced(slack, 160, 30.0, ids)
        # Its connections fail on the server's side (pings unanswered), within the relay's user timeout.
        slack.wait_until(lambda: all(c.closed_at for c in cut_conns), timeout(10), "the cut connections closed")
        accepted = len(slack.all_connections)
        time.sleep(max(0.0, cut_at + PARTITION - time.monotonic()))  # the partition's length is the experiment
        # While still cut off, host 0's client found both its connections silent and replaced them
        # (liveness: within ping_interval + ping_timeout = 8 s). Without that it would learn of
        # their death only from a TCP reset after the partition heals, if it sent anything.
        replaced = [line for line in replicas[0].log if "replacing it" in line]
        assert len(replaced) >= 2, "host 0 kept its silent connections; its log ends:\n" + "\n".join(
            replicas[0].log[-20:]
        )
        net.heal(0)
        healed_at = time.monotonic()

        # 3. Host 0 reconnects (its client replaced the silent connections) and takes envelopes again.
        new: list[Any] = []
        while len(new) < 2:
            conn = slack.wait_for_new_connection(accepted, max(0.0, healed_at + timeout(20) - time.monotonic()))
            accepted += 1
            if host_of(conn) == 0:
                new.append(conn)
        reconnected = time.monotonic() - healed_at
        during = len(ids)
        push_paced(slack, 160, 60.0, ids, work=3.5)
        slack.wait_for_acks(envelope_ids=ids, timeout=timeout(25))

        completions = {k: int(v) for k, v in effects.hgetall(completions_key).items()}
        assert [eid for eid in ids if eid not in completions] == [], "lost"
        assert [eid for eid in ids if completions[eid] > 1] == [], "completed twice"
        # What Slack sent to the cut host during the partition was redelivered and run elsewhere.
        stranded = [eid for eid in ids[before:during] if slack.envelope(eid).deliveries[0].connection_id in cut]
        assert stranded, "no envelope went to the cut host: the partition tested nothing"
        for eid in stranded:
            record = slack.envelope(eid)
            assert len(record.deliveries) > 1, eid
            assert record.acks and all(a.connection_id not in cut for a in record.acks), eid
        assert not [a for a in slack.acks if a.connection_id in cut and a.received_at > cut_at]
        # After healing, host 0's new connections took their share.
        by_id = {c.id: host_of(c) for c in slack.all_connections if c.hello_sent}
        after = [eid for eid in ids[during:] if by_id[slack.envelope(eid).acks[0].connection_id] == 0]
        assert after, "host 0 acked nothing after the partition healed"
        redelivered = [eid for eid in ids if len(slack.envelope(eid).deliveries) > 1]
        print(
            f"{len(ids)} envelopes, {len(redelivered)} redelivered, {len(stranded)} stranded by the partition,"
            f" {len(after)} acked by host 0 after it healed ({reconnected:.1f} s to reconnect);"
            f" relay: {relay.chunks} chunks, {relay.held} held as lost"
        )
