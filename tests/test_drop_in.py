"""A bot written exactly as slack_sdk's documentation shows runs with only the import changed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackClientConfigurationError
from slack_sdk.socket_mode.request import SocketModeRequest

from slack_socket_mode import ClientState, ConfigurationError, InsecureURLError, SocketModeClient
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample
from slack_socket_mode.urls import check_socket_url, is_loopback_host

from .conftest import APP_TOKEN, Recorder, Watcher, timeout

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slack_sdk_docs_bot.py"


def test_slack_sdk_documentation_bot_runs_unchanged(server: SocketModeServer) -> None:
    env = dict(os.environ, SLACK_APP_TOKEN=APP_TOKEN, SLACK_BOT_TOKEN="xoxb-111-222-xyz", SLACK_API_URL=server.api_url)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "connected"
        message = load_sample("events_api_message")
        shortcut = load_sample("interactive_shortcut")
        shortcut["payload"]["callback_id"] = "hello-shortcut"
        submission = load_sample("interactive_view_submission")
        submission["payload"]["view"]["callback_id"] = "hello-modal"
        ids = [server.push(message), server.push(shortcut), server.push(submission)]
        server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
        assert proc.stdout.readline().strip() == str(submission["payload"]["view"]["state"]["values"])
        (reaction,) = server.wait_for_api_calls("reactions.add", timeout=timeout(5))
        assert reaction.params["name"] == "eyes" and reaction.params["channel"] == "C111"
        server.wait_for_api_calls("views.open", timeout=timeout(5))
        assert server.duplicate_acks() == []
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=timeout(10))
    assert "xapp-1-A111" not in stderr


# ---- issue 11: what slack_sdk's and Bolt's users (and their tests) rely on -------------------------


def test_setting_wss_uri_makes_the_next_connection_use_it(server: SocketModeServer, make_client: Any) -> None:
    client = make_client()
    client.wss_uri = server.new_connection_url()
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    client.connect(timeout=timeout(10))
    assert server.open_calls == 0  # no apps.connections.open: the URL set was used
    server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())], timeout=timeout(5))
    # later connections get fresh URLs from apps.connections.open, as before
    before = len(server.all_connections)
    server.disconnect("refresh_requested")
    server.wait_for_new_connection(before, timeout=timeout(5))
    assert server.open_calls == 1


def test_a_set_wss_uri_is_opened_again_by_a_later_connect(server: SocketModeServer, make_client: Any) -> None:
    # slack_sdk's connect() opens wss_uri while it is set (its tests connect, disconnect, connect)
    from slack_socket_mode import ConnectionFailedError

    errors: list[Exception] = []
    client = make_client(on_error_listeners=[errors.append])
    client.wss_uri = server.new_connection_url()
    client.connect(timeout=timeout(10))
    client.disconnect()
    client.connect(timeout=timeout(10))  # the same URL again: the local server refuses a used ticket
    assert [(type(e), getattr(e, "status", None)) for e in errors] == [(ConnectionFailedError, 403)]
    assert server.open_calls == 1  # then a fresh URL, and wss_uri is no longer opened again
    client.disconnect()
    client.connect(timeout=timeout(10))
    assert len(errors) == 1 and server.open_calls == 2


def test_an_insecure_wss_uri_is_refused_when_set(make_client: Any) -> None:
    client = make_client()
    with pytest.raises(InsecureURLError):
        client.wss_uri = "ws://198.51.100.7:3011/link"
    assert client.wss_uri is None


def test_ws_to_0_0_0_0_is_this_host(server: SocketModeServer, make_client: Any) -> None:
    assert is_loopback_host("0.0.0.0") and is_loopback_host("::")
    with pytest.raises(InsecureURLError):
        check_socket_url("ws://10.1.2.3:3011/link")
    client = make_client()
    client.socket_mode_request_listeners.append(Recorder())
    client.wss_uri = server.new_connection_url().replace("ws://127.0.0.1:", "ws://0.0.0.0:")
    client.connect(timeout=timeout(10))
    server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())], timeout=timeout(5))


def test_enqueue_message_before_connect_runs_the_listeners(make_client: Any) -> None:
    client = make_client()
    seen: list[dict[str, Any]] = []
    texts: list[str | None] = []
    requests: list[SocketModeRequest] = []
    done = threading.Event()

    def on_message(client: Any, message: dict[str, Any], raw: str | None) -> None:
        seen.append(message)
        texts.append(raw)

    def on_request(client: Any, request: SocketModeRequest) -> None:
        requests.append(request)
        done.set()

    client.message_listeners.append(on_message)
    client.socket_mode_request_listeners.append(on_request)
    client.enqueue_message("hello")  # not JSON: ignored, as slack_sdk's queue ignores it
    client.enqueue_message(json.dumps(load_sample("hello")))  # not an envelope: ignored before connect
    client.process_message()  # kept for slack_sdk: messages are dispatched as they arrive
    envelope = load_sample("slash_commands")
    client.enqueue_message(json.dumps(envelope))
    assert done.wait(timeout(5))
    assert [r.envelope_id for r in requests] == [envelope["envelope_id"]]
    assert [m["envelope_id"] for m in seen] == [envelope["envelope_id"]]
    assert texts == [json.dumps(envelope)]  # the text as it was enqueued


def test_session_id_names_the_newest_connection(server: SocketModeServer, make_client: Any) -> None:
    client = make_client()
    assert client.session_id() is None
    client.connect(timeout=timeout(10))
    first = client.session_id()
    assert isinstance(first, str) and first
    watcher = Watcher(client)
    before = len(server.all_connections)
    server.disconnect("refresh_requested")
    server.wait_for_new_connection(before, timeout=timeout(5))
    watcher.wait(lambda: client.session_id() not in (None, first), what="a new session id")
    client.disconnect()
    assert client.session_id() is None


def test_receive_buffer_size_below_slack_sdks_minimum_is_refused() -> None:
    with pytest.raises(SlackClientConfigurationError):
        SocketModeClient(app_token=APP_TOKEN, receive_buffer_size=15)
    with pytest.raises(ConfigurationError):
        SocketModeClient(app_token=APP_TOKEN, receive_buffer_size=1)
    SocketModeClient(app_token=APP_TOKEN, receive_buffer_size=16).close()


def trace_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and r.name == "slack_socket_mode"]


@pytest.mark.parametrize("flag", ["trace_enabled", "all_message_trace_enabled"])
def test_trace_flags_log_messages_redacted(
    server: SocketModeServer, make_client: Any, caplog: pytest.LogCaptureFixture, flag: str
) -> None:
    client = make_client(**{flag: True})
    client.socket_mode_request_listeners.append(Recorder())
    envelope = server.make_envelope()
    envelope["payload"]["leaked"] = APP_TOKEN
    with caplog.at_level(logging.DEBUG, logger="slack_socket_mode"):
        client.connect(timeout=timeout(10))
        server.wait_for_acks(envelope_ids=[server.push(envelope)], timeout=timeout(5))
        client.close()
    records = trace_records(caplog)
    received = [m for m in records if "received" in m and envelope["envelope_id"] in m]
    sent = [m for m in records if "sending" in m and envelope["envelope_id"] in m]
    assert received and sent and any('"type":"hello"' in m or '"type": "hello"' in m for m in records)
    assert "xapp-***" in received[0] and not any(APP_TOKEN in r.getMessage() for r in caplog.records)


class LogEvent(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_ping_pong_trace(server: SocketModeServer, make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(ping_pong_trace_enabled=True, ping_interval=0.05)
    pong = LogEvent("received a pong")
    logger = logging.getLogger("slack_socket_mode")
    logger.addHandler(pong)
    try:
        with caplog.at_level(logging.DEBUG, logger="slack_socket_mode"):
            client.connect(timeout=timeout(10))
            assert pong.event.wait(timeout(5))
            client.close()
    finally:
        logger.removeHandler(pong)
    records = trace_records(caplog)
    assert any("sending a ping" in m for m in records)
    assert not any("received {" in m for m in records)  # messages are not traced by this flag


def test_without_trace_flags_no_message_is_logged(
    server: SocketModeServer, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(ping_interval=0.05)
    client.socket_mode_request_listeners.append(Recorder())
    with caplog.at_level(logging.DEBUG, logger="slack_socket_mode"):
        client.connect(timeout=timeout(10))
        server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())], timeout=timeout(5))
        client.close()
    records = trace_records(caplog)
    assert not any("received {" in m or "sending {" in m or "ping" in m for m in records)


def test_default_auto_reconnect_enabled_is_honoured(server: SocketModeServer, make_client: Any) -> None:
    client = make_client()
    client.default_auto_reconnect_enabled = False  # what Bolt users set on handler.client
    client.connect(timeout=timeout(10))
    assert client.auto_reconnect_enabled is False
    watcher = Watcher(client)
    server.close_connection()
    watcher.wait(lambda: client.state is ClientState.DISCONNECTED, what="the client to stop")
    assert len(server.all_connections) == 1 and server.open_calls == 1


def test_auto_reconnect_enabled_is_settable(server: SocketModeServer, make_client: Any) -> None:
    client = make_client()
    client.connect(timeout=timeout(10))
    client.auto_reconnect_enabled = False
    watcher = Watcher(client)
    server.close_connection()
    watcher.wait(lambda: client.state is ClientState.DISCONNECTED, what="the client to stop")
    assert len(server.all_connections) == 1
    client.connect(timeout=timeout(10))  # connect() restores default_auto_reconnect_enabled, as in slack_sdk
    assert client.auto_reconnect_enabled is True
    before = len(server.all_connections)
    server.close_connection()
    server.wait_for_new_connection(before, timeout=timeout(5))


@pytest.mark.parametrize("argv", [["demo"], ["replay", "session.jsonl", "--app", "bot:app"]])
def test_demo_and_replay_without_the_testing_extra_say_what_to_install(argv: list[str]) -> None:
    hide = (
        "import sys, runpy; sys.modules['websockets'] = None; "
        f"sys.argv = ['slack-socket-mode', *{argv!r}]; runpy.run_module('slack_socket_mode', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", hide], check=False, capture_output=True, text=True, timeout=timeout(30)
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"slack-socket-mode {argv[0]} needs the local test server's extra: pip install 'slack-socket-mode[testing]'"
    ]
    assert proc.stdout == ""


def test_websocket_client_flavour_calls_its_listeners_with_the_app_first(
    server: SocketModeServer, caplog: pytest.LogCaptureFixture
) -> None:
    import websocket
    from slack_sdk.web import WebClient

    from slack_socket_mode import ConnectionFailedError, NotConnectedError
    from slack_socket_mode.websocket_client import SocketModeClient as WebSocketClientFlavour
    from slack_socket_mode.websocket_client import WebSocketAppView

    calls: list[tuple[str, Any]] = []
    events = {kind: threading.Event() for kind in ("open", "message", "error", "close")}

    def record(kind: str) -> Any:
        def listener(ws: Any, *rest: Any) -> None:
            assert isinstance(ws, WebSocketAppView)
            calls.append((kind, rest))
            events[kind].set()

        return listener

    client = WebSocketClientFlavour(
        APP_TOKEN,
        web_client=WebClient(base_url=server.api_url),
        on_open_listeners=[record("open")],
        on_message_listeners=[record("message")],
        on_error_listeners=[record("error")],
        on_close_listeners=[record("close")],
    )
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    try:
        client.connect(timeout=timeout(10))
        assert events["open"].wait(timeout(5))
        envelope_id = server.push(server.make_envelope())
        server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
        texts = [rest[0] for kind, rest in calls if kind == "message"]
        assert any(envelope_id in t for t in texts) and any('"hello"' in t for t in texts)
        server.refuse_next_connections()  # the reconnect's first attempt fails: an error listener call
        before = len(server.all_connections)
        server.close_connection()
        assert events["close"].wait(timeout(5)) and events["error"].wait(timeout(5))
        (error_args,) = {rest for kind, rest in calls if kind == "error"}
        assert isinstance(error_args[0], ConnectionFailedError)
        server.wait_for_new_connection(before, timeout=timeout(10))
        client.disconnect()
        with pytest.raises(websocket.WebSocketException) as info:
            client.send_message("not an ack")
        assert isinstance(info.value, NotConnectedError)
    finally:
        client.close()
    assert recorder.runs(envelope_id) == 1
    assert not [r for r in caplog.records if "listener" in r.getMessage() and r.levelno >= logging.ERROR]


def test_websocket_client_flavour_takes_on_open_listeners_and_keyword_options(server: SocketModeServer) -> None:
    from slack_sdk.web import WebClient

    from slack_socket_mode.websocket_client import SocketModeClient as WebSocketClientFlavour

    client = WebSocketClientFlavour(
        APP_TOKEN, web_client=WebClient(base_url=server.api_url), on_open_listeners=[], connections=2
    )
    try:
        assert client.on_open_listeners == [] and "websocket_client" in repr(client)
        client.connect(timeout=timeout(10))
        server.wait_for_connections(2, timeout=timeout(5))
    finally:
        client.close()
