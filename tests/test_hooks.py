"""Listener hooks: start/complete around each envelope's listeners, on its thread, on every dispatch path."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Optional

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.listeners import add_default_hook, hook_name, remove_default_hook
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, ClientFactory, client_threads, timeout


class Trace:
    """A hook, and a listener, that record what ran on which thread, in order."""

    def __init__(self, name: str = "hook", events: Optional[list[tuple[str, ...]]] = None) -> None:
        self.name = name
        self.events: list[tuple[str, ...]] = events if events is not None else []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.errors: list[Optional[BaseException]] = []

    def _add(self, *event: str) -> None:
        with self.cond:
            self.events.append((*event, threading.current_thread().name))
            self.cond.notify_all()

    def start(self, request: Optional[SocketModeRequest]) -> None:
        self._add(f"{self.name}.start", request.envelope_id if request else "-")

    def complete(self, request: Optional[SocketModeRequest], error: Optional[BaseException]) -> None:
        self.errors.append(error)
        self._add(f"{self.name}.complete", request.envelope_id if request else "-")

    def listener(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        self._add("listener", request.envelope_id)
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    def wait_for(self, count: int, seconds: float = 5.0) -> list[tuple[str, ...]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.events) >= count, timeout(seconds)):
                raise AssertionError(f"saw {self.events}, expected {count} events")
            return list(self.events)

    def wait_completed(self, envelope_id: str, seconds: float = 5.0) -> None:
        """Wait for a ``complete`` of ``envelope_id`` (it runs after the listener's ack went out)."""
        with self.cond:
            done = self.cond.wait_for(
                lambda: any(e[0].endswith(".complete") and e[1] == envelope_id for e in self.events), timeout(seconds)
            )
            assert done, f"no complete for {envelope_id}: {self.events}"

    def of(self, envelope_id: str) -> list[tuple[str, ...]]:
        with self.lock:
            return [e for e in self.events if e[1] == envelope_id]


def assert_wrapped(trace: Trace, envelope_id: str, thread_part: str) -> str:
    """start, listener, complete for ``envelope_id``, in that order, on one thread whose name has ``thread_part``."""
    trace.wait_completed(envelope_id)
    events = trace.of(envelope_id)
    assert [e[0] for e in events] == ["hook.start", "listener", "hook.complete"], events
    threads = {e[2] for e in events}
    assert len(threads) == 1, events  # the hook runs in the same thread as the listener
    (thread,) = threads
    assert thread_part in thread, thread
    return thread


def test_hooks_wrap_a_run_inline_on_the_reader(server: SocketModeServer, make_client: ClientFactory) -> None:
    trace = Trace()
    client = make_client(listener_hooks=[trace], handoff_after=1.0)
    client.socket_mode_request_listeners.append(trace.listener)
    client.connect()
    envelope_id = server.push(server.make_envelope())
    server.wait_for_acks(envelope_ids=[envelope_id])
    trace.wait_for(3)
    assert assert_wrapped(trace, envelope_id, "-reader-").endswith("-reader-1")
    assert trace.errors == [None]


def test_hooks_wrap_a_run_on_a_worker(server: SocketModeServer, make_client: ClientFactory) -> None:
    trace = Trace()
    client = make_client(inline_dispatch=False)
    client.listener_hooks.append(trace)  # the list, as the constructor's keyword
    client.socket_mode_request_listeners.append(trace.listener)
    client.connect()
    ids = [server.push(server.make_envelope()) for _ in range(5)]
    server.wait_for_acks(envelope_ids=ids)
    trace.wait_for(15)
    for envelope_id in ids:
        assert_wrapped(trace, envelope_id, "-worker")


def test_hooks_wrap_runs_on_a_take_over_reader(server: SocketModeServer, make_client: ClientFactory) -> None:
    """A slow run on reader 1 is taken over; runs on reader 1.1, later on, are wrapped on that thread too."""
    trace = Trace()
    release = threading.Event()
    first_started = threading.Event()

    def slow_first(client: SocketModeClient, request: SocketModeRequest) -> None:
        if request.payload.get("role") == "slow":
            first_started.set()
            release.wait(timeout(10))

    client = make_client(listener_hooks=[trace], handoff_after=0.05)
    client.socket_mode_request_listeners.append(slow_first)
    client.socket_mode_request_listeners.append(trace.listener)
    client.connect()
    try:
        slow = server.push(server.make_envelope(payload={"role": "slow"}))
        assert first_started.wait(timeout(5))
        # after a take-over envelopes go to the workers for a second: push until one runs on reader 1.1
        end = time.monotonic() + timeout(5)
        while True:
            probe = server.push(server.make_envelope())
            server.wait_for_acks(envelope_ids=[probe])
            thread = trace.of(probe)[-1][2]
            if thread.endswith("-reader-1.1"):
                break
            assert "-worker" in thread
            assert time.monotonic() < end, "reader 1.1 never ran a listener itself"
        assert_wrapped(trace, probe, "-reader-1.1")
    finally:
        release.set()
    server.wait_for_acks(envelope_ids=[slow])
    assert assert_wrapped(trace, slow, "-reader-").endswith("-reader-1")  # the relieved reader ran it, wrapped


def test_hooks_wrap_enqueue_message_before_connect_and_run_message_listeners(make_client: ClientFactory) -> None:
    trace = Trace()
    client = make_client(listener_hooks=[trace])
    client.socket_mode_request_listeners.append(trace.listener)  # its ack waits for a hello that never comes
    body = {"envelope_id": "e-enqueued", "type": "events_api", "payload": {"x": 1}, "accepts_response_payload": False}
    client.enqueue_message(json.dumps(body))
    trace.wait_for(3)
    assert_wrapped(trace, "e-enqueued", "-worker")
    body["envelope_id"] = "e-direct"
    client.run_message_listeners(body, json.dumps(body))  # on the calling thread, synchronously
    assert_wrapped(trace, "e-direct", threading.current_thread().name)


def test_hooks_run_in_order_and_complete_in_reverse_with_the_listeners_error(
    server: SocketModeServer, make_client: ClientFactory, caplog: Any
) -> None:
    events: list[tuple[str, ...]] = []
    outer, inner = Trace("outer", events), Trace("inner", events)
    failure = ValueError("listener failed")

    def failing(client: SocketModeClient, request: SocketModeRequest) -> None:
        raise failure

    client = make_client(listener_hooks=[outer, inner])
    client.socket_mode_request_listeners.append(failing)
    client.socket_mode_request_listeners.append(outer.listener)  # still runs, acks
    client.connect()
    envelope_id = server.push(server.make_envelope())
    server.wait_for_acks(envelope_ids=[envelope_id])
    outer.wait_for(5)
    assert [e[0] for e in events] == ["outer.start", "inner.start", "listener", "inner.complete", "outer.complete"]
    assert outer.errors == [failure] and inner.errors == [failure]  # the first Exception a listener raised


class Raising:
    """A hook whose start or complete raises."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.completed = threading.Event()

    def start(self, request: Optional[SocketModeRequest]) -> None:
        if self.where == "start":
            raise RuntimeError("start failed")

    def complete(self, request: Optional[SocketModeRequest], error: Optional[BaseException]) -> None:
        self.completed.set()
        if self.where == "complete":
            raise RuntimeError("complete failed")


@pytest.mark.parametrize("where", ["start", "complete"])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "worker"])
def test_a_raising_hook_is_logged_by_name_and_loses_no_envelope(
    server: SocketModeServer, make_client: ClientFactory, caplog: Any, where: str, inline: bool
) -> None:
    caplog.set_level(logging.ERROR, logger="slack_socket_mode")
    raising = Raising(where)
    after = Trace()
    client = make_client(listener_hooks=[after, raising], inline_dispatch=inline)
    client.socket_mode_request_listeners.append(after.listener)
    client.connect()
    ids = [server.push(server.make_envelope()) for _ in range(3)]
    server.wait_for_acks(envelope_ids=ids)  # the ack still goes
    after.wait_for(9)
    for envelope_id in ids:
        assert_wrapped(after, envelope_id, "slack_socket_mode-")  # the other hook and the listener ran
    assert raising.completed.is_set() is (where == "complete")  # a start that raised has no complete
    failures = [r for r in caplog.records if "listener hook" in r.getMessage()]
    assert len(failures) == 3
    name = f"{hook_name(raising)}.{where}"
    assert all(r.levelno == logging.ERROR and name in r.getMessage() and r.exc_info for r in failures)
    assert name == f"tests.test_hooks.Raising.{where}"
    assert server.unacked() == [] and server.duplicate_acks() == []


def test_a_coroutine_hook_is_refused_and_one_without_methods_too(make_client: ClientFactory) -> None:
    class AsyncHook:
        async def start(self, request: Any) -> None:
            return None

    client = make_client()
    with pytest.raises(TypeError, match=r"listener_hooks: .*coroutine function; .*slack_socket_mode\.aio"):
        client.listener_hooks.append(AsyncHook())
    with pytest.raises(TypeError, match=r"listener_hooks: .* has neither a start\(request\) nor a complete"):
        client.listener_hooks.append(object())
    with pytest.raises(TypeError, match="listener_hooks"):
        make_client(listener_hooks=[AsyncHook()])
    assert client.listener_hooks == []


def test_a_hook_returning_a_coroutine_is_logged_and_its_envelope_acked(
    server: SocketModeServer, make_client: ClientFactory, caplog: Any
) -> None:
    caplog.set_level(logging.ERROR, logger="slack_socket_mode")
    trace = Trace()

    class Sneaky:
        def start(self, request: Any) -> Any:
            async def later() -> None:
                return None

            return later()

    client = make_client(listener_hooks=[Sneaky(), trace])
    client.socket_mode_request_listeners.append(trace.listener)
    client.connect()
    envelope_id = server.push(server.make_envelope())
    server.wait_for_acks(envelope_ids=[envelope_id])
    trace.wait_for(3)
    assert any("returned a coroutine, which never runs" in r.getMessage() for r in caplog.records)


def test_a_default_hook_goes_to_every_client_made_afterwards(server: SocketModeServer) -> None:
    trace = Trace()
    own = Trace("own")
    add_default_hook(trace)
    add_default_hook(trace)  # once per hook object
    try:
        client = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), listener_hooks=[own])
    finally:
        remove_default_hook(trace)
    try:
        assert client.listener_hooks == [trace, own]
        later = SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
        assert later.listener_hooks == []
        later.close()
    finally:
        client.close()
    assert client_threads() == []


def test_bolt_handler_runs_hooks_around_dispatch_and_gives_them_the_app(server: SocketModeServer) -> None:
    pytest.importorskip("slack_bolt")
    from slack_bolt import App

    from slack_socket_mode.bolt import SocketModeHandler

    app = App(
        token="xoxb-1", client=WebClient(base_url=server.api_url, token="xoxb-1"), token_verification_enabled=False
    )
    ran: list[str] = []

    @app.event("app_mention")
    def on_mention(ack: Any) -> None:
        ran.append(threading.current_thread().name)
        ack()

    class BoltAware(Trace):
        def __init__(self) -> None:
            super().__init__()
            self.apps: list[Any] = []

        def prepare_bolt_app(self, app: Any) -> None:
            self.apps.append(app)

    trace = BoltAware()
    handler = SocketModeHandler(app, APP_TOKEN, listener_hooks=[trace], web_client=WebClient(base_url=server.api_url))
    try:
        assert trace.apps == [app]
        handler.connect()
        envelope_id = server.push_sample("events_api_app_mention")
        server.wait_for_acks(envelope_ids=[envelope_id])
        events = trace.wait_for(2)
        assert [e[0] for e in events] == ["hook.start", "hook.complete"]
        assert len({e[2] for e in events}) == 1 and "slack_socket_mode-" in events[0][2]
        assert len(ran) == 1 and not ran[0].startswith("slack_socket_mode-")  # Bolt's executor runs the listener
    finally:
        handler.close()


def test_the_websocket_client_flavour_takes_hooks_too(server: SocketModeServer) -> None:
    from slack_socket_mode.websocket_client import SocketModeClient as WebSocketClient

    trace = Trace()
    client = WebSocketClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), listener_hooks=[trace])
    try:
        client.socket_mode_request_listeners.append(trace.listener)
        client.connect()
        envelope_id = server.push(server.make_envelope())
        server.wait_for_acks(envelope_ids=[envelope_id])
        assert_wrapped(trace, envelope_id, "slack_socket_mode-")
    finally:
        client.close()
