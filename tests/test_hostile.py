"""Hostile and broken peers (issue 12): every wait bounded, every rule enforced at every hop.

Each test puts the client against a peer that misbehaves one way: the local server where it can
(a peer that stops reading is :meth:`SocketModeServer.silence`), else a raw socket peer of our
own on loopback (:class:`RawPeer`): one that trickles its answer a byte at a time, never
answers, or redirects the handshake (``tests/conftest.py``). Real sockets; no mocks; waits are
bounded and scaled.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from typing import Any, Callable

import pytest
from benchmarks.peers import (
    Handler,
    RawPeer,
    read_request,
    redirecting,
    trickling,
    trickling_proxy,
    trickling_tls,
    trickling_web_api,
    web_api,
)
from slack_sdk.http_retry import ConnectionErrorRetryHandler, FixedValueRetryIntervalCalculator
from slack_sdk.web import WebClient

from slack_socket_mode import Backoff, ConnectionFailedError, SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import (
    APP_TOKEN,
    ClientFactory,
    Recorder,
    Watcher,
    assert_acked_on_first_delivery,
    client_threads,
    timeout,
)
from .netem import Relay

FAST = Backoff(base=0.05, cap=0.2, healthy_after=60.0)


def closes_within(client: SocketModeClient, close_timeout: float, seconds: float) -> bool:
    """Call ``client.close(close_timeout)`` on a thread; True if it returned within ``seconds``."""
    closer = threading.Thread(target=client.close, args=(close_timeout,), name="test-close", daemon=True)
    closer.start()
    closer.join(seconds)
    return not closer.is_alive()


# ---- 1. a peer that stops reading -----------------------------------------------------------------


def test_a_peer_that_stops_reading_is_replaced_and_close_returns(make_client: ClientFactory) -> None:
    """Large acks fill the socket while the peer reads nothing: the writer holds the send lock.

    On main the health thread blocked on that lock in ``ping()``: no liveness check ran, the
    connection was never replaced, and ``close()`` never returned.
    """
    with SocketModeServer(redelivery_delay=None) as server:
        big = {"text": "x" * 1_000_000}
        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            reconnect_policy=FAST,
            ping_interval=0.2,
            receive_timeout=60.0,  # the replacement must come from the write bound, not from silence
            write_timeout=1.0,
        )
        started = threading.Event()

        def acks_a_lot(client: SocketModeClient, request: Any) -> None:
            started.set()
            client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": big})

        client.socket_mode_request_listeners.append(acks_a_lot)
        watcher = Watcher(client)
        client.connect()
        (first,) = server.connections
        server.silence(first)  # it reads nothing more; what it sent before still arrives
        for _ in range(64):
            client.enqueue_message(json.dumps(server.make_envelope("view_submission_like", {"view": {}})))
        assert started.wait(timeout(5))
        server.wait_for_new_connection(1, timeout=timeout(8))
        watcher.wait_connected(seconds=8)
        reconnects = client.stats().reconnects
        assert reconnects.get("write timeout", 0) + reconnects.get("aborted", 0) >= 1, reconnects
        assert closes_within(client, 2.0, timeout(4)), "close() did not return against a peer that stopped reading"
        assert [t.name for t in client_threads() if t.name.startswith(client._prefix)] == []


def test_one_write_stuck_on_a_peer_that_stops_reading_is_aborted_by_the_health_thread(
    make_client: ClientFactory,
) -> None:
    """One ack, and no other writer: only the health thread's watch on the write can see it stuck.

    (With many acks, the next one's wait for the send lock gives the connection up too; here there
    is none, pings never wait for the lock, and silence is not reached within the test.)
    """
    with SocketModeServer(redelivery_delay=None) as server:
        huge = {"text": "x" * 32_000_000}  # more than loopback's socket buffers hold
        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            reconnect_policy=FAST,
            concurrency=1,
            ping_interval=0.2,
            receive_timeout=60.0,
            write_timeout=0.5,
        )
        client.socket_mode_request_listeners.append(
            lambda client, request: client.send_socket_mode_response(
                {"envelope_id": request.envelope_id, "payload": huge}
            )
        )
        client.connect()
        (first,) = server.connections
        server.silence(first)
        client.enqueue_message(json.dumps(server.make_envelope("view_submission_like", {"view": {}})))
        server.wait_for_new_connection(1, timeout=timeout(8))
        assert client.stats().reconnects.get("write timeout") == 1, client.stats().reconnects


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


def test_close_gives_up_a_write_that_cannot_progress_and_acks_the_rest_on_the_healthy_connection(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """One connection's peer stopped reading while a listener writes an 8 MB ack to it; the other is healthy.

    On main close() waited for that listener, blocked in a write that could not progress, for
    3.5 s of close(5.0) (all that close_timeout leaves the listeners) and then aborted it anyway.
    Now the connection is given up once its write has made no progress for 0.25 s: close()
    returns within 1 s, the listeners in flight on the healthy connection ack there, and the
    stuck ack goes out on the healthy connection too.
    """
    huge = {"text": "x" * 8_000_000}  # more than loopback's socket buffers hold while the peer reads nothing
    huge_started, write_huge = threading.Event(), threading.Event()
    in_flight = threading.Semaphore(0)
    finish = threading.Event()

    def listener(client: SocketModeClient, request: Any) -> None:
        if request.payload.get("huge"):
            huge_started.set()
            assert write_huge.wait(timeout(5))
            client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": huge})
            return
        in_flight.release()
        assert finish.wait(timeout(5))
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client = make_client(connections=2, receive_timeout=60.0)  # write_timeout 5 s: the health thread stays out
    client.socket_mode_request_listeners.append(listener)
    client.connect()
    stopped, healthy = server.wait_for_connections(2, timeout=timeout(5))
    stuck_id = server.push(server.make_envelope("interactive", {"huge": True}), connection=stopped)
    assert huge_started.wait(timeout(5)), "the listener on the connection to stop did not start"
    ids = [server.push(server.make_envelope("interactive", {}), connection=healthy) for _ in range(3)]
    for _ in ids:
        assert in_flight.acquire(timeout=timeout(5)), "the listeners on the healthy connection did not start"
    server.silence(stopped)  # it reads nothing more
    write_huge.set()
    conns = list(client._session.connections.values())  # private: the test waits until the write is stuck
    paced = threading.Event()  # never set: its wait paces the check
    for _ in range(int(timeout(10) / 0.05)):
        writing_since = [deadline - 5.0 for deadline in (conn.write_deadline() for conn in conns) if deadline]
        if writing_since and time.monotonic() - writing_since[0] > 0.5:
            break
        paced.wait(0.05)
    else:
        pytest.fail("the 8 MB ack did not get stuck")

    closer = threading.Thread(target=client.close, args=(5.0,), name="test-close", daemon=True)
    with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
        closer.start()
        for _ in range(int(timeout(5) / 0.05)):  # the listeners in flight finish once close() has begun
            if client.closed:
                break
            paced.wait(0.05)
        finish.set()
        closer.join(timeout(1.0))
        assert not closer.is_alive(), "close() waited for a write that could not progress"

    server.wait_for_acks(envelope_ids=[*ids, stuck_id], timeout=timeout(5))  # 8 MB take the server a while to read
    assert_acked_on_first_delivery(server, ids)  # on the healthy connection, once
    (ack,) = server.envelope(stuck_id).acks
    assert ack.connection_id == healthy.id  # the stuck ack went out on the healthy connection
    assert server.duplicate_acks() == []
    given_up = [r.getMessage() for r in caplog.records if "made no progress" in r.getMessage()]
    assert len(given_up) == 1, given_up
    assert given_up[0].startswith(f"connection {stopped.id}: aborting (close(): a write made no progress in 0.")
    problems = [r.getMessage() for r in caplog.records if "made no progress" not in r.getMessage()]
    assert problems == []


def test_close_waits_for_a_write_that_progresses_to_a_peer_that_reads_slowly(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The other side of the test above: a peer that reads, at 4 MB/s, is not one that stopped reading.

    An 8 MB ack blocks its write for about a second (more than the socket buffers hold), but the
    peer acknowledges some of it all along: close() waits for it within its budget, gives nothing
    up, and the ack arrives on the connection that delivered the envelope. A rule of "a write
    blocked for 0.25 s during close() is given up" would abort it, and the ack would have nowhere
    to go.
    """
    relay = Relay("127.0.0.1", delay=0.0, loss=0.0, rate=4_000_000)
    with SocketModeServer(redelivery_delay=None, ws_url_address=relay.address) as server:
        relay.start(("127.0.0.1", server.ws_port))
        client = make_client(web_client=WebClient(base_url=server.api_url), receive_timeout=60.0)
        big = {"text": "x" * 8_000_000}
        acking = threading.Event()

        def listener(client: SocketModeClient, request: Any) -> None:
            acking.set()
            client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": big})

        client.socket_mode_request_listeners.append(listener)
        try:
            client.connect()
            envelope_id = server.push(server.make_envelope("interactive", {}))
            assert acking.wait(timeout(5))
            with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
                client.close(5.0)
            server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(10))
        finally:
            relay.close()
    assert_acked_on_first_delivery(server, [envelope_id])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# ---- 2. one deadline for the whole open attempt ------------------------------------------------


