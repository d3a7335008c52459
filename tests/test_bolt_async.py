"""slack_socket_mode.bolt.AsyncSocketModeHandler runs a real slack_bolt AsyncApp against the local server.

Real sockets on loopback, a real AsyncApp (its AsyncWebClient calls the local server's Web API),
no mocks. Each test runs its coroutine with ``asyncio.run`` inside a plain test function (no
pytest-asyncio: one event loop per test, made and closed by the standard library, and nothing in
the test extra to keep in step with pytest). Every wait ends on an ack, an API call the server
recorded, an asyncio.Event set by a listener, or a line a subprocess printed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest
from slack_bolt import App
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltRequest, AsyncRespond, AsyncSay
from slack_sdk.web.async_client import AsyncWebClient

from slack_socket_mode import ConfigurationError, LinkDisabledError
from slack_socket_mode.aio import SocketModeClient as AsyncClient
from slack_socket_mode.bolt import AsyncSocketModeHandler
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from .conftest import APP_TOKEN, client_threads, timeout

BOT_TOKEN = "xoxb-111-222-xyz"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], seconds: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout(seconds)))


def make_app(server: SocketModeServer, name: str = "tests.bolt_async", **options: Any) -> AsyncApp:
    """An AsyncApp whose Web API calls (and authorization's auth.test) go to the local server."""
    return AsyncApp(
        token=BOT_TOKEN,
        signing_secret="not-used-in-socket-mode",
        client=AsyncWebClient(token=BOT_TOKEN, base_url=server.api_url),
        logger=logging.getLogger(name),
        **options,
    )


def handler_for(app: AsyncApp, **options: Any) -> AsyncSocketModeHandler:
    options.setdefault("app_token", APP_TOKEN)
    return AsyncSocketModeHandler(app, **options)


async def off_loop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking wait on the server, on a thread: the loop keeps running the listeners."""
    return await asyncio.to_thread(call, *args, **kwargs)


def slash(server: SocketModeServer, command: str, text: str, response_url: str = "") -> dict[str, Any]:
    payload = dict(load_sample("slash_commands")["payload"], command=command, text=text)
    if response_url:
        payload["response_url"] = response_url
    return server.make_envelope("slash_commands", payload, accepts_response_payload=True)


# ---- dispatch and acks ---------------------------------------------------------------------------


def test_a_burst_of_80_mixed_envelopes_is_fully_acked_and_nothing_runs_twice(server: SocketModeServer) -> None:
    app = make_app(server)
    runs: Counter[str] = Counter()
    lazy_done: dict[str, asyncio.Event] = {}

    @app.command("/payload")
    async def payload(ack: AsyncAck, command: dict[str, Any]) -> None:
        runs[f"payload {command['text']}"] += 1
        await ack(f"got {command['text']}")

    @app.command("/respond")
    async def responding(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any]) -> None:
        runs[f"respond {command['text']}"] += 1
        await ack()
        await respond(f"responded {command['text']}")

    async def lazy_ack(ack: AsyncAck, command: dict[str, Any]) -> None:
        runs[f"lazy-ack {command['text']}"] += 1
        await ack("working on it")

    async def lazy_work(respond: AsyncRespond, command: dict[str, Any]) -> None:
        runs[f"lazy {command['text']}"] += 1
        await respond(f"lazy {command['text']}")
        lazy_done[command["text"]].set()

    app.command("/lazy")(ack=lazy_ack, lazy=[lazy_work])

    @app.event("app_mention")
    async def mentioned(say: AsyncSay, event: dict[str, Any]) -> None:
        runs[f"mention {event['text']}"] += 1
        await say(f"said {event['text']}")

    @app.view("feedback-modal")
    async def submitted(ack: AsyncAck, view: dict[str, Any]) -> None:
        runs[f"view {view['private_metadata']}"] += 1
        await ack(response_action="errors", errors={"b1": f"no {view['private_metadata']}"})

    envelopes: list[dict[str, Any]] = []
    for i in range(16):
        envelopes.append(slash(server, "/payload", str(i)))
        envelopes.append(slash(server, "/respond", str(i), response_url=f"{server.api_url}respond.{i}"))
        envelopes.append(slash(server, "/lazy", str(i), response_url=f"{server.api_url}lazy.{i}"))
        mention = load_sample("events_api_app_mention")["payload"]
        mention["event"] = dict(mention["event"], text=f"m{i}")
        mention["event_id"] = f"Ev{i:04d}"
        envelopes.append(server.make_envelope("events_api", mention))
        view = load_sample("interactive_view_submission")["payload"]
        view["view"] = dict(view["view"], private_metadata=str(i))
        envelopes.append(server.make_envelope("interactive", view, accepts_response_payload=True))
    assert len(envelopes) == 80

    async def main() -> None:
        lazy_done.update({str(i): asyncio.Event() for i in range(16)})
        handler = handler_for(app)
        await handler.connect_async()
        ids = await off_loop(server.push_many, envelopes)
        acks = await off_loop(server.wait_for_acks, envelope_ids=ids, timeout=timeout(20))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in lazy_done.values())), timeout(10))
        await off_loop(server.wait_for_api_calls, "chat.postMessage", 16, timeout(10))
        await handler.close_async()
        by_id = {ack.envelope_id: ack for ack in acks}
        for envelope in envelopes:
            ack = by_id[envelope["envelope_id"]]
            body = envelope["payload"]
            if body.get("command") == "/payload":
                assert ack.payload == {"text": f"got {body['text']}"}
            elif body.get("command") == "/lazy":
                assert ack.payload == {"text": "working on it"}
            elif body.get("type") == "view_submission":
                meta = body["view"]["private_metadata"]
                assert ack.payload == {"response_action": "errors", "errors": {"b1": f"no {meta}"}}
            else:
                assert ack.payload is None  # a bare ack: ack() / the events API's automatic one

    run(main(), 60)
    assert server.unacked() == []
    assert server.duplicate_acks() == []
    kinds = ("payload", "respond", "lazy-ack", "lazy", "view")
    expected = {f"{kind} {i}": 1 for kind in kinds for i in range(16)} | {f"mention m{i}": 1 for i in range(16)}
    assert dict(runs) == expected  # every listener ran, once
    methods = Counter(call.method.split(".")[0] for call in server.api_calls)
    assert methods["respond"] == 16 and methods["lazy"] == 16
    posts = [call for call in server.api_calls if call.method == "chat.postMessage"]
    assert sorted(post.params["text"] for post in posts) == sorted(f"said m{i}" for i in range(16))


def test_the_ack_is_written_when_ack_is_awaited_not_when_bolt_polls_for_it(server: SocketModeServer) -> None:
    # Bolt's runner polls for ack() every 10 ms with asyncio.sleep, so the loop must run for the ack to go
    # out. This listener blocks the loop right after `await ack(...)` until the server has the ack: with
    # the poll only, it never would (the wait times out and the envelope is acked late).
    app = make_app(server)
    recorded: list[bool] = []

    @app.command("/payload")
    async def payload(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack("at once")
        eid = command["text"]
        try:
            server.wait_for_acks(envelope_ids=[eid], timeout=timeout(2))  # blocks the loop
            recorded.append(True)
        except TimeoutError:
            recorded.append(False)

    async def main() -> None:
        handler = handler_for(app)
        await handler.connect_async()
        envelope = slash(server, "/payload", "")
        envelope["payload"]["text"] = envelope["envelope_id"]
        (ack,) = await off_loop(server.wait_for_acks, envelope_ids=[server.push(envelope)], timeout=timeout(5))
        assert ack.payload == {"text": "at once"}
        await handler.close_async()

    run(main())
    assert recorded == [True]
    assert server.duplicate_acks() == []


def test_with_process_before_response_the_ack_waits_for_the_listener(server: SocketModeServer) -> None:
    app = make_app(server, process_before_response=True)
    finished: list[float] = []

    @app.command("/payload")
    async def payload(ack: AsyncAck) -> None:
        await ack("done")
        await asyncio.sleep(0.2)
        finished.append(time.monotonic())

    async def main() -> None:
        handler = handler_for(app)
        await handler.connect_async()
        (ack,) = await off_loop(
            server.wait_for_acks, envelope_ids=[server.push(slash(server, "/payload", ""))], timeout=timeout(5)
        )
        acked = time.monotonic()
        assert ack.payload == {"text": "done"}
        assert finished and finished[0] <= acked  # as in Bolt: the listener finished first
        await handler.close_async()

    run(main())


def test_redelivery_reaches_bolt_as_retry_headers(server: SocketModeServer) -> None:
    app = make_app(server)
    seen: dict[str, dict[str, Any]] = {}

    @app.middleware
    async def record(request: AsyncBoltRequest, next: Callable[[], Any]) -> Any:
        if "event" in request.body:
            seen[request.body["event"]["text"]] = {"headers": dict(request.headers), "mode": request.mode}
        return await next()

    @app.event("app_mention")
    async def mentioned() -> None:
        pass

    @app.shortcut("do-something")
    async def shortcut(ack: AsyncAck) -> None:
        await ack()

    first = load_sample("events_api_app_mention")
    first["payload"]["event"]["text"] = "first delivery"
    # A redelivery whose first delivery this process never saw: Slack sent it to a connection that died.
    retried = server.make_envelope("events_api", load_sample("events_api_app_mention")["payload"])
    retried["payload"]["event"]["text"] = "redelivery"
    retried["retry_attempt"] = 2
    retried["retry_reason"] = "timeout"
    shortcut_envelope = load_sample("interactive_shortcut")
    shortcut_envelope["payload"]["callback_id"] = "do-something"

    async def main() -> None:
        handler = handler_for(app)
        await handler.connect_async()
        ids = [server.push(first), server.push(retried), server.push(shortcut_envelope)]
        await off_loop(server.wait_for_acks, envelope_ids=ids, timeout=timeout(5))
        await handler.close_async()

    run(main())
    assert seen["redelivery"] == {
        "headers": {"x-slack-retry-num": ["2"], "x-slack-retry-reason": ["timeout"]},
        "mode": "socket_mode",
    }
    assert seen["first delivery"]["headers"] == {"x-slack-retry-num": ["0"], "x-slack-retry-reason": [""]}
    assert server.duplicate_acks() == []


def test_a_redelivery_of_an_acked_envelope_is_acked_again_without_running_the_app(server: SocketModeServer) -> None:
    # After its ack, Slack's redelivery on another connection (the first ack may have been lost with its
    # connection) is acked again at once, and the app does not run twice (docs/topics/guarantees.md).
    app = make_app(server)
    runs: list[str] = []

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any]) -> None:
        runs.append(event["text"])

    first = server.make_envelope("events_api", load_sample("events_api_app_mention")["payload"])
    redelivery = dict(first, retry_attempt=1, retry_reason="timeout")  # Slack's: the same envelope_id

    async def main() -> None:
        handler = handler_for(app, connections=2)
        await handler.connect_async()
        one, two = await off_loop(server.wait_for_connections, 2, timeout(5))
        eid = server.push(first, connection=one)
        await off_loop(server.wait_for_acks, envelope_ids=[eid], timeout=timeout(5))
        server.push(redelivery, connection=two)
        await off_loop(server.wait_for_acks, 2, timeout=timeout(5))  # the redelivery's ack, on the other one
        await handler.close_async()

    run(main())
    assert len(runs) == 1  # the client's dedupe: Bolt saw the envelope once
    assert server.duplicate_acks() == []


def test_unhandled_request_is_not_acked(server: SocketModeServer) -> None:
    app = make_app(server)

    @app.command("/payload")
    async def payload(ack: AsyncAck) -> None:
        await ack()

    async def main() -> None:
        handler = handler_for(app, concurrency=1)  # one at a time: in order
        await handler.connect_async()
        unhandled = server.push_sample("interactive_shortcut")  # no listener: Bolt answers 404
        handled = server.push(slash(server, "/payload", ""))
        await off_loop(server.wait_for_acks, envelope_ids=[handled], timeout=timeout(5))
        assert server.envelope(unhandled).acks == []  # Slack will redeliver it, as with Bolt's handlers
        await handler.close_async()

    run(main())


def test_close_sends_the_acks_of_running_listeners_and_is_bounded(server: SocketModeServer) -> None:
    app = make_app(server)
    started: dict[str, asyncio.Event] = {}

    @app.command("/slow")
    async def slow(ack: AsyncAck, command: dict[str, Any]) -> None:
        started[command["text"]].set()
        await asyncio.sleep(0.3)
        await ack("finished during close")

    @app.command("/stuck")
    async def stuck(ack: AsyncAck, command: dict[str, Any]) -> None:
        started[command["text"]].set()
        await asyncio.Event().wait()  # never acks

    async def main() -> float:
        started.update(slow=asyncio.Event(), stuck=asyncio.Event())
        before = client_threads()
        handler = handler_for(app)
        await handler.connect_async()
        (conn,) = server.connections
        slow_id = server.push(slash(server, "/slow", "slow"))
        server.push(slash(server, "/stuck", "stuck"))
        await asyncio.wait_for(asyncio.gather(started["slow"].wait(), started["stuck"].wait()), timeout(5))
        began = time.monotonic()
        await handler.close_async()
        took = time.monotonic() - began
        assert [ack.payload for ack in server.envelope(slow_id).acks] == [{"text": "finished during close"}]
        assert conn.wait_closed(timeout(5)) and conn.close_code_received == 1000
        assert client_threads() == before
        await handler.close_async()  # idempotent
        return took

    took = run(main())
    assert took < 5.0 + timeout(2)  # close() waits at most 5 s for listeners, then gives up on the stuck one


# ---- start_async() -----------------------------------------------------------------------------------


class Booted(logging.Handler):
    """Sets ``event`` when the app's logger announces "Bolt app is running!" (start_async() is past connect).

    start_async() logs it on the loop, so the asyncio.Event is set there.
    """

    def __init__(self, app: AsyncApp) -> None:
        super().__init__(logging.INFO)
        self.event = asyncio.Event()
        app.logger.setLevel(logging.INFO)
        app.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if "Bolt app is running!" in record.getMessage():
            self.event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.event.wait(), timeout(5))
        self.event.clear()


def test_start_async_waits_until_close_async_and_leaves_no_thread(server: SocketModeServer) -> None:
    app = make_app(server)
    # A thread event, not asyncio.Event(): on 3.9 that binds to get_event_loop() when made, and
    # there is no loop yet (run() makes a fresh one).
    ran = threading.Event()

    @app.command("/payload")
    async def payload(ack: AsyncAck) -> None:
        await ack()
        ran.set()

    async def main() -> None:
        before = client_threads()
        handler = handler_for(app)
        booted = Booted(app)
        serving = asyncio.ensure_future(handler.start_async())
        await booted.wait()
        (conn,) = server.connections
        await off_loop(server.wait_for_acks, envelope_ids=[server.push(slash(server, "/payload", ""))])
        assert await off_loop(ran.wait, timeout(5))
        assert not serving.done()
        await handler.close_async()
        await asyncio.wait_for(serving, timeout(5))  # returned normally
        assert client_threads() == before
        assert conn.wait_closed(timeout(5)) and conn.close_code_received == 1000

    run(main())


def test_start_async_returns_after_disconnect_async_and_can_start_again(server: SocketModeServer) -> None:
    async def main() -> None:
        app = make_app(server)
        handler = handler_for(app)
        booted = Booted(app)
        serving = asyncio.ensure_future(handler.start_async())
        await booted.wait()
        (first,) = server.connections
        await handler.disconnect_async()
        await asyncio.wait_for(serving, timeout(5))
        assert first.wait_closed(timeout(5)) and first.close_code_received == 1000
        assert not await handler.client.is_connected()
        serving = asyncio.ensure_future(handler.start_async())
        await booted.wait()
        assert len(server.connections) == 1 and server.connections[0] is not first
        assert await handler.client.is_connected()
        await handler.close_async()
        await asyncio.wait_for(serving, timeout(5))

    run(main())


def test_start_async_raises_a_fatal_error_and_closes(server: SocketModeServer) -> None:
    async def main() -> None:
        before = client_threads()
        app = make_app(server)
        handler = handler_for(app)
        booted = Booted(app)
        serving = asyncio.ensure_future(handler.start_async())
        await booted.wait()
        server.disconnect("link_disabled")  # Socket Mode was turned off for the app
        with pytest.raises(LinkDisabledError):
            await asyncio.wait_for(serving, timeout(10))
        assert handler.client.closed
        assert client_threads() == before

    run(main())


# ---- construction ------------------------------------------------------------------------------


def test_defaults_come_from_the_environment_and_the_app(
    server: SocketModeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    app = make_app(server)

    async def main() -> None:
        handler = AsyncSocketModeHandler(app)
        assert handler.app is app and handler.app_token == APP_TOKEN
        assert isinstance(handler.client, AsyncClient)
        assert handler.client.web_client is app.client and handler.client.logger is app.logger
        assert APP_TOKEN not in repr(handler) and APP_TOKEN not in repr(vars(handler))
        await handler.connect_async()  # apps.connections.open went to the app's AsyncWebClient's base_url
        assert server.open_calls == 1
        await handler.close_async()

    run(main())


def test_options_reach_the_client(server: SocketModeServer) -> None:
    own = AsyncWebClient(base_url=server.api_url)
    handler = handler_for(make_app(server), web_client=own, concurrency=3, ping_interval=None, proxy=None)
    try:
        assert handler.client.web_client is own and handler.client.ping_interval is None
        assert handler.client.proxy is None
    finally:
        run(handler.close_async())


def test_wrong_arguments_are_refused(server: SocketModeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    app = make_app(server)
    with pytest.raises(ConfigurationError, match="SLACK_APP_TOKEN"):
        AsyncSocketModeHandler(app)
    with pytest.raises(ConfigurationError, match="xapp-"):
        AsyncSocketModeHandler(app, app_token=BOT_TOKEN)
    sync_app = App(token=BOT_TOKEN, signing_secret="x", token_verification_enabled=False)
    with pytest.raises(TypeError, match=r"SocketModeHandler"):
        AsyncSocketModeHandler(sync_app, app_token=APP_TOKEN)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncApp"):
        AsyncSocketModeHandler(object(), app_token=APP_TOKEN)  # type: ignore[arg-type]


# ---- start_async() in a process, stopped by a signal -------------------------------------------------

ASYNC_APP = """
    import asyncio, os
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient
    from slack_socket_mode.bolt import AsyncSocketModeHandler

    app = AsyncApp(
        token="xoxb-111-222-xyz",
        signing_secret="unused",
        client=AsyncWebClient(token="xoxb-111-222-xyz", base_url=os.environ["SLACK_API_URL"]),
    )

    @app.command("/slow")
    async def slow(ack, command):
        print("running", flush=True)
        await asyncio.sleep(float(command["text"]))  # the signal lands meanwhile
        await ack("acked while closing")

    asyncio.run(AsyncSocketModeHandler(app).start_async())
    print("start_async returned", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_closes_start_async_cleanly_with_in_flight_acks(
    server: SocketModeServer, signum: int, tmp_path: Path
) -> None:
    script = tmp_path / "async_app.py"
    script.write_text(textwrap.dedent(ASYNC_APP))
    env = dict(os.environ, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=server.api_url, PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8"
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "Bolt app is running!" in line, line + proc.stderr.read() if proc.stderr else line
        (conn,) = server.connections
        eid = server.push(slash(server, "/slow", "0.5"))
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=timeout(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=timeout(10))
    assert proc.returncode == 0, stderr
    assert "start_async returned" in stdout
    assert [ack.payload for ack in server.envelope(eid).acks] == [{"text": "acked while closing"}]
    assert conn.wait_closed(timeout(5)) and conn.close_code_received == 1000  # a clean close
    assert server.duplicate_acks() == []
    assert APP_TOKEN not in stderr
