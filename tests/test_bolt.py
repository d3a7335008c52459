"""slack_socket_mode.bolt.SocketModeHandler runs a real slack_bolt.App against the local server.

Real sockets on loopback, a real Bolt app, no mocks; every wait ends on an ack, an API call the
server recorded, an Event set by a listener, or a line a subprocess printed.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from slack_bolt import Ack, App, BoltRequest, Say
from slack_sdk.web import WebClient

from slack_socket_mode import ConfigurationError, LinkDisabledError, SocketModeClient
from slack_socket_mode.bolt import SocketModeHandler
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from .conftest import APP_TOKEN, client_threads, timeout

BOT_TOKEN = "xoxb-111-222-xyz"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "bolt_app.py"

HandlerFactory = Callable[..., SocketModeHandler]


def make_app(server: SocketModeServer, **options: Any) -> App:
    """A Bolt app whose Web API calls go to the local server."""
    return App(
        token=BOT_TOKEN,
        signing_secret="not-used-in-socket-mode",
        client=WebClient(token=BOT_TOKEN, base_url=server.api_url),
        token_verification_enabled=False,
        **options,
    )


@pytest.fixture
def app(server: SocketModeServer, request: pytest.FixtureRequest) -> App:
    return make_app(server, logger=logging.getLogger(f"tests.bolt.{request.node.name}"))


@pytest.fixture
def handlers() -> Iterator[HandlerFactory]:
    """Makes handlers (app token APP_TOKEN unless given); closes every one after the test."""
    made: list[SocketModeHandler] = []

    def make(app: App, **options: Any) -> SocketModeHandler:
        options.setdefault("app_token", APP_TOKEN)
        handler = SocketModeHandler(app, **options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


class Seen:
    """What listeners saw, with a Condition to wait on (no polling)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, count: int, seconds: float = 5.0) -> list[Any]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.items) >= count, timeout(seconds)):
                raise AssertionError(f"listeners saw {len(self.items)} items, expected {count}")
            return list(self.items)


class Booted(logging.Handler):
    """Sets ``event`` when the app's logger announces "Bolt app is running!" (start() is past connect())."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "Bolt app is running!" in record.getMessage():
            self.event.set()

    def wait(self) -> None:
        assert self.event.wait(timeout(5)), "start() did not announce the app"


@pytest.fixture
def booted(app: App) -> Iterator[Booted]:
    """Watches the app's logger (this test's own, at INFO) for start()'s announcement."""
    watcher = Booted()
    app.logger.setLevel(logging.INFO)
    app.logger.addHandler(watcher)
    yield watcher
    app.logger.removeHandler(watcher)


def run_start(handler: SocketModeHandler) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``handler.start()`` on a thread of its own; returns the thread and what start() raised."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            handler.start()
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=target, name="test-bolt-start")
    thread.start()
    return thread, raised


# ---- dispatch and acks ---------------------------------------------------------------------------


def test_event_listener_runs_and_the_envelope_gets_a_bare_ack(
    server: SocketModeServer, app: App, handlers: HandlerFactory
) -> None:
    seen = Seen()

    @app.event("app_mention")
    def mentioned(event: dict[str, Any], say: Say) -> None:
        seen.add(event)
        say("hello back")

    @app.message("Hi here")
    def message(message: dict[str, Any]) -> None:
        seen.add(message)

    handlers(app).connect()
    ids = [server.push_sample("events_api_app_mention"), server.push_sample("events_api_message")]
    acks = server.wait_for_acks(envelope_ids=ids, timeout=timeout(5))
    assert [ack.payload for ack in acks] == [None, None]  # ack() for events: {"envelope_id": …} alone
    items = seen.wait_for(2)
    assert sorted(item["type"] for item in items) == ["app_mention", "message"]
    (post,) = server.wait_for_api_calls("chat.postMessage", timeout=timeout(5))
    assert post.params["channel"] == "C111" and post.params["text"] == "hello back"
    assert server.duplicate_acks() == []