def test_a_handshake_that_trickles_is_cut_off_at_the_deadline(
    peers: Callable[[Handler], RawPeer], make_client: ClientFactory
) -> None:
    """The upgrade response comes one byte every 0.2 s: each read is quick, the whole never ends."""

    ws = peers(trickling(0.2))
    api = peers(web_api(ws.url()))
    errors: list[Exception] = []
    client = make_client(
        web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/"),
        connect_timeout=1.0,
        reconnect_policy=FAST,
        on_error_listeners=[errors.append],
    )
    waiter = threading.Event()
    client.on_error_listeners.append(lambda e: waiter.set())
    connecting = threading.Thread(target=lambda: _connect_quietly(client, 30.0), name="test-connect", daemon=True)
    connecting.start()
    assert waiter.wait(timeout(4)), "the trickling handshake was not cut off"
    assert isinstance(errors[0], ConnectionFailedError) and errors[0].error == "open_aborted"
    assert closes_within(client, 1.0, timeout(3))
    connecting.join(timeout(3))
    assert [t.name for t in client_threads() if t.name.startswith(client._prefix)] == []


def test_a_web_api_that_never_answers_costs_connect_timeout_not_30_s(
    peers: Callable[[Handler], RawPeer],
) -> None:
    def mute(sock: socket.socket, stopping: threading.Event) -> None:
        read_request(sock)
        stopping.wait()

    api = peers(mute)
    errors: list[Exception] = []
    waiter = threading.Event()
    client = SocketModeClient(
        APP_TOKEN,
        base_url=f"http://127.0.0.1:{api.port}/api/",
        connect_timeout=1.0,
        reconnect_policy=FAST,
        on_error_listeners=[errors.append, lambda e: waiter.set()],
    )
    try:
        connecting = threading.Thread(target=lambda: _connect_quietly(client, 30.0), name="test-connect", daemon=True)
        connecting.start()
        assert waiter.wait(timeout(4)), "no error within 4 s from a Web API that never answers"
        assert isinstance(errors[0], ConnectionFailedError)
    finally:
        assert closes_within(client, 2.0, timeout(4))


