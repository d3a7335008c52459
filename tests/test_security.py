"""Security and hostile input: secrets never leak, only safe URLs are opened, the size bound
holds before a payload is read, and a short soak under faults loses nothing.

Real sockets on loopback and no mocks. The log audit captures every record of every logger
at DEBUG except the local server's own (``slack_socket_mode.testing…``: it plays Slack, whose
logs are not ours). See docs/security.md.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import threading
import traceback
from collections import Counter, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FunctionType, ModuleType
from typing import Any, Callable, Optional

import pytest
from benchmarks.peers import Handler, RawPeer, echoing, web_api
from slack_sdk.web import WebClient

from slack_socket_mode import (
    AuthError,
    Backoff,
    ClientState,
    ConfigurationError,
    ConnectTimeoutError,
    FatalError,
    SocketModeClient,
)
from slack_socket_mode.errors import InsecureURLError
from slack_socket_mode.redaction import Hidden, Secret, redact
from slack_socket_mode.testing import ServerConnection, SocketModeServer
from slack_socket_mode.urls import check_socket_url, safe_url

from .conftest import (
    APP_TOKEN,
    ClientFactory,
    Recorder,
    Watcher,
    client_threads,
    errors_until_timeout,
    timeout,
)

FAST = Backoff(base=0.05, cap=0.2, healthy_after=60.0)

#: The bot token given to the WebClient; tests assert it never leaks either.
BOT_TOKEN = "xoxb-2424-1337-b0tt0kenvalue9f8e7d6c"
PROXY_PASSWORD = "s3cret"
PROXY_URL = f"http://user:{PROXY_PASSWORD}@127.0.0.1:9/"

#: What must never appear: the name of each secret, and the secret.
SECRETS = {
    "the app-level token": APP_TOKEN,
    "the bot token": BOT_TOKEN,
    "the proxy password": PROXY_PASSWORD,
    "the proxy credentials as a Basic header": base64.b64encode(f"user:{PROXY_PASSWORD}".encode()).decode(),
}

#: Payloads that carry token-shaped strings, as a message text pasted by a user might.
TOKEN_PAYLOADS: list[dict[str, Any]] = [
    {"event": {"type": "message", "text": f"my bot token is {BOT_TOKEN}"}},
    {"event": {"type": "message", "text": f"and the app token {APP_TOKEN}", "token": BOT_TOKEN}},
    {"token": "xoxp-1111-2222-3333-u5ert0ken", "proxy": PROXY_URL, "nested": [{"t": APP_TOKEN}]},
]


def leaks(text: str) -> list[str]:
    """The names of the secrets found in ``text``."""
    return [name for name, secret in SECRETS.items() if secret in text]


def assert_clean(where: str, text: str) -> None:
    found = leaks(text)
    assert not found, f"{where} shows {', '.join(found)}: {text[:500]!r}"


def exception_texts(error: BaseException) -> Iterator[str]:
    """``str``, ``repr`` and the formatted traceback of an exception and of every exception it chains."""
    seen: set[int] = set()
    todo: list[Optional[BaseException]] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield str(e)
        yield repr(e)
        yield "".join(traceback.format_exception(type(e), e, e.__traceback__))
        todo += [e.__cause__, e.__context__]


_OPAQUE = (type, ModuleType, FunctionType, logging.Logger, logging.Manager, Secret, Hidden)


def reachable_strings(root: object, depth: int = 8) -> Iterator[str]:
    """Strings held by ``root``'s data: its attributes, containers, exception args and chained exceptions.

    Not followed: tracebacks (frames hold the client, which holds its token by design),
    classes, modules, functions, loggers, and :class:`Secret`/:class:`Hidden` (made to hold
    secrets safely).
    """
    seen: set[int] = set()
    todo: list[tuple[object, int]] = [(root, 0)]
    while todo:
        obj, level = todo.pop()
        if id(obj) in seen or level > depth or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            yield obj
            continue
        if isinstance(obj, (bytes, bytearray)):
            yield bytes(obj).decode("latin-1")
            continue
        children: list[object] = []
        if isinstance(obj, dict):
            children += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            children += list(obj)
        else:
            if isinstance(obj, BaseException):
                children += [obj.args, obj.__cause__, obj.__context__]
            children += [getattr(obj, name, None) for name in getattr(type(obj), "__slots__", ())]
            try:
                children.append(vars(obj))
            except TypeError:
                pass
        todo += [(child, level + 1) for child in children]


_SERVER_LOGGERS = "slack_socket_mode.testing"


class LogCapture(logging.Handler):
    """Every record, formatted: the message with its arguments, and the exception's traceback text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records: list[tuple[str, str]] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        with self._lock_records:
            self.records.append((record.name, text))

    def lines(self, *, include_server: bool = False) -> list[str]:
        """The formatted records; without the local server's (it plays Slack) unless asked."""
        with self._lock_records:
            return [
                text
                for name, text in self.records
                if include_server or not name.startswith("slack_socket_mode.testing")
            ]


