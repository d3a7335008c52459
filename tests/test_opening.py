"""slack_socket_mode.opening: the URL from apps.connections.open, and one deadline for a whole open attempt."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any, Callable

import pytest
from benchmarks.peers import (
    Handler,
    RawPeer,
    read_request,
    trickling,
    trickling_proxy,
    trickling_tls,
    trickling_web_api,
    web_api,
)
from slack_sdk.http_retry import ConnectionErrorRetryHandler, FixedValueRetryIntervalCalculator
from slack_sdk.web import WebClient

from slack_socket_mode import AuthError, ConnectionFailedError, InsecureURLError, SocketModeClient
from slack_socket_mode.opening import Connector
from slack_socket_mode.redaction import Secret
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, ClientFactory, _connect_quietly, client_threads, closes_within, timeout
from .test_faults import FAST


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


def test_a_context_without_verification_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with caplog.at_level("WARNING", logger="slack_socket_mode"):
        SocketModeClient(APP_TOKEN, ssl_context=context).close()
    assert any("certificate verification is off" in r.getMessage() for r in caplog.records)


def connector(**given: Any) -> Connector:
    """A connector with the client's default transport options (no proxy, no TLS context), but ``given``."""
    options: dict[str, Any] = {
        "prefix": "slack_socket_mode-test",
        "logger": logging.getLogger("slack_socket_mode.tests"),
        "proxy": None,
        "ssl_context": None,
        "max_message_size": 1 << 20,
        "write_timeout": 5.0,
        "trace_enabled": False,
        "all_message_trace_enabled": False,
        "ping_pong_trace_enabled": False,
        "allow_insecure_urls": False,
        "debug_reconnects": False,
    }
    return Connector(**{**options, **given})


def test_issue_url_calls_apps_connections_open_and_checks_the_url_it_returns(
    server: SocketModeServer, peers: Callable[[Handler], RawPeer]
) -> None:
    web = WebClient(base_url=server.api_url)
    url = connector().issue_url(web, Secret(APP_TOKEN))
    assert url.startswith(f"ws://127.0.0.1:{server.ws_port}/link/?") and server.open_calls == 1
    debug = connector(debug_reconnects=True).issue_url(web, Secret(APP_TOKEN))
    assert debug.startswith(f"ws://127.0.0.1:{server.ws_port}/link/?") and debug.endswith("&debug_reconnects=true")
    assert server.open_calls == 2
    with pytest.raises(AuthError) as refused:  # the token given is the one sent: the server takes only xapp- tokens
        connector().issue_url(web, Secret("xoxb-1-2-a-bot-token"))
    assert refused.value.error == "invalid_auth" and refused.value.__context__ is None
    elsewhere = WebClient(base_url=f"http://127.0.0.1:{peers(web_api('ws://198.51.100.7/link/?ticket=t')).port}/api/")
    with pytest.raises(InsecureURLError):  # ws:// to a host that is not this one: refused, not opened
        connector().issue_url(elsewhere, Secret(APP_TOKEN))
    assert (
        connector(allow_insecure_urls=True).issue_url(elsewhere, Secret(APP_TOKEN))
        == "ws://198.51.100.7/link/?ticket=t"
    )
