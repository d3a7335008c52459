"""The asyncio client (slack_socket_mode.aio) on real sockets: the thread client's guarantees, with coroutine listeners.

Each test runs its scenario with ``asyncio.run``; the local server's blocking waits run on a
thread (``asyncio.to_thread``) so that the loop, which runs the listeners, keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from slack_socket_mode import Backoff, ClientState
from slack_socket_mode.aio import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, assert_acked_on_first_delivery, client_threads, timeout
from .test_faults import Stream

FAST = Backoff(base=0.05, cap=0.2, healthy_after=60.0)


def make(server: SocketModeServer, **options: Any) -> SocketModeClient:
    options.setdefault("reconnect_policy", FAST)
    return SocketModeClient(APP_TOKEN, web_client=AsyncWebClient(base_url=server.api_url), **options)


class AsyncRecorder:
    """An async request listener: records each request and the thread it ran on, awaits ``work``, acks."""

    def __init__(self, work: Callable[[SocketModeRequest], Awaitable[None]] | None = None, ack: bool = True) -> None:
        self.seen: list[str] = []
        self.threads: set[str] = set()
        self.work = work
        self.ack = ack
        self.running = 0
        self.most_running = 0

    async def __call__(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        self.seen.append(request.envelope_id)
        self.threads.add(threading.current_thread().name)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.work is not None:
                await self.work(request)
        finally:
            self.running -= 1
        if self.ack:
            body: dict[str, Any] = {"envelope_id": request.envelope_id}
            if request.accepts_response_payload:
                body["payload"] = {"text": "done"}
            await client.send_socket_mode_response(body)

    def runs(self) -> Counter[str]:
        return Counter(self.seen)


async def until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait on the loop until ``predicate()`` (state the loop's own listeners change), at most ``seconds``."""
    deadline = time.monotonic() + timeout(seconds)
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout(60)))


def test_listeners_run_on_the_loop_and_every_envelope_is_acked_once_with_its_payload() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            client = make(server)
            recorder = AsyncRecorder(work=lambda request: asyncio.sleep(0.001))
            messages: list[str] = []

            async def on_message(c: SocketModeClient, message: dict[str, Any], raw: str | None) -> None:
                assert c is client and isinstance(message, dict) and isinstance(raw, str)
                messages.append(message.get("envelope_id") or message["type"])  # hello too, as slack_sdk's

            client.message_listeners.append(on_message)
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
            assert await client.is_connected()
            assert (await client.session_id()).startswith("slack_socket_mode-aio")
            ids = [server.push(server.make_envelope("events_api", {"event_id": f"Ev{n}"})) for n in range(150)]
            command = server.push(
                server.make_envelope("slash_commands", {"command": "/deploy"}, accepts_response_payload=True)
            )
            acks = await asyncio.to_thread(server.wait_for_acks, envelope_ids=[*ids, command], timeout=timeout(10))
            assert {a.envelope_id: a.payload for a in acks}[command] == {"text": "done"}
            assert server.duplicate_acks() == [] and server.unacked() == []
            assert recorder.threads == {threading.current_thread().name}  # the loop's thread, never the client's
            assert messages[0] == "hello" and sorted(messages[1:]) == sorted([*ids, command])
            assert set(recorder.runs().values()) == {1}
            assert_acked_on_first_delivery(server, [*ids, command])
            stats = client.stats()
            assert stats.envelopes_acked == 151 and stats.loop_blocked == 0
            await client.close()
            assert client.closed and client.state is ClientState.CLOSED
        assert client_threads() == []

    run(scenario)


def test_a_rotation_among_a_stream_is_make_before_break_and_loses_nothing() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=3.0) as server:
            client = make(server)
            recorder = AsyncRecorder()
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
            (old,) = server.wait_for_connections(1)
            with Stream(server) as stream:
                await asyncio.to_thread(server.wait_for_acks, count=5)
                server.disconnect("warning", connection=old)
                new = await asyncio.to_thread(server.wait_for_new_connection, 1, timeout(5))
                try:
                    server.disconnect("refresh_requested", connection=old)
                except RuntimeError:
                    pass  # the client closed it already, once the new one said hello
                assert await asyncio.to_thread(old.wait_closed, timeout(10))
                await asyncio.to_thread(server.wait_for_acks, count=len(server.acks) + 5)
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=stream.ids, timeout=timeout(10))
            # make-before-break, by the server's record: the new connection said hello before the old closed
            assert old.closed_at is not None and new.hello_sent and new.opened_at < old.closed_at
            assert old.closed_by == "client"
            assert server.duplicate_acks() == []
            assert [e for e, n in recorder.runs().items() if n > 1] == []
            assert_acked_on_first_delivery(server, stream.ids, same_connection=False)
            await client.close()

    run(scenario)