@pytest.fixture
def debug_logs() -> Iterator[LogCapture]:
    """The root logger and ``slack_socket_mode`` at DEBUG, every record captured."""
    capture = LogCapture()
    root, ours = logging.getLogger(), logging.getLogger("slack_socket_mode")
    levels = root.level, ours.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])


def live_connections(client: SocketModeClient) -> list[Any]:
    """The client's Connection objects (private: a test reaches them to audit their reprs)."""
    return list(client._session.connections.values())


# ---- 1. secrets ---------------------------------------------------------------------------------


def refused_client(
    server: SocketModeServer, make_client: ClientFactory
) -> tuple[SocketModeClient, AuthError, list[Exception]]:
    """A client (with the bot token in its WebClient) whose connect() the Web API refused with invalid_auth.

    Returns the client, the AuthError connect() raised, and the errors its error listeners got.
    """
    server.fail_next_opens("invalid_auth")
    errors: list[Exception] = []
    client = make_client(
        web_client=WebClient(base_url=server.api_url, token=BOT_TOKEN), on_error_listeners=[errors.append]
    )
    with pytest.raises(AuthError) as raised:
        client.connect()
    return client, raised.value, errors


def test_debug_logs_reprs_and_errors_never_show_a_secret(
    server: SocketModeServer, make_client: ClientFactory, debug_logs: LogCapture
) -> None:
    errors: list[Exception] = []
    closes: list[tuple[int, Optional[str]]] = []
    client = make_client(
        web_client=WebClient(base_url=server.api_url, token=BOT_TOKEN),
        reconnect_policy=FAST,
        on_error_listeners=[errors.append],
        on_close_listeners=[lambda code, reason: closes.append((code, reason))],
    )
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    watcher = Watcher(client)
    seen: list[Any] = []
    texts: list[tuple[str, str]] = []

    def audit_objects() -> None:
        seen.extend(live_connections(client))
        texts.extend([("repr(client)", repr(client)), ("str(client)", str(client))])
        texts.extend([("repr(vars(client))", repr(vars(client))), ("stats()", repr(client.stats()))])
        texts.extend((f"repr/str of {c!r}", repr(c) + str(c) + c.url) for c in seen)

    client.connect()
    audit_objects()
    ids = [server.push(server.make_envelope("events_api", payload)) for payload in TOKEN_PAYLOADS]
    # bad input that carries tokens: skipped, and its text is never logged
    server.send_text(json.dumps({"type": "events_api", "payload": {"token": BOT_TOKEN}}))
    server.send_text(json.dumps({"envelope_id": 7, "type": "events_api", "payload": {"token": APP_TOKEN}}))
    server.send_text(f"not JSON {APP_TOKEN} {BOT_TOKEN} {PROXY_URL}")
    server.send_binary(f"{APP_TOKEN} {BOT_TOKEN}".encode())
    server.send_raw_text_bytes(b"\xff" + APP_TOKEN.encode())
    ids.append(server.push(server.make_envelope("slash_commands", {"text": BOT_TOKEN})))
    server.wait_for_acks(envelope_ids=ids)

    (old,) = server.connections  # a rotation
    server.disconnect("warning", connection=old)
    server.wait_for_new_connection(1)
    assert old.wait_closed(timeout(5))
    watcher.wait_connected()
    audit_objects()

    server.reset()  # a TCP reset
    server.wait_for_new_connection(2)
    watcher.wait_connected()
    audit_objects()
    more = [server.push(server.make_envelope("interactive", payload)) for payload in TOKEN_PAYLOADS]
    server.wait_for_acks(envelope_ids=more)
    client.close()
    audit_objects()

    # a fatal error, on a second client
    second, refused, fatal_errors = refused_client(server, make_client)
    assert second.state is ClientState.FAILED
    texts.extend(("the AuthError raised", text) for text in exception_texts(refused))
    texts.append(("repr(vars(second client))", repr(vars(second))))
    second.close()

    assert Counter(r.envelope_id for r in recorder.wait_for(len(ids) + len(more))) == Counter(ids + more)
    assert {type(e) for e in fatal_errors} == {AuthError}
    for error in errors + fatal_errors:
        texts.extend((f"error passed to a listener ({type(error).__name__})", t) for t in exception_texts(error))
    texts.extend(("on_close reason", f"{code} {reason}") for code, reason in closes)
    texts.extend(("lifecycle transition", repr(t)) for t in watcher.transitions)
    lines = debug_logs.lines()
    assert any("DEBUG" in line for line in lines) and any("WARNING" in line for line in lines)
    assert any("skipped" in line for line in lines)  # the bad input was logged, without its text
    for where, text in texts:
        assert_clean(where, text)
    for line in lines:
        assert_clean("a log line", line)
        if line.startswith("slack_socket_mode"):  # our own lines: no token-shaped string at all
            assert redact(line) == line, line


