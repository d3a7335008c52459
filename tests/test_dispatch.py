"""Dispatch under pressure: graceful close with listeners running, bounded queue, slow-queue warnings."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Callable

import pytest

from slack_socket_mode import Redeliver, SocketModeClient, SocketModeError
from slack_socket_mode.testing import SocketModeServer

from .conftest import ClientFactory, assert_acked_on_first_delivery, client_threads, timeout


class LogEvent(logging.Handler):
    """Sets an Event when a record containing ``needle`` is logged; counts them."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.event = threading.Event()
        self.count = 0
        self.messages: list[str] = []  # each one, connection ids written as N

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.needle in message:
            self.messages.append(re.sub(r"connection \d+:", "connection N:", message))
            self.count += 1
            self.event.set()


def capture(needle: str) -> LogEvent:
    handler = LogEvent(needle)
    logger = logging.getLogger("slack_socket_mode")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


def release_logger(handler: LogEvent) -> None:
    logger = logging.getLogger("slack_socket_mode")
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_close_waits_for_running_listeners_and_sends_their_acks(
    server: SocketModeServer, make_client: ClientFactory, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="slack_socket_mode")
    started = threading.Event()
    release = threading.Event()
    runs: list[str] = []

    def slow(client: SocketModeClient, request: Any) -> None:
        runs.append(request.envelope_id)
        started.set()
        release.wait(timeout(5))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client = make_client()
    client.socket_mode_request_listeners.append(slow)
    client.connect()
    (conn,) = server.wait_for_connections(1)
    first = server.push(server.make_envelope())
    assert started.wait(timeout(5))
    closing_started = capture("close(): no new envelopes")
    stopping = capture("not dispatching")
    try:
        closing = threading.Thread(target=client.close, kwargs={"timeout": timeout(5)})
        closing.start()
        assert closing_started.event.wait(timeout(5))
        # close() has stopped taking new envelopes: this one is not dispatched (Slack would redeliver it)
        late = server.push(server.make_envelope())
        assert stopping.event.wait(timeout(5))
    finally:
        release_logger(stopping)
        release_logger(closing_started)
    release.set()
    closing.join(timeout(10))
    assert not closing.is_alive()
    (ack,) = server.wait_for_acks(envelope_ids=[first])
    assert conn.wait_closed(timeout(5))
    assert conn.closed_at is not None and ack.received_at <= conn.closed_at
    assert conn.close_code_received == 1000
    assert runs == [first]
    assert_acked_on_first_delivery(server, [first])  # on the closing connection, before it closed
    assert late in server.unacked()
    assert logged(caplog, late) == [("INFO", f"connection N: not dispatching envelope {late}: closing")]
    assert client_threads() == []


def test_close_does_not_wait_longer_than_its_timeout(server: SocketModeServer, make_client: ClientFactory) -> None:
    release = threading.Event()
    started = threading.Event()

    def stuck(client: SocketModeClient, request: Any) -> None:
        started.set()
        release.wait(timeout(10))

    client = make_client()
    client.socket_mode_request_listeners.append(stuck)
    client.connect()
    server.push(server.make_envelope())
    assert started.wait(timeout(5))
    closing = threading.Thread(target=client.close, kwargs={"timeout": 0.2})
    closing.start()
    closing.join(timeout(5))
    assert not closing.is_alive()  # close() returned although the listener is still running
    release.set()


def _gated(permits: threading.Semaphore) -> Callable[[SocketModeClient, Any], None]:
    """A request listener that acks once ``permits`` lets it (one release per listener run)."""

    def gated(client: SocketModeClient, request: Any) -> None:
        permits.acquire(timeout=timeout(10))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    return gated


