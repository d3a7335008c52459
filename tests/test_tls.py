"""TLS: the local server serves https:// and wss:// under a throwaway CA (trustme)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme
from slack_sdk.web import WebClient

from slack_socket_mode import ConnectionFailedError, SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, Recorder, errors_until_timeout, timeout


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[SocketModeServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with SocketModeServer(ssl_context=context, redelivery_delay=None) as server:
        yield server


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_trusted_ca_connects_over_wss_and_https(tls_server: SocketModeServer, ca: trustme.CA) -> None:
    assert tls_server.api_url.startswith("https://")
    with SocketModeClient(APP_TOKEN, base_url=tls_server.api_url, ssl_context=trusting(ca)) as client:
        recorder = Recorder()
        client.socket_mode_request_listeners.append(recorder)
        client.connect(timeout=timeout(10))
        assert client.wss_uri is not None and client.wss_uri.startswith("wss://")
        server_ids = [tls_server.push(tls_server.make_envelope()) for _ in range(3)]
        tls_server.wait_for_acks(envelope_ids=server_ids)


def test_untrusted_ca_fails_the_web_api_call_clearly(tls_server: SocketModeServer) -> None:
    other = trusting(trustme.CA())
    errors = errors_until_timeout(SocketModeClient(APP_TOKEN, base_url=tls_server.api_url, ssl_context=other))
    assert errors and isinstance(errors[0], ConnectionFailedError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(errors[0])
    assert tls_server.open_calls == 0


def test_untrusted_ca_fails_the_websocket_clearly(tls_server: SocketModeServer, ca: trustme.CA) -> None:
    web_client = WebClient(base_url=tls_server.api_url, ssl=trusting(ca))  # the Web API leg trusts the CA
    other = trusting(trustme.CA())  # the WebSocket leg does not
    errors = errors_until_timeout(SocketModeClient(APP_TOKEN, web_client=web_client, ssl_context=other))
    assert errors and all(isinstance(e, ConnectionFailedError) for e in errors)
    assert "CERTIFICATE_VERIFY_FAILED" in str(errors[0]) and "wss://127.0.0.1" in str(errors[0])
    assert "ticket" not in str(errors[0])
    assert tls_server.open_calls >= 1 and tls_server.all_connections == []


def test_certificate_verification_is_on_by_default(tls_server: SocketModeServer) -> None:
    errors = errors_until_timeout(SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=tls_server.api_url)))
    assert "CERTIFICATE_VERIFY_FAILED" in str(errors[0])


def test_the_web_clients_ssl_context_is_used_for_the_websocket(tls_server: SocketModeServer, ca: trustme.CA) -> None:
    # slack_sdk connects with web_client.ssl: a private CA given to the WebClient covers the WebSocket too
    web_client = WebClient(base_url=tls_server.api_url, ssl=trusting(ca))
    with SocketModeClient(APP_TOKEN, web_client=web_client) as client:
        client.socket_mode_request_listeners.append(Recorder())
        client.connect(timeout=timeout(10))
        assert client.wss_uri is not None and client.wss_uri.startswith("wss://")
        tls_server.wait_for_acks(envelope_ids=[tls_server.push(tls_server.make_envelope())])


def test_ssl_context_still_overrides_the_web_clients(tls_server: SocketModeServer, ca: trustme.CA) -> None:
    web_client = WebClient(base_url=tls_server.api_url, ssl=trusting(ca))
    errors = errors_until_timeout(
        SocketModeClient(APP_TOKEN, web_client=web_client, ssl_context=trusting(trustme.CA()))
    )
    assert errors and "CERTIFICATE_VERIFY_FAILED" in str(errors[0])


def test_a_bolt_handler_uses_the_apps_web_client_ssl(tls_server: SocketModeServer, ca: trustme.CA) -> None:
    from slack_bolt import App

    from slack_socket_mode.bolt import SocketModeHandler

    web_client = WebClient(token="xoxb-111-222-xyz", base_url=tls_server.api_url, ssl=trusting(ca))
    app = App(client=web_client, signing_secret="not-used", token_verification_enabled=False)
    handler = SocketModeHandler(app, APP_TOKEN)
    try:
        handler.connect()
        assert handler.client.is_connected()
    finally:
        handler.close()