def _assert_cut_off_at_the_deadline(client: SocketModeClient, what: str) -> float:
    """Connect ``client`` (``connect_timeout`` 1 s) on a thread: its first open attempt must fail, aborted.

    Then ``close()`` must return and leave no thread of the client's. Returns the seconds the
    first attempt took to fail (for the report; never asserted on).
    """
    errors: list[Exception] = []
    failed = threading.Event()
    client.on_error_listeners.extend([errors.append, lambda e: failed.set()])
    started = time.monotonic()
    connecting = threading.Thread(target=lambda: _connect_quietly(client, 30.0), name="test-connect", daemon=True)
    connecting.start()
    assert failed.wait(timeout(4)), f"{what} was not cut off at the open attempt's deadline"
    took = time.monotonic() - started
    assert isinstance(errors[0], ConnectionFailedError) and errors[0].error == "open_aborted", errors[0]
    assert closes_within(client, 1.0, timeout(3))
    connecting.join(timeout(3))
    assert [t.name for t in client_threads() if t.name.startswith(client._prefix)] == []
    return took


def test_a_web_api_that_trickles_its_answer_is_cut_off_at_the_deadline(
    peers: Callable[[Handler], RawPeer], make_client: ClientFactory
) -> None:
    """``apps.connections.open`` answers one byte every 2 s: each read is in time for the WebClient (30 s).

    On main the session thread stayed in slack_sdk's urllib call, with no handle to abort it.
    """
    api = peers(trickling_web_api("ws://127.0.0.1:9/link/", 2.0))
    client = make_client(
        web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/"),  # its own timeout: 30 s a read
        connect_timeout=1.0,
        reconnect_policy=FAST,
    )
    took = _assert_cut_off_at_the_deadline(client, "a Web API that trickles")
    logging.getLogger(__name__).info("web api trickle: failed after %.2f s", took)