def test_a_full_queue_pauses_reading_without_losing_or_replacing_anything(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    permits = threading.Semaphore(0)  # each lets one listener return
    gated = _gated(permits)
    read: list[str] = []  # envelopes the readers took off the socket (on_message runs before dispatch)
    paused = capture("pausing reads while")
    try:
        client = make_client(
            concurrency=1,
            max_queue=2,
            ping_interval=0.05,
            ping_timeout=0.1,
            receive_timeout=0.2,
            on_message_listeners=[lambda text: read.append(text) if '"envelope_id"' in text else None],
        )
        client.socket_mode_request_listeners.append(gated)
        lost = threading.Event()
        client.lifecycle_listeners.append(lambda t: lost.set() if t.connection_id and t.new.value == "closed" else None)
        client.connect()
        (conn,) = server.wait_for_connections(1)
        ids = [server.push(server.make_envelope()) for _ in range(10)]
        assert paused.event.wait(timeout(5))
        paused.event.clear()
        # the reader stays paused for 3x receive_timeout: the connection must not be declared dead
        assert not lost.wait(0.6)
        # max_queue counts the running one: one runs on the first reader, the worker holds the second
        # (waiting for a slot of concurrency), the third is held by the new reader, and nothing after
        # it was read
        assert client.queue_depth == 0 and len(read) == 3
        # one listener returns: the third goes in, the fourth is held; the burst goes on, so the
        # reader pauses again without a second warning
        permits.release()
        wait_until(lambda: len(read) == 4, "the fourth envelope read")
        assert not paused.event.wait(0.3) and paused.count == 1
        assert paused.messages == ["connection N: 2 envelopes queued (max_queue); pausing reads while workers catch up"]
        permits.release(len(ids))
        server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
    finally:
        permits.release(10)
        release_logger(paused)
    assert server.unacked() == [] and server.duplicate_acks() == []
    assert server.open_calls == 1 and server.connections == [conn]  # not mistaken for a dead connection
    # the pause is over: liveness judges the connection again, and a silent one is replaced
    server.silence(conn)
    server.wait_for_new_connection(1, timeout=timeout(5))


def test_slow_queue_is_warned_once_per_burst(server: SocketModeServer, make_client: ClientFactory, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="slack_socket_mode")
    gate = threading.Event()
    sentinels: set[str] = set()

    def gated(client: SocketModeClient, request: Any) -> None:
        gate.wait(timeout(5))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    def open_gate_at_sentinel(text: str) -> None:
        # runs on the reader thread, which handles messages in order: the burst before it is queued
        if any(s in text for s in sentinels):
            gate.set()

    warned = capture("for a free worker (")
    try:
        client = make_client(concurrency=1, slow_queue_warning=0.0, on_message_listeners=[open_gate_at_sentinel])
        client.socket_mode_request_listeners.append(gated)
        client.connect()
        for burst in range(2):
            gate.clear()
            ids = [server.push(server.make_envelope()) for _ in range(5)]
            sentinel = server.make_envelope()
            sentinels.add(sentinel["envelope_id"])
            ids.append(server.push(sentinel))
            server.wait_for_acks(envelope_ids=ids)
            assert warned.count == burst + 1
        stats = client.stats()
    finally:
        release_logger(warned)
    assert warned.count == 2
    assert stats.queue_depth == 0 and stats.oldest_wait == 0.0
    pattern = (
        r"envelope (\S+) waited \d+\.\d s for a free worker \(\d+ queued\); Slack redelivers envelopes not acked "
        r"within 3 s: raise concurrency \(now 1\), or ack before doing slow work"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    matched = [re.fullmatch(pattern, w) for w in warnings]
    assert len(warnings) == 2 and all(matched), warnings
    assert all(m.group(1) in {a.envelope_id for a in server.acks} for m in matched if m), warnings  # names it


def test_idle_worker_threads_are_let_go_after_a_burst(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client(concurrency=6, worker_idle_timeout=0.2)
    gate = threading.Event()
    started = threading.Semaphore(0)
    ran_on: list[str] = []

    def gated(client: SocketModeClient, request: Any) -> None:
        ran_on.append(threading.current_thread().name)
        started.release()
        gate.wait(timeout(5))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(gated)
    client.connect()
    ids = [server.push(server.make_envelope()) for _ in range(6)]
    for _ in range(6):  # six listeners running at once: the reader (which a new one relieved) and five workers
        assert started.acquire(timeout=timeout(5))
    assert ran_on[0].endswith("-reader-1")
    workers = [t for t in client_threads() if "-worker" in t.name]
    assert len(workers) == 5
    assert sorted(ran_on[1:]) == sorted(t.name for t in workers)
    gate.set()
    server.wait_for_acks(envelope_ids=ids)
    for thread in workers:  # let go once idle, without polling: join each with a bound
        thread.join(timeout(5))
        assert not thread.is_alive()
    # and the pool starts threads again on demand
    server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())])