def test_a_proxy_password_never_shows(debug_logs: LogCapture, server: SocketModeServer) -> None:
    """Nobody listens on 127.0.0.1:9: every attempt fails, through both paths that use the proxy."""
    # The client builds its WebClient with the proxy: apps.connections.open fails.
    via_web_api = SocketModeClient(app_token=APP_TOKEN, proxy=PROXY_URL, base_url=server.api_url, reconnect_policy=FAST)
    # With a WebClient of its own, the URL is issued and the WebSocket's connect through the proxy fails.
    via_websocket = SocketModeClient(
        app_token=APP_TOKEN, proxy=PROXY_URL, web_client=WebClient(base_url=server.api_url), reconnect_policy=FAST
    )
    texts: list[str] = []
    for client in (via_web_api, via_websocket):
        texts += [repr(client), str(client), repr(vars(client)), repr(client._proxy), str(client._proxy)]
        errors = errors_until_timeout(client, timeout(1))
        assert errors, "the proxy on 127.0.0.1:9 should have refused every attempt"
        for error in errors:
            texts.extend(exception_texts(error))
        texts.append(repr(vars(client)))
    assert server.open_calls > 0  # the second client did get URLs
    for text in texts:
        assert_clean("the proxy clients", text)
    for line in debug_logs.lines():
        assert_clean("a log line", line)


