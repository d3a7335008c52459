"""Shared fixtures: a local Socket Mode server per test and clients that are always closed."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

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


# ---- raw peers: what the local server cannot do (trickle, redirect, echo, never answer) ----------

Handler = Callable[[socket.socket, threading.Event], None]


class RawPeer:
    """A TCP server on loopback that runs ``handler(sock, stopping)`` on a thread per connection.

    The handler may misbehave as it likes; :meth:`close` (or leaving the ``with`` block) sets
    ``stopping``, closes every socket and joins every thread.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="test-raw-peer", daemon=True)

    def __enter__(self) -> RawPeer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, scheme: str = "ws", path: str = "/link/?ticket=t1") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in [self._acceptor, *threads]:
            thread.join(timeout(5))

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), name="test-raw-peer-conn", daemon=True)
            with self._lock:
                self.accepted += 1
                self._sockets.append(sock)
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self._handler(sock, self._stopping)
        except OSError:
            pass


def read_request(sock: socket.socket) -> bytes:
    """Read an HTTP request's head (up to the blank line)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def trickle(sock: socket.socket, stopping: threading.Event, data: bytes, every: float) -> None:
    """Send ``data`` one byte per ``every`` seconds (a peer that holds a reader with a per-read timeout)."""
    for byte in data:
        if stopping.wait(every):
            return
        sock.sendall(bytes([byte]))


def web_api(ws_url: str) -> Handler:
    """An ``apps.connections.open`` that answers with ``ws_url`` (one request per connection)."""

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        read_request(sock)
        body = json.dumps({"ok": True, "url": ws_url}).encode()
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    return handler


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
