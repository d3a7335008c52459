"""What the local server's Web API answers: ``apps.connections.open``, ``rtm.connect``, ``auth.test``, the rest.

:class:`WebApiFake` is the handler behind :class:`~._webapi.ApiServer` (which does the HTTP):
it records every call, issues single-use WebSocket URLs (tickets) and checks them when a
WebSocket handshake arrives (``apps.connections.open`` for an app-level token; ``rtm.connect``
and ``rtm.start`` for a bot or user token, with the ``self`` and ``team`` of the RTM API), and
carries the Web API faults a test asks for (failed opens, URLs of another peer, refused connections).
It does no I/O of its own.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._webapi import ApiCall, ApiReply, address_family, url_host

__all__ = ["WebApiFake"]

_APP_ID = "A111"

_AUTH_TEST = {
    "ok": True,
    "url": "https://example.slack.com/",
    "team": "Example",
    "user": "bot",
    "team_id": "T111",
    "user_id": "U111",
    "bot_id": "B111",
    "is_enterprise_install": False,
}

#: What ``rtm.connect`` answers besides its URL: the bot user and its team (``auth.test``'s).
RTM_SELF = {"id": "U111", "name": "bot"}
RTM_TEAM = {"id": "T111", "name": "Example", "domain": "example"}
#: The Web API methods that issue an RTM URL (``rtm.start`` answers as ``rtm.connect``).
_RTM_METHODS = ("rtm.connect", "rtm.start")


class WebApiFake:
    """The Web API's state and answers; thread-safe.

    Args:
        cond: the server's condition: its lock guards this object's state, and it is
            notified after every call (``wait_for_api_calls`` waits on it).
        host: the WebSocket server's host, for the URLs it issues.
        tls: issue ``wss://`` URLs instead of ``ws://``.
        ws_url_address: ``(host, port)`` the URLs it issues name instead of the WebSocket
            server's own (a relay in front of it), or ``None``.
    """

    def __init__(
        self, cond: threading.Condition, host: str, *, tls: bool, ws_url_address: tuple[str, int] | None = None
    ) -> None:
        self._cond = cond
        self._host = host
        self._ws_url_address = ws_url_address
        self._scheme = "wss" if tls else "ws"
        #: The WebSocket server's port, set by the server once it is bound.
        self.ws_port = 0
        # Everything below is guarded by the server lock (cond).
        self._tickets: set[str] = set()
        self.calls: list[ApiCall] = []  # every call, oldest first
        self.open_calls = 0  # apps.connections.open and rtm.connect calls, answered ok or not
        self._open_failures: deque[tuple[str, int, int | None, bool]] = deque()
        self._open_urls: deque[str] = deque()  # handed out before this server's own (see send_next_opens_to)
        self._refusals = 0

    # -- the handler ---------------------------------------------------------------------

    def handle(self, method: str, params: dict[str, Any], token: str | None) -> ApiReply:
        """Answer one Web API call (an :data:`~._webapi.ApiHandler`)."""
        with self._cond:
            self.calls.append(ApiCall(method, params))
            try:
                if method == "apps.connections.open":
                    self.open_calls += 1
                    return self._open_reply_locked(token, ("xapp-",), "invalid_auth")
                if method in _RTM_METHODS:
                    self.open_calls += 1
                    reply = self._open_reply_locked(token, ("xoxb-", "xoxp-"), "not_allowed_token_type")
                    if reply.body.get("ok"):
                        reply.body.update({"self": dict(RTM_SELF), "team": dict(RTM_TEAM)})
                    return reply
                if method == "auth.test":
                    return ApiReply(200, dict(_AUTH_TEST))
                return ApiReply(200, {"ok": True})
            finally:
                self._cond.notify_all()

    def _open_reply_locked(self, token: str | None, prefixes: tuple[str, ...], wrong_token: str) -> ApiReply:
        """The answer to a call that issues a URL, for a token that starts with one of ``prefixes``.

        Another token is refused with ``wrong_token`` (``invalid_auth``, ``not_allowed_token_type``).
        """
        if token is None:
            return ApiReply(200, {"ok": False, "error": "not_authed"})
        if not token.startswith(prefixes):
            return ApiReply(200, {"ok": False, "error": wrong_token})
        if self._open_failures:
            error, status, retry_after, echo = self._open_failures.popleft()
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if echo:
                error = f"{error}: you sent Authorization: Bearer {token}"
            return ApiReply(status, {"ok": False, "error": "ratelimited" if status == 429 else error}, headers)
        if self._open_urls:
            return ApiReply(200, {"ok": True, "url": self._open_urls.popleft()})
        ticket = str(uuid.uuid4())
        if self._refusals > 0:
            self._refusals -= 1
            return ApiReply(200, {"ok": True, "url": self._ws_url(_unused_port(self._host), ticket)})
        self._tickets.add(ticket)
        return ApiReply(200, {"ok": True, "url": self._ticket_url(ticket)})

    # -- tickets ---------------------------------------------------------------------------

    def new_connection_url(self) -> str:
        """A fresh single-use URL to the WebSocket server, as ``apps.connections.open`` gives."""
        ticket = str(uuid.uuid4())
        with self._cond:
            self._tickets.add(ticket)
        return self._ticket_url(ticket)

    def consume_ticket(self, path: str) -> bool:
        """Whether a handshake's request ``path`` holds a valid ticket (then used up)."""
        url = urlsplit(path)
        if url.path.rstrip("/") != "/link":
            return False
        tickets = parse_qs(url.query).get("ticket") or []
        with self._cond:
            for ticket in tickets:
                if ticket in self._tickets:
                    self._tickets.discard(ticket)
                    return True
        return False

    def _ticket_url(self, ticket: str) -> str:
        """The URL of a valid ticket: to this server, or to the relay in front of it."""
        if self._ws_url_address is not None:
            host, port = self._ws_url_address
            return self._ws_url(port, ticket, host)
        return self._ws_url(self.ws_port, ticket)

    def _ws_url(self, port: int, ticket: str, host: str | None = None) -> str:
        where = url_host(self._host if host is None else host)
        return f"{self._scheme}://{where}:{port}/link/?ticket={ticket}&app_id={_APP_ID}"

    # -- faults ----------------------------------------------------------------------------

    def fail_next_opens(self, error: str, status: int, retry_after: int | None, echo: bool, count: int) -> None:
        """The next ``count`` opens fail (see :meth:`~.server.SocketModeServer.fail_next_opens`)."""
        with self._cond:
            self._open_failures.extend([(error, status, retry_after, echo)] * count)

    def send_next_opens_to(self, url: str, count: int) -> None:
        """The next ``count`` opens answer ``url``."""
        with self._cond:
            self._open_urls.extend([url] * count)

    def refuse_next_connections(self, count: int) -> None:
        """The next ``count`` opens answer a URL nobody listens on."""
        with self._cond:
            self._refusals += count


def _unused_port(host: str) -> int:
    """A port on ``host`` nobody listens on (bound, read, closed)."""
    with socket.socket(address_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