def test_errors_do_not_keep_the_token_reachable(server: SocketModeServer, make_client: ClientFactory) -> None:
    """An error given to the application holds no token, not even in a suppressed ``__context__``.

    ``raise … from None`` hides slack_sdk's exception from tracebacks but keeps it as
    ``__context__``, and its response holds the request's ``Authorization`` header (and the
    WebClient, with its bot token). Error trackers and debuggers walk that.
    """
    _, refused, errors = refused_client(server, make_client)
    for error in [refused, *errors]:
        found = sorted({name for text in reachable_strings(error) for name in leaks(text)})
        assert not found, f"{type(error).__name__} keeps {', '.join(found)} reachable (via __context__)"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"SLACK_BOT_TOKEN={BOT_TOKEN}", BOT_TOKEN[5:]),
        (f"Bearer {APP_TOKEN}\n", APP_TOKEN[5:]),
        ("xoxe.xoxp-1-2-3-r0tatedt0ken", "r0tatedt0ken"),
        (f"token_{BOT_TOKEN}", BOT_TOKEN[5:]),  # after a word character: no \b before it
        (f"%22{BOT_TOKEN}%22", BOT_TOKEN[5:]),  # URL-encoded JSON: "%22" ends in a digit
        ("xoxc-1234-5678-br0wsert0ken", "br0wsert0ken"),  # browser session tokens
        ("d=xoxd-c00kie%2Bvalue%2F", "c00kie"),  # the session cookie, URL-encoded
        (PROXY_URL, PROXY_PASSWORD),
    ],
    ids=["env", "header", "rotated", "after-underscore", "url-encoded", "xoxc", "xoxd", "proxy-url"],
)
def test_redact_removes_every_token_shape(text: str, secret: str) -> None:
    """``redact`` is what stands between exception texts and the log."""
    assert secret not in redact(text)


@pytest.mark.parametrize(
    "token",
    [
        BOT_TOKEN,  # the commonest mistake: the bot token where the app-level token goes
        "xoxp-1111-2222-3333-u5ert0kenvalue",
        f"Bearer {APP_TOKEN}",
        APP_TOKEN.upper(),
        APP_TOKEN[5:],
        "an0ther-shape-of-value-1234",
        "",
        None,
        42,
        APP_TOKEN.encode(),
    ],
    ids=[
        "bot-token",
        "user-token",
        "bearer",
        "upper-case",
        "no-prefix",
        "other-shape",
        "empty",
        "none",
        "int",
        "bytes",
    ],
)
def test_a_malformed_token_fails_fast_without_echoing_it(token: Any) -> None:
    before = client_threads()
    with pytest.raises(ConfigurationError) as raised:
        SocketModeClient(app_token=token)
    assert client_threads() == before  # failed before starting anything
    if isinstance(token, (str, bytes)) and token:
        tail = (token if isinstance(token, str) else token.decode())[-12:]
        for text in exception_texts(raised.value):
            assert tail not in text
            assert_clean("the ConfigurationError", text)


@pytest.mark.parametrize("junk", ["\n", "\r\n", " ", "\t", "\x00"], ids=["newline", "crlf", "space", "tab", "nul"])
def test_a_token_with_whitespace_never_reaches_a_log(
    server: SocketModeServer, debug_logs: LogCapture, junk: str
) -> None:
    """A token read from a file keeps its newline; it must fail fast (or be stripped), never be logged.

    slack_sdk logs "Invalid header value b'Bearer xapp-…\\n'" at ERROR on every attempt when
    such a token reaches an HTTP header.
    """
    try:
        client = SocketModeClient(app_token=APP_TOKEN + junk, web_client=WebClient(base_url=server.api_url))
    except ConfigurationError as e:
        for text in exception_texts(e):
            assert_clean("the ConfigurationError", text)
        return
    with client:
        try:
            client.connect(timeout=timeout(1))
        except ConnectTimeoutError:
            pass
    for line in debug_logs.lines():
        assert_clean("a log line", line)


# ---- 2. URL rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "wss://wss-primary.slack.com/link/?ticket=SECRET&app_id=A111",
        "WSS://wss-backup.slack.com/link/?ticket=SECRET",
        "wss://10.0.0.1:443/link/?ticket=SECRET",
        "ws://127.0.0.1:8080/link/?ticket=SECRET",
        "ws://127.255.255.254/link/",
        "ws://[::1]:8080/link/?ticket=SECRET",
        "ws://localhost/link/",
        "ws://LocalHost:9/link/",
        "ws://example.com@127.0.0.1/link/",  # the host is 127.0.0.1 (example.com is a user name)
        "ws://0.0.0.0:3011/link",  # as a destination, the unspecified address is this host (slack_sdk's tests use it)
        "ws://[::]:3011/link",
    ],
)
def test_wss_and_loopback_ws_urls_are_allowed(url: str) -> None:
    assert check_socket_url(url) == url