def test_a_silent_half_open_connection_is_replaced_and_its_envelopes_run_once() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=1.0) as server:
            client = make(server, ping_interval=0.3, ping_timeout=0.3, receive_timeout=2.0)
            recorder = AsyncRecorder()
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
            with Stream(server, rate=50) as stream:
                await asyncio.to_thread(server.wait_for_acks, count=3)
                started = time.monotonic()
                server.silence()
                await asyncio.to_thread(server.wait_for_new_connection, 1, timeout(5))
                noticed = time.monotonic() - started
                await asyncio.to_thread(server.wait_for_acks, count=len(server.acks) + 3)
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=stream.ids, timeout=timeout(10))
            assert server.duplicate_acks() == []
            assert [e for e, n in recorder.runs().items() if n > 1] == []
            reconnects = client.stats().reconnects
            assert reconnects.get("no pong", 0) + reconnects.get("no frames", 0) >= 1, (reconnects, noticed)
            await client.close()

    run(scenario)


def test_a_redelivery_while_the_coroutine_runs_is_not_run_again() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=0.2) as server:
            release = asyncio.Event()
            recorder = AsyncRecorder(work=lambda request: release.wait())
            client = make(server)
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
            envelope_id = server.push(server.make_envelope())
            await asyncio.to_thread(
                server.wait_until, lambda: len(server.envelope(envelope_id).deliveries) >= 3, timeout(5), "redeliveries"
            )
            release.set()
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=[envelope_id])
            assert recorder.runs()[envelope_id] == 1
            assert server.duplicate_acks() == []
            assert client.stats().envelopes_deduplicated >= 2
            await client.close()

    run(scenario)


def test_close_waits_for_running_coroutines_and_sends_their_acks_within_its_timeout() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            recorder = AsyncRecorder(work=lambda request: asyncio.sleep(0.3))
            client = make(server)
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
            ids = [server.push(server.make_envelope()) for _ in range(20)]
            await until(lambda: recorder.running == 20, 5, "20 running")
            started = time.monotonic()
            await client.close(timeout=5.0)
            took = time.monotonic() - started
            assert {a.envelope_id for a in server.acks} == set(ids)  # every in-flight ack went out before the close
            assert took < 5.0 + 0.5
            await client.close()  # idempotent
        assert client_threads() == []

    run(scenario)


def test_close_awaited_by_a_listener_does_not_wait_for_that_listener() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            client = make(server)
            closed_after: list[float] = []

            async def stop(c: SocketModeClient, request: SocketModeRequest) -> None:
                await c.send_socket_mode_response({"envelope_id": request.envelope_id})
                started = time.monotonic()
                await c.close(timeout=4.0)
                closed_after.append(time.monotonic() - started)

            client.socket_mode_request_listeners.append(stop)
            await client.connect()
            eid = server.push(server.make_envelope())
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=[eid])
            await until(lambda: bool(closed_after), 5, "close() to return")
            assert closed_after[0] < 2.0  # not the whole timeout: its own run was not waited for
            assert client.closed

    run(scenario)


def test_concurrency_bounds_the_coroutines_running_at_once() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            recorder = AsyncRecorder(work=lambda request: asyncio.sleep(0.02))
            client = make(server, concurrency=3)
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
            ids = [server.push(server.make_envelope()) for _ in range(40)]
            await until(lambda: recorder.running == 3, 5, "3 running")
            # No thread waits for a slot: the 37 others wait in the dispatcher's backlog, not on workers.
            assert [t.name for t in client_threads() if "worker_" in t.name] == []
            assert client.queue_depth > 0
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=ids, timeout=timeout(10))
            assert recorder.most_running == 3
            assert [t.name for t in client_threads() if "worker_" in t.name] == []
            await client.close()

    run(scenario)


def test_a_listener_that_blocks_the_loop_is_named_and_counted_and_nothing_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="slack_socket_mode")

    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            client = make(server, slow_queue_warning=0.3)

            blocked = threading.Event()
            ids: list[str] = []

            async def blocking(c: SocketModeClient, request: SocketModeRequest) -> None:
                if request.payload.get("block"):
                    blocked.set()
                    time.sleep(1.0)  # the fault under test: the loop is blocked
                await c.send_socket_mode_response({"envelope_id": request.envelope_id})

            def push_while_blocked() -> None:  # on a thread: the loop, this test's included, is blocked
                assert blocked.wait(timeout(5))
                ids.extend(server.push(server.make_envelope()) for _ in range(5))

            client.socket_mode_request_listeners.append(blocking)
            await client.connect()
            pusher = threading.Thread(target=push_while_blocked, name="test-push", daemon=True)
            pusher.start()
            first = server.push(server.make_envelope("events_api", {"block": True}))
            await asyncio.to_thread(pusher.join, timeout(5))
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=[first, *ids], timeout=timeout(10))
            stats = client.stats()
            assert stats.loop_blocked == 1 and stats.loop_delayed >= 1, stats
            assert server.duplicate_acks() == []
            await client.close()

    run(scenario)
    named = [r.getMessage() for r in caplog.records if "blocked the event loop" in r.getMessage()]
    assert len(named) == 1 and "blocking" in named[0], named


