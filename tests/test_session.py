"""slack_socket_mode.session: the connection table carried through rotations and drains, on real sockets."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import ClientState, ConnectionState, SocketModeClient
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from .conftest import ClientFactory, Recorder, Watcher, assert_acked_on_first_delivery, timeout
from .test_faults import FAST, Stream, assert_exactly_once, started


def test_disconnect_gets_a_fresh_url_and_a_new_connection(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    (old,) = server.wait_for_connections(1)
    server.disconnect("refresh_requested")
    new = server.wait_for_new_connection(1)
    assert server.open_calls == 2
    assert old.wait_closed(timeout(5))
    assert old.closed_by == "client"
    envelope_id = server.push(load_sample("events_api_message"))
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id])
    assert ack.connection_id == new.id
    assert client.is_connected()
    assert client.stats().last_disconnect_reason == "refresh_requested"


def test_rotation_warning_then_refresh_then_close_has_no_gap(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    client, recorder, _watcher = started(make_client)
    (old,) = server.wait_for_connections(1)
    gaps: list[Any] = []
    client.lifecycle_listeners.append(lambda t: gaps.append(t) if not client.is_connected() else None)
    with Stream(server) as stream:
        server.wait_for_acks(count=5)
        server.disconnect("warning", connection=old)
        new = server.wait_for_new_connection(1)
        burst = server.push_many([server.make_envelope() for _ in range(50)])  # over both, if old is still open
        try:
            server.disconnect("refresh_requested", connection=old)
        except RuntimeError:
            pass  # the client has closed it or is closing it, as it should once the new one said hello
        assert old.wait_closed(timeout(10))
        server.wait_for_acks(envelope_ids=[server.push(server.make_envelope(), connection=new)])
    assert gaps == []  # is_connected() never went false
    assert old.closed_by == "client"
    assert client.state is ClientState.CONNECTED
    assert_exactly_once(server, recorder, [*stream.ids, *burst])
    # The server went on delivering on the old connection after its disconnect, as Slack may:
    # none of that was lost and left to a redelivery. (An envelope that reached the client
    # after its close frame is acked on the new connection: not checked here.)
    assert_acked_on_first_delivery(server, [*stream.ids, *burst], same_connection=False)


@pytest.mark.parametrize("slow_ends", ["acked", "not acked"])
def test_a_draining_connection_takes_envelopes_and_acks_on_itself_before_it_closes(
    make_client: ClientFactory, slow_ends: str
) -> None:
    """Replaced by a rotation, a connection still takes what Slack sends it, and closes only once
    every envelope it delivered was acked, each ack on it (no redelivery to hide a loss), or its
    listeners returned without an ack."""
    with SocketModeServer(redelivery_delay=None) as server:
        slow = server.make_envelope()
        release = threading.Event()
        started = threading.Event()

        def listener(client: SocketModeClient, request: Any) -> None:
            if request.envelope_id == slow["envelope_id"]:
                started.set()
                release.wait(timeout(10))
                if slow_ends == "not acked":
                    return
            client.send_socket_mode_response({"envelope_id": request.envelope_id})

        # The drain's deadline is far: the connection must close because its last ack was written.
        client = make_client(
            web_client=WebClient(base_url=server.api_url), reconnect_policy=FAST, drain_timeout=timeout(60)
        )
        client.socket_mode_request_listeners.append(listener)
        watcher = Watcher(client)
        client.connect()
        (old,) = server.wait_for_connections(1)
        server.push(slow, connection=old)
        assert started.wait(timeout(5))
        try:
            server.disconnect("warning", connection=old)
            new = server.wait_for_new_connection(1)
            watcher.wait(
                lambda: any(t.new is ConnectionState.DRAINING for t in watcher.transitions),
                what="a connection draining",
            )
            assert old.is_open  # an envelope it delivered is still in flight
            during = [server.push(server.make_envelope(), connection=old) for _ in range(3)]
            during += server.push_many([server.make_envelope() for _ in range(4)])  # spread over both
            server.wait_for_acks(envelope_ids=during, timeout=timeout(5))
            assert old.is_open
        finally:
            release.set()
        if slow_ends == "acked":
            server.wait_for_acks(envelope_ids=[slow["envelope_id"]], timeout=timeout(5))
        assert old.wait_closed(timeout(5))  # at once, not at the drain's deadline
        assert old.closed_by == "client"
        ids = [slow["envelope_id"], *during] if slow_ends == "acked" else during
        assert_acked_on_first_delivery(server, ids)
        assert server.envelope(slow["envelope_id"]).acks == [] or slow_ends == "acked"
        assert {server.envelope(i).deliveries[0].connection_id for i in ids} == {old.id, new.id}
        assert old.closed_at is not None
        assert all(a.received_at <= old.closed_at for a in server.acks if a.connection_id == old.id)
        assert client.is_connected()


def test_closing_a_connection_whose_writer_is_stuck_never_holds_the_client_lock(make_client: ClientFactory) -> None:
    """On main, disconnect() wrote the close frame under the client's lock, behind the stuck writer:
    the lock stayed taken, and every other call on the client (stats() here) waited with it."""
    with SocketModeServer(redelivery_delay=None) as server:
        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            write_timeout=60.0,  # the watchdog stays out of it: only the close path is tested
            ping_interval=None,
            receive_timeout=60.0,
        )
        big = {"text": "x" * 4_000_000}
        client.socket_mode_request_listeners.append(
            lambda c, r: c.send_socket_mode_response({"envelope_id": r.envelope_id, "payload": big})
        )
        client.connect()
        server.silence()
        for _ in range(16):  # 64 MB of acks: far more than the socket buffers hold
            client.enqueue_message(json.dumps(server.make_envelope("interactive", {"view": {}})))
        (conn,) = client._session.connections.values()  # private: the test waits until a write is stuck
        stuck = threading.Event()  # never set: its wait paces the check
        end = threading.Event()
        for _ in range(int(timeout(10) / 0.05)):
            deadline = conn.write_deadline()
            if deadline is not None and time.monotonic() - (deadline - 60.0) > 0.5:
                break
            stuck.wait(0.05)
        else:
            pytest.fail("no write got stuck")
        closer = threading.Thread(target=client.disconnect, name="test-disconnect", daemon=True)
        closer.start()
        prober = threading.Thread(target=lambda: (client.stats(), end.set()), name="test-stats", daemon=True)
        prober.start()
        assert end.wait(timeout(3)), "stats() waited for the client's lock while a close frame was being written"
        closer.join(timeout(5))
        assert not closer.is_alive(), "disconnect() did not return"