def test_close_cuts_off_a_web_api_call_under_way_and_its_retries(
    peers: Callable[[Handler], RawPeer], make_client: ClientFactory
) -> None:
    """``close()`` while ``apps.connections.open`` trickles, with a retry handler that sleeps 5 s before retrying.

    The call's socket is shut down at once, and slack_sdk's retry handlers decline for an
    aborted attempt: none sleeps, so the session thread ends within ``close()``'s timeout.
    """
    asked = threading.Event()
    trickles = trickling_web_api("ws://127.0.0.1:9/link/", 2.0)

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        asked.set()
        trickles(sock, stopping)

    api = peers(handler)
    retries = ConnectionErrorRetryHandler(interval_calculator=FixedValueRetryIntervalCalculator(5.0))
    client = make_client(
        web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/", retry_handlers=[retries]),
        connect_timeout=30.0,
        reconnect_policy=FAST,
    )
    connecting = threading.Thread(target=lambda: _connect_quietly(client, 60.0), name="test-connect", daemon=True)
    connecting.start()
    assert asked.wait(timeout(4)), "apps.connections.open was not called"
    assert closes_within(client, 1.0, timeout(3))
    connecting.join(timeout(3))
    assert [t.name for t in client_threads() if t.name.startswith(client._prefix)] == []


def test_a_tls_handshake_that_trickles_is_cut_off_at_the_deadline(
    peers: Callable[[Handler], RawPeer], make_client: ClientFactory
) -> None:
    """The TLS server's first record comes a byte every 0.2 s; websocket-client holds the socket until TLS is done.

    (CPython's handshake timeout spans the whole handshake, so main already failed it at the
    deadline; ``close()`` could not reach it: see the next test.)
    """
    tls = peers(trickling_tls(0.2))
    api = peers(web_api(tls.url("wss")))
    client = make_client(
        web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/"), connect_timeout=1.0, reconnect_policy=FAST
    )
    took = _assert_cut_off_at_the_deadline(client, "a TLS handshake that trickles")
    logging.getLogger(__name__).info("tls trickle: failed after %.2f s", took)
    assert tls.accepted >= 1


def test_close_cuts_off_a_tls_handshake_under_way(
    peers: Callable[[Handler], RawPeer], make_client: ClientFactory
) -> None:
    """``close()`` during a trickling TLS handshake (``connect_timeout`` 30 s) returns at once, no thread left.

    On main the abort could not reach the socket (websocket-client hands it over after TLS):
    the session thread stayed until the handshake's own timeout.
    """
    hello = threading.Event()
    trickles = trickling_tls(0.2)

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        hello.set()
        trickles(sock, stopping)

    tls = peers(handler)
    api = peers(web_api(tls.url("wss")))
    client = make_client(
        web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/"), connect_timeout=30.0, reconnect_policy=FAST
    )
    connecting = threading.Thread(target=lambda: _connect_quietly(client, 60.0), name="test-connect", daemon=True)
    connecting.start()
    assert hello.wait(timeout(4)), "the TLS handshake did not start"
    assert closes_within(client, 1.0, timeout(3))
    connecting.join(timeout(3))
    assert [t.name for t in client_threads() if t.name.startswith(client._prefix)] == []