INSECURE = [
    "ws://10.0.0.1/link/?ticket=SECRET",
    "ws://example.com/link/?ticket=SECRET",
    "ws://user:pw@example.com:8080/link/?ticket=SECRET#SECRET",
    "ws://127.0.0.1@example.com/link/?ticket=SECRET",  # the host is example.com
    "ws://127.0.0.1.example.com/link/?ticket=SECRET",
    "ws://localhost.example.com/link/?ticket=SECRET",
    "ws://0.0.0.1/link/?ticket=SECRET",  # 0.0.0.0/8 other than 0.0.0.0 itself: not this host
    "ws://127.0.0.1./link/?ticket=SECRET",  # a trailing dot: not an address, so refused (the safe side)
    "ws://2130706433/link/?ticket=SECRET",  # 127.0.0.1 as one number: not recognised, so refused
    "ws:///link/?ticket=SECRET",
]


@pytest.mark.parametrize("url", INSECURE)
def test_ws_to_other_hosts_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InsecureURLError) as raised:
        check_socket_url(url)
    error = raised.value
    assert isinstance(error, FatalError) and error.error == "insecure_url"
    for text in (str(error), repr(error)):
        assert "SECRET" not in text and "pw" not in text and "ticket" not in text
    assert "allow_insecure_urls" in str(error)
    if url != "ws:///link/?ticket=SECRET":
        assert check_socket_url(url, allow_insecure=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/link/?ticket=SECRET",
        "https://wss-primary.slack.com/link/?ticket=SECRET",
        "ftp://127.0.0.1/?ticket=SECRET",
        "file:///etc/passwd?ticket=SECRET",
        "javascript:alert(1)//?ticket=SECRET",
        "//wss-primary.slack.com/link/?ticket=SECRET",
        "127.0.0.1:8080/link/?ticket=SECRET",
        "",
    ],
)
@pytest.mark.parametrize("allow_insecure", [False, True])
def test_other_schemes_are_always_refused(url: str, allow_insecure: bool) -> None:
    with pytest.raises(InsecureURLError) as raised:
        check_socket_url(url, allow_insecure=allow_insecure)
    assert "SECRET" not in str(raised.value) and "SECRET" not in repr(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "ws://example.com:99999/link/?ticket=SECRET",
        "ws://[::1/link/?ticket=SECRET",
        "wss://wss-primary.slack.com:port/link/?ticket=SECRET",
    ],
    ids=["port-out-of-range", "broken-brackets", "port-not-a-number"],
)
def test_a_url_that_does_not_parse_is_refused_with_the_typed_error(url: str) -> None:
    """Not a ValueError from urllib (which the client would log as an unexpected error and retry)."""
    with pytest.raises(InsecureURLError) as raised:
        check_socket_url(url)
    assert "SECRET" not in str(raised.value)
    assert "SECRET" not in safe_url(url)