def test_envelopes_for_a_loop_that_stopped_are_given_back_with_an_error_and_not_acked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="slack_socket_mode")
    with SocketModeServer(redelivery_delay=None) as server:
        loop = asyncio.new_event_loop()
        client = make(server)
        recorder = AsyncRecorder()
        client.socket_mode_request_listeners.append(recorder)
        try:
            loop.run_until_complete(client.connect())  # the loop stops running when this returns
            eid = server.push(server.make_envelope())
            deadline = time.monotonic() + timeout(5)
            while client.stats().envelopes_given_back == 0:
                assert time.monotonic() < deadline, "the envelope was not given back"
                time.sleep(0.02)
            assert not client.health().healthy
            assert recorder.seen == [] and server.envelope(eid).acks == []
            assert any(eid in r.getMessage() and "not running" in r.getMessage() for r in caplog.records)
            # The loop runs again: Slack's redelivery (pushed here) runs and is acked.
            again = dict(server.make_envelope(envelope_id=eid), retry_attempt=1, retry_reason="timeout")

            async def redelivered() -> None:
                server.push(again)
                await asyncio.to_thread(server.wait_for_acks, envelope_ids=[eid])

            loop.run_until_complete(redelivered())
            assert recorder.seen == [eid]
        finally:
            loop.run_until_complete(client.close())
            loop.close()


def test_the_token_is_in_no_repr_log_or_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            client = make(server, trace_enabled=True)
            client.socket_mode_request_listeners.append(AsyncRecorder())
            await client.connect()
            eid = server.push(server.make_envelope())
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=[eid])
            text = repr(client) + repr(vars(client)) + repr(client.stats())
            assert APP_TOKEN not in text
            await client.close()

    run(scenario)
    assert not [r for r in caplog.records if APP_TOKEN in r.getMessage()]


def test_listener_hooks_run_around_each_envelope_in_its_task_and_a_raising_hook_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="slack_socket_mode")
    calls: list[tuple[str, str, str]] = []

    class AsyncHook:
        async def start(self, request: SocketModeRequest) -> None:
            calls.append(("start", request.envelope_id, threading.current_thread().name))

        async def complete(self, request: SocketModeRequest, error: BaseException | None) -> None:
            calls.append(("complete", request.envelope_id, type(error).__name__))

    class Broken:
        def start(self, request: SocketModeRequest) -> None:
            raise RuntimeError("hook broke")

    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            client = make(server, listener_hooks=[AsyncHook(), Broken()])
            recorder = AsyncRecorder()

            async def failing(c: SocketModeClient, request: SocketModeRequest) -> None:
                raise ValueError("listener broke")

            client.socket_mode_request_listeners.extend([recorder, failing])
            await client.connect()
            ids = [server.push(server.make_envelope()) for _ in range(5)]
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=ids)
            await client.close()
            assert recorder.runs() == Counter(ids)
            loop_thread = threading.current_thread().name
            assert sorted(c for c in calls if c[0] == "start") == sorted(("start", i, loop_thread) for i in ids)
            assert sorted(c for c in calls if c[0] == "complete") == sorted(("complete", i, "ValueError") for i in ids)

    run(scenario)
    assert sum("Broken.start failed" in r.getMessage() for r in caplog.records) == 5


def test_an_ack_to_a_peer_that_stopped_reading_never_blocks_the_loop() -> None:
    """An 8 MB ack to a connection whose peer reads nothing waits on an aio_ack thread; meanwhile the
    loop runs on (a heartbeat task never misses a beat by more than 0.5 s) and the healthy
    connection's envelopes are acked."""

    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            client = make(server, connections=2, receive_timeout=60.0, write_timeout=30.0)
            huge = {"text": "x" * 8_000_000}  # more than loopback's buffers hold while the peer reads nothing
            stuck, write = asyncio.Event(), asyncio.Event()

            async def listener(c: SocketModeClient, request: SocketModeRequest) -> None:
                if request.payload.get("huge"):
                    stuck.set()
                    await write.wait()
                    await c.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": huge})
                    return
                await c.send_socket_mode_response({"envelope_id": request.envelope_id})

            client.socket_mode_request_listeners.append(listener)
            await client.connect()
            stopped, healthy = await asyncio.to_thread(server.wait_for_connections, 2, timeout(5))
            server.push(server.make_envelope("interactive", {"huge": True}), connection=stopped)
            await asyncio.wait_for(stuck.wait(), timeout(5))
            server.silence(stopped)  # it reads nothing more
            write.set()
            beats: list[float] = []

            async def heartbeat() -> None:
                while True:
                    beats.append(time.monotonic())
                    await asyncio.sleep(0.05)

            beating = asyncio.ensure_future(heartbeat())
            ids = [server.push(server.make_envelope("interactive", {}), connection=healthy) for _ in range(20)]
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=ids, timeout=timeout(10))
            await asyncio.sleep(0.5)
            beating.cancel()
            gaps = [b - a for a, b in zip(beats, beats[1:])]
            assert gaps and max(gaps) < 0.5, max(gaps)
            assert_acked_on_first_delivery(server, ids)
            await client.close(timeout=2.0)

    run(scenario)


