"""The client against the local Socket Mode server: real sockets on loopback, no mocks."""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

import pytest
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from slack_socket_mode import ClientState, SocketModeClient
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import envelope_sample_names, load_sample

from .conftest import (
    APP_TOKEN,
    ClientFactory,
    Recorder,
    Watcher,
    assert_acked_on_first_delivery,
    client_threads,
    timeout,
)


def test_connects_and_records_hello(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    assert isinstance(client, BaseSocketModeClient)
    assert not client.is_connected()
    client.connect()
    assert client.is_connected()
    assert client.state is ClientState.CONNECTED
    assert client.num_connections == 1
    assert client.approximate_connection_time == 18060
    assert client.debug_info["approximate_connection_time"] == 18060
    (conn,) = server.wait_for_connections(1)
    assert conn.hello_sent
    assert server.open_calls == 1
    stats = client.stats()
    assert stats.connections_open == 1 and stats.connections_opened == 1


@pytest.mark.parametrize("name", envelope_sample_names())
def test_every_sample_is_dispatched_and_acked(server: SocketModeServer, make_client: ClientFactory, name: str) -> None:
    client = make_client()
    recorder = Recorder(payload={"text": "ok"})
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    sample = load_sample(name)
    envelope_id = server.push(sample)
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id])
    (request,) = recorder.wait_for(1)
    assert request.envelope_id == envelope_id
    assert request.type == sample["type"]
    assert request.payload == sample["payload"]
    assert request.retry_attempt == sample.get("retry_attempt")
    if sample.get("accepts_response_payload"):
        assert ack.payload == {"text": "ok"}
    else:
        assert ack.payload is None
    assert server.duplicate_acks() == []


def test_large_messages_arrive_whole(make_client: ClientFactory) -> None:
    with SocketModeServer(redelivery_delay=None, fragment_size=4096) as server:
        from slack_sdk.web import WebClient

        client = make_client(web_client=WebClient(base_url=server.api_url))
        recorder = Recorder()
        client.socket_mode_request_listeners.append(recorder)
        client.connect()
        big = load_sample("interactive_block_actions_70kb")
        huge = server.make_envelope("events_api", {"event": {"type": "message", "text": "x" * 2_000_000}})
        ids = [server.push(big), server.push(huge)]
        server.wait_for_acks(envelope_ids=ids)
        seen = recorder.wait_for(2)
        assert seen[0].payload == big["payload"]
        assert len(seen[1].payload["event"]["text"]) == 2_000_000