def test_idle_worker_threads_are_let_go_after_the_first_burst_with_inline_dispatch_off(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """No take-over wakes the health thread during this burst: only the burst's end does."""
    client = make_client(
        inline_dispatch=False,
        concurrency=3,
        worker_idle_timeout=0.2,
        ping_interval=30.0,
        receive_timeout=60.0,
        write_timeout=30.0,
    )
    client.socket_mode_request_listeners.append(
        lambda client, request: client.send_socket_mode_response({"envelope_id": request.envelope_id})
    )
    client.connect()
    server.wait_for_acks(envelope_ids=[server.push(server.make_envelope()) for _ in range(3)])
    workers = [t for t in client_threads() if "-worker" in t.name]
    assert workers
    for thread in workers:
        thread.join(timeout(5))
        assert not thread.is_alive()


def test_close_from_a_listener_does_not_wait_for_itself(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    closed = threading.Event()

    def closer(client: SocketModeClient, request: Any) -> None:
        client.send_socket_mode_response({"envelope_id": request.envelope_id})
        client.close(timeout=timeout(30))  # would wait the whole timeout if it counted itself
        closed.set()

    client.socket_mode_request_listeners.append(closer)
    client.connect()
    envelope_id = server.push(server.make_envelope())
    assert closed.wait(timeout(5))
    server.wait_for_acks(envelope_ids=[envelope_id])
    assert client.closed


# ---- inline dispatch: the reader runs listeners itself; a slow one is taken over -----------------


def connected_recording_threads(make_client: ClientFactory, **options: Any) -> list[str]:
    """A connected client whose listener acks at once; returns the names of the threads it ran on."""
    client = make_client(**options)
    ran_on: list[str] = []

    def listener(client: SocketModeClient, request: Any) -> None:
        ran_on.append(threading.current_thread().name)
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    return ran_on


@pytest.mark.parametrize("options", [{}, {"concurrency": 1}], ids=["default", "concurrency=1"])
def test_a_fast_listener_runs_on_the_reader_and_starts_no_worker(
    server: SocketModeServer, make_client: ClientFactory, options: dict[str, Any]
) -> None:
    # handoff_after 1 s: a run that a loaded machine stalls past the default 10 ms would be taken over
    # (tested on its own below); what is checked here is where fast runs go
    ran_on = connected_recording_threads(make_client, handoff_after=1.0, **options)
    ids = [server.push(server.make_envelope()) for _ in range(50)]
    server.wait_for_acks(envelope_ids=ids)
    assert len(ran_on) == 50 and {name.rsplit("-", 2)[-2:] == ["reader", "1"] for name in ran_on} == {True}
    assert not [t for t in client_threads() if "-worker" in t.name]
    assert server.duplicate_acks() == []


def test_with_inline_dispatch_off_every_listener_runs_on_a_worker(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    ran_on = connected_recording_threads(make_client, inline_dispatch=False)
    ids = [server.push(server.make_envelope()) for _ in range(20)]
    server.wait_for_acks(envelope_ids=ids)
    assert len(ran_on) == 20 and all("-worker" in name for name in ran_on)


@pytest.mark.parametrize("inline_dispatch", [True, False])
def test_message_listeners_get_the_envelope_and_its_text_as_read(
    server: SocketModeServer, make_client: ClientFactory, inline_dispatch: bool
) -> None:
    seen: list[tuple[dict[str, Any], str]] = []
    client = make_client(inline_dispatch=inline_dispatch)
    client.message_listeners.append(
        lambda client, message, raw: seen.append((message, raw)) if "envelope_id" in message else None  # not hello
    )
    client.socket_mode_request_listeners.append(
        lambda client, request: client.send_socket_mode_response({"envelope_id": request.envelope_id})
    )
    client.connect()
    envelopes = [server.make_envelope(payload={"n": n}) for n in range(5)]
    server.wait_for_acks(envelope_ids=[server.push(e) for e in envelopes])
    assert sorted((m["payload"]["n"], json.loads(raw)) for m, raw in seen) == [(n, e) for n, e in enumerate(envelopes)]
    assert all(message == json.loads(raw) for message, raw in seen)


def test_a_slow_listener_on_the_reader_does_not_hold_up_the_envelopes_behind_it(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """The first listener blocks; a new reader takes over the socket within handoff_after."""
    client = make_client(handoff_after=0.05)
    release = threading.Event()
    runs: list[tuple[str, str]] = []
    first_started = threading.Event()

    def listener(client: SocketModeClient, request: Any) -> None:
        runs.append((request.envelope_id, threading.current_thread().name))
        if len(runs) == 1:
            first_started.set()
            release.wait(timeout(10))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    slow = server.push(server.make_envelope())
    assert first_started.wait(timeout(5))
    behind = [server.push(server.make_envelope()) for _ in range(20)]
    server.wait_for_acks(envelope_ids=behind)  # while the first listener still blocks
    assert not release.is_set() and slow in server.unacked()
    (old_reader,) = [t for t in client_threads() if t.name.endswith("-reader-1")]
    assert any(t.name.endswith("-reader-1.1") for t in client_threads())
    release.set()
    server.wait_for_acks(envelope_ids=[slow])
    old_reader.join(timeout(5))  # the relieved reader ends once its listener returned
    assert not old_reader.is_alive()
    assert client.is_connected() and len(server.connections) == 1  # the same connection throughout
    after = [server.push(server.make_envelope()) for _ in range(5)]
    server.wait_for_acks(envelope_ids=after)
    assert sorted(e for e, _ in runs) == sorted([slow, *behind, *after])  # each listener ran once
    assert server.duplicate_acks() == []
    assert client.stats().reader_takeovers == 1


def test_a_relieved_reader_ending_its_listener_does_not_hide_the_new_readers_slow_listener(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """Reader 1 runs a slow listener and is taken over; reader 1.1 later runs a slow listener too,
    and reader 1's listener returns while it does. Reader 1.1 must still be taken over: the
    connection keeps being read (its pongs too), nothing behind the second slow listener waits,
    and the connection is not replaced for "no pong" (the soak's "given up by the client").
    """
    client = make_client(handoff_after=0.2, ping_interval=0.3, ping_timeout=0.5, receive_timeout=10.0)
    release_first, release_second = threading.Event(), threading.Event()
    first_started, second_started = threading.Event(), threading.Event()
    ran_on: dict[str, str] = {}
    lock = threading.Lock()

    def listener(client: SocketModeClient, request: Any) -> None:
        role = request.payload.get("role")
        with lock:
            ran_on[request.envelope_id] = threading.current_thread().name
        if role == "first":
            first_started.set()
            release_first.wait(timeout(10))
        elif role == "second":
            # Let the first listener return now, before this reader is due a take-over
            # (handoff_after): reader 1 ends its inline run while reader 1.1 runs this one.
            (old,) = [t for t in client_threads() if t.name.endswith("-reader-1")]
            release_first.set()
            old.join(timeout(5))
            second_started.set()
            release_second.wait(timeout(10))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    (conn,) = server.connections
    try:
        first = server.push(server.make_envelope(payload={"role": "first"}))
        assert first_started.wait(timeout(5))
        # Reader 1.1 sends envelopes to the workers for a while after the take-over; push one at
        # a time until one runs on reader 1.1 itself again.
        end = time.monotonic() + timeout(5)
        while True:
            probe = server.push(server.make_envelope())
            server.wait_for_acks(envelope_ids=[probe])
            if ran_on[probe].endswith("-reader-1.1"):
                break
            assert time.monotonic() < end, "reader 1.1 never ran a listener itself"
        second = server.push(server.make_envelope(payload={"role": "second"}))
        assert second_started.wait(timeout(5))
        assert ran_on[second].endswith("-reader-1.1")
        server.wait_for_acks(envelope_ids=[first])
        behind = [server.push(server.make_envelope()) for _ in range(20)]
        server.wait_for_acks(envelope_ids=behind, timeout=timeout(3))  # while the second listener still blocks
        assert not release_second.is_set() and second in server.unacked()
        assert conn.is_open and server.connections == [conn]  # not replaced for "no pong"
    finally:
        release_first.set()
        release_second.set()
    server.wait_for_acks(envelope_ids=[second])
    stats = client.stats()
    assert stats.reader_takeovers == 2 and "no pong" not in stats.reconnects
    assert server.duplicate_acks() == []


def test_disconnect_from_a_listener_on_the_reader_returns_promptly(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    client = make_client(close_timeout=5.0)
    done = threading.Event()

    def listener(client: SocketModeClient, request: Any) -> None:
        client.send_socket_mode_response({"envelope_id": request.envelope_id})
        client.disconnect()  # the reader cannot read the server's close reply while it runs this
        done.set()

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    envelope_id = server.push(server.make_envelope())
    assert done.wait(2.0)  # well under close_timeout: it does not wait for its own reader
    server.wait_for_acks(envelope_ids=[envelope_id])
    (conn,) = server.all_connections  # it may be closed already
    assert conn.wait_closed(timeout(5))
    assert not client.is_connected()


class Scripted:
    """A request listener that does, on each run of an envelope, what its script says; records the runs."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = scripts  # envelope_id -> one action per run: "ack", "redeliver", "ack+redeliver", "silent"
        self.runs: dict[str, list[int]] = {}  # envelope_id -> retry_attempt of each run
        self.cond = threading.Condition()
        self.gate = threading.Event()  # "wait+redeliver" waits here
        self.waiting = threading.Event()

    def __call__(self, client: SocketModeClient, request: Any) -> None:
        eid = request.envelope_id
        with self.cond:
            runs = self.runs.setdefault(eid, [])
            action = self.scripts[eid][len(runs)]
            runs.append(int(request.retry_attempt or 0))
            self.cond.notify_all()
        if action == "wait+redeliver":
            self.waiting.set()
            assert self.gate.wait(timeout(5))
        if action.startswith("ack"):
            client.send_socket_mode_response({"envelope_id": eid})
        if action.endswith("redeliver"):
            raise Redeliver("the backend is down")

    def wait_runs(self, eid: str, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.runs.get(eid, [])) >= count, timeout(5)), (eid, self.runs)


def test_a_listener_that_raises_redeliver_is_run_again_on_the_redelivery_and_only_then(
    server: SocketModeServer, make_client: ClientFactory, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="slack_socket_mode")
    names = ("retry", "acked", "silent", "held")
    envelopes = {name: server.make_envelope("events_api", {"event_id": f"Ev-{name}"}) for name in names}
    ids = {name: e["envelope_id"] for name, e in envelopes.items()}
    listener = Scripted(
        {
            ids["retry"]: ["redeliver", "ack"],
            ids["acked"]: ["ack+redeliver"],  # an ack stands: never run again
            ids["silent"]: ["silent"],  # returned without acking or raising: today's rule, not run again
            ids["held"]: ["wait+redeliver", "ack"],
        }
    )
    client = make_client(inline_dispatch=False)  # dedupe on, the default
    client.socket_mode_request_listeners.append(listener)
    client.connect()
    asked = capture("Slack's redelivery runs its listeners again")  # logged once the ledger released it
    try:
        for name in ("retry", "acked", "silent"):
            server.push(envelopes[name])
            listener.wait_runs(ids[name], 1)
        assert asked.event.wait(timeout(5))  # "retry" was released (the line comes after the ledger's change)
        server.wait_for_acks(envelope_ids=[ids["acked"]], timeout=timeout(5))
        for name in ("retry", "acked", "silent"):
            server.push({**envelopes[name], "retry_attempt": 1, "retry_reason": "timeout"})
        server.wait_for_acks(envelope_ids=[ids["retry"]], timeout=timeout(5))
        marker = server.make_envelope()  # once it is acked, the reader has taken every delivery before it
        listener.scripts[marker["envelope_id"]] = ["ack"]
        server.push(marker)
        server.wait_for_acks(envelope_ids=[marker["envelope_id"]], timeout=timeout(5))
        assert listener.runs[ids["retry"]] == [0, 1]
        assert listener.runs[ids["acked"]] == [0] and listener.runs[ids["silent"]] == [0]
        assert [a.envelope_id for a in server.envelope(ids["retry"]).acks] == [ids["retry"]]
        assert server.envelope(ids["silent"]).acks == []

        # A redelivery that arrives while the listeners run is not dispatched a second time; once
        # they raise Redeliver, the next redelivery is.
        server.push(envelopes["held"])
        assert listener.waiting.wait(timeout(5))
        server.push({**envelopes["held"], "retry_attempt": 1, "retry_reason": "timeout"})
        marker = server.make_envelope()
        listener.scripts[marker["envelope_id"]] = ["ack"]
        server.push(marker)
        server.wait_for_acks(envelope_ids=[marker["envelope_id"]], timeout=timeout(5))
        listener.gate.set()
        deadline = time.monotonic() + timeout(5)
        while asked.count < 2:  # the log line comes after the ledger released it
            assert time.monotonic() < deadline, "the held envelope was never released"
            time.sleep(0.01)
        server.push({**envelopes["held"], "retry_attempt": 2, "retry_reason": "timeout"})
        server.wait_for_acks(envelope_ids=[ids["held"]], timeout=timeout(5))
        assert listener.runs[ids["held"]] == [0, 2]
    finally:
        release_logger(asked)
    assert client.stats().envelopes_acked >= 4
    assert client.stats().redeliveries_asked == 2  # "retry" and "held"; not "acked"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], "no error, no traceback"
    asked_by = f"{listener!r}: the backend is down"
    for name in ("retry", "held"):
        assert (
            "WARNING",
            f"envelope {ids[name]} (events_api, retry_attempt 0) not acked, its listener asked for a redelivery "
            f"({asked_by}); Slack's redelivery runs its listeners again",
        ) in logged(caplog, ids[name])
    assert (
        "INFO",
        f"envelope {ids['acked']} (events_api): {asked_by} asked for a redelivery, but the envelope was acked; "
        "it is not run again",
    ) in logged(caplog, ids["acked"])


# ---- the queue's accounting, close() and the pool (mutation testing of dispatch.py found these unchecked) ----


class Gated:
    """A request listener that records each run, says it started, waits for ``release``, then acks."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs: list[str] = []

    def __call__(self, client: SocketModeClient, request: Any) -> None:
        self.runs.append(request.envelope_id)
        self.started.set()
        self.release.wait(timeout(10))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})


def wait_until(predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    """Poll ``predicate`` (client state no event announces) until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout(seconds)
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.005)


def test_oldest_wait_is_the_age_of_the_oldest_envelope_no_worker_has_started(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    gated = Gated()
    client = make_client(concurrency=1, inline_dispatch=False)
    client.socket_mode_request_listeners.append(gated)
    client.connect()
    try:
        running = server.push(server.make_envelope())
        assert gated.started.wait(timeout(5))
        assert client.stats().oldest_wait == 0.0  # the running one waits for nothing
        pushed_at = time.monotonic()
        waiting = server.push(server.make_envelope())
        wait_until(lambda: client.queue_depth == 1, "the second envelope queued")
        time.sleep(0.01)  # let a little time pass: the age must grow from 0
        oldest = client.stats().oldest_wait
        assert 0.0 < oldest <= time.monotonic() - pushed_at  # its own age: not 0, not more than since its push
    finally:
        gated.release.set()
    server.wait_for_acks(envelope_ids=[running, waiting])
    assert client.stats().oldest_wait == 0.0 and client.queue_depth == 0


def test_close_cancels_envelopes_no_worker_started_and_does_not_wait_for_a_stuck_one(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """close(timeout) returns at its timeout although a listener is stuck; the envelopes still
    waiting for a worker are never run (Slack redelivers them), neither then nor once it returns."""
    stuck_first = Gated()
    client = make_client(concurrency=1, inline_dispatch=False)
    client.socket_mode_request_listeners.append(stuck_first)
    client.connect()
    first = server.push(server.make_envelope())
    assert stuck_first.started.wait(timeout(5))
    queued = [server.push(server.make_envelope()) for _ in range(2)]
    wait_until(lambda: client.queue_depth == 2, "two envelopes queued behind the stuck one")
    (worker,) = [t for t in client_threads() if "-worker" in t.name]
    closing = threading.Thread(target=client.close, kwargs={"timeout": 0.2})
    closing.start()
    closing.join(timeout(5))
    assert not closing.is_alive()  # it did not wait for the stuck worker
    stuck_first.release.set()
    worker.join(timeout(5))  # the stuck listener returns; the worker must not go on to the queued ones
    assert not worker.is_alive()
    assert stuck_first.runs == [first]
    assert set(queued) <= set(server.unacked())


def test_close_returns_as_soon_as_the_running_listeners_end_not_at_its_timeout(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    gated = Gated()
    client = make_client()
    client.socket_mode_request_listeners.append(gated)
    client.connect()
    envelope_id = server.push(server.make_envelope())
    assert gated.started.wait(timeout(5))
    waiting = capture("close(): no new envelopes; waiting up to 60 s for 1 running or queued")
    try:
        closing = threading.Thread(target=client.close, kwargs={"timeout": 60.0})
        closing.start()
        assert waiting.event.wait(timeout(5))
    finally:
        release_logger(waiting)
    assert waiting.messages == ["close(): no new envelopes; waiting up to 60 s for 1 running or queued"]
    gated.release.set()
    closing.join(timeout(5))  # woken when the listener ends, not 60 s later
    assert not closing.is_alive()
    server.wait_for_acks(envelope_ids=[envelope_id])
    with pytest.raises(SocketModeError) as raised:
        client.enqueue_message(json.dumps(server.make_envelope()))
    assert str(raised.value) == "the client is closed; create a new one"


def test_close_from_a_listener_waits_for_the_other_running_listeners(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """close() called by a listener waits for the others (not for itself), so their acks go out."""
    other_started = threading.Event()
    closing_waits = capture("close(): no new envelopes; waiting up to")
    closed = threading.Event()

    def listener(client: SocketModeClient, request: Any) -> None:
        if request.payload.get("role") == "closer":
            client.send_socket_mode_response({"envelope_id": request.envelope_id})
            assert other_started.wait(timeout(5))
            client.close(timeout=timeout(30))
            closed.set()
        else:
            other_started.set()
            assert closing_waits.event.wait(timeout(5))
            time.sleep(0.2)  # close() has begun: it must wait for this listener and its ack
            client.send_socket_mode_response({"envelope_id": request.envelope_id})

    try:
        client = make_client(inline_dispatch=False, concurrency=2)
        client.socket_mode_request_listeners.append(listener)
        client.connect()
        (conn,) = server.wait_for_connections(1)
        ids = [server.push(server.make_envelope(payload={"role": role})) for role in ("other", "closer")]
        assert closed.wait(timeout(10))
    finally:
        release_logger(closing_waits)
    assert conn.wait_closed(timeout(5))
    assert_acked_on_first_delivery(server, ids)  # the other's ack too, on the connection, before it closed


def logged(caplog: Any, envelope_id: str) -> list[tuple[str, str]]:
    """(level, message) of each record of ``slack_socket_mode`` that names ``envelope_id``, connection ids as N."""
    return [
        (r.levelname, re.sub(r"connection \d+:", "connection N:", r.getMessage()))
        for r in caplog.records
        if r.name == "slack_socket_mode" and envelope_id in r.getMessage()
    ]


def test_each_kind_of_redelivery_is_acked_or_not_and_logged_as_documented(
    server: SocketModeServer, make_client: ClientFactory, caplog: Any
) -> None:
    """docs/topics/guarantees.md: after its ack on another connection, a redelivery is acked again
    there; on the connection the ack went out on, the two crossed; while the listeners run, or
    after they returned without an ack, it is not dispatched again."""
    caplog.set_level(logging.DEBUG, logger="slack_socket_mode")
    gate = threading.Event()
    running = threading.Event()

    def listener(client: SocketModeClient, request: Any) -> None:
        role = request.payload.get("role")
        if role == "slow":
            running.set()
            gate.wait(timeout(5))
        if role != "silent":
            client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client = make_client(connections=2, handoff_after=0.05)  # listeners run on the reader, one at a time
    client.socket_mode_request_listeners.append(listener)
    client.connect()
    old, new = server.wait_for_connections(2)
    acked, slow, silent = (server.make_envelope(payload={"role": role}) for role in ("acked", "slow", "silent"))

    def read_by(conn: Any) -> None:
        """Once a marker pushed after them is acked, the client has read what was pushed on ``conn``."""
        server.wait_for_acks(envelope_ids=[server.push(server.make_envelope(), connection=conn)])

    def again(envelope: dict[str, Any], attempt: int) -> dict[str, Any]:
        return {**envelope, "retry_attempt": attempt, "retry_reason": "timeout"}

    server.push(acked, connection=new)
    server.wait_for_acks(envelope_ids=[acked["envelope_id"]])
    before = len(server.acks)
    server.push(again(acked, 1), connection=old)  # after its ack, on another connection: acked again there
    server.wait_for_acks(count=before + 1)
    server.push(again(acked, 2), connection=old)  # on the connection that ack went out on: they crossed
    read_by(old)
    assert [a.connection_id for a in server.envelope(acked["envelope_id"]).acks] == [new.id, old.id]

    server.push(silent, connection=old)
    read_by(old)  # the silent listener has returned by now: it ran on the reader, before the marker
    server.push(again(silent, 1), connection=old)
    read_by(old)

    server.push(slow, connection=old)
    assert running.wait(timeout(5))
    server.push(again(slow, 1), connection=old)
    read_by(old)  # read by a new reader (the first is taken over) while the slow listener runs
    gate.set()
    server.wait_for_acks(envelope_ids=[slow["envelope_id"]])
    assert len(server.envelope(slow["envelope_id"]).acks) == 1 and server.envelope(silent["envelope_id"]).acks == []

    eid = acked["envelope_id"]
    assert logged(caplog, eid) == [
        ("INFO", f"connection N: envelope {eid} redelivered (retry_attempt 1) after its ack; acking again"),
        (
            "DEBUG",
            f"connection N: envelope {eid} redelivered (retry_attempt 2) as its ack went out on this connection; "
            "that ack settles it",
        ),
    ]
    eid = slow["envelope_id"]
    assert logged(caplog, eid) == [
        (
            "INFO",
            f"connection N: envelope {eid} redelivered (retry_attempt 1) while its listeners run; "
            "not dispatching it again",
        )
    ]
    eid = silent["envelope_id"]
    assert logged(caplog, eid) == [
        (
            "WARNING",
            f"connection N: envelope {eid} redelivered, but its listeners already ran without acking it; "
            "not dispatching it again",
        )
    ]


def test_a_slow_listener_on_any_connections_reader_is_taken_over(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """With two connections, the watch looks at each reader, whichever runs the slow listener."""
    client = make_client(connections=2, handoff_after=0.05)
    release = threading.Event()
    started = threading.Event()
    ran_on: dict[str, str] = {}

    def listener(client: SocketModeClient, request: Any) -> None:
        ran_on[request.envelope_id] = threading.current_thread().name
        if request.payload.get("slow"):
            started.set()
            release.wait(timeout(10))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    taken = capture("listeners have run on the reader for ")
    try:
        for n, conn in enumerate(server.wait_for_connections(2)):
            started.clear()
            release.clear()
            # After a take-over the pool takes envelopes for a while (_INLINE_PAUSE): push one at a
            # time until one runs on a reader again.
            end = time.monotonic() + timeout(5)
            while True:
                probe = server.push(server.make_envelope(), connection=conn)
                server.wait_for_acks(envelope_ids=[probe])
                if "-reader-" in ran_on[probe]:
                    break
                assert time.monotonic() < end, "no listener ran on a reader again"
            pushed_at = time.monotonic()
            slow = server.push(server.make_envelope(payload={"slow": True}), connection=conn)
            assert started.wait(timeout(5))
            behind = [server.push(server.make_envelope(), connection=conn) for _ in range(5)]
            server.wait_for_acks(envelope_ids=behind)  # read by a new reader while the slow one blocks
            assert slow in server.unacked()
            elapsed = time.monotonic() - pushed_at
            release.set()
            server.wait_for_acks(envelope_ids=[slow])
            assert taken.count == n + 1
            ran = float(
                re.fullmatch(r"connection N: listeners have run on the reader for (\S+) s; .*", taken.messages[n])[1]
            )
            assert 0.05 <= ran <= elapsed  # how long that listener had run when it was taken over
    finally:
        release.set()
        release_logger(taken)
    assert client.stats().reader_takeovers == 2


def test_idle_worker_threads_are_kept_until_worker_idle_timeout(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    client = make_client(inline_dispatch=False, concurrency=1, worker_idle_timeout=timeout(30))
    client.socket_mode_request_listeners.append(
        lambda client, request: client.send_socket_mode_response({"envelope_id": request.envelope_id})
    )
    client.connect()
    server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())])  # the queue empties: the pool idles
    (worker,) = [t for t in client_threads() if "-worker" in t.name]  # no more threads than concurrency
    worker.join(0.5)  # idle, but kept for the next envelopes until worker_idle_timeout
    assert worker.is_alive()
    server.wait_for_acks(envelope_ids=[server.push(server.make_envelope()) for _ in range(4)])
    assert [t for t in client_threads() if "-worker" in t.name] == [worker]  # the same thread


def test_a_message_listener_may_ask_for_a_redelivery_too_and_the_log_names_it_and_its_reason(
    server: SocketModeServer, make_client: ClientFactory, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="slack_socket_mode")
    runs: dict[str, int] = {}
    reasons = {"long": "r" * 300, "none": ""}

    def message_listener(client: SocketModeClient, message: dict[str, Any], raw: Any) -> None:
        eid = message["envelope_id"]
        runs[eid] = runs.get(eid, 0) + 1
        if runs[eid] == 1:
            raise Redeliver(reasons[message["payload"]["reason"]])
        client.send_socket_mode_response({"envelope_id": eid})

    client = make_client()
    client.message_listeners.append(message_listener)
    client.connect()
    envelopes = {name: server.make_envelope(payload={"reason": name}) for name in reasons}
    asked = capture("Slack's redelivery runs its listeners again")
    try:
        for envelope in envelopes.values():
            server.push(envelope)
        deadline = time.monotonic() + timeout(5)
        while asked.count < 2:  # the line comes once the ledger released it
            assert time.monotonic() < deadline, "not released for a redelivery"
            time.sleep(0.01)
    finally:
        release_logger(asked)
    ids = [e["envelope_id"] for e in envelopes.values()]
    for envelope in envelopes.values():
        server.push({**envelope, "retry_attempt": 1, "retry_reason": "timeout"})
    server.wait_for_acks(envelope_ids=ids)
    assert runs == {eid: 2 for eid in ids}
    for (name, reason), eid in zip(reasons.items(), ids):
        described = f"{message_listener!r}: {reason[:200] or 'no reason given'}"  # bounded, and never empty
        assert (
            "WARNING",
            f"envelope {eid} (events_api, retry_attempt 0) not acked, its listener asked for a redelivery "
            f"({described}); Slack's redelivery runs its listeners again",
        ) in logged(caplog, eid), name


def test_inline_runs_and_workers_together_never_run_more_than_concurrency_listeners(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """A reader taken over keeps running its listener; the pool's runs wait until one of the two ends."""
    client = make_client(concurrency=2, handoff_after=0.05)
    gate = threading.Event()
    lock = threading.Lock()
    running: list[str] = []
    most = [0]
    second, third = threading.Event(), threading.Event()

    def listener(client: SocketModeClient, request: Any) -> None:
        with lock:
            running.append(threading.current_thread().name)
            most[0] = max(most[0], len(running))
            (second if len(running) == 2 else third if len(running) >= 3 else threading.Event()).set()
        gate.wait(timeout(10))
        with lock:
            running.remove(threading.current_thread().name)
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    first = server.push(server.make_envelope())  # runs inline on the reader, which is then taken over
    ids = [first] + [server.push(server.make_envelope()) for _ in range(4)]
    assert second.wait(timeout(5))
    assert any("-reader-" in name for name in running)  # one of the two is the reader's own run
    assert not third.wait(0.5), f"{most[0]} listeners ran at once with concurrency=2: {running}"
    gate.set()
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
    assert most[0] == 2


_LEDGER_ENTRIES = ("receive", "ack", "written", "handled", "redeliver", "release", "ack_of", "sent_on")


@pytest.mark.parametrize("inline_dispatch", [True, False], ids=["inline", "worker"])
def test_one_envelopes_common_path_enters_the_ledger_twice(
    server: SocketModeServer, make_client: ClientFactory, inline_dispatch: bool
) -> None:
    """Arrival (receive) and its listener's ack (ack): no other call into the ledger for that envelope.

    Counted with a profile hook on every thread of the client (started after it is set): each call
    of one of the ledger's methods that take its lock, for the envelope's id, or for its connection.
    """
    from slack_socket_mode.ledger import EnvelopeLedger

    codes = {getattr(EnvelopeLedger, name).__code__: name for name in _LEDGER_ENTRIES}
    watched: dict[str, str] = {}  # the envelope id counted, once it is pushed
    calls: list[str] = []
    second_started = threading.Event()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and watched:
            name = codes.get(frame.f_code)
            if name is not None and frame.f_locals.get("envelope_id", watched["id"]) == watched["id"]:
                calls.append(name)

    def listener(client: SocketModeClient, request: Any) -> None:
        client.send_socket_mode_response({"envelope_id": request.envelope_id})
        if request.envelope_id == watched.get("next"):
            second_started.set()

    threading.setprofile(profile)
    try:
        client = make_client(inline_dispatch=inline_dispatch, concurrency=1)
        client.socket_mode_request_listeners.append(listener)
        client.connect()
        server.wait_for_connections(1)
        first, second = server.make_envelope(), server.make_envelope()
        watched.update(id=first["envelope_id"], next=second["envelope_id"])
        server.push(first)
        server.wait_for_acks(envelope_ids=[first["envelope_id"]])
        server.push(second)  # concurrency 1: it starts once the first has been settled
        assert second_started.wait(timeout(5))
        watched.clear()
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    assert calls == ["receive", "ack"], calls


def test_a_reader_stopped_at_max_queue_reads_again_once_a_quarter_of_it_is_free(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """Backpressure with hysteresis: one wake-up of the reader per quarter of max_queue, not per envelope."""
    permits = threading.Semaphore(0)  # each lets one listener return
    gated = _gated(permits)
    read: list[str] = []  # envelopes the reader took off the socket (on_message runs before dispatch)
    try:
        client = make_client(
            concurrency=1,
            max_queue=8,  # it reads again at 6 queued
            inline_dispatch=False,
            on_message_listeners=[lambda text: read.append(text) if '"envelope_id"' in text else None],
        )
        client.socket_mode_request_listeners.append(gated)
        client.connect()
        ids = [server.push(server.make_envelope()) for _ in range(20)]
        wait_until(lambda: len(read) == 9, "8 envelopes queued and the 9th read")  # the 9th waits for room
        permits.release()  # 7 queued: not yet
        assert not _waits_for(lambda: len(read) > 9, 0.5), "the reader read again at 7 of 8 queued"
        permits.release()  # 6 queued: the 9th goes in, the 10th too, and the 11th waits
        wait_until(lambda: len(read) == 11, "the reader reading again at 6 of 8 queued")
        permits.release(len(ids))
        server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
    finally:
        permits.release(20)
    assert server.unacked() == [] and server.duplicate_acks() == []


def _waits_for(condition: Callable[[], bool], seconds: float) -> bool:
    """True as soon as ``condition()`` holds, False if it did not within ``seconds`` (a negative check's bound)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("where", ["on_message_listener", "slow_listener_with_a_late_takeover"])
def test_an_ack_held_for_a_burst_never_waits_for_the_applications_code_on_the_reader(
    server: SocketModeServer, make_client: ClientFactory, where: str
) -> None:
    """A and B read together; A's ack is held for B's: it must not wait while the app's code runs for B.

    The reader's own take-over bounds a listener's run (handoff_after, 10 ms by default); an
    ``on_message_listener`` has no such bound, nor has a listener where handoff_after is long: there
    the held acks are written first, or not held at all.
    """
    slow = 0.6
    a, b = server.make_envelope(), server.make_envelope()
    sent: dict[str, float] = {}

    def listener(client: SocketModeClient, request: Any) -> None:
        if where != "on_message_listener" and request.envelope_id == b["envelope_id"]:
            time.sleep(slow)
        sent[request.envelope_id] = time.monotonic()
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    def on_message(text: str) -> None:
        if b["envelope_id"] in text:
            time.sleep(slow)

    if where == "on_message_listener":
        client = make_client(on_message_listeners=[on_message])
    else:
        client = make_client(handoff_after=0.5)  # above CORK_MAX_HANDOFF: B's run is taken over too late
    client.socket_mode_request_listeners.append(listener)
    client.connect()
    server.push_many([a, b])  # one write: B is read ahead while A's listener acks
    acks = server.wait_for_acks(envelope_ids=[a["envelope_id"], b["envelope_id"]], timeout=timeout(5))
    held = acks[0].received_at - sent[a["envelope_id"]]
    assert held < slow / 2, f"A's ack reached the server {held:.3f} s after its listener sent it"