def test_close_returns_within_its_timeout_when_a_coroutine_never_ends() -> None:
    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            forever = asyncio.Event()  # never set
            recorder = AsyncRecorder(work=lambda request: forever.wait())
            client = make(server)
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
            server.push(server.make_envelope())
            await until(lambda: recorder.running == 1, 5, "the listener to start")
            started = time.monotonic()
            await client.close(timeout=1.0)
            assert time.monotonic() - started < 1.5
            assert client.state is ClientState.CLOSED

    run(scenario)


def test_two_replicas_on_a_shared_ledger_run_an_envelope_once_and_ack_its_redelivery_as_the_first_did() -> None:
    from slack_socket_mode.redis import RedisLedger

    from .services import delete_keys, redis_url, unique_namespace

    url = redis_url()
    namespace = unique_namespace("aio")

    async def scenario() -> None:
        with SocketModeServer(redelivery_delay=None) as server:
            gate = asyncio.Event()
            replicas: list[SocketModeClient] = []
            recorders = [AsyncRecorder(work=lambda request: gate.wait()), AsyncRecorder()]
            for recorder in recorders:
                client = make(server, dedupe=RedisLedger(url, namespace=namespace, lease=5.0))
                client.socket_mode_request_listeners.append(recorder)
                await client.connect()
                replicas.append(client)
            first, second = server.connections
            envelope = server.make_envelope("slash_commands", {"command": "/deploy"}, accepts_response_payload=True)
            eid = envelope["envelope_id"]
            server.push(envelope, connection=first)
            await until(lambda: recorders[0].running == 1, 5, "replica A to run it")
            server.push({**envelope, "retry_attempt": 1, "retry_reason": "timeout"}, connection=second)
            marker = server.push(server.make_envelope(), connection=second)
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=[marker])  # B has read the redelivery
            assert recorders[1].seen == [marker] and server.envelope(eid).acks == []
            gate.set()
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=[eid])
            deadline = time.monotonic() + timeout(5)
            while True:  # A's done record is written by its lease thread: B acks the next redelivery as A did
                server.push({**envelope, "retry_attempt": 2, "retry_reason": "timeout"}, connection=second)
                await asyncio.sleep(0.1)
                if len(server.envelope(eid).acks) >= 2 or time.monotonic() > deadline:
                    break
            acks = server.envelope(eid).acks
            assert len(acks) == 2 and acks[0].payload == acks[1].payload == {"text": "done"}
            assert recorders[0].seen == [eid] and eid not in recorders[1].seen
            for client in replicas:
                await client.close()

    try:
        run(scenario)
    finally:
        delete_keys(url, f"slack_socket_mode:{namespace}:*")


def test_blocking_steps_run_on_threads_of_the_client_that_end_with_them() -> None:
    """connect, issue_new_wss_url, disconnect and close never use the loop's default executor (whose
    thread would outlive close()); each step's thread is named after the client and gone when it returns."""
    used: list[str] = []

    class Watched(ThreadPoolExecutor):
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            used.append(getattr(fn, "__qualname__", repr(fn)))
            return super().submit(fn, *args, **kwargs)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        executor = Watched(max_workers=1, thread_name_prefix="default-executor")
        loop.set_default_executor(executor)
        with SocketModeServer(redelivery_delay=None) as server:
            before = set(threading.enumerate())
            client = make(server)
            await client.connect()
            assert (await client.issue_new_wss_url()).startswith("ws://")
            await client.disconnect()
            await client.connect()
            await client.close()
            left = [  # the client's; the local server's reader of the last connection may still be ending
                t.name
                for t in set(threading.enumerate()) - before
                if t.is_alive() and not t.name.startswith("slack_socket_mode.testing")
            ]
            assert left == [], left
        assert used == [], used

    run(scenario)
