"""slack_socket_mode.health: the health thread acts on liveness and write deadlines (silent, stuck connections)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import ClientFactory, Watcher, assert_acked_on_first_delivery, client_threads, closes_within, timeout
from .test_faults import FAST, Stream, assert_exactly_once, started


def test_silent_peer_is_replaced(make_client: ClientFactory) -> None:
    with SocketModeServer(redelivery_delay=1.0) as server:
        client, recorder, watcher = started(
            make_client,
            web_client=WebClient(base_url=server.api_url),
            ping_interval=0.3,
            ping_timeout=0.3,
            receive_timeout=2.0,
        )
        with Stream(server, rate=50) as stream:
            server.wait_for_acks(count=3)
            server.silence()
            server.wait_for_new_connection(1, timeout=timeout(5))
            watcher.wait_connected()
            server.wait_for_acks(count=len(server.acks) + 3)
        # envelopes sent into the silent connection are redelivered on the new one
        assert_exactly_once(server, recorder, stream.ids)
        assert_acked_on_first_delivery(server, stream.ids, same_connection=False, lost_with=[1])
        assert client.stats().reconnects.get("no pong", 0) + client.stats().reconnects.get("no frames", 0) >= 1


def test_a_peer_that_stops_reading_is_replaced_and_close_returns(make_client: ClientFactory) -> None:
    """Large acks fill the socket while the peer reads nothing: the writer holds the send lock.

    On main the health thread blocked on that lock in ``ping()``: no liveness check ran, the
    connection was never replaced, and ``close()`` never returned.
    """
    with SocketModeServer(redelivery_delay=None) as server:
        big = {"text": "x" * 1_000_000}
        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            reconnect_policy=FAST,
            ping_interval=0.2,
            receive_timeout=60.0,  # the replacement must come from the write bound, not from silence
            write_timeout=1.0,
        )
        started = threading.Event()

        def acks_a_lot(client: SocketModeClient, request: Any) -> None:
            started.set()
            client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": big})

        client.socket_mode_request_listeners.append(acks_a_lot)
        watcher = Watcher(client)
        client.connect()
        (first,) = server.connections
        server.silence(first)  # it reads nothing more; what it sent before still arrives
        for _ in range(64):
            client.enqueue_message(json.dumps(server.make_envelope("view_submission_like", {"view": {}})))
        assert started.wait(timeout(5))
        server.wait_for_new_connection(1, timeout=timeout(8))
        watcher.wait_connected(seconds=8)
        reconnects = client.stats().reconnects
        assert reconnects.get("write timeout", 0) + reconnects.get("aborted", 0) >= 1, reconnects
        assert closes_within(client, 2.0, timeout(4)), "close() did not return against a peer that stopped reading"
        assert [t.name for t in client_threads() if t.name.startswith(client._prefix)] == []


def test_one_write_stuck_on_a_peer_that_stops_reading_is_aborted_by_the_health_thread(
    make_client: ClientFactory,
) -> None:
    """One ack, and no other writer: only the health thread's watch on the write can see it stuck.

    (With many acks, the next one's wait for the send lock gives the connection up too; here there
    is none, pings never wait for the lock, and silence is not reached within the test.)
    """
    with SocketModeServer(redelivery_delay=None) as server:
        huge = {"text": "x" * 32_000_000}  # more than loopback's socket buffers hold
        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            reconnect_policy=FAST,
            concurrency=1,
            ping_interval=0.2,
            receive_timeout=60.0,
            write_timeout=0.5,
        )
        client.socket_mode_request_listeners.append(
            lambda client, request: client.send_socket_mode_response(
                {"envelope_id": request.envelope_id, "payload": huge}
            )
        )
        client.connect()
        (first,) = server.connections
        server.silence(first)
        client.enqueue_message(json.dumps(server.make_envelope("view_submission_like", {"view": {}})))
        server.wait_for_new_connection(1, timeout=timeout(8))
        assert client.stats().reconnects.get("write timeout") == 1, client.stats().reconnects


def test_stuck_writes_are_seen_by_their_own_deadline_with_no_pings_to_wake_the_health_thread(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Without pings, only the write's deadline (or, with no write, a look every write_timeout) wakes the watch."""
    with SocketModeServer(redelivery_delay=None) as server:
        huge = {"text": "x" * 32_000_000}  # more than loopback's socket buffers hold
        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            reconnect_policy=FAST,
            concurrency=1,
            ping_interval=None,
            receive_timeout=60.0,
            write_timeout=0.5,
        )
        client.socket_mode_request_listeners.append(
            lambda client, request: client.send_socket_mode_response(
                {"envelope_id": request.envelope_id, "payload": huge}
            )
        )
        watcher = Watcher(client)
        client.connect()
        with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
            for count in (1, 2):  # the second starts while the watch sleeps with no write to look at
                watcher.wait(lambda: client.is_connected() and client.stats().connections_open == 1)
                conn = server.connections[-1]
                server.silence(conn)
                client.enqueue_message(json.dumps(server.make_envelope("view_submission_like", {"view": {}})))
                server.wait_for_new_connection(count, timeout=timeout(8))
                assert client.stats().reconnects.get("write timeout") == count, client.stats().reconnects
        replaced = [r.getMessage() for r in caplog.records if r.getMessage().endswith("; replacing it")]
        assert len(replaced) == 2
        assert all(
            re.fullmatch(
                r"connection \d+: a write has not finished in \d+\.\d s \(the peer does not read\); replacing it", m
            )
            for m in replaced
        ), replaced


