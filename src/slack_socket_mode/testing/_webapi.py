"""The Web API half of the local Socket Mode server: ``http.server`` answering ``/api/<method>``.

Only the HTTP plumbing lives here: parsing requests, threads, quiet logging and shutdown.
What each method answers is decided by a handler function that
:class:`~slack_socket_mode.testing.SocketModeServer` passes in.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, urlsplit

__all__ = ["ApiCall", "ApiHandler", "ApiReply", "ApiServer"]

logger = logging.getLogger("slack_socket_mode.testing")

#: Anything shaped like a Slack token, scrubbed from the (DEBUG-only) request log.
_TOKEN = re.compile(r"\bx(?:app|ox[a-z])-[A-Za-z0-9-]+")

THREAD_PREFIX = "slack_socket_mode.testing-"


@dataclass(frozen=True)
class ApiCall:
    """One Web API request the server received.

    Attributes:
        method: the Web API method name, e.g. ``"apps.connections.open"`` (the part of the
            path after ``/api/``).
        params: the request's parameters: the query string merged with the form-encoded or
            JSON body. A parameter given several times becomes a list. The ``token``
            parameter is removed and the ``Authorization`` header is never recorded.
    """

    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class ApiReply:
    """What the server answers to one Web API request (internal)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


#: ``handler(method, params, token) -> ApiReply``; ``token`` comes from the
#: ``Authorization: Bearer`` header (``""`` if that header is not a bearer token) or else
#: from a ``token`` parameter, and is ``None`` when the request carries neither.
ApiHandler = Callable[[str, dict[str, Any], Optional[str]], ApiReply]


def connectable_host(host: str) -> str:
    """The address a local client should dial to reach a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 addresses in brackets)."""
    host = connectable_host(host)
    return f"[{host}]" if ":" in host else host


def address_family(host: str) -> socket.AddressFamily:
    """The socket family for binding ``host``."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def wake_listener(host: str, port: int) -> None:
    """Connect to a listening socket and hang up, to wake a thread blocked accepting on it."""
    try:
        with socket.create_connection((connectable_host(host), port), timeout=1.0):
            pass
    except OSError:
        pass


def _parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    params: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        if key not in params:
            params[key] = value
        elif isinstance(params[key], list):
            params[key].append(value)
        else:
            params[key] = [params[key], value]

    for key, value in parse_qsl(query, keep_blank_values=True):
        add(key, value)
    if not body:
        return params
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                add(str(key), value)
    elif content_type in ("application/x-www-form-urlencoded", "text/plain"):
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            add(key, value)
    # Other bodies (multipart uploads, ...) are not parsed: only the query string is recorded.
    return params


class _Handler(BaseHTTPRequestHandler):
    """Answers ``/api/<method>`` through the server's :data:`ApiHandler`."""

    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per TCP connection: nothing lingers at stop()
    server_version = "slack-socket-mode-testing"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        self._dispatch(body)

    def _dispatch(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if not url.path.startswith("/api/"):
            self._reply(ApiReply(404, {"ok": False, "error": "not_found"}))
            return
        method = url.path[len("/api/") :].strip("/")
        params = _parse_params(url.query, body, self.headers.get_content_type())
        token_param = params.pop("token", None)
        token: str | None = token_param if isinstance(token_param, str) else None
        authorization = self.headers.get("Authorization")
        if authorization is not None:
            scheme, _, credentials = authorization.strip().partition(" ")
            token = credentials.strip() if scheme.lower() == "bearer" else ""
        self._reply(self.server.api_handler(method, params, token))

    def _reply(self, reply: ApiReply) -> None:
        data = json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if logger.isEnabledFor(logging.DEBUG):
            # The path only: a query string could carry a token.
            logger.debug("web api: %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("web api: %s", _TOKEN.sub("[redacted]", format % args))


class _HTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with named, tracked daemon threads and no DNS lookups."""

    daemon_threads = True
    allow_reuse_port = False  # never share an ephemeral port with another server
    # socketserver's default listen backlog is 5: a burst of Web API calls (an AsyncApp's listeners, each
    # AsyncWebClient call on a connection of its own) overflowed it, and a connection the kernel then left
    # out of the accept queue waited for SYN-ACK retransmits (1 s, 2 s, 4 s, ...) before being served.
    request_queue_size = 1024

    def __init__(self, host: str, api_handler: ApiHandler) -> None:
        self.address_family = address_family(host)
        self.api_handler = api_handler
        self.stopping = False
        self._workers_lock = threading.Lock()
        self._workers: dict[threading.Thread, Any] = {}
        super().__init__((host, 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() would call socket.getfqdn(), a DNS lookup that can be slow.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def is_stopping(self) -> bool:
        return self.stopping

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return not self.stopping

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._work, args=(request, client_address), name=f"{THREAD_PREFIX}api-request", daemon=True
        )
        with self._workers_lock:
            self._workers[thread] = request
        thread.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._workers_lock:
                self._workers.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr; a test fake must stay quiet.
        logger.debug("web api: request from %s failed", client_address, exc_info=True)

    def workers(self) -> list[tuple[threading.Thread, Any]]:
        with self._workers_lock:
            return list(self._workers.items())


class ApiServer:
    """The Web API listener and its threads (internal to :mod:`slack_socket_mode.testing`).

    Binds ``host`` on an ephemeral port when created; :meth:`start` starts serving.
    """

    def __init__(self, host: str, handler: ApiHandler, ssl_context: ssl.SSLContext | None = None) -> None:
        self._host = host
        self._httpd = _HTTPServer(host, handler)
        if ssl_context is not None:  # HTTPS: the handshake runs in accept, on the api thread
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.port: int = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the accept thread (``slack_socket_mode.testing-api``)."""
        self._thread = threading.Thread(target=self._serve, name=f"{THREAD_PREFIX}api", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        httpd = self._httpd
        while not httpd.is_stopping():
            try:
                httpd.handle_request()  # blocks in select() until a client connects
            except Exception:
                if httpd.is_stopping():
                    break
                logger.debug("web api: accept failed", exc_info=True)

    def stop(self, deadline: float) -> None:
        """Stop accepting, end in-flight requests and join every thread, by ``deadline``.

        ``deadline`` is a :func:`time.monotonic` time. Idempotent.
        """
        httpd = self._httpd
        httpd.stopping = True
        thread = self._thread
        if thread is not None:
            wake_listener(self._host, self.port)
            thread.join(max(0.0, deadline - time.monotonic()))
        for worker, request in httpd.workers():
            try:
                request.shutdown(socket.SHUT_RD)  # unblocks a handler waiting for a request
            except OSError:
                pass
            worker.join(max(0.0, deadline - time.monotonic()))
        httpd.server_close()