def test_block_action_is_acked(server: SocketModeServer, app: App, handlers: HandlerFactory) -> None:
    seen = Seen()

    @app.action("a")
    def clicked(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        seen.add(body)

    handlers(app).connect()
    envelope_id = server.push_sample("interactive_block_actions_70kb")
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
    assert ack.payload is None
    (body,) = seen.wait_for(1)
    assert body["type"] == "block_actions" and body["actions"][0]["action_id"] == "a"


def test_slash_command_ack_text_becomes_the_ack_payload(
    server: SocketModeServer, app: App, handlers: HandlerFactory
) -> None:
    @app.command("/hello-socket-mode")
    def hello(ack: Ack) -> None:
        ack("Hi!")

    handlers(app).connect()
    envelope_id = server.push_sample("slash_commands")
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
    assert ack.payload == {"text": "Hi!"}


def test_slash_command_ack_with_blocks_is_sent_as_an_object(
    server: SocketModeServer, app: App, handlers: HandlerFactory
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Hi!*"}}]

    @app.command("/hello-socket-mode")
    def hello(ack: Ack) -> None:
        ack(text="Hi!", blocks=blocks, response_type="in_channel")

    handlers(app).connect()
    envelope_id = server.push_sample("slash_commands")
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
    assert ack.payload == {"text": "Hi!", "blocks": blocks, "response_type": "in_channel"}


def test_view_submission_ack_with_response_action(server: SocketModeServer, app: App, handlers: HandlerFactory) -> None:
    @app.view("feedback-modal")
    def submitted(ack: Ack, view: dict[str, Any]) -> None:
        ack(response_action="errors", errors={"b1": f"{view['state']['values']['b1']['a1']['value']}?"})

    handlers(app).connect()
    envelope_id = server.push_sample("interactive_view_submission")
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
    assert ack.payload == {"response_action": "errors", "errors": {"b1": "Socket Mode works?"}}


def test_lazy_listener_acks_at_once_and_runs_the_lazy_function(
    server: SocketModeServer, app: App, handlers: HandlerFactory
) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def acknowledge(ack: Ack) -> None:
        ack("working on it")

    def slow_work(command: dict[str, Any]) -> None:
        started.set()
        if release.wait(timeout(5)):  # held until the test has seen the ack
            finished.set()

    app.command("/hello-socket-mode")(ack=acknowledge, lazy=[slow_work])
    handlers(app).connect()
    envelope_id = server.push_sample("slash_commands")
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
    assert ack.payload == {"text": "working on it"}
    assert not finished.is_set()  # the ack did not wait for the lazy function
    assert started.wait(timeout(5))
    release.set()
    assert finished.wait(timeout(5))


def test_redelivery_reaches_bolt_as_retry_headers(server: SocketModeServer, app: App, handlers: HandlerFactory) -> None:
    headers = Seen()

    @app.middleware
    def record(request: BoltRequest, next: Callable[[], Any]) -> Any:
        headers.add((request.body["event"]["text"], dict(request.headers), request.mode))
        return next()

    @app.event("app_mention")
    def mentioned() -> None:
        pass

    handlers(app).connect()
    first = load_sample("events_api_app_mention")
    first["payload"]["event"]["text"] = "first delivery"
    # A redelivery whose first delivery this process never saw (a fresh id, pushed first):
    # Slack sent it to a connection that died before acking.
    retried = server.make_envelope("events_api", load_sample("events_api_app_mention")["payload"])
    retried["payload"]["event"]["text"] = "redelivery"
    retried["retry_attempt"] = 1
    retried["retry_reason"] = "timeout"
    ids = [server.push(first), server.push(retried)]
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(5))
    seen = dict((text, (hdrs, mode)) for text, hdrs, mode in headers.wait_for(2))
    assert seen["redelivery"] == ({"x-slack-retry-num": ["1"], "x-slack-retry-reason": ["timeout"]}, "socket_mode")
    # Bolt's own handlers set both headers whenever the envelope has the fields: 0 and "" on a first delivery
    assert first["retry_attempt"] == 0 and first["retry_reason"] == ""
    assert seen["first delivery"] == ({"x-slack-retry-num": ["0"], "x-slack-retry-reason": [""]}, "socket_mode")


def test_an_envelope_without_retry_fields_has_no_retry_headers(
    server: SocketModeServer, app: App, handlers: HandlerFactory
) -> None:
    headers = Seen()

    @app.middleware
    def record(request: BoltRequest, next: Callable[[], Any]) -> Any:
        headers.add(dict(request.headers))
        return next()

    @app.shortcut("do-something")
    def shortcut(ack: Ack) -> None:
        ack()

    handlers(app).connect()
    shortcut_envelope = load_sample("interactive_shortcut")
    shortcut_envelope["payload"]["callback_id"] = "do-something"
    assert "retry_attempt" not in shortcut_envelope and "retry_reason" not in shortcut_envelope
    server.wait_for_acks(envelope_ids=[server.push(shortcut_envelope)], timeout=timeout(5))
    (seen,) = headers.wait_for(1)
    assert "x-slack-retry-num" not in seen and "x-slack-retry-reason" not in seen


def test_unhandled_request_is_not_acked(server: SocketModeServer, app: App, handlers: HandlerFactory) -> None:
    @app.command("/hello-socket-mode")
    def hello(ack: Ack) -> None:
        ack()

    handlers(app, concurrency=1).connect()  # one worker: envelopes are handled in order
    unhandled = server.push_sample("interactive_shortcut")  # no listener: Bolt answers 404
    handled = server.push_sample("slash_commands")
    server.wait_for_acks(envelope_ids=[handled], timeout=timeout(5))
    assert server.envelope(unhandled).acks == []  # Slack will redeliver it, as with Bolt's handler


# ---- construction ------------------------------------------------------------------------------


def test_defaults_come_from_the_environment_and_the_app(
    server: SocketModeServer, app: App, handlers: HandlerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    handler = handlers(app, app_token=None)
    assert handler.app is app
    assert handler.app_token == APP_TOKEN
    assert isinstance(handler.client, SocketModeClient)
    assert handler.client.web_client is app.client
    assert handler.client.logger is app.logger
    assert APP_TOKEN not in repr(handler) and APP_TOKEN not in repr(vars(handler))
    handler.connect()  # apps.connections.open went through the app's WebClient to the local server
    assert server.open_calls == 1


def test_options_reach_the_client(server: SocketModeServer, app: App, handlers: HandlerFactory) -> None:
    own = WebClient(base_url=server.api_url)
    handler = handlers(app, web_client=own, concurrency=3, ping_interval=None)
    assert handler.client.web_client is own
    assert handler.client.concurrency == 3 and handler.client.ping_interval is None


def test_missing_or_wrong_app_token_is_a_configuration_error(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="SLACK_APP_TOKEN"):
        SocketModeHandler(app)
    with pytest.raises(ConfigurationError, match="xapp-"):
        SocketModeHandler(app, app_token=BOT_TOKEN)
    with pytest.raises(TypeError, match=r"slack_bolt\.App"):
        SocketModeHandler(object(), app_token=APP_TOKEN)  # type: ignore[arg-type]


def test_without_slack_bolt_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "slack_bolt", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "slack_socket_mode.bolt")  # restored after the test
    with pytest.raises(ImportError, match=r"pip install 'slack-socket-mode\[bolt\]'"):
        importlib.import_module("slack_socket_mode.bolt")


# ---- start(), close(), disconnect() ------------------------------------------------------------


def test_start_blocks_until_close_from_another_thread_and_leaves_no_thread(
    server: SocketModeServer, app: App, handlers: HandlerFactory, booted: Booted
) -> None:
    seen = Seen()

    @app.command("/hello-socket-mode")
    def hello(ack: Ack) -> None:
        ack()
        seen.add("ran")

    before = client_threads()
    handler = handlers(app)
    thread, raised = run_start(handler)
    booted.wait()
    (conn,) = server.connections
    server.wait_for_acks(envelope_ids=[server.push_sample("slash_commands")], timeout=timeout(5))
    seen.wait_for(1)
    assert thread.is_alive()  # serving, and start() still blocks
    assert len(client_threads()) > len(before)
    handler.close()
    thread.join(timeout(5))
    assert not thread.is_alive() and raised == []
    assert client_threads() == before
    assert conn.wait_closed(timeout(5)) and conn.close_code_received == 1000
    handler.close()  # idempotent


def test_start_returns_after_disconnect_and_can_start_again(
    server: SocketModeServer, app: App, handlers: HandlerFactory, booted: Booted
) -> None:
    handler = handlers(app)
    thread, raised = run_start(handler)
    booted.wait()  # start() is past connect(), in its wait
    (first,) = server.connections
    handler.disconnect()
    thread.join(timeout(5))
    assert not thread.is_alive() and raised == []
    assert first.wait_closed(timeout(5)) and not handler.client.is_connected()
    booted.event.clear()
    thread, raised = run_start(handler)
    booted.wait()
    assert len(server.connections) == 1 and server.connections[0] is not first
    handler.close()
    thread.join(timeout(5))
    assert not thread.is_alive() and raised == []


def test_start_raises_a_fatal_error_and_closes(
    server: SocketModeServer, app: App, handlers: HandlerFactory, booted: Booted
) -> None:
    before = client_threads()
    handler = handlers(app)
    thread, raised = run_start(handler)
    booted.wait()
    server.disconnect("link_disabled")  # Socket Mode was turned off for the app
    thread.join(timeout(10))
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], LinkDisabledError)
    assert handler.client.closed
    assert client_threads() == before


