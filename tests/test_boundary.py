"""slack_socket_mode.boundary: transport and Web API errors mapped to ours (types, fields, messages)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pytest
import websocket
from benchmarks.peers import Handler, RawPeer, redirecting, web_api
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse, WebClient

from slack_socket_mode import (
    AuthError,
    ClientState,
    ConnectionFailedError,
    FatalError,
    NotConnectedError,
    ProxyAuthError,
    RateLimitedError,
)
from slack_socket_mode.boundary import api_error, open_error, transport_end, write_error
from slack_socket_mode.ends import End, EndKind
from slack_socket_mode.rtm.errors import RTMAuthError
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, ClientFactory, _connect_quietly, timeout
from .test_faults import FAST


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked"])
def test_fatal_auth_error_from_connect(
    server: SocketModeServer, make_client: ClientFactory, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server.fail_next_opens(error, count=5)
    client = make_client(reconnect_policy=FAST)
    errors: list[Exception] = []
    client.on_error_listeners.append(errors.append)
    with pytest.raises(AuthError) as info:
        client.connect()
    assert info.value.error == error
    assert APP_TOKEN not in str(info.value)
    assert client.state is ClientState.FAILED
    assert server.open_calls == 1  # no further calls
    assert [type(e) for e in errors] == [AuthError]
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1 and error in loud[0], loud  # a permanent misconfiguration is said once, loudly


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


def refused(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> SlackApiError:
    """What slack_sdk raises for an answer of ``apps.connections.open`` that is not ``ok``."""
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="http://127.0.0.1:1/api/apps.connections.open",
        req_args={"headers": {"Authorization": f"Bearer {APP_TOKEN}"}},
        data=data,
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError("The request to the Slack API failed.", response)


def test_a_rate_limited_answer_says_how_long_to_wait() -> None:
    limited = api_error(refused(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}))
    assert isinstance(limited, RateLimitedError) and not isinstance(limited, FatalError)
    assert (limited.retry_after, limited.status, limited.error) == (7.0, 429, "ratelimited")
    assert str(limited) == "apps.connections.open is rate limited; retrying after 7 s"
    by_error = api_error(refused(200, {"ok": False, "error": "ratelimited"}))  # no status, no header: 30 s
    assert isinstance(by_error, RateLimitedError) and by_error.retry_after == 30.0
    unreadable = api_error(refused(429, {"ok": False}, {"Retry-After": "soon"}))
    assert isinstance(unreadable, RateLimitedError) and unreadable.retry_after == 30.0
    lower_case = api_error(refused(429, {"ok": False}, {"retry-after": "2.5"}))
    assert isinstance(lower_case, RateLimitedError) and lower_case.retry_after == 2.5


def test_a_refused_token_is_fatal_and_other_refusals_are_retried() -> None:
    revoked = api_error(refused(200, {"ok": False, "error": "token_revoked"}))
    assert type(revoked) is AuthError and revoked.error == "token_revoked"
    assert str(revoked) == "apps.connections.open refused the app-level token: token_revoked"
    rtm = api_error(
        refused(200, {"ok": False, "error": "invalid_auth"}),
        method="rtm.connect",
        token_kind="the bot token",
        auth_error=RTMAuthError,
    )
    assert type(rtm) is RTMAuthError and str(rtm) == "rtm.connect refused the bot token: invalid_auth"
    proxy = api_error(refused(407, {"ok": False}))
    assert isinstance(proxy, ProxyAuthError) and proxy.error == "proxy_auth_required"
    failed = api_error(refused(500, {"ok": False, "error": "internal_error"}))
    assert type(failed) is ConnectionFailedError and (failed.error, failed.status) == ("internal_error", 500)
    assert str(failed) == "apps.connections.open failed: internal_error (HTTP 500)"
    for error in (revoked, rtm, proxy, failed):
        assert APP_TOKEN not in str(error) and error.__context__ is None


def test_a_readers_error_becomes_an_end_by_what_the_client_was_doing() -> None:
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert transport_end(reset, closing=True, aborted=True) == End(EndKind.CLIENT_CLOSED)  # our close frame went out
    assert transport_end(reset, closing=False, aborted=True) == End(EndKind.ABORTED)
    closed = websocket.WebSocketConnectionClosedException("socket is already closed.")
    assert transport_end(closed, closing=False, aborted=False) == End(EndKind.TCP_CLOSED)
    assert transport_end(reset, closing=False, aborted=False) == End(
        EndKind.TRANSPORT_ERROR, "ConnectionResetError: [Errno 104] Connection reset by peer"
    )
    two_lines = OSError("first line\nsecond line")
    assert transport_end(two_lines, closing=False, aborted=False).detail == "OSError: first line"


def test_a_failed_write_names_only_its_connection_and_the_errors_type() -> None:
    error = write_error(3, BrokenPipeError(32, f"Broken pipe writing {APP_TOKEN}"))
    assert type(error) is NotConnectedError and str(error) == "connection 3 failed: BrokenPipeError"


def test_an_open_attempts_error_is_ours_detached_and_says_when_it_was_aborted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("slack_socket_mode.tests")
    try:
        raise ConnectionFailedError("the handshake failed", error="handshake_rejected", status=403)
    except ConnectionFailedError as e:
        ours = open_error(1, e, logger)
    assert ours.__traceback__ is None and ours.__context__ is None and str(ours) == "the handshake failed"
    with caplog.at_level(logging.ERROR, logger=logger.name):
        try:
            raise KeyError("a library bug")
        except KeyError as e:
            unforeseen = open_error(2, e, logger)
    assert type(unforeseen) is ConnectionFailedError and unforeseen.error == "KeyError"
    assert str(unforeseen) == "could not open a connection: KeyError"
    assert [r.getMessage() for r in caplog.records] == [
        "connection 2: unexpected error while opening: KeyError: 'a library bug'"
    ]
    aborted = open_error(3, ConnectionFailedError("read timed out", error="timeout"), logger, aborted_after=1.0)
    assert type(aborted) is ConnectionFailedError and aborted.error == "open_aborted"
    assert str(aborted).startswith("read timed out (aborted: the open attempt's deadline, connect_timeout 1 s, passed")
    fatal = open_error(4, AuthError("refused", error="invalid_auth"), logger, aborted_after=1.0)
    assert type(fatal) is AuthError  # a fatal error is said as it is, aborted or not