@pytest.mark.parametrize("proxy_headers", [None, {"X-Trace": "1"}], ids=["websocket-client", "http.client tunnel"])
def test_a_proxy_that_trickles_its_connect_answer_is_cut_off_at_the_deadline(
    peers: Callable[[Handler], RawPeer], make_client: ClientFactory, proxy_headers: dict[str, str] | None
) -> None:
    """The proxy answers ``CONNECT`` a byte every 0.2 s (with ``proxy_headers`` the tunnel is http.client's)."""
    proxy = peers(trickling_proxy(0.2))
    api = peers(web_api("ws://127.0.0.2:9/link/"))  # 127.0.0.2: not a host websocket-client reaches directly
    client = make_client(
        web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/"),
        connect_timeout=1.0,
        reconnect_policy=FAST,
        proxy=f"http://127.0.0.1:{proxy.port}",
        **({"proxy_headers": proxy_headers} if proxy_headers else {}),
    )
    took = _assert_cut_off_at_the_deadline(client, "a proxy whose CONNECT answer trickles")
    logging.getLogger(__name__).info("proxy trickle: failed after %.2f s", took)
    assert proxy.accepted >= 1


def _connect_quietly(client: SocketModeClient, seconds: float) -> None:
    try:
        client.connect(timeout=seconds)
    except Exception:
        pass


# ---- 3. redirects ---------------------------------------------------------------------------------


def test_a_redirect_in_the_handshake_is_refused_and_named(
    peers: Callable[[Handler], RawPeer], make_client: ClientFactory, server: SocketModeServer
) -> None:
    """A loopback ``ws://`` URL that answers 301 to a URL the client must not reach on its own."""
    target = server.new_connection_url().replace("127.0.0.1", "localhost")  # stands for another host

    ws = peers(redirecting(target))
    api = peers(web_api(ws.url()))
    errors: list[Exception] = []
    waiter = threading.Event()
    client = make_client(
        web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/"),
        reconnect_policy=FAST,
        on_error_listeners=[errors.append, lambda e: waiter.set()],
    )
    threading.Thread(target=lambda: _connect_quietly(client, 30.0), name="test-connect", daemon=True).start()
    assert waiter.wait(timeout(4))
    client.close()
    error = errors[0]
    assert isinstance(error, ConnectionFailedError) and error.error == "redirect_refused" and error.status == 301
    assert f"localhost:{server.ws_port}/link/" in str(error)  # the URL refused, named
    assert "ticket" not in str(error)  # without its query
    assert server.all_connections == []  # never went there


# ---- 4. a malformed envelope ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, 5, [1, 2]], ids=["null", "number", "list"])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "pool"])
def test_a_malformed_envelope_is_skipped_and_nothing_after_it_is_lost(
    server: SocketModeServer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    payload: Any,
    inline: bool,
) -> None:
    client = make_client(inline_dispatch=inline)
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    caplog.set_level(logging.WARNING, logger="slack_socket_mode")
    bad = {"envelope_id": "bad-envelope-1", "type": "events_api", "payload": payload, "accepts_response_payload": False}
    good = server.make_envelope("events_api", {"event": {"type": "message", "text": "after"}})
    server.send_text(json.dumps(bad))
    good_id = server.push(good)
    server.wait_for_acks(envelope_ids=[good_id], timeout=timeout(5))
    assert [r.envelope_id for r in recorder.seen] == [good_id]
    assert len(server.all_connections) == 1 and client.is_connected()  # not a transport error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("bad-envelope-1" in line for line in warnings), warnings
    assert client.stats().malformed_messages == 1


# ---- 7. concurrency=1 ---------------------------------------------------------------------------------


def test_concurrency_one_runs_one_listener_at_a_time(server: SocketModeServer, make_client: ClientFactory) -> None:
    """A slow listener on the reader (inline) and the next envelope on the worker must not overlap."""
    client = make_client(concurrency=1, handoff_after=0.01)
    lock = threading.Lock()
    running = [0]
    most = [0]
    work = threading.Event()  # never set: its wait is the listener's work

    def slow(client: SocketModeClient, request: Any) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        work.wait(0.1)
        with lock:
            running[0] -= 1
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(slow)
    client.connect()
    ids = [server.push(server.make_envelope("events_api", {"n": n})) for n in range(6)]
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
    assert most[0] == 1, f"{most[0]} listeners ran at once with concurrency=1"


