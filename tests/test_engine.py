"""slack_socket_mode.engine: each message routed; connect(), disconnect() and close() carried out, on real sockets."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import ClientState, SocketModeClient
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from .conftest import APP_TOKEN, ClientFactory, Recorder, assert_acked_on_first_delivery, client_threads, timeout
from .netem import Relay


def test_message_listeners_get_every_message_but_disconnect_as_slack_sdks_clients_call_them(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """hello, envelopes, other types and text that is not JSON reach message_listeners; disconnect does not."""
    client = make_client()
    seen: list[Any] = []
    other, second_hello = threading.Event(), threading.Event()
    requests = Recorder()

    def on_message(c: Any, message: dict[str, Any], raw_message: str) -> None:
        seen.append(message.get("type") or raw_message)
        assert message == ({} if raw_message == "not JSON" else json.loads(raw_message))
        if message.get("type") == "app_rate_limited_test":
            other.set()
        if seen.count("hello") == 2:
            second_hello.set()

    client.message_listeners.append(on_message)
    client.socket_mode_request_listeners.append(requests)
    client.connect()
    envelope_id = server.push(server.make_envelope())
    server.wait_for_acks(envelope_ids=[envelope_id])
    server.disconnect("refresh_requested")  # no listener for it: the client replaces the connection instead
    assert second_hello.wait(timeout(5))  # the replacement's
    # Both on the replacement: while the old connection drains, texts sent to each are read by two
    # readers, in no order between them.
    replacement = server.wait_for_new_connection(1, timeout(5))
    server.send_text("not JSON", connection=replacement)  # slack_sdk's clients give text that is not JSON {}
    server.send_text(json.dumps({"type": "app_rate_limited_test", "minute_rate_limited": 1}), connection=replacement)
    assert other.wait(timeout(5))
    assert len(requests.wait_for(1)) == 1  # the envelope only
    assert seen == ["hello", "events_api", "hello", "not JSON", "app_rate_limited_test"], seen


@pytest.mark.parametrize(
    "bad",
    [
        "this is not json",
        "[1, 2, 3]",
        '"just a string"',
        '{"type": "events_api", "payload": {"event": {}}}',
        '{"type": "some_future_message"}',
        b"\x00\x01binary",
        "invalid-utf8",
    ],
    ids=["not-json", "array", "string", "no-envelope-id", "unknown-type", "binary", "invalid-utf8"],
)
def test_bad_input_is_skipped_and_loses_nothing(
    server: SocketModeServer, make_client: ClientFactory, bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    (conn,) = server.wait_for_connections(1)
    first = server.push(load_sample("events_api_message"))
    with caplog.at_level(logging.DEBUG, logger="slack_socket_mode"):
        if isinstance(bad, bytes):
            server.send_binary(bad)
        elif bad == "invalid-utf8":
            server.send_raw_text_bytes(b'{"envelope_id": "\xff\xfe"}')
        else:
            server.send_text(bad)
        after = server.push(load_sample("slash_commands"))
        server.wait_for_acks(envelope_ids=[first, after])
    assert [r.envelope_id for r in recorder.wait_for(2)] == [first, after]
    assert server.connections == [conn]  # the same connection, still open
    assert server.open_calls == 1
    assert any("skipped" in r.getMessage() or "ignored" in r.getMessage() for r in caplog.records)


def test_disconnect_then_connect_again(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    client.connect()
    client.disconnect()
    assert not client.is_connected()
    assert client.state is ClientState.DISCONNECTED
    (first,) = server.all_connections
    assert first.wait_closed(timeout(5))
    client.connect()
    assert client.is_connected()
    assert len(server.all_connections) == 2


def test_close_interrupts_a_waiting_connect(server: SocketModeServer, make_client: ClientFactory) -> None:
    server.refuse_next_connections(1000)
    failed_twice = threading.Event()
    failures: list[Exception] = []

    def on_error(error: Exception) -> None:
        failures.append(error)
        if len(failures) >= 2:
            failed_twice.set()

    client = make_client(on_error_listeners=[on_error])
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            client.connect(timeout=None)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=connect)
    thread.start()
    assert failed_twice.wait(timeout(5))  # it is retrying, with no timeout of its own
    client.close()
    thread.join(timeout(5))
    assert len(outcome) == 1 and type(outcome[0]).__name__ == "SocketModeError"
    assert "interrupted" in str(outcome[0])


def test_connect_to_new_endpoint_connects_and_with_force_replaces_every_connection(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    client = make_client()
    client.connect_to_new_endpoint()  # not connected: it connects, as connect() does
    assert client.is_connected()
    (first,) = server.wait_for_connections(1)
    client.connect_to_new_endpoint(force=True)  # make-before-break: a new connection, then the old one closes
    assert first.wait_closed(timeout(5.0))
    assert first.closed_by == "client"
    assert client.is_connected()
    assert server.open_calls == 2
    client.socket_mode_request_listeners.append(Recorder())
    envelope_id = server.push_sample("events_api_message")
    server.wait_for_acks(envelope_ids=[envelope_id])


def test_close_leaves_no_thread_and_is_idempotent(server: SocketModeServer) -> None:
    from slack_sdk.web import WebClient

    before = client_threads()
    client = SocketModeClient(app_token=APP_TOKEN, web_client=WebClient(base_url=server.api_url), concurrency=4)
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    server.wait_for_acks(envelope_ids=[server.push(load_sample("events_api_message"))])
    assert len(client_threads()) > len(before)
    (conn,) = server.connections
    client.close()
    assert client_threads() == before
    assert conn.wait_closed(timeout(5)) and conn.close_code_received == 1000
    client.close()  # idempotent
    assert client.closed and not client.is_connected()


def test_close_gives_up_a_write_that_cannot_progress_and_acks_the_rest_on_the_healthy_connection(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """One connection's peer stopped reading while a listener writes an 8 MB ack to it; the other is healthy.

    On main close() waited for that listener, blocked in a write that could not progress, for
    3.5 s of close(5.0) (all that close_timeout leaves the listeners) and then aborted it anyway.
    Now the connection is given up once its write has made no progress for 0.25 s: close()
    returns within 1 s, the listeners in flight on the healthy connection ack there, and the
    stuck ack goes out on the healthy connection too.
    """
    huge = {"text": "x" * 8_000_000}  # more than loopback's socket buffers hold while the peer reads nothing
    huge_started, write_huge = threading.Event(), threading.Event()
    in_flight = threading.Semaphore(0)
    finish = threading.Event()

    def listener(client: SocketModeClient, request: Any) -> None:
        if request.payload.get("huge"):
            huge_started.set()
            assert write_huge.wait(timeout(5))
            client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": huge})
            return
        in_flight.release()
        assert finish.wait(timeout(5))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client = make_client(connections=2, receive_timeout=60.0)  # write_timeout 5 s: the health thread stays out
    client.socket_mode_request_listeners.append(listener)
    client.connect()
    stopped, healthy = server.wait_for_connections(2, timeout=timeout(5))
    stuck_id = server.push(server.make_envelope("interactive", {"huge": True}), connection=stopped)
    assert huge_started.wait(timeout(5)), "the listener on the connection to stop did not start"
    ids = [server.push(server.make_envelope("interactive", {}), connection=healthy) for _ in range(3)]
    for _ in ids:
        assert in_flight.acquire(timeout=timeout(5)), "the listeners on the healthy connection did not start"
    server.silence(stopped)  # it reads nothing more
    write_huge.set()
    conns = list(client._session.connections.values())  # private: the test waits until the write is stuck
    paced = threading.Event()  # never set: its wait paces the check
    for _ in range(int(timeout(10) / 0.05)):
        writing_since = [deadline - 5.0 for deadline in (conn.write_deadline() for conn in conns) if deadline]
        if writing_since and time.monotonic() - writing_since[0] > 0.5:
            break
        paced.wait(0.05)
    else:
        pytest.fail("the 8 MB ack did not get stuck")

    closer = threading.Thread(target=client.close, args=(5.0,), name="test-close", daemon=True)
    with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
        closer.start()
        for _ in range(int(timeout(5) / 0.05)):  # the listeners in flight finish once close() has begun
            if client.closed:
                break
            paced.wait(0.05)
        finish.set()
        closer.join(timeout(1.0))
        assert not closer.is_alive(), "close() waited for a write that could not progress"

    server.wait_for_acks(envelope_ids=[*ids, stuck_id], timeout=timeout(5))  # 8 MB take the server a while to read
    assert_acked_on_first_delivery(server, ids)  # on the healthy connection, once
    (ack,) = server.envelope(stuck_id).acks
    assert ack.connection_id == healthy.id  # the stuck ack went out on the healthy connection
    assert server.duplicate_acks() == []
    given_up = [r.getMessage() for r in caplog.records if "made no progress" in r.getMessage()]
    assert len(given_up) == 1, given_up
    assert given_up[0].startswith(f"connection {stopped.id}: aborting (close(): a write made no progress in 0.")
    problems = [r.getMessage() for r in caplog.records if "made no progress" not in r.getMessage()]
    assert problems == []


def test_close_waits_for_a_write_that_progresses_to_a_peer_that_reads_slowly(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The other side of the test above: a peer that reads, at 4 MB/s, is not one that stopped reading.

    An 8 MB ack blocks its write for about a second (more than the socket buffers hold), but the
    peer acknowledges some of it all along: close() waits for it within its budget, gives nothing
    up, and the ack arrives on the connection that delivered the envelope. A rule of "a write
    blocked for 0.25 s during close() is given up" would abort it, and the ack would have nowhere
    to go.
    """
    relay = Relay("127.0.0.1", delay=0.0, loss=0.0, rate=4_000_000)
    with SocketModeServer(redelivery_delay=None, ws_url_address=relay.address) as server:
        relay.start(("127.0.0.1", server.ws_port))
        client = make_client(web_client=WebClient(base_url=server.api_url), receive_timeout=60.0)
        big = {"text": "x" * 8_000_000}
        acking = threading.Event()

        def listener(client: SocketModeClient, request: Any) -> None:
            acking.set()
            client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": big})

        client.socket_mode_request_listeners.append(listener)
        try:
            client.connect()
            envelope_id = server.push(server.make_envelope("interactive", {}))
            assert acking.wait(timeout(5))
            with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
                client.close(5.0)
            server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(10))
        finally:
            relay.close()
    assert_acked_on_first_delivery(server, [envelope_id])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