# ---- examples/bolt_app.py as a real process ----------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_bolt_example_runs_with_only_the_import_changed(server: SocketModeServer, signum: int) -> None:
    env = dict(
        os.environ,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=server.api_url,
        PYTHONIOENCODING="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "Bolt app is running!" in line, line  # printed by start() once connected, as Bolt's handler does
        mention = server.push_sample("events_api_app_mention")
        command = server.push_sample("slash_commands")
        acks = server.wait_for_acks(envelope_ids=[mention, command], timeout=timeout(10))
        assert acks[1].payload == {"text": "Hi <@U111>!"}
        (post,) = server.wait_for_api_calls("chat.postMessage", timeout=timeout(5))
        assert post.params["text"] == "Hi there, <@U222>!"
        (conn,) = server.connections
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=timeout(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=timeout(10))
    assert proc.returncode == 0, stderr
    assert conn.wait_closed(timeout(5)) and conn.close_code_received == 1000  # a clean close
    assert server.duplicate_acks() == []
    assert APP_TOKEN not in stderr


def test_default_auto_reconnect_enabled_set_on_the_handlers_client_is_honoured(
    server: SocketModeServer, app: App, handlers: HandlerFactory
) -> None:
    from slack_socket_mode import ClientState

    from .conftest import Watcher

    handler = handlers(app)
    handler.client.default_auto_reconnect_enabled = False  # as slack_bolt's own tests and users do
    handler.connect()
    watcher = Watcher(handler.client)
    server.close_connection()
    watcher.wait(lambda: handler.client.state is ClientState.DISCONNECTED, what="the client to stop")
    assert len(server.all_connections) == 1 and server.open_calls == 1
