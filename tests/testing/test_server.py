"""The local Socket Mode server, driven by a raw websocket-client socket and slack_sdk's WebClient.

Real sockets on loopback; no fixed sleeps (waits use the server's helpers or socket timeouts).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import websocket
from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient
from websocket import ABNF

from slack_socket_mode.testing import ApiCall, Delivery, ServerConnection, SocketModeServer
from slack_socket_mode.testing.samples import load_sample

APP_TOKEN = "xapp-1-A111-4242-fa4ef00dfa4ef00d"
PREFIX = "slack_socket_mode.testing-"

Connect = Callable[..., websocket.WebSocket]


def server_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(PREFIX)]


@pytest.fixture
def fake() -> Iterator[SocketModeServer]:
    with SocketModeServer(redelivery_delay=None) as server:
        yield server


@pytest.fixture
def sockets() -> Iterator[list[websocket.WebSocket]]:
    """Every WebSocket a test opens; all are dropped at teardown."""
    opened: list[websocket.WebSocket] = []
    yield opened
    for ws in opened:
        ws.shutdown()


def open_url(server: SocketModeServer, token: str = APP_TOKEN) -> str:
    """Call apps.connections.open the way an app does and return the WebSocket URL."""
    response = WebClient(base_url=server.api_url).apps_connections_open(app_token=token)
    url = response["url"]
    assert isinstance(url, str)
    return url


def connect_to(sockets: list[websocket.WebSocket], url: str, *, read_hello: bool = True) -> websocket.WebSocket:
    ws = websocket.WebSocket()
    sockets.append(ws)
    ws.connect(url, timeout=2)
    if read_hello:
        assert json.loads(ws.recv())["type"] == "hello"
    return ws


@pytest.fixture
def connect(fake: SocketModeServer, sockets: list[websocket.WebSocket]) -> Connect:
    """Open a connection to ``fake`` (or another server) through apps.connections.open."""

    def _connect(server: SocketModeServer | None = None, *, read_hello: bool = True) -> websocket.WebSocket:
        return connect_to(sockets, open_url(server or fake), read_hello=read_hello)

    return _connect


def ack(ws: websocket.WebSocket, envelope_id: str, payload: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"envelope_id": envelope_id}
    if payload is not None:
        body["payload"] = payload
    ws.send(json.dumps(body))


def close_code(frame: Any) -> int:
    code = struct.unpack("!H", frame.data[:2])[0]
    assert isinstance(code, int)
    return code


# -- Web API ------------------------------------------------------------------------------


def test_apps_connections_open_returns_a_single_use_ws_url(fake: SocketModeServer) -> None:
    url = open_url(fake)
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{fake.ws_port}/link/\?ticket=[0-9a-f-]{{36}}&app_id=A111", url)
    assert fake.api_url == f"http://127.0.0.1:{fake.api_port}/api/"
    assert fake.api_port != fake.ws_port
    assert fake.open_calls == 1
    assert fake.api_calls == [ApiCall("apps.connections.open", {})]
    assert open_url(fake) != url


def test_apps_connections_open_rejects_a_non_app_token(fake: SocketModeServer) -> None:
    with pytest.raises(SlackApiError) as info:
        open_url(fake, token="xoxb-111-222-secret")
    assert info.value.response.status_code == 200
    assert info.value.response["error"] == "invalid_auth"
    assert fake.open_calls == 1
    assert "xoxb" not in repr(fake.api_calls)


def test_apps_connections_open_without_a_token_is_not_authed(fake: SocketModeServer) -> None:
    with pytest.raises(SlackApiError) as info:
        WebClient(base_url=fake.api_url).api_call("apps.connections.open")
    assert info.value.response["error"] == "not_authed"
    assert fake.open_calls == 1


def test_auth_test_other_methods_and_recorded_params(fake: SocketModeServer) -> None:
    client = WebClient(token="xoxb-111-222-secret", base_url=fake.api_url)
    auth = client.auth_test()
    assert auth.data == {
        "ok": True,
        "url": "https://example.slack.com/",
        "team": "Example",
        "user": "bot",
        "team_id": "T111",
        "user_id": "U111",
        "bot_id": "B111",
        "is_enterprise_install": False,
    }
    assert client.chat_postMessage(channel="C111", text="hi").data == {"ok": True}
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Hi"}, "blocks": []}
    assert client.api_call("views.open", json={"trigger_id": "t1", "view": view}).data == {"ok": True}
    assert client.api_call("conversations.list", http_verb="GET", params={"limit": 5}).data == {"ok": True}
    calls = fake.wait_for_api_calls("conversations.list")
    assert calls == [ApiCall("conversations.list", {"limit": "5"})]
    assert fake.api_calls == [
        ApiCall("auth.test", {}),
        ApiCall("chat.postMessage", {"channel": "C111", "text": "hi"}),
        ApiCall("views.open", {"trigger_id": "t1", "view": view}),
        ApiCall("conversations.list", {"limit": "5"}),
    ]
    assert "secret" not in repr(fake.api_calls)
    assert fake.open_calls == 0


def test_a_path_outside_api_is_404(fake: SocketModeServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{fake.api_port}/other", timeout=2)
    assert info.value.code == 404
    info.value.close()


def test_fail_next_opens_with_an_error(fake: SocketModeServer) -> None:
    fake.fail_next_opens(count=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            open_url(fake)
        assert info.value.response.status_code == 200
        assert info.value.response["error"] == "invalid_auth"
    fake.fail_next_opens("internal_error", status=503)
    with pytest.raises(SlackApiError) as info:
        open_url(fake)
    assert info.value.response.status_code == 503
    assert info.value.response["error"] == "internal_error"
    assert open_url(fake).startswith("ws://")
    assert fake.open_calls == 4


def test_fail_next_opens_rate_limited_with_retry_after(fake: SocketModeServer) -> None:
    fake.fail_next_opens(status=429, retry_after=7)
    with pytest.raises(SlackApiError) as info:
        open_url(fake)
    response = info.value.response
    assert response.status_code == 429
    assert response["error"] == "ratelimited"
    headers = {name.lower(): value for name, value in response.headers.items()}
    assert headers["retry-after"] == "7"
    assert open_url(fake).startswith("ws://")


def test_refuse_next_connections(fake: SocketModeServer, sockets: list[websocket.WebSocket]) -> None:
    fake.refuse_next_connections()
    url = open_url(fake)
    assert f":{fake.ws_port}/" not in url
    with pytest.raises(ConnectionRefusedError):
        websocket.create_connection(url, timeout=2)
    connect_to(sockets, open_url(fake))
    assert len(fake.wait_for_connections(1)) == 1
    assert fake.open_calls == 2


# -- handshake and hello ------------------------------------------------------------------


def test_a_ticket_is_single_use(fake: SocketModeServer, sockets: list[websocket.WebSocket]) -> None:
    url = open_url(fake)
    connect_to(sockets, url)
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(url, timeout=2)
    assert info.value.status_code == 403
    bad = re.sub(r"ticket=[^&]+", "ticket=made-up", open_url(fake))
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(bad, timeout=2)
    assert info.value.status_code == 403
    assert [conn.id for conn in fake.all_connections] == [1]


def test_hello_content_and_connection_records(sockets: list[websocket.WebSocket]) -> None:
    with SocketModeServer(redelivery_delay=None, approximate_connection_time=3600) as server:
        first = connect_to(sockets, open_url(server), read_hello=False)
        hello = json.loads(first.recv())
        assert hello["type"] == "hello"
        assert hello["num_connections"] == 1
        assert hello["debug_info"]["approximate_connection_time"] == 3600
        assert hello["connection_info"] == {"app_id": "A111"}
        second = connect_to(sockets, open_url(server), read_hello=False)
        assert json.loads(second.recv())["num_connections"] == 2
        one, two = server.wait_for_connections(2)
        assert (one.id, two.id) == (1, 2)
        assert one.hello_sent and two.hello_sent and one.is_open
        assert one.opened_at <= two.opened_at
        assert one.closed_at is None and one.closed_by is None
        assert server.all_connections == [one, two] == server.connections


def test_send_hello_false(sockets: list[websocket.WebSocket]) -> None:
    with SocketModeServer(redelivery_delay=None, send_hello=False) as server:
        ws = connect_to(sockets, open_url(server), read_hello=False)
        (conn,) = server.wait_for_connections(1)
        assert not conn.hello_sent
        envelope_id = server.push(server.make_envelope())
        assert json.loads(ws.recv())["envelope_id"] == envelope_id


def test_wait_for_new_connection(fake: SocketModeServer, connect: Connect) -> None:
    connect()
    before = len(fake.all_connections)
    connect()
    new = fake.wait_for_new_connection(before)
    assert new.id == 2 and new.hello_sent


def test_waits_time_out_with_a_clear_message(fake: SocketModeServer) -> None:
    with pytest.raises(TimeoutError, match="open connection"):
        fake.wait_for_connections(1, timeout=0.05)
    with pytest.raises(TimeoutError, match=r"missing: E-missing"):
        fake.wait_for_acks(envelope_ids=["E-missing"], timeout=0.05)
    with pytest.raises(TimeoutError, match="connection #1"):
        fake.wait_for_new_connection(0, timeout=0.05)


def test_wait_for_api_calls_times_out_naming_how_many_arrived(fake: SocketModeServer) -> None:
    client = WebClient(token="xoxb-111-222-secret", base_url=fake.api_url)
    client.chat_postMessage(channel="C111", text="one")
    client.chat_postMessage(channel="C111", text="two")
    client.auth_test()  # another method: not counted
    with pytest.raises(TimeoutError) as info:
        fake.wait_for_api_calls("chat.postMessage", 3, timeout=0.05)
    assert str(info.value) == "timed out after 0.05 s waiting for 3 chat.postMessage call(s); got 2"
    assert len(fake.wait_for_api_calls("chat.postMessage", 2, timeout=0.05)) == 2


# -- envelopes and acks -------------------------------------------------------------------


def test_push_and_ack_with_payload_are_recorded(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    sample = load_sample("slash_commands")
    envelope_id = fake.push_sample("slash_commands", envelope_id="E-slash-1")
    assert envelope_id == "E-slash-1"
    received = json.loads(ws.recv())
    assert received == dict(sample, envelope_id="E-slash-1")
    assert fake.unacked() == ["E-slash-1"]
    assert not fake.envelope("E-slash-1").settled
    ack(ws, envelope_id, {"text": "pong"})
    (got,) = fake.wait_for_acks(envelope_ids=[envelope_id])
    assert got.envelope_id == envelope_id
    assert got.payload == {"text": "pong"}
    assert got.connection_id == conn.id
    assert json.loads(got.raw) == {"envelope_id": envelope_id, "payload": {"text": "pong"}}
    record = fake.envelope(envelope_id)
    assert record.settled
    assert record.acks == [got]
    (delivery,) = record.deliveries
    assert delivery.attempt == 0 and delivery.connection_id == conn.id
    assert got.received_at >= delivery.sent_at
    assert fake.acks == [got]
    assert [m.text for m in fake.messages] == [got.raw]
    assert fake.unacked() == [] and fake.duplicate_acks() == []


def test_push_str_and_make_envelope(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    envelope = fake.make_envelope("events_api", {"event": {"type": "message"}})
    assert set(envelope) == {
        "envelope_id",
        "type",
        "payload",
        "accepts_response_payload",
        "retry_attempt",
        "retry_reason",
    }
    text = json.dumps(envelope, indent=1)
    assert fake.push(text) == envelope["envelope_id"]
    assert ws.recv() == text  # a str is sent exactly as given
    interactive = fake.make_envelope(
        "interactive", {"type": "shortcut"}, envelope_id="E1", accepts_response_payload=True
    )
    assert interactive == {
        "envelope_id": "E1",
        "type": "interactive",
        "payload": {"type": "shortcut"},
        "accepts_response_payload": True,
    }
    assert fake.make_envelope()["envelope_id"] != fake.make_envelope()["envelope_id"]


def test_push_errors(fake: SocketModeServer) -> None:
    with pytest.raises(RuntimeError, match="no live connection"):
        fake.push(fake.make_envelope())
    with pytest.raises(ValueError, match="envelope_id"):
        fake.push({"type": "events_api", "payload": {}})
    with pytest.raises(ValueError):
        fake.push("[1, 2]")
    with pytest.raises(ValueError):
        fake.push_sample("hello")
    with pytest.raises(FileNotFoundError):
        fake.push_sample("no-such-sample")
    assert fake.unacked() == []


def test_round_robin_keeps_delivering_on_a_connection_told_to_disconnect(
    fake: SocketModeServer, connect: Connect
) -> None:
    """Slack does not promise to stop delivering on a connection it sent a disconnect: neither do we."""
    sockets = [connect(), connect()]
    one, two = fake.wait_for_connections(2)
    ids = [fake.push(fake.make_envelope()) for _ in range(4)]
    used = [fake.envelope(envelope_id).deliveries[0].connection_id for envelope_id in ids]
    assert sorted(used) == [1, 1, 2, 2]
    for ws, conn in zip(sockets, (one, two)):
        got = [json.loads(ws.recv())["envelope_id"] for _ in range(2)]
        assert got == [envelope_id for envelope_id, c in zip(ids, used) if c == conn.id]
    fake.disconnect("warning", connection=one)
    assert json.loads(sockets[0].recv())["type"] == "disconnect"
    later = [fake.push(fake.make_envelope()) for _ in range(4)]
    assert sorted(fake.envelope(envelope_id).deliveries[0].connection_id for envelope_id in later) == [1, 1, 2, 2]
    for ws, conn in zip(sockets, (one, two)):
        got = [json.loads(ws.recv())["envelope_id"] for _ in range(2)]
        assert got == [i for i in later if fake.envelope(i).deliveries[0].connection_id == conn.id]
    sockets[0].close()  # once it closes, nothing more goes to it
    assert one.wait_closed(5)
    last = [fake.push(fake.make_envelope()) for _ in range(2)]
    assert {fake.envelope(envelope_id).deliveries[0].connection_id for envelope_id in last} == {2}
    with pytest.raises(RuntimeError, match="closed or closing"):
        fake.push(fake.make_envelope(), connection=one)


def test_large_envelope_arrives_in_several_frames(sockets: list[websocket.WebSocket]) -> None:
    name = "interactive_block_actions_70kb"
    with SocketModeServer(redelivery_delay=None, fragment_size=4096) as server:
        ws = connect_to(sockets, open_url(server))
        server.push_sample(name)
        frames = [ws.recv_frame()]
        while not frames[-1].fin:
            frames.append(ws.recv_frame())
        assert len(frames) > 1
        assert frames[0].opcode == ABNF.OPCODE_TEXT
        assert all(frame.opcode == ABNF.OPCODE_CONT for frame in frames[1:])
        assert all(len(frame.data) <= 4096 for frame in frames)
        assert json.loads(b"".join(frame.data for frame in frames)) == load_sample(name)
        server.push_sample(name, envelope_id="E-big-2")
        whole = json.loads(ws.recv())  # recv() reassembles the continuation frames
        assert whole == dict(load_sample(name), envelope_id="E-big-2")
        small = server.push(server.make_envelope())
        frame = ws.recv_frame()
        assert frame.fin and json.loads(frame.data)["envelope_id"] == small


def test_fragments_may_split_utf8_characters(sockets: list[websocket.WebSocket]) -> None:
    with SocketModeServer(redelivery_delay=None, fragment_size=7) as server:
        ws = connect_to(sockets, open_url(server))
        envelope = server.make_envelope("events_api", {"event": {"text": "héllo wörld ✓ " * 20}})
        server.push(envelope)
        assert json.loads(ws.recv()) == envelope


def test_push_many_spreads_and_records(fake: SocketModeServer, connect: Connect) -> None:
    sockets = [connect(), connect()]
    fake.wait_for_connections(2)
    envelopes = [fake.make_envelope() for _ in range(300)]
    ids = fake.push_many(envelopes)
    assert ids == [e["envelope_id"] for e in envelopes]

    def ack_all(ws: websocket.WebSocket, count: int) -> None:
        for _ in range(count):
            ack(ws, json.loads(ws.recv())["envelope_id"])

    counts = {conn.id: 0 for conn in fake.connections}
    for envelope_id in ids:
        counts[fake.envelope(envelope_id).deliveries[0].connection_id] += 1
    assert counts == {1: 150, 2: 150}
    threads = [threading.Thread(target=ack_all, args=(ws, 150)) for ws in sockets]
    for thread in threads:
        thread.start()
    acks = fake.wait_for_acks(envelope_ids=ids)
    for thread in threads:
        thread.join(5)
    assert [a.envelope_id for a in acks] == ids
    assert fake.unacked() == [] and fake.duplicate_acks() == []


def test_concurrent_pushes_and_acks(fake: SocketModeServer, connect: Connect) -> None:
    sockets = [connect(), connect()]
    fake.wait_for_connections(2)
    per_thread, pushers = 100, 4
    total = per_thread * pushers
    received = [0, 0]
    errors: list[BaseException] = []

    def ack_loop(index: int, ws: websocket.WebSocket) -> None:
        try:
            ws.settimeout(5)
            for _ in range(total // 2):  # round-robin over two connections: half each
                ack(ws, json.loads(ws.recv())["envelope_id"])
                received[index] += 1
        except BaseException as exc:
            errors.append(exc)

    def push_loop() -> None:
        for _ in range(per_thread):
            fake.push(fake.make_envelope())

    ackers = [threading.Thread(target=ack_loop, args=(i, ws)) for i, ws in enumerate(sockets)]
    senders = [threading.Thread(target=push_loop) for _ in range(pushers)]
    for thread in ackers + senders:
        thread.start()
    for thread in senders + ackers:
        thread.join(5)
    assert errors == []
    assert len(fake.wait_for_acks(total)) == total
    assert fake.unacked() == [] and fake.duplicate_acks() == []
    assert received == [total // 2, total // 2]


def test_client_fragmented_ack_and_ignored_binary(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    envelope_id = fake.push(fake.make_envelope())
    ws.recv()
    ws.send_binary(b"\x00binary is ignored")
    ws.send_frame(ABNF.create_frame('{"envelope_id":', ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(ABNF.create_frame(f'"{envelope_id}"}}', ABNF.OPCODE_CONT, fin=1))
    (got,) = fake.wait_for_acks(envelope_ids=[envelope_id])
    assert got.raw == f'{{"envelope_id":"{envelope_id}"}}'
    assert [m.text for m in fake.messages] == [got.raw]


def test_non_ack_text_is_recorded_but_not_an_ack(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    for text in ("hello?", "[1]", '{"type": "no id"}', '{"envelope_id": 42}'):
        ws.send(text)
    envelope_id = fake.push(fake.make_envelope())
    ws.recv()
    ack(ws, envelope_id)
    fake.wait_for_acks(envelope_ids=[envelope_id])
    assert [m.text for m in fake.messages][:4] == ["hello?", "[1]", '{"type": "no id"}', '{"envelope_id": 42}']
    assert [a.envelope_id for a in fake.acks] == [envelope_id]


def test_raw_sends_are_not_envelopes(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    fake.send_text("this is not json")
    assert ws.recv() == "this is not json"
    fake.send_binary(b"\x00\x01binary")
    assert ws.recv_data() == (ABNF.OPCODE_BINARY, b"\x00\x01binary")
    fake.send_raw_text_bytes(b'{"envelope_id": "\xff\xfe"}')
    frame = ws.recv_frame()
    assert frame.opcode == ABNF.OPCODE_TEXT and frame.data == b'{"envelope_id": "\xff\xfe"}'
    assert fake.unacked() == []


# -- redelivery and duplicates ------------------------------------------------------------


def test_unacked_envelope_is_redelivered_then_settled(sockets: list[websocket.WebSocket]) -> None:
    with SocketModeServer(redelivery_delay=0.2) as server:
        ws = connect_to(sockets, open_url(server))
        envelope = server.make_envelope("events_api", {"event": {"type": "message"}})
        envelope_id = server.push(envelope)
        first = json.loads(ws.recv())
        assert first == envelope
        second = json.loads(ws.recv())  # not acked: comes again after 0.2 s
        assert second == dict(envelope, retry_attempt=1, retry_reason="timeout")
        ack(ws, envelope_id)
        (got,) = server.wait_for_acks(envelope_ids=[envelope_id])
        record = server.envelope(envelope_id)
        assert [d.attempt for d in record.deliveries] == [0, 1]
        assert record.settled and record.acks == [got]
        assert record.deliveries[1].sent_at - record.deliveries[0].sent_at >= 0.2
        ws.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()  # settled: no more redeliveries
        assert server.duplicate_acks() == []


def test_redelivery_stops_after_max_retries(sockets: list[websocket.WebSocket]) -> None:
    with SocketModeServer(redelivery_delay=0.1, max_retries=2) as server:
        ws = connect_to(sockets, open_url(server))
        envelope_id = server.push(server.make_envelope())
        attempts = [json.loads(ws.recv()).get("retry_attempt") for _ in range(3)]
        assert attempts == [0, 1, 2]
        ws.settimeout(0.4)
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
        assert server.unacked() == [envelope_id]
        assert not server.envelope(envelope_id).settled


def test_redelivery_moves_to_another_connection(sockets: list[websocket.WebSocket]) -> None:
    with SocketModeServer(redelivery_delay=0.2) as server:
        first = connect_to(sockets, open_url(server))
        second = connect_to(sockets, open_url(server))
        one, two = server.wait_for_connections(2)
        envelope_id = server.push(server.make_envelope(), connection=one)
        assert json.loads(first.recv())["envelope_id"] == envelope_id
        server.silence(one)  # its ack will never come, and nothing more is sent to it
        again = json.loads(second.recv())
        assert (again["envelope_id"], again["retry_attempt"]) == (envelope_id, 1)
        ack(second, envelope_id)
        (got,) = server.wait_for_acks(envelope_ids=[envelope_id])
        assert got.connection_id == two.id
        assert [d.connection_id for d in server.envelope(envelope_id).deliveries] == [one.id, two.id]


def test_duplicate_acks_are_detected(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    envelope_id = fake.push(fake.make_envelope())
    ws.recv()
    ack(ws, envelope_id)
    ack(ws, envelope_id)
    ack(ws, "never-pushed")
    acks = fake.wait_for_acks(3)
    assert [a.envelope_id for a in acks] == [envelope_id, envelope_id, "never-pushed"]
    assert fake.duplicate_acks() == acks[1:]
    record = fake.envelope(envelope_id)
    assert record.settled and record.acks == acks[:2]
    with pytest.raises(KeyError):
        fake.envelope("never-pushed")
    # Pushed again (as Slack may), the next ack is not a duplicate.
    fake.push(fake.make_envelope(envelope_id=envelope_id))
    ws.recv()
    ack(ws, envelope_id)
    fake.wait_for_acks(4)
    assert len(fake.duplicate_acks()) == 2
    assert len(fake.envelope(envelope_id).deliveries) == 2


# -- faults -------------------------------------------------------------------------------


def test_disconnect_message(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    fake.disconnect("warning")
    assert json.loads(ws.recv()) == {"type": "disconnect", "reason": "warning", "debug_info": {"host": "applink-local"}}
    assert conn.disconnect_sent and conn.is_open
    fake.disconnect()
    assert json.loads(ws.recv())["reason"] == "refresh_requested"


def test_faults_need_an_open_connection(fake: SocketModeServer) -> None:
    for fault in (fake.disconnect, fake.close_connection, fake.reset, fake.silence):
        with pytest.raises(RuntimeError, match="no open connection"):
            fault()


def test_server_clean_close(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    fake.close_connection(code=4000, reason="bye")
    opcode, frame = ws.recv_data_frame(control_frame=True)  # websocket-client answers with a close frame
    assert opcode == ABNF.OPCODE_CLOSE
    assert close_code(frame) == 4000 and frame.data[2:] == b"bye"
    ws.settimeout(2)
    assert ws.sock.recv(1) == b""  # then the server closes TCP
    ws.shutdown()
    assert conn.wait_closed(2)
    assert conn.closed_by == "server"
    assert conn.close_code_received == 1000
    assert fake.connections == [] and not conn.is_open


def test_server_close_times_out_on_a_silent_client(fake: SocketModeServer, connect: Connect) -> None:
    connect()  # never reads, so never answers the close frame
    (conn,) = fake.wait_for_connections(1)
    fake.close_connection()
    assert conn.wait_closed(3)
    assert conn.closed_by == "server" and conn.close_code_received is None


def test_client_close(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    ws.send_close(1000, b"done")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == ABNF.OPCODE_CLOSE and close_code(frame) == 1000  # the server answers the close
    ws.settimeout(2)
    assert ws.sock.recv(1) == b""  # and then closes TCP, as a server does
    ws.shutdown()
    assert conn.wait_closed(2)
    assert conn.closed_by == "client" and conn.close_code_received == 1000
    assert conn.closed_at is not None and conn.closed_at >= conn.opened_at
    assert fake.connections == [] and fake.all_connections == [conn]


def test_client_close_with_websocket_client_close(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    ws.close(status=1001)
    assert conn.wait_closed(2)
    assert conn.closed_by == "client" and conn.close_code_received == 1001


def test_client_drops_tcp(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    ws.shutdown()
    assert conn.wait_closed(2)
    assert conn.closed_by == "client" and conn.close_code_received is None


def test_invalid_utf8_from_the_client_fails_the_connection(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    ws.send(b"\xff\xfe", opcode=ABNF.OPCODE_TEXT)
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == ABNF.OPCODE_CLOSE and close_code(frame) == 1007
    ws.shutdown()
    assert conn.wait_closed(2)
    assert conn.closed_by == "error"


def test_reset(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    fake.reset()
    assert not conn.is_open and conn.closed_by == "reset"
    with pytest.raises(ConnectionResetError):
        ws.recv()


def test_silence(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    fake.silence()
    ws.ping("anyone there?")
    ws.settimeout(0.5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv_data_frame(control_frame=True)  # no pong
    assert conn.silenced and conn.is_open and conn.pings_received == 0
    assert fake.connections == [conn]
    with pytest.raises(RuntimeError, match="no live connection"):
        fake.push(fake.make_envelope())  # a silenced connection gets nothing more
    ws.sock.settimeout(0)
    with pytest.raises(BlockingIOError):
        ws.sock.recv(1, socket.MSG_PEEK)  # TCP still open: nothing to read, no FIN, no RST
    ws.send("still here")  # and still writable
    fake.reset(conn)
    assert conn.closed_by == "reset"


def test_client_ping_gets_a_pong(fake: SocketModeServer, connect: Connect) -> None:
    ws = connect()
    (conn,) = fake.wait_for_connections(1)
    ws.ping("hi")
    ws.settimeout(2)
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == ABNF.OPCODE_PONG and frame.data == b"hi"
    fake.wait_until(lambda: conn.pings_received == 1, what="the ping to be counted")


def test_ping_interval(sockets: list[websocket.WebSocket]) -> None:
    with SocketModeServer(redelivery_delay=None, ping_interval=0.05) as server:
        ws = connect_to(sockets, open_url(server))
        (conn,) = server.wait_for_connections(1)
        ws.settimeout(2)
        for _ in range(2):
            opcode, _frame = ws.recv_data_frame(control_frame=True)  # websocket-client answers with a pong
            assert opcode == ABNF.OPCODE_PING
        server.wait_until(lambda: conn.pongs_received >= 2, what="two pongs")


# -- lifecycle, threads, logging ----------------------------------------------------------


def test_stop_joins_every_thread_and_is_idempotent(sockets: list[websocket.WebSocket]) -> None:
    before = set(server_threads())
    server = SocketModeServer(redelivery_delay=0.1, ping_interval=0.05)
    server.stop()  # never started: nothing to do
    server = SocketModeServer(redelivery_delay=0.1, ping_interval=0.05).start()
    assert server.start() is server
    ws = connect_to(sockets, open_url(server))
    (conn,) = server.wait_for_connections(1)
    connect_to(sockets, server.new_connection_url())
    server.push(server.make_envelope())  # unacked: a redelivery is pending
    idle_http = socket.create_connection(("127.0.0.1", server.api_port), timeout=2)  # sends nothing
    running = set(server_threads()) - before
    assert {"accept", "api", "timers", "pinger", "reader-1", "reader-2"} <= {n[len(PREFIX) :] for n in running}
    waiter_error: list[BaseException] = []

    def wait() -> None:
        try:
            server.wait_for_acks(1, timeout=10)
        except BaseException as exc:
            waiter_error.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    server.stop()
    waiter.join(2)
    idle_http.close()
    assert set(server_threads()) <= before
    assert [type(e) for e in waiter_error] == [RuntimeError]
    assert not conn.is_open and conn.closed_by == "server"
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        server.start()
    ws.settimeout(2)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            ws.recv_data_frame(control_frame=True)


def test_threads_are_named_and_stopped_by_the_context_manager() -> None:
    before = set(server_threads())
    with SocketModeServer() as server:
        url = open_url(server)
        assert url
        assert set(server_threads()) - before
    assert set(server_threads()) <= before


def test_quiet_and_no_token_in_logs(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, sockets: list[websocket.WebSocket]
) -> None:
    with caplog.at_level(logging.DEBUG, logger="slack_socket_mode.testing"), SocketModeServer() as server:
        ws = connect_to(sockets, open_url(server))
        WebClient(base_url=server.api_url).api_call("chat.postMessage", params={"token": APP_TOKEN})
        with pytest.raises(SlackApiError):
            open_url(server, token="xoxb-111-222-secret")
        ack(ws, server.push(server.make_envelope()))
        server.wait_for_acks(1)
        server.reset()
        urllib.request.urlopen(f"{server.api_url}auth.test?token={APP_TOKEN}", timeout=2).close()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert APP_TOKEN not in caplog.text and "secret" not in caplog.text
    ours = [r for r in caplog.records if r.name.startswith("slack_socket_mode.testing")]
    assert ours and all(r.levelno == logging.DEBUG for r in ours)


def test_connection_repr_and_types(fake: SocketModeServer, connect: Connect) -> None:
    connect()
    (conn,) = fake.wait_for_connections(1)
    assert isinstance(conn, ServerConnection)
    assert "id=1" in repr(conn) and "open" in repr(conn)
    envelope_id = fake.push(fake.make_envelope())
    (delivery,) = fake.envelope(envelope_id).deliveries
    assert isinstance(delivery, Delivery)