def test_a_connection_silent_past_receive_timeout_is_replaced_and_counted_as_no_frames(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with SocketModeServer(redelivery_delay=None) as server:
        client = make_client(web_client=WebClient(base_url=server.api_url), ping_interval=None, receive_timeout=0.3)
        watcher = Watcher(client)
        client.connect()
        with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
            for count in (1, 2):
                watcher.wait(lambda: client.is_connected() and client.stats().connections_open == 1)
                server.silence(server.connections[-1])
                server.wait_for_new_connection(count, timeout=timeout(5))
        assert client.stats().reconnects == {"no frames": 2}
        replaced = [r.getMessage() for r in caplog.records if r.getMessage().endswith("; replacing it")]
        assert replaced == [f"connection {cid}: no frame for 0.3 s; replacing it" for cid in (1, 2)], replaced


def test_close_returns_within_its_timeout_while_a_lifecycle_listener_holds_the_health_thread(
    make_client: ClientFactory,
) -> None:
    """close() asks the health thread to stop without joining it first: a listener stuck there costs no more."""
    hold = threading.Event()
    held = threading.Event()

    def on_transition(transition: Any) -> None:
        # the replacement of the silent connection (not any other transition the health thread may report
        # first on a loaded machine: one such made this test fail on 3.13)
        replacing = "pong" in transition.reason or "frames" in transition.reason
        if threading.current_thread().name.endswith("-health") and replacing and not held.is_set():
            held.set()
            hold.wait(timeout(10))

    with SocketModeServer(redelivery_delay=None) as server:
        client = make_client(web_client=WebClient(base_url=server.api_url), ping_interval=0.2, ping_timeout=0.2)
        client.lifecycle_listeners.append(on_transition)
        watcher = Watcher(client)
        client.connect()
        server.silence()  # no pong: the health thread replaces the connection, and tells the listener
        assert held.wait(timeout(5))
        reconnects = client.stats().reconnects
        assert sum(reconnects.values()) == 1 and set(reconnects) <= {"no pong", "no frames"}, reconnects
        new = server.wait_for_new_connection(1)
        watcher.wait_connected()
        server.silence(new)  # close() then spends its time on the close handshake before stopping the threads
        try:
            started = time.monotonic()
            closing = threading.Thread(target=client.close, kwargs={"timeout": 1.0})
            closing.start()
            closing.join(timeout(5))
            assert not closing.is_alive()
            assert time.monotonic() - started < 1.0 + timeout(0.8)
        finally:
            hold.set()
