"""The RTM client (slack_socket_mode.rtm) on real sockets, against the local server speaking RTM (testing.rtm)."""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import WebClient

from slack_socket_mode.errors import ConfigurationError, ConnectionFailedError, FatalError, NotConnectedError
from slack_socket_mode.lifecycle import ClientState
from slack_socket_mode.policy import Backoff
from slack_socket_mode.rtm import RTMAuthError, RTMClient
from slack_socket_mode.testing.rtm import RTMServer

from .conftest import timeout

#: A fake bot token; tests assert it never leaks.
TOKEN = "xoxb-2424-1337-rtmb0tt0kenvalue9f8e7d6c"
FAST = Backoff(base=0.05, cap=0.2, healthy_after=60.0)

RTMFactory = Callable[..., RTMClient]

#: An exception on a thread the tests start (start() in a thread) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def make_rtm(rtm_server: RTMServer) -> Iterator[RTMFactory]:
    """RTM clients on ``rtm_server``'s Web API, each closed after the test."""
    clients: list[RTMClient] = []

    def make(**options: Any) -> RTMClient:
        options.setdefault("reconnect_policy", FAST)
        if "web_client" not in options:
            options.setdefault("base_url", rtm_server.api_url)
        client = RTMClient(token=options.pop("token", TOKEN), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class Events:
    """A listener that records ``(type, event)``, waited on with a Condition (no polling)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.threads: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, client: RTMClient, event: dict[str, Any]) -> None:
        with self.cond:
            self.seen.append(event)
            self.threads.append(threading.current_thread().name)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], seconds: float = 5.0) -> list[dict[str, Any]]:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.seen), timeout(seconds)):
                raise AssertionError(f"listener saw {self.seen}")
            return list(self.seen)

    def texts(self) -> list[str]:
        with self.cond:
            return [str(e.get("text")) for e in self.seen if e.get("type") == "message"]


def rtm_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("slack_socket_mode-rtm")]


def wait_for(predicate: Callable[[], bool], seconds: float, what: str, cond: threading.Condition) -> None:
    with cond:
        if not cond.wait_for(predicate, timeout(seconds)):
            raise AssertionError(f"timed out waiting for {what}")


class States:
    """Records a client's lifecycle transitions (client-level and per connection)."""

    def __init__(self, client: RTMClient) -> None:
        self.transitions: list[Any] = []
        self.cond = threading.Condition()
        client.lifecycle_listeners.append(self._on)

    def _on(self, transition: Any) -> None:
        with self.cond:
            self.transitions.append(transition)
            self.cond.notify_all()

    def client_states(self) -> list[str]:
        with self.cond:
            return [t.new.value for t in self.transitions if t.connection_id is None]


# ---- connecting ----------------------------------------------------------------------------------


def test_connect_asks_auth_test_then_rtm_connect_and_returns_after_hello(
    rtm_server: RTMServer, make_rtm: RTMFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rtm = make_rtm()
    hellos = Events()
    rtm.on("hello")(hellos)
    assert not rtm.is_connected() and rtm.current_session is None and rtm.session_id() is None
    rtm.connect()
    assert rtm.is_connected()
    assert rtm.bot_id == "B111"  # auth.test's, once
    assert [c.method for c in rtm_server.api_calls] == ["auth.test", "rtm.connect"]
    (conn,) = rtm_server.wait_for_connections(1)
    assert conn.hello_sent
    assert rtm.wss_uri is not None and rtm.wss_uri.startswith(f"ws://127.0.0.1:{rtm_server.ws_port}/link/")
    assert rtm.current_session is not None and rtm.session_id() is not None
    assert hellos.wait_for(lambda seen: len(seen) == 1) == [{"type": "hello"}]  # hello reaches listeners too
    assert rtm.state is ClientState.CONNECTED
    # RTM's hello has neither of Socket Mode's fields: the log says hello, not "None"
    said = [r.getMessage() for r in caplog.records if r.getMessage().endswith("hello")]
    assert said == ["connection 1: hello"], [r.getMessage() for r in caplog.records]


def test_the_fixtures_serve_slack_sdk_style_clients(rtm_server: RTMServer, rtm_web_client: WebClient) -> None:
    """``rtm.connect`` answers ``self`` and ``team``; ``RTMClient(web_client=…)`` takes the token from it."""
    answer = rtm_web_client.rtm_connect()
    assert answer["ok"] and answer["url"].startswith("ws://")
    assert answer["self"]["id"] == "U111" and answer["team"]["id"] == "T111"
    assert rtm_web_client.rtm_start()["url"].startswith("ws://")  # rtm.start answers as rtm.connect
    with pytest.raises(SlackApiError) as refused:  # an app-level token is the wrong kind for RTM
        WebClient(base_url=rtm_server.api_url, token="xapp-1-A1-2-3").rtm_connect()
    assert refused.value.response["error"] == "not_allowed_token_type"
    rtm = RTMClient(web_client=rtm_web_client)
    try:
        assert rtm.token == "xoxb-test"
        rtm.connect()
        assert rtm.is_connected()
    finally:
        rtm.close()


# ---- routing -------------------------------------------------------------------------------------


def test_events_are_routed_by_type_and_star_gets_every_event(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm()
    messages, reactions, every = Events(), Events(), Events()
    raw: list[dict[str, Any]] = []

    @rtm.on("message")
    def on_message(client: RTMClient, event: dict[str, Any]) -> None:
        assert client is rtm
        messages(client, event)

    assert on_message.__name__ == "on_message"  # the decorator returns the function unchanged
    rtm.on("reaction_added")(reactions)
    rtm.on("*")(every)
    rtm.message_listeners.append(lambda client, event: raw.append(event))  # a plain entry: every event
    rtm.connect()
    rtm_server.send_event({"type": "message", "channel": "C1", "user": "U222", "text": "one"})
    rtm_server.send_event({"type": "reaction_added", "user": "U222", "reaction": "tada"})
    rtm_server.send_event({"type": "message", "channel": "C1", "bot_id": "B111", "text": "the bot's own"})
    rtm_server.send_event({"type": "user_typing", "channel": "C1", "user": "U222"})
    rtm_server.send_event({"ok": True, "reply_to": 7, "ts": "1.2", "text": "sent"})  # no type
    rtm_server.send_text("not JSON")  # skipped, logged
    rtm_server.send_event({"type": "message", "channel": "C1", "user": "U222", "text": "two"})
    every.wait_for(lambda seen: any(e.get("text") == "two" for e in seen))
    assert messages.texts() == ["one", "two"]  # the bot's own event is not given to on() listeners
    assert [e["reaction"] for e in reactions.wait_for(lambda seen: len(seen) == 1)] == ["tada"]
    kinds = [e.get("type") for e in every.seen]
    assert kinds == ["hello", "message", "reaction_added", "user_typing", None, "message"]
    assert "the bot's own" in [e.get("text") for e in raw]  # a plain listener sees everything
    assert "pong" not in kinds and all(e.get("type") != "pong" for e in raw)


def test_listeners_run_with_the_concurrency_bound(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm(concurrency=2)
    release = threading.Event()
    cond = threading.Condition()
    running = [0]
    peak = [0]
    done: list[str] = []

    @rtm.on("message")
    def slow(client: RTMClient, event: dict[str, Any]) -> None:
        with cond:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            cond.notify_all()
        release.wait(timeout(5))
        with cond:
            running[0] -= 1
            done.append(event["text"])
            cond.notify_all()

    rtm.connect()
    for n in range(6):
        rtm_server.send_event({"type": "message", "text": str(n)})
    wait_for(lambda: running[0] == 2, 5, "two listeners running", cond)
    release.set()
    wait_for(lambda: len(done) == 6, 5, "every listener done", cond)
    assert peak[0] == 2
    assert sorted(done) == [str(n) for n in range(6)]


def test_a_listener_that_raises_is_logged_and_the_others_run(
    rtm_server: RTMServer, make_rtm: RTMFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rtm = make_rtm()
    after = Events()

    @rtm.on("message")
    def broken(client: RTMClient, event: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    rtm.on("message")(after)
    rtm.connect()
    rtm_server.send_event({"type": "message", "text": "x"})
    after.wait_for(lambda seen: len(seen) == 1)
    assert any("boom" in (r.exc_text or "") or (r.exc_info and "boom" in str(r.exc_info[1])) for r in caplog.records)
    assert rtm.is_connected()


# ---- sending -------------------------------------------------------------------------------------


def test_send_writes_dicts_as_json_and_strings_as_they_are(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm()
    with pytest.raises(NotConnectedError, match="The RTM client is not connected to the Slack servers") as info:
        rtm.send({"type": "message"})
    assert isinstance(info.value, SlackClientError)  # slack_sdk's except clause still catches it
    rtm.send(None)  # nothing, as slack_sdk
    rtm.connect()
    rtm.send({"id": 1, "type": "message", "channel": "C1", "text": "hello"})
    rtm.send(json.dumps({"id": 2, "type": "typing", "channel": "C1"}))
    sent = rtm_server.wait_for_events(lambda e: e.type != "ping", count=2)
    assert [e.body for e in sent] == [
        {"id": 1, "type": "message", "channel": "C1", "text": "hello"},
        {"id": 2, "type": "typing", "channel": "C1"},
    ]
    assert rtm_server.sent == sent


# ---- keepalive and dead connections --------------------------------------------------------------


def test_json_pings_are_answered_and_keep_the_connection(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm(ping_interval=0.1, ping_timeout=0.3, receive_timeout=5.0)
    rtm.connect()
    pings = rtm_server.wait_for_events(lambda e: e.type == "ping", count=3, timeout=timeout(5))
    ids = [e.body["id"] for e in pings]
    assert ids == sorted(ids) and len(set(ids)) == 3  # {"type": "ping", "id": n}, n counting up
    rtm_server.wait_until(lambda: rtm_server.pongs_sent >= 3, timeout(5), "three pongs")
    (conn,) = rtm_server.connections
    assert conn.id == 1 and rtm_server.open_calls == 1  # every pong answered in time: never replaced
    assert conn.pings_received == 0  # the keepalive is RTM's own message, not a WebSocket ping frame
    assert rtm.is_connected()


def test_a_silent_server_is_noticed_by_the_pong_deadline_and_replaced(
    rtm_server: RTMServer, make_rtm: RTMFactory
) -> None:
    rtm = make_rtm(ping_interval=0.2, ping_timeout=0.5, receive_timeout=5.0)
    events = Events()
    rtm.on("message")(events)
    rtm.connect()
    (old,) = rtm_server.wait_for_connections(1)
    silenced_at = time.monotonic()
    rtm_server.silence(old)  # half-open: the TCP connection stays up, nothing is read or written
    new = rtm_server.wait_for_new_connection(1, timeout=timeout(5))
    replaced_after = new.opened_at - silenced_at
    assert replaced_after < timeout(0.2 + 0.5 + 1.0), replaced_after  # a ping, its deadline, the reopen
    assert rtm.stats().reconnects.get("no pong") == 1
    rtm_server.wait_until(rtm.is_connected, timeout(5), "connected again")
    rtm_server.send_event({"type": "message", "text": "after"}, connection=new)
    assert events.wait_for(lambda seen: len(seen) == 1)[0]["text"] == "after"


def test_a_reset_reconnects_at_once(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm()
    events = Events()
    rtm.on("message")(events)
    closes: list[tuple[int, Any]] = []
    rtm.on_close_listeners.append(lambda code, reason: closes.append((code, reason)))
    rtm.connect()
    rtm_server.reset()
    new = rtm_server.wait_for_new_connection(1, timeout=timeout(5))
    rtm_server.wait_until(rtm.is_connected, timeout(5), "connected again")
    rtm_server.send_event({"type": "message", "text": "after the reset"}, connection=new)
    assert events.wait_for(lambda seen: len(seen) == 1)[0]["text"] == "after the reset"
    assert len(closes) == 1 and rtm_server.open_calls == 2


def test_goodbye_is_a_rotation_the_new_connection_says_hello_before_the_old_one_closes(
    rtm_server: RTMServer, make_rtm: RTMFactory
) -> None:
    rtm = make_rtm()
    states = States(rtm)
    goodbyes, messages = Events(), Events()
    rtm.on("goodbye")(goodbyes)
    rtm.on("message")(messages)
    rtm.connect()
    (old,) = rtm_server.wait_for_connections(1)
    rtm_server.goodbye()
    new = rtm_server.wait_for_new_connection(1, timeout=timeout(5))
    assert old.wait_closed(timeout(5))
    assert old.closed_by == "client"  # closed by the client once the new one served
    assert new.opened_at < (old.closed_at or 0.0)
    assert rtm_server.wait_for_connections(1)[0] is new
    goodbyes.wait_for(lambda seen: len(seen) == 1)  # the listeners see the goodbye too
    assert "reconnecting" not in states.client_states()  # never without a connection
    assert rtm.stats().reconnects.get("disconnect goodbye") == 1
    rtm_server.send_event({"type": "message", "text": "on the new one"}, connection=new)
    assert messages.wait_for(lambda seen: len(seen) == 1)[0]["text"] == "on the new one"


# ---- fatal errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["invalid_auth", "not_allowed_token_type", "account_inactive"])
def test_a_refused_token_stops_with_a_typed_error_said_once(
    rtm_server: RTMServer, make_rtm: RTMFactory, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rtm_server.fail_next_opens(error, count=5)
    errors: list[Exception] = []
    rtm = make_rtm(on_error_listeners=[errors.append])
    with pytest.raises(RTMAuthError) as info:
        rtm.connect()
    assert isinstance(info.value, FatalError) and isinstance(info.value, SlackApiError)
    assert info.value.error == error and info.value.response["error"] == error
    assert TOKEN not in str(info.value)
    assert rtm.state is ClientState.FAILED
    assert rtm_server.open_calls == 1  # no retry
    assert [type(e) for e in errors] == [RTMAuthError]  # once
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1 and error in loud[0], loud  # said once, loudly


def test_a_token_revoked_while_reconnecting_ends_start(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm()
    raised: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        try:
            rtm.start()
        except BaseException as e:
            raised.append(e)

    rtm.lifecycle_listeners.append(lambda t: started.set() if t.new.value == "connected" else None)
    thread = threading.Thread(target=run, name="test-rtm-start")
    thread.start()
    assert started.wait(timeout(5))
    rtm_server.fail_next_opens("token_revoked", count=5)
    rtm_server.reset()
    thread.join(timeout(5))
    assert not thread.is_alive()
    assert [type(e) for e in raised] == [RTMAuthError]
    assert rtm.state is ClientState.FAILED and rtm_server.open_calls == 2


def test_start_blocks_until_close(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm()
    hello = threading.Event()
    rtm.on("hello")(lambda client, event: hello.set())
    thread = threading.Thread(target=rtm.start, name="test-rtm-start")
    thread.start()
    assert hello.wait(timeout(5))
    assert thread.is_alive()
    rtm.close()
    thread.join(timeout(5))
    assert not thread.is_alive()


# ---- close() -------------------------------------------------------------------------------------


def test_close_is_bounded_waits_for_running_listeners_and_leaves_no_thread(
    rtm_server: RTMServer, make_rtm: RTMFactory
) -> None:
    rtm = make_rtm(ping_interval=0.1)
    finished = threading.Event()
    started = threading.Event()

    @rtm.on("message")
    def slow(client: RTMClient, event: dict[str, Any]) -> None:
        started.set()
        time.sleep(0.3)  # the listener's own work
        finished.set()

    rtm.connect()
    rtm_server.send_event({"type": "message", "text": "x"})
    assert started.wait(timeout(5))
    (conn,) = rtm_server.connections
    begun = time.monotonic()
    rtm.close()
    took = time.monotonic() - begun
    assert finished.is_set()  # a running listener is waited for
    assert took < timeout(2.0), took
    assert rtm_threads() == []
    assert conn.wait_closed(timeout(5)) and conn.closed_by == "client"
    rtm.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        rtm.connect()


def test_close_gives_up_on_a_stuck_listener_within_its_timeout(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm()
    stuck = threading.Event()
    release = threading.Event()

    @rtm.on("message")
    def forever(client: RTMClient, event: dict[str, Any]) -> None:
        stuck.set()
        release.wait(timeout(10))

    rtm.connect()
    rtm_server.send_event({"type": "message", "text": "x"})
    assert stuck.wait(timeout(5))
    begun = time.monotonic()
    rtm.close(timeout=1.0)
    assert time.monotonic() - begun < timeout(1.5)
    release.set()


# ---- the constructor, on() and secrets ------------------------------------------------------------


def test_on_checks_its_listener_as_slack_sdk_does() -> None:
    rtm = RTMClient(token=TOKEN)
    try:
        assert len(rtm.message_listeners) == 1  # slack_sdk's goodbye listener, first
        with pytest.raises(ConfigurationError, match=r"The listener 'a' is not a Callable \(actual: str\)") as info:
            rtm.on("message")("a")
        assert isinstance(info.value, SlackClientError)

        def no_args() -> None:
            pass

        with pytest.raises(SlackClientError, match=r"'no_args' must accept two args: client, event \(actual: \)"):
            rtm.on("message")(no_args)

        class Bot:
            def handle(self, client: RTMClient, event: dict[str, Any]) -> None:
                pass

        rtm.on("message")(Bot().handle)  # a bound method takes (client, event) too

        async def coroutine(client: RTMClient, event: dict[str, Any]) -> None:
            pass

        with pytest.raises(TypeError, match="coroutine"):
            rtm.on("message")(coroutine)
        assert len(rtm.message_listeners) == 2
    finally:
        rtm.close()


@pytest.mark.parametrize("token", ["xapp-1-A1-2-secretvalue", "", "xoxb-with space", None, 42])
def test_a_token_of_the_wrong_kind_is_refused_without_echoing_it(token: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        RTMClient(token=token)
    if isinstance(token, str) and token:
        assert token not in str(info.value)
    assert "xoxb-" in str(info.value)


def test_an_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="connections"):
        RTMClient(token=TOKEN, connections=2)


def test_the_token_is_never_in_logs_reprs_or_errors(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    capture = Capture(logging.DEBUG)
    capture.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("slack_socket_mode.rtm.test_secrets")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(capture)
    root = logging.getLogger()
    root.addHandler(capture)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        errors: list[Exception] = []
        rtm = make_rtm(
            logger=logger,
            trace_enabled=True,
            all_message_trace_enabled=True,
            ping_pong_trace_enabled=True,
            ping_interval=0.1,
            on_error_listeners=[errors.append],
        )
        events = Events()
        rtm.on("message")(events)
        rtm.connect()
        rtm_server.send_event({"type": "message", "text": f"leaked {TOKEN}"})
        events.wait_for(lambda seen: len(seen) == 1)
        rtm.send({"type": "message", "text": f"echo {TOKEN}"})
        rtm_server.wait_for_events(lambda e: e.type == "message")
        rtm_server.fail_next_opens("invalid_auth", echo=True, count=3)  # a Web API that echoes the request
        rtm_server.reset()
        rtm_server.wait_until(lambda: len(errors) >= 3 and rtm.is_connected(), timeout(5), "3 refusals, then connected")
        texts = [repr(rtm), str(rtm), repr(vars(rtm)), repr(rtm.stats()), *map(str, errors), *map(repr, errors)]
        texts += records
        assert records and any("DEBUG" in line for line in records)
        assert errors, "the echoing refusal reached the error listeners"
        for text in texts:
            assert TOKEN not in text, text
            assert TOKEN[5:] not in text, text
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
        logger.removeHandler(capture)


# ---- the example ---------------------------------------------------------------------------------


def test_the_rtm_bot_example_replies_in_a_thread_and_stops_on_ctrl_c(rtm_server: RTMServer) -> None:
    """examples/rtm_bot.py (slack_sdk's RTM guide, import changed) against the local RTM server."""
    example = Path(__file__).resolve().parent.parent / "examples" / "rtm_bot.py"
    env = dict(os.environ, SLACK_BOT_TOKEN=TOKEN, SLACK_API_URL=rtm_server.api_url)
    proc = subprocess.Popen(
        [sys.executable, str(example)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "connected\n"
        event = {"type": "message", "channel": "C111", "user": "U222", "text": "Hello bot", "ts": "1700000000.000100"}
        rtm_server.send_event(event)
        (call,) = rtm_server.wait_for_api_calls("chat.postMessage", timeout=timeout(5))
        assert call.params == {"channel": "C111", "text": "Hi <@U222>!", "thread_ts": "1700000000.000100"}
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=timeout(10))
        assert proc.returncode == 0, stderr
        assert stdout == "stopped\n"
        assert TOKEN not in stdout + stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# ---- TLS and proxies: the Socket Mode client's options ------------------------------------------


def test_ssl_carries_rtm_connect_and_the_websocket_over_tls() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with RTMServer(ssl_context=server_context) as server:
        untrusted = RTMClient(token=TOKEN, base_url=server.api_url, reconnect_policy=FAST)
        try:
            with pytest.raises(
                ConnectionFailedError, match=r"auth\.test failed: .*(?i:certificate verify failed)"
            ) as info:
                untrusted.connect(timeout=timeout(2))  # verification is on by default: auth.test fails
            assert info.value.__context__ is None and info.value.__cause__ is None  # nothing of the request
        finally:
            untrusted.close()
        rtm = RTMClient(token=TOKEN, base_url=server.api_url, ssl=client_context)
        events = Events()
        rtm.on("message")(events)
        try:
            rtm.connect(timeout=timeout(10))
            assert rtm.wss_uri is not None and rtm.wss_uri.startswith("wss://")
            server.send_event({"type": "message", "text": "over TLS"})
            assert events.wait_for(lambda seen: len(seen) == 1)[0]["text"] == "over TLS"
        finally:
            rtm.close()


def test_an_http_proxy_carries_rtm_connect_and_the_websocket() -> None:
    pytest.importorskip("pproxy")
    from .test_proxy import PASSWORD, Proxy

    proxy = Proxy("http")
    try:
        with RTMServer(host="127.0.0.2") as server:
            rtm = RTMClient(token=TOKEN, base_url=server.api_url, proxy=proxy.url())
            try:
                rtm.connect(timeout=timeout(10))
                proxy.wait_for(rf"-> 127\.0\.0\.2:{server.api_port}\b")  # auth.test and rtm.connect
                proxy.wait_for(rf"-> 127\.0\.0\.2:{server.ws_port}\b")  # the WebSocket (CONNECT)
                assert PASSWORD not in repr(rtm) and PASSWORD not in repr(vars(rtm))
            finally:
                rtm.close()
    finally:
        proxy.stop()


# ---- slack_sdk's other entry points ---------------------------------------------------------------


def test_without_auto_reconnect_a_lost_connection_ends_start(rtm_server: RTMServer, make_rtm: RTMFactory) -> None:
    rtm = make_rtm(auto_reconnect_enabled=False)
    hello = threading.Event()
    rtm.on("hello")(lambda client, event: hello.set())
    thread = threading.Thread(target=rtm.start, name="test-rtm-start")
    thread.start()
    assert hello.wait(timeout(5))
    rtm_server.reset()
    thread.join(timeout(5))
    assert not thread.is_alive()  # start() returned: nothing reconnects
    assert rtm.state is ClientState.DISCONNECTED and not rtm.is_connected()
    assert rtm_server.open_calls == 1
    rtm.connect()  # and connect() starts again, as in slack_sdk
    assert rtm.is_connected() and rtm_server.open_calls == 2


def test_connect_to_new_endpoint_with_force_replaces_the_connection_make_before_break(
    rtm_server: RTMServer, make_rtm: RTMFactory
) -> None:
    rtm = make_rtm()
    states = States(rtm)
    rtm.connect()
    (old,) = rtm_server.wait_for_connections(1)
    rtm.connect_to_new_endpoint(force=True)
    new = rtm_server.wait_for_new_connection(1, timeout=timeout(5))
    assert old.wait_closed(timeout(5)) and old.closed_by == "client"
    assert new.opened_at < (old.closed_at or 0.0)
    assert "reconnecting" not in states.client_states()
    rtm.connect_to_new_endpoint()  # connected: nothing to do
    assert rtm_server.open_calls == 2


def test_run_message_listeners_and_enqueue_message_call_the_listeners(make_rtm: RTMFactory) -> None:
    rtm = make_rtm()
    events = Events()
    rtm.on("reaction_added")(events)
    rtm.run_message_listeners({"type": "reaction_added", "reaction": "a"})  # on this thread, at once
    assert events.threads == [threading.current_thread().name]
    rtm.enqueue_message(json.dumps({"type": "reaction_added", "reaction": "b"}))  # on a worker, unconnected
    rtm.enqueue_message("not JSON")  # ignored
    seen = events.wait_for(lambda seen: len(seen) == 2)
    assert [e["reaction"] for e in seen] == ["a", "b"]
    assert events.threads[1].startswith("slack_socket_mode-rtm")


def test_bad_input_is_skipped_without_dropping_the_connection(
    rtm_server: RTMServer, make_rtm: RTMFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rtm = make_rtm()
    every = Events()
    rtm.on("*")(every)
    rtm.connect()
    for text in ("not JSON", "[1, 2]", "null", '"a string"', "{", '{"type": 5, "x": 1}'):
        rtm_server.send_text(text)
    rtm_server.send_binary(b"\x00\x01")
    rtm_server.send_raw_text_bytes(b"\xff\xfe")
    rtm_server.send_event({"type": "message", "text": "still here"})
    seen = every.wait_for(lambda seen: any(e.get("text") == "still here" for e in seen))
    assert [e for e in seen if e.get("type") != "hello"] == [
        {"type": 5, "x": 1},
        {"type": "message", "text": "still here"},
    ]
    assert rtm_server.open_calls == 1 and rtm.is_connected()  # the same connection
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 7  # five that are not an object, the binary one, the one not UTF-8
    assert not any("a string" in r.getMessage() or "not JSON" in r.getMessage() for r in skipped)  # never echoed


def test_the_rtm_server_serves_slack_sdks_own_client_too(rtm_server: RTMServer) -> None:
    """A bot written for slack_sdk's ``rtm_v2.RTMClient`` is tested against ``rtm_server`` unchanged."""
    from slack_sdk.rtm_v2 import RTMClient as SdkRTMClient

    rtm = SdkRTMClient(token=TOKEN, base_url=rtm_server.api_url)
    events = Events()

    @rtm.on("message")
    def on_message(client: Any, event: dict[str, Any]) -> None:  # slack_sdk takes functions of two arguments only
        events(client, event)

    try:
        rtm.connect()
        rtm_server.send_event({"type": "message", "channel": "C1", "text": "to slack_sdk"})
        assert events.wait_for(lambda seen: len(seen) == 1)[0]["text"] == "to slack_sdk"
        rtm.send({"id": 1, "type": "message", "channel": "C1", "text": "from slack_sdk"})
        (sent,) = rtm_server.wait_for_events(lambda e: e.type == "message")
        assert sent.body["text"] == "from slack_sdk"
    finally:
        rtm.close()


def test_a_wss_uri_set_by_the_app_is_opened_instead_of_calling_rtm_connect(
    rtm_server: RTMServer, make_rtm: RTMFactory
) -> None:
    rtm = make_rtm()
    url = rtm_server.new_connection_url()
    rtm.wss_uri = url
    rtm.connect()
    assert rtm.is_connected() and rtm.wss_uri == url
    assert [c.method for c in rtm_server.api_calls] == ["auth.test"]  # no rtm.connect
    with pytest.raises(Exception, match="wss://"):
        rtm.wss_uri = "ws://example.com/link"  # ws:// to a remote host is refused, as for Socket Mode
