"""Raw socket peers on loopback that misbehave where the local Socket Mode server cannot.

One that trickles its answer a byte at a time (a WebSocket upgrade, a Web API answer, a TLS
handshake, a proxy's ``CONNECT`` answer), never answers, redirects the handshake, or echoes the
request back. Used by ``tests/test_hostile.py``, ``tests/test_security.py`` and
the soak's random faults (:mod:`benchmarks.soak`). Plain sockets and ``http``-shaped bytes: a
peer says what a broken server would say, nothing more.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Callable

__all__ = [
    "Handler",
    "RawPeer",
    "echoing",
    "read_request",
    "redirecting",
    "trickle",
    "trickling",
    "trickling_proxy",
    "trickling_tls",
    "trickling_web_api",
    "web_api",
]

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
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the acceptor (close() alone does not, on Linux)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in [self._acceptor, *threads]:
            thread.join(5.0)

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


def trickling(every: float) -> Handler:
    """A WebSocket peer whose upgrade response comes one byte every ``every`` seconds, without end."""

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        read_request(sock)
        trickle(sock, stopping, b"HTTP/1.1 101 Switching Protocols\r\n" * 10_000, every)

    return handler


def trickling_web_api(ws_url: str, every: float) -> Handler:
    """An ``apps.connections.open`` whose answer (with ``ws_url``) comes one byte every ``every`` seconds."""

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        read_request(sock)
        body = json.dumps({"ok": True, "url": ws_url}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        trickle(sock, stopping, head.encode() + body, every)

    return handler


def trickling_tls(every: float) -> Handler:
    """A TLS server whose handshake answer comes one byte every ``every`` seconds, without end.

    It announces a 16 KB handshake record holding one ``ServerHello`` of the right length, then
    sends it a byte at a time: each read the client's TLS layer makes gets a byte in time, and
    the record is never whole, so nothing in it is ever found wrong.
    """

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        sock.recv(4096)  # the ClientHello
        record = b"\x16\x03\x03\x40\x00" + b"\x02\x00\x3f\xfc" + b"\x00" * 0x3FFC
        trickle(sock, stopping, record, every)

    return handler


def trickling_proxy(every: float) -> Handler:
    """An HTTP proxy whose answer to ``CONNECT`` comes one byte every ``every`` seconds, without end."""

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        read_request(sock)
        trickle(sock, stopping, b"HTTP/1.1 200 Connection established\r\n" + b"X-Padding: x\r\n" * 10_000, every)

    return handler


def redirecting(location: str, status: str = "301 Moved Permanently") -> Handler:
    """A WebSocket peer that answers the handshake with a redirect to ``location``."""

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        read_request(sock)
        sock.sendall(f"HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())

    return handler


def echoing(status: str, *, as_json: bool) -> Handler:
    """A peer that answers every request with ``status`` and a body that echoes the request's head.

    ``as_json``: the body is ``{"ok": false, "error": <the head>}`` (a Web API error that quotes the
    request); else an HTML page with it (a proxy's 502 page that shows what it was sent).
    """

    def handler(sock: socket.socket, stopping: threading.Event) -> None:
        head = read_request(sock).decode("latin-1")
        body = (json.dumps({"ok": False, "error": head}) if as_json else f"<html><pre>{head}</pre></html>").encode()
        kind = "application/json" if as_json else "text/html"
        sock.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )

    return handler