class FakeWebApi:
    """A tiny Web API on loopback: ``apps.connections.open`` answers ``{"ok": true, "url": url}``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # slack_sdk POSTs every method
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with api.lock:
                    api.calls += 1
                body = json.dumps({"ok": True, "url": api.url}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test-fake-web-api", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/"

    def __enter__(self) -> FakeWebApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout(5))


@pytest.mark.parametrize(
    "url", ["ws://example.com/link/?ticket=SECRET", "https://127.0.0.1:1/link/?ticket=SECRET"], ids=["ws", "https"]
)
def test_connect_refuses_an_insecure_url_from_the_web_api(debug_logs: LogCapture, url: str) -> None:
    with FakeWebApi(url) as api:
        errors: list[Exception] = []
        client = SocketModeClient(
            app_token=APP_TOKEN, web_client=WebClient(base_url=api.base_url), on_error_listeners=[errors.append]
        )
        with client:
            with pytest.raises(InsecureURLError) as direct:
                client.issue_new_wss_url()
            with pytest.raises(InsecureURLError) as raised:
                client.connect(timeout=timeout(5))
            assert client.state is ClientState.FAILED
            assert client.wss_uri is None
            assert client.stats().connections_opened == 0  # nothing was opened, to example.com or anywhere
        assert api.calls == 2  # one for issue_new_wss_url(), one for connect(): no retry after a fatal error
    assert isinstance(raised.value, FatalError)
    assert [type(e) for e in errors] == [InsecureURLError]
    for error in (direct.value, raised.value, *errors):
        for text in exception_texts(error):
            assert "SECRET" not in text
    ours = [line for line in debug_logs.lines() if line.startswith("slack_socket_mode")]
    assert ours and not [line for line in ours if "SECRET" in line]


# ---- 2b. peers that echo the request (issue 12, cause 6) -------------------------------------------


def frame_strings(error: BaseException) -> Iterator[str]:
    """Strings reachable from the locals of every frame of ``error``'s traceback (and its chain's)."""
    for chained in (error, error.__cause__, error.__context__):
        tb = chained.__traceback__ if chained is not None else None
        while tb is not None:
            locals_ = {k: v for k, v in tb.tb_frame.f_locals.items() if k != "self"}
            yield from reachable_strings(locals_, depth=6)
            tb = tb.tb_next


def audit(where: str, errors: list[Exception], transitions: list[Any], lines: list[str]) -> None:
    """No secret in any error (text, objects, traceback frames), transition or log line."""
    for error in errors:
        for text in exception_texts(error):
            assert_clean(f"{where}: the {type(error).__name__}", text)
        found = sorted({name for text in [*reachable_strings(error), *frame_strings(error)] for name in leaks(text)})
        assert not found, f"{where}: {type(error).__name__} keeps {', '.join(found)} reachable"
    for t in transitions:
        assert_clean(f"{where}: lifecycle transition", repr(t))
    for line in lines:
        assert_clean(f"{where}: a log line", line)


@pytest.mark.parametrize(
    ("status", "as_json"),
    [("200 OK", True), ("500 Internal Server Error", True), ("502 Bad Gateway", False)],
    ids=["ok-false-echo", "500-json-echo", "502-html-echo"],
)
def test_a_web_api_that_echoes_the_request_leaks_nothing(
    peers: Callable[[Handler], RawPeer], debug_logs: LogCapture, status: str, as_json: bool
) -> None:
    """The Web API quotes our request back: its ``Authorization: Bearer xapp-…`` header with it."""
    api = peers(echoing(status, as_json=as_json))
    errors: list[Exception] = []
    client = SocketModeClient(
        app_token=APP_TOKEN,
        base_url=f"http://127.0.0.1:{api.port}/api/",  # the WebClient the client builds (its logger redacts)
        reconnect_policy=FAST,
        on_error_listeners=[errors.append],
    )
    watcher = Watcher(client)
    errors += errors_until_timeout(client, timeout(1))
    assert errors, "the echoing Web API should have failed every attempt"
    lines = debug_logs.lines()
    audit("Web API echo", errors, watcher.transitions, lines)
    assert any("slack_socket_mode.web_client" in line for line in lines)  # slack_sdk's own lines were audited


@pytest.mark.parametrize("path", ["web-api", "websocket"])
def test_a_proxy_that_echoes_the_request_leaks_nothing(
    peers: Callable[[Handler], RawPeer], server: SocketModeServer, debug_logs: LogCapture, path: str
) -> None:
    """An HTTP proxy answers 502 with a page showing what it was sent: Proxy-Authorization, Authorization."""
    proxy = peers(echoing("502 Bad Gateway", as_json=False))
    proxy_url = f"http://user:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}/"
    options: dict[str, Any] = (
        {"base_url": server.api_url} if path == "web-api" else {"web_client": WebClient(base_url=server.api_url)}
    )
    errors: list[Exception] = []
    client = SocketModeClient(
        app_token=APP_TOKEN, proxy=proxy_url, reconnect_policy=FAST, on_error_listeners=[errors.append], **options
    )
    watcher = Watcher(client)
    errors += errors_until_timeout(client, timeout(1))
    assert errors and proxy.accepted > 0, "every attempt should have gone through the echoing proxy and failed"
    audit("proxy echo", errors, watcher.transitions, debug_logs.lines())


def test_an_error_raised_from_connect_keeps_no_frame_with_the_request(peers: Callable[[Handler], RawPeer]) -> None:
    """On main the InsecureURLError's traceback held slack_sdk's response, with the Authorization header."""
    api = peers(web_api("ws://example.com/link/?ticket=t"))
    client = SocketModeClient(app_token=APP_TOKEN, web_client=WebClient(base_url=f"http://127.0.0.1:{api.port}/api/"))
    with client, pytest.raises(InsecureURLError) as raised:
        client.connect(timeout=timeout(5))
    audit("InsecureURLError from connect()", [raised.value], [], [])


# ---- 3. bounds ----------------------------------------------------------------------------------

LIMIT = 64 * 1024


def write_raw(conn: ServerConnection, data: bytes) -> None:
    """Write bytes to a server connection's socket, bypassing its WebSocket protocol.

    The local server has no public way to send a partial or malformed frame, so the test
    reaches its socket, under the connection's write lock (nothing else is written meanwhile).
    """
    with conn._write_lock:
        conn._sock.sendall(data)


def _header(first_byte: int, length: int) -> bytes:
    """An unmasked server frame header announcing ``length`` bytes (no payload follows)."""
    if length < 126:
        return bytes([first_byte, length])
    if length < 1 << 16:
        return bytes([first_byte, 126]) + struct.pack("!H", length)
    return bytes([first_byte, 127]) + struct.pack("!Q", length)


_FIRST_FRAGMENT = 60 * 1024


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (_header(0x81, 1 << 30), f"message over max_message_size ({1 << 30} bytes)"),
        (_header(0x82, 1 << 63), f"message over max_message_size ({1 << 63} bytes)"),
        (_header(0x81, LIMIT + 1), f"message over max_message_size ({LIMIT + 1} bytes)"),
        (
            _header(0x01, _FIRST_FRAGMENT) + b"x" * _FIRST_FRAGMENT + _header(0x80, 8192),
            f"message over max_message_size ({_FIRST_FRAGMENT + 8192} bytes)",
        ),
        (_header(0x89, 1 << 30), f"control frame of {1 << 30} bytes"),
    ],
    ids=["text-1GiB", "binary-2**63", "text-limit+1", "continuation-past-limit", "ping-1GiB"],
)
def test_an_oversize_frame_is_refused_from_its_header_before_its_payload(
    server: SocketModeServer, make_client: ClientFactory, frames: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the header is sent: a client that tried to read the payload would wait forever."""
    closed = threading.Condition()
    reasons: list[Optional[str]] = []

    def on_close(code: int, why: Optional[str]) -> None:
        with closed:
            reasons.append(why)
            closed.notify_all()

    client = make_client(max_message_size=LIMIT, reconnect_policy=FAST, on_close_listeners=[on_close])
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    watcher = Watcher(client)
    client.connect()
    (conn,) = server.connections
    before = [server.push(server.make_envelope()) for _ in range(3)]
    server.wait_for_acks(envelope_ids=before)
    with caplog.at_level(logging.ERROR, logger="slack_socket_mode"):
        write_raw(conn, frames)
        with closed:
            assert closed.wait_for(lambda: bool(reasons), timeout(5)), "the connection was not replaced"
    assert reason in (reasons[0] or "")
    new = server.wait_for_new_connection(1)
    watcher.wait_connected()
    after = [server.push(server.make_envelope(), connection=new) for _ in range(3)]
    server.wait_for_acks(envelope_ids=after)
    assert conn.wait_closed(timeout(5))
    assert server.unacked() == [] and server.duplicate_acks() == []
    assert Counter(r.envelope_id for r in recorder.wait_for(6)) == Counter(before + after)
    if "max_message_size" in reason:
        assert any("exceeds max_message_size" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("fragment_size", "expected"), [(1 << 20, None), (4096, 17 * 4096)], ids=["one-frame", "fragmented"]
)
def test_a_real_oversize_message_replaces_the_connection_and_loses_nothing(
    make_client: ClientFactory, fragment_size: int, expected: Optional[int]
) -> None:
    with SocketModeServer(redelivery_delay=None, fragment_size=fragment_size) as server:
        reasons: list[Optional[str]] = []
        closed = threading.Condition()

        def on_close(code: int, why: Optional[str]) -> None:
            with closed:
                reasons.append(why)
                closed.notify_all()

        client = make_client(
            web_client=WebClient(base_url=server.api_url),
            max_message_size=LIMIT,
            reconnect_policy=FAST,
            on_close_listeners=[on_close],
        )
        recorder = Recorder()
        client.socket_mode_request_listeners.append(recorder)
        watcher = Watcher(client)
        client.connect()
        (conn,) = server.connections
        before = [server.push(server.make_envelope()) for _ in range(5)]
        server.wait_for_acks(envelope_ids=before)
        big = json.dumps(server.make_envelope("events_api", {"event": {"type": "message", "text": "x" * 200_000}}))
        server.send_text(big, connection=conn)  # not recorded as an envelope: the client refuses it
        with closed:
            assert closed.wait_for(lambda: bool(reasons), timeout(5)), "the connection was not replaced"
        size = expected if expected is not None else len(big.encode())
        assert reasons[0] == f"message over max_message_size ({size} bytes)"
        new = server.wait_for_new_connection(1)
        watcher.wait_connected()
        after = [server.push(server.make_envelope(), connection=new) for _ in range(5)]
        server.wait_for_acks(envelope_ids=after)
        assert server.unacked() == [] and server.duplicate_acks() == []
        assert Counter(r.envelope_id for r in recorder.wait_for(10)) == Counter(before + after)


