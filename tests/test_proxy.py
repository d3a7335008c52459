"""Proxies: real HTTP CONNECT and SOCKS5 proxies (pproxy) on loopback, started by the tests.

The local server listens on 127.0.0.2 and the proxy on 127.0.0.3, so every byte that goes
through the proxy shows up in its log as a connection to 127.0.0.2.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import ConnectionFailedError, ProxyAuthError, SocketModeClient
from slack_socket_mode.errors import ConfigurationError
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, Recorder, errors_until_timeout, timeout

pytestmark = pytest.mark.skipif(shutil.which("pproxy") is None, reason="pproxy is installed by the test extra")

PASSWORD = "pr0xy-s3cret"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Proxy:
    """A pproxy process; its verbose log lines are collected and can be waited on."""

    def __init__(self, scheme: str, *, auth: bool = True) -> None:
        self.port = free_port("127.0.0.3")
        listen = f"{scheme}://127.0.0.3:{self.port}" + (f"#user:{PASSWORD}" if auth else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pproxy", "-l", listen, "-v"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, name="test-pproxy-log", daemon=True)
        self.reader.start()
        self.wait_for("Serving on")

    def url(self, scheme: str = "http", password: str = PASSWORD) -> str:
        return f"{scheme}://user:{password}@127.0.0.3:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_for(self, pattern: str, seconds: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: any(re.search(pattern, x) for x in self.lines), timeout(seconds)):
                raise AssertionError(f"proxy never logged {pattern!r}: {self.lines}")

    def saw(self, pattern: str) -> bool:
        with self.cond:
            return any(re.search(pattern, x) for x in self.lines)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout(5))
        self.reader.join(timeout(5))


@pytest.fixture
def server() -> Iterator[SocketModeServer]:
    with SocketModeServer(host="127.0.0.2", redelivery_delay=None) as s:
        yield s


@pytest.fixture
def http_proxy() -> Iterator[Proxy]:
    proxy = Proxy("http")
    yield proxy
    proxy.stop()


def test_http_proxy_with_auth_carries_the_web_api_call_and_the_websocket(
    server: SocketModeServer, http_proxy: Proxy
) -> None:
    with SocketModeClient(APP_TOKEN, base_url=server.api_url, proxy=http_proxy.url()) as client:
        assert client.web_client.proxy == http_proxy.url()
        recorder = Recorder()
        client.socket_mode_request_listeners.append(recorder)
        client.connect(timeout=timeout(10))
        server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())])
        http_proxy.wait_for(rf"-> 127\.0\.0\.2:{server.api_port}\b")  # apps.connections.open
        http_proxy.wait_for(rf"-> 127\.0\.0\.2:{server.ws_port}\b")  # the WebSocket (CONNECT)
        assert PASSWORD not in repr(client) and PASSWORD not in repr(vars(client))


def test_wrong_proxy_password_on_the_web_api_call_is_a_clear_fatal_error(
    server: SocketModeServer, http_proxy: Proxy
) -> None:
    errors: list[Exception] = []
    client = SocketModeClient(
        APP_TOKEN, base_url=server.api_url, proxy=http_proxy.url(password="wrong"), on_error_listeners=[errors.append]
    )
    try:
        with pytest.raises(ProxyAuthError) as info:
            client.connect(timeout=timeout(10))
    finally:
        client.close()
    assert "407" in str(info.value) and "wrong" not in str(info.value)
    assert server.open_calls == 0
    assert [type(e) for e in errors] == [ProxyAuthError]


def test_wrong_proxy_password_on_the_websocket_is_a_clear_fatal_error(
    server: SocketModeServer, http_proxy: Proxy
) -> None:
    client = SocketModeClient(
        APP_TOKEN, web_client=WebClient(base_url=server.api_url), proxy=http_proxy.url(password="wrong")
    )
    try:
        with pytest.raises(ProxyAuthError) as info:
            client.connect(timeout=timeout(10))
    finally:
        client.close()
    assert "wrong" not in str(info.value)
    assert server.open_calls == 1  # the Web API call went direct; the CONNECT was refused
    assert server.all_connections == []


def test_an_unreachable_proxy_is_reported_and_retried(server: SocketModeServer) -> None:
    dead = free_port("127.0.0.3")
    client = SocketModeClient(
        APP_TOKEN, web_client=WebClient(base_url=server.api_url), proxy=f"http://user:{PASSWORD}@127.0.0.3:{dead}"
    )
    errors = errors_until_timeout(client)
    assert errors and all(isinstance(e, ConnectionFailedError) for e in errors)
    assert "ConnectionRefusedError" in str(errors[0])
    assert all(PASSWORD not in str(e) for e in errors)


def test_socks5_proxy_carries_the_websocket(server: SocketModeServer) -> None:
    proxy = Proxy("socks5")
    try:
        with SocketModeClient(
            APP_TOKEN, web_client=WebClient(base_url=server.api_url), proxy=proxy.url("socks5")
        ) as client:
            client.socket_mode_request_listeners.append(Recorder())
            client.connect(timeout=timeout(10))
            server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())])
            proxy.wait_for(rf"-> 127\.0\.0\.2:{server.ws_port}\b")
    finally:
        proxy.stop()


def test_environment_proxies_and_no_proxy(server: SocketModeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Proxy("http", auth=False)
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.3:{proxy.port}")
        for name in ("http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        with SocketModeClient(APP_TOKEN, base_url=server.api_url) as client:
            client.connect(timeout=timeout(10))
            proxy.wait_for(rf"-> 127\.0\.0\.2:{server.api_port}\b")
            proxy.wait_for(rf"-> 127\.0\.0\.2:{server.ws_port}\b")
        # NO_PROXY sends the WebSocket direct (the first connection's line is already logged)
        monkeypatch.setenv("NO_PROXY", "127.0.0.2")
        before = len(proxy.lines)
        with SocketModeClient(APP_TOKEN, base_url=server.api_url) as client:
            client.connect(timeout=timeout(10))
            assert len(server.all_connections) == 2
        assert not any(f"127.0.0.2:{server.ws_port}" in line for line in proxy.lines[before:])
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://user:pw@proxy:3128", "https:// proxies are not supported"),
        ("ftp://proxy:21", "proxy must be"),
        ("http://user:pw@proxy", "needs a host and a port"),
        ("proxy:3128", "proxy must be"),
    ],
)
def test_bad_proxy_urls_fail_fast_without_echoing_credentials(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SocketModeClient(APP_TOKEN, proxy=url)
    assert problem in str(info.value)
    assert "pw@" not in str(info.value)


def test_slack_sdk_websocket_client_proxy_options_are_accepted(server: SocketModeServer, http_proxy: Proxy) -> None:
    options: dict[str, Any] = {
        "http_proxy_host": "127.0.0.3",
        "http_proxy_port": http_proxy.port,
        "http_proxy_auth": ("user", PASSWORD),
        "proxy_type": "http",
    }
    with SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), **options) as client:
        client.connect(timeout=timeout(10))
        http_proxy.wait_for(rf"-> 127\.0\.0\.2:{server.ws_port}\b")
        assert PASSWORD not in repr(vars(client))


def basic_auth(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_proxy_headers_are_sent_on_the_websockets_connect(server: SocketModeServer, http_proxy: Proxy) -> None:
    # slack_sdk users authenticate to the proxy with proxy_headers: without them this proxy answers 407
    url = f"http://127.0.0.3:{http_proxy.port}"
    headers = {"Proxy-Authorization": basic_auth("user", PASSWORD)}
    with SocketModeClient(
        APP_TOKEN, web_client=WebClient(base_url=server.api_url), proxy=url, proxy_headers=headers
    ) as client:
        client.socket_mode_request_listeners.append(Recorder())
        client.connect(timeout=timeout(10))
        server.wait_for_acks(envelope_ids=[server.push(server.make_envelope())])
        http_proxy.wait_for(rf"-> 127\.0\.0\.2:{server.ws_port}\b")  # the WebSocket went through the tunnel
        assert client.proxy_headers == headers
        assert PASSWORD not in repr(vars(client)) and basic_auth("user", PASSWORD) not in repr(vars(client))


def test_wrong_proxy_headers_are_a_clear_fatal_error(server: SocketModeServer, http_proxy: Proxy) -> None:
    client = SocketModeClient(
        APP_TOKEN,
        web_client=WebClient(base_url=server.api_url),
        proxy=f"http://127.0.0.3:{http_proxy.port}",
        proxy_headers={"Proxy-Authorization": basic_auth("user", "wrong")},
    )
    try:
        with pytest.raises(ProxyAuthError) as info:
            client.connect(timeout=timeout(10))
    finally:
        client.close()
    assert "407" in str(info.value) and info.value.__context__ is None
    assert server.all_connections == []


def test_proxy_headers_over_wss_through_the_tunnel(http_proxy: Proxy) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.2").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with SocketModeServer(host="127.0.0.2", redelivery_delay=None, ssl_context=server_context) as tls_server:
        client = SocketModeClient(
            APP_TOKEN,
            web_client=WebClient(base_url=tls_server.api_url, ssl=client_context),
            proxy=f"http://127.0.0.3:{http_proxy.port}",
            proxy_headers={"Proxy-Authorization": basic_auth("user", PASSWORD)},
        )
        with client:
            client.socket_mode_request_listeners.append(Recorder())
            client.connect(timeout=timeout(10))
            assert client.wss_uri is not None and client.wss_uri.startswith("wss://")
            tls_server.wait_for_acks(envelope_ids=[tls_server.push(tls_server.make_envelope())])
            http_proxy.wait_for(rf"-> 127\.0\.0\.2:{tls_server.ws_port}\b")