def test_close_returns_within_its_timeout_while_a_lifecycle_listener_holds_the_health_thread(
    make_client: ClientFactory,
) -> None:
    """close() asks the health thread to stop without joining it first: a listener stuck there costs no more."""
    hold = threading.Event()
    held = threading.Event()

    def on_transition(transition: Any) -> None:
        # the replacement of the silent connection (not any other transition the health thread may report
        # first on a loaded machine: one such made this test fail on 3.13)
        replacing = "pong" in transition.reason or "frames" in transition.reason
        if threading.current_thread().name.endswith("-health") and replacing and not held.is_set():
            held.set()
            hold.wait(timeout(10))

    with SocketModeServer(redelivery_delay=None) as server:
        client = make_client(web_client=WebClient(base_url=server.api_url), ping_interval=0.2, ping_timeout=0.2)
        client.lifecycle_listeners.append(on_transition)
        watcher = Watcher(client)
        client.connect()
        server.silence()  # no pong: the health thread replaces the connection, and tells the listener
        assert held.wait(timeout(5))
        reconnects = client.stats().reconnects
        assert sum(reconnects.values()) == 1 and set(reconnects) <= {"no pong", "no frames"}, reconnects
        new = server.wait_for_new_connection(1)
        watcher.wait_connected()
        server.silence(new)  # close() then spends its time on the close handshake before stopping the threads
        try:
            started = time.monotonic()
            closing = threading.Thread(target=client.close, kwargs={"timeout": 1.0})
            closing.start()
            closing.join(timeout(5))
            assert not closing.is_alive()
            assert time.monotonic() - started < 1.0 + timeout(0.8)
        finally:
            hold.set()


def test_stuck_writes_are_seen_by_their_own_deadline_with_no_pings_to_wake_the_health_thread(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Without pings, only the write's deadline (or, with no write, a look every write_timeout) wakes the watch."""
    with SocketModeServer(redelivery_delay=None) as server:
        huge = {"text": "x" * 32_000_000}  # more than loopback's socket buffers hold
        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            reconnect_policy=FAST,
            concurrency=1,
            ping_interval=None,
            receive_timeout=60.0,
            write_timeout=0.5,
        )
        client.socket_mode_request_listeners.append(
            lambda client, request: client.send_socket_mode_response(
                {"envelope_id": request.envelope_id, "payload": huge}
            )
        )
        watcher = Watcher(client)
        client.connect()
        with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
            for count in (1, 2):  # the second starts while the watch sleeps with no write to look at
                watcher.wait(lambda: client.is_connected() and client.stats().connections_open == 1)
                conn = server.connections[-1]
                server.silence(conn)
                client.enqueue_message(json.dumps(server.make_envelope("view_submission_like", {"view": {}})))
                server.wait_for_new_connection(count, timeout=timeout(8))
                assert client.stats().reconnects.get("write timeout") == count, client.stats().reconnects
        replaced = [r.getMessage() for r in caplog.records if r.getMessage().endswith("; replacing it")]
        assert len(replaced) == 2
        assert all(
            re.fullmatch(
                r"connection \d+: a write has not finished in \d+\.\d s \(the peer does not read\); replacing it", m
            )
            for m in replaced
        ), replaced


def test_a_connection_silent_past_receive_timeout_is_replaced_and_counted_as_no_frames(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with SocketModeServer(redelivery_delay=None) as server:
        client = make_client(web_client=WebClient(base_url=server.api_url), ping_interval=None, receive_timeout=0.3)
        watcher = Watcher(client)
        client.connect()
        with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
            for count in (1, 2):
                watcher.wait(lambda: client.is_connected() and client.stats().connections_open == 1)
                server.silence(server.connections[-1])
                server.wait_for_new_connection(count, timeout=timeout(5))
        assert client.stats().reconnects == {"no frames": 2}
        replaced = [r.getMessage() for r in caplog.records if r.getMessage().endswith("; replacing it")]
        assert replaced == [f"connection {cid}: no frame for 0.3 s; replacing it" for cid in (1, 2)], replaced