@pytest.mark.parametrize("fragment_size", [1 << 20, 4096], ids=["one-frame", "fragmented"])
def test_a_message_of_exactly_max_message_size_is_delivered(make_client: ClientFactory, fragment_size: int) -> None:
    with SocketModeServer(redelivery_delay=None, fragment_size=fragment_size) as server:
        client = make_client(web_client=WebClient(base_url=server.api_url), max_message_size=LIMIT)
        recorder = Recorder()
        client.socket_mode_request_listeners.append(recorder)
        client.connect()
        envelope = server.make_envelope("events_api", {"event": {"type": "message", "text": ""}})
        padding = LIMIT - len(json.dumps(envelope, separators=(",", ":")).encode())
        envelope["payload"]["event"]["text"] = "x" * padding
        text = json.dumps(envelope, separators=(",", ":"))
        assert len(text.encode()) == LIMIT
        (conn,) = server.connections
        server.wait_for_acks(envelope_ids=[server.push(text)])
        assert server.connections == [conn] and server.open_calls == 1


# ---- 5. a short soak ----------------------------------------------------------------------------


def test_a_short_soak_loses_nothing_and_runs_nothing_twice() -> None:
    """The soak driver of ``python -m benchmarks.soak`` for a few seconds (see docs/security.md)."""
    from benchmarks.soak import SoakSettings, run_soak

    threads = threading.active_count()
    report = run_soak(SoakSettings(duration=10.0, rate=80.0, fault_gap=(0.3, 1.2), drain=25.0, seed=20240611))
    assert report.sent > 300 and sum(report.faults.values()) >= 3, report.render()
    assert report.lost == [], report.render()
    assert report.lost_first == [], report.render()  # no first delivery lost and left to a redelivery
    assert report.run_twice == [], report.render()
    assert report.stalls == [], report.render()
    # the client ran in its own process: after close() its threads are back to where they started
    assert report.client_threads_after == 0, report.render()
    assert report.threads_after == report.threads_before, report.render()
    assert threading.active_count() == threads  # and the server's threads here are gone too