def test_both_listener_kinds_fire(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    messages: list[tuple[Any, dict[str, Any], str | None]] = []
    raw: list[str] = []
    got = threading.Event()

    def on_message(c: Any, message: dict[str, Any], raw_message: str | None) -> None:
        if message.get("type") == "hello":  # message listeners get every message but disconnect, as slack_sdk's
            return
        messages.append((c, message, raw_message))
        c.send_message(json.dumps({"envelope_id": message["envelope_id"]}))
        got.set()

    recorder = Recorder(ack=False)
    client.message_listeners.append(on_message)
    client.socket_mode_request_listeners.append(recorder)
    client.on_message_listeners.append(raw.append)
    client.connect()
    sample = load_sample("events_api_message")
    envelope_id = server.push(sample)
    server.wait_for_acks(envelope_ids=[envelope_id])
    assert got.wait(timeout(5))
    (request,) = recorder.wait_for(1)
    ((c, message, raw_message),) = messages
    assert c is client
    assert message == sample
    assert raw_message is not None and json.loads(raw_message) == sample
    assert request.envelope_id == envelope_id
    assert any(envelope_id in text for text in raw)  # raw listeners see every message, hello included
    assert any('"hello"' in text for text in raw)


def test_a_raising_listener_is_isolated(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(concurrency=1)

    def broken(client: SocketModeClient, request: SocketModeRequest) -> None:
        raise RuntimeError("listener bug")

    recorder = Recorder()
    client.socket_mode_request_listeners.extend([broken, recorder])
    client.connect()
    with caplog.at_level(logging.ERROR, logger="slack_socket_mode"):
        ids = [server.push(load_sample(name)) for name in ("events_api_message", "slash_commands")]
        server.wait_for_acks(envelope_ids=ids)
    failures = [r for r in caplog.records if "failed on envelope" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].getMessage() == f"request listener {broken!r} failed on envelope {ids[0]} (events_api)"
    assert failures[0].exc_info is not None and "listener bug" in str(failures[0].exc_info[1])
    assert len(server.all_connections) == 1


@pytest.mark.parametrize("inline_dispatch", [True, False])
def test_sys_exit_in_a_listener_is_isolated_like_any_failure_and_loses_nothing(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture, inline_dispatch: bool
) -> None:
    """sys.exit() on a client thread would end only that thread: on a reader, its connection and
    the envelopes it had read. It is logged as a failure; nothing is lost or replaced."""
    client = make_client(inline_dispatch=inline_dispatch)

    def exits(*args: Any) -> None:
        sys.exit(3)

    recorder = Recorder()
    client.message_listeners.append(exits)
    client.on_message_listeners.append(exits)
    client.socket_mode_request_listeners.extend([exits, recorder])
    client.connect()
    with caplog.at_level(logging.ERROR, logger="slack_socket_mode"):
        ids = server.push_many([server.make_envelope() for _ in range(20)])
        server.wait_for_acks(envelope_ids=ids)
    assert_acked_on_first_delivery(server, ids)
    assert len(server.all_connections) == 1 and client.stats().reconnects == {}
    failed = {r.getMessage().split(" listener ")[0] for r in caplog.records if isinstance(r.exc_info[1], SystemExit)}
    assert failed == {"message", "request", "on_message"}
    # On the main thread, run_message_listeners lets it through, as slack_sdk's client does; any
    # other failure is logged there too, not raised.
    envelope = server.make_envelope()
    with pytest.raises(SystemExit):
        client.run_message_listeners(envelope, json.dumps(envelope))

    def broken(*args: Any) -> None:
        raise RuntimeError("listener bug")

    client.message_listeners[:] = [broken]
    client.socket_mode_request_listeners[:] = [broken]
    client.run_message_listeners(envelope, json.dumps(envelope))


def test_a_raising_connection_listener_is_logged_by_its_kind_and_the_others_still_run(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """on_message, lifecycle, on_close and on_error listeners that raise are each logged, never raised."""
    client = make_client()

    def broken(*args: Any) -> None:
        raise RuntimeError("listener bug")

    recorder = Recorder()
    raw: list[str] = []
    for listeners in (
        client.message_listeners,
        client.on_message_listeners,
        client.lifecycle_listeners,
        client.on_close_listeners,
        client.on_error_listeners,
    ):
        listeners.append(broken)
    closes: list[tuple[Any, ...]] = []
    client.on_message_listeners.append(raw.append)
    client.on_close_listeners.append(lambda *args: closes.append(args))
    client.socket_mode_request_listeners.append(recorder)
    with caplog.at_level(logging.ERROR, logger="slack_socket_mode"):
        client.connect()
        envelope_id = server.push(load_sample("events_api_message"))
        server.wait_for_acks(envelope_ids=[envelope_id])
        server.refuse_next_connections()  # the reconnect's first attempt fails: an on_error call
        before = len(server.all_connections)
        server.close_connection(code=4002, reason="going away")
        server.wait_for_new_connection(before, timeout=timeout(10))
        again = server.push(load_sample("slash_commands"))
        server.wait_for_acks(envelope_ids=[again])
    assert [r.envelope_id for r in recorder.wait_for(2)] == [envelope_id, again]
    assert any(envelope_id in text for text in raw)  # the listener after the broken one still ran
    assert closes == [(4002, "server closed the connection (code 4002)")]  # the on_close listener after it ran
    failed = [r for r in caplog.records if r.getMessage().endswith(" failed") and r.exc_info is not None]
    kinds = {r.getMessage().split(" listener ")[0] for r in failed}
    assert kinds == {"on_message", "lifecycle", "on_close", "error"}
    assert {r.getMessage() for r in failed} == {f"{kind} listener {broken!r} failed" for kind in kinds}
    envelope_failures = [r for r in caplog.records if r.getMessage().startswith("message listener")]
    assert envelope_failures[0].getMessage() == f"message listener {broken!r} failed on a hello message"
    envelope_failures = [r for r in envelope_failures if " on envelope " in r.getMessage()]
    assert [r.getMessage() for r in envelope_failures[:1]] == [
        f"message listener {broken!r} failed on envelope {envelope_id} (events_api)"
    ]
    assert envelope_failures[0].exc_info is not None
    assert all("listener bug" in str(r.exc_info[1]) for r in failed if r.exc_info is not None)


def test_an_envelope_without_a_payload_skips_the_request_listeners_with_a_warning(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    recorder = Recorder()
    bodies: list[dict[str, Any]] = []
    client.message_listeners.append(lambda c, body, raw: bodies.append(body))
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
        bare = server.push('{"envelope_id": "no-payload-1", "type": "events_api"}')
        after = server.push(load_sample("events_api_message"))
        server.wait_for_acks(envelope_ids=[after])
    assert [r.envelope_id for r in recorder.wait_for(1)] == [after]
    assert [b.get("envelope_id", b["type"]) for b in bodies] == ["hello", bare, after]  # and every envelope
    assert [r.getMessage() for r in caplog.records] == [
        "envelope no-payload-1 (events_api) has no payload; request listeners skipped"
    ]


def test_context_manager_closes(server: SocketModeServer) -> None:
    from slack_sdk.web import WebClient

    with SocketModeClient(app_token=APP_TOKEN, web_client=WebClient(base_url=server.api_url)) as client:
        client.connect()
        assert client_threads()
    assert client_threads() == []
    assert client.state is ClientState.CLOSED


def test_threads_are_named(server: SocketModeServer, make_client: ClientFactory) -> None:
    """Every thread: session, health, the reader, a reader that took over, and a worker."""
    client = make_client()
    release = threading.Event()
    recorder = Recorder()
    calls = iter(range(1_000_000))

    def listener(client: SocketModeClient, request: SocketModeRequest) -> None:
        if next(calls) == 0:
            release.wait(timeout(5))  # slow: a new reader takes over, the next envelope goes to a worker
        recorder(client, request)

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    first = server.push(server.make_envelope())
    second = server.push(server.make_envelope())
    server.wait_for_acks(envelope_ids=[second])
    names = sorted(t.name for t in client_threads())
    release.set()
    server.wait_for_acks(envelope_ids=[first])
    prefix = names[0].rsplit("-", 2)[0]
    assert any(n.endswith("-session") for n in names)
    assert any(n.endswith("-health") for n in names)
    assert any(n.endswith("-reader-1") for n in names)
    assert any(n.endswith("-reader-1.1") for n in names)
    assert any("-worker" in n for n in names)
    assert all(n.startswith(prefix) or n.startswith("slack_socket_mode-") for n in names)


def test_watcher_sees_lifecycle(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    watcher = Watcher(client)
    client.connect()
    watcher.wait(lambda: any(t.new is ClientState.CONNECTED for t in watcher.transitions), what="CONNECTED")
