"""Shared fixtures: a local Socket Mode server per test, clients that are always closed, raw peers."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Collection, Iterable, Iterator
from typing import Any, Callable

import pytest
from benchmarks.peers import Handler, RawPeer
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .services import own_redis  # noqa: F401 -- a fixture for outage tests

if os.environ.get("SLACK_SOCKET_MODE_NO_SOCKETS") == "1":
    # The socket-free sessions of noxfile.py: a test that opens a socket fails there, so the list
    # of socket-free test files cannot take in one that needs the local server. An event loop's
    # self-pipe (an AF_UNIX socket pair, made by every asyncio loop) is no network socket.
    import socket

    _NETWORK = (socket.AF_INET, socket.AF_INET6)

    def _refuse_sockets(event: str, args: tuple[Any, ...]) -> None:
        """An audit hook: a network socket is refused."""
        if event == "socket.__new__" and args[1] in _NETWORK:
            raise RuntimeError("SLACK_SOCKET_MODE_NO_SOCKETS=1: this test opened a network socket")

    sys.addaudithook(_refuse_sockets)

#: A fake app-level token; tests assert it never leaks.
APP_TOKEN = "xapp-1-A111-4242-c0ffee0ddba11c0ffee0ddba11"

#: Multiply every wait by this on slow machines (SLACK_SOCKET_MODE_TIMEOUT_FACTOR=3).
FACTOR = float(os.environ.get("SLACK_SOCKET_MODE_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float) -> float:
    """A wait bound, scaled for slow machines."""
    return seconds * FACTOR


@pytest.fixture
def server() -> Iterator[SocketModeServer]:
    with SocketModeServer(redelivery_delay=None) as s:
        yield s


ClientFactory = Callable[..., SocketModeClient]


@pytest.fixture
def make_client(server: SocketModeServer) -> Iterator[ClientFactory]:
    clients: list[SocketModeClient] = []

    def make(**options: Any) -> SocketModeClient:
        options.setdefault("web_client", WebClient(base_url=server.api_url))
        client = SocketModeClient(app_token=options.pop("app_token", APP_TOKEN), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def client_threads() -> list[threading.Thread]:
    """Live threads started by any SocketModeClient."""
    return [t for t in threading.enumerate() if t.name.startswith("slack_socket_mode-")]


class Recorder:
    """A request listener that records what it saw and acks (with a payload if allowed)."""

    def __init__(self, *, ack: bool = True, payload: dict[str, Any] | None = None) -> None:
        self.ack = ack
        self.payload = payload
        self.seen: list[Any] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def __call__(self, client: SocketModeClient, request: Any) -> None:
        with self.cond:
            self.seen.append(request)
            self.cond.notify_all()
        if self.ack:
            payload = self.payload if request.accepts_response_payload else None
            body = {"envelope_id": request.envelope_id}
            if payload is not None:
                body["payload"] = payload
            client.send_socket_mode_response(body)

    def wait_for(self, count: int, seconds: float = 5.0) -> list[Any]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.seen) >= count, timeout(seconds)):
                raise AssertionError(f"listener saw {len(self.seen)} requests, expected {count}")
            return list(self.seen)

    def runs(self, envelope_id: str) -> int:
        with self.lock:
            return sum(1 for r in self.seen if r.envelope_id == envelope_id)


class Watcher:
    """Records a client's lifecycle transitions; waits on them with a Condition (no polling)."""

    def __init__(self, client: SocketModeClient) -> None:
        self.client = client
        self.transitions: list[Any] = []
        self.cond = threading.Condition()
        client.lifecycle_listeners.append(self._on)

    def _on(self, transition: Any) -> None:
        with self.cond:
            self.transitions.append(transition)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], seconds: float = 5.0, what: str = "condition") -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout(seconds)):
                raise AssertionError(f"timed out waiting for {what}; transitions: {self.transitions}")

    def wait_connected(self, seconds: float = 5.0) -> None:
        self.wait(self.client.is_connected, seconds, "is_connected()")


def assert_acked_on_first_delivery(
    server: SocketModeServer,
    envelope_ids: Iterable[str],
    *,
    same_connection: bool = True,
    lost_with: Collection[int] = (),
) -> None:
    """Each envelope was delivered once and acked once: a lost first delivery is a failure.

    "Never acked" is not the only way to lose an envelope: a client that drops one on its
    first delivery is rescued by the server's redelivery and would still get it acked. So a
    redelivery counts as a failure here, and with ``same_connection`` the ack must have come
    back on the connection that delivered the envelope (as Slack expects, even while that
    connection drains).

    Args:
        server: the local server the envelopes were pushed to.
        envelope_ids: the envelopes to check (each must have been pushed).
        same_connection: also require the ack on the delivering connection.
        lost_with: server connection ids that were reset: an envelope whose first delivery
            went to one of them may have died in transit and been redelivered (once acked, it
            is still acked exactly once).
    """
    problems: list[str] = []
    for envelope_id in envelope_ids:
        record = server.envelope(envelope_id)
        first = record.deliveries[0]
        if len(record.deliveries) != 1 and first.connection_id not in lost_with:
            problems.append(f"{envelope_id}: delivered {len(record.deliveries)} times {record.deliveries}")
        if len(record.acks) != 1:
            problems.append(f"{envelope_id}: acked {len(record.acks)} times")
        elif same_connection and len(record.deliveries) == 1 and record.acks[0].connection_id != first.connection_id:
            problems.append(
                f"{envelope_id}: delivered on connection {first.connection_id}, acked on {record.acks[0].connection_id}"
            )
    assert not problems, f"{len(problems)} envelope(s) not acked once on first delivery: " + "; ".join(problems[:10])


def errors_until_timeout(client: SocketModeClient, seconds: float = 1.0) -> list[Exception]:
    """Call ``connect()`` expecting it to time out; close the client; return what error listeners got."""
    from slack_socket_mode import ConnectTimeoutError

    errors: list[Exception] = []
    client.on_error_listeners.append(errors.append)
    try:
        with pytest.raises(ConnectTimeoutError):
            client.connect(timeout=seconds)
    finally:
        client.close()
    return errors


@pytest.fixture
def peers() -> Iterator[Callable[[Handler], RawPeer]]:
    started: list[RawPeer] = []

    def make(handler: Handler) -> RawPeer:
        peer = RawPeer(handler).__enter__()
        started.append(peer)
        return peer

    yield make
    for peer in started:
        peer.close()


def closes_within(client: SocketModeClient, close_timeout: float, seconds: float) -> bool:
    """Call ``client.close(close_timeout)`` on a thread; True if it returned within ``seconds``."""
    closer = threading.Thread(target=client.close, args=(close_timeout,), name="test-close", daemon=True)
    closer.start()
    closer.join(seconds)
    return not closer.is_alive()


def _connect_quietly(client: SocketModeClient, seconds: float) -> None:
    try:
        client.connect(timeout=seconds)
    except Exception:
        pass
