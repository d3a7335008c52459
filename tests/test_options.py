"""slack_socket_mode.options: the constructor's options checked; a bad one is a ConfigurationError at once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import ConfigurationError, SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, client_threads


@pytest.mark.parametrize("token", ["xoxb-1-2-3", "", "secret-value-123", None])
def test_a_malformed_token_fails_fast_without_echoing_it(token: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        SocketModeClient(app_token=token)
    if token:
        assert token not in str(info.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "'not a url/' has no scheme"),
        ("ftp://127.0.0.1/api/", "'ftp://127.0.0.1/api/' has the scheme 'ftp'"),
        ("https:///api/", "has no host"),
        ("https://user:hunter2@slack.com:99999/api/", "'https://***@slack.com:99999/api/' does not parse"),
    ],
)
def test_a_web_api_url_that_cannot_be_called_is_a_configuration_error(url: str, problem: str) -> None:
    from slack_sdk.web import WebClient

    for options in ({"base_url": url}, {"web_client": WebClient(base_url=url)}):
        with pytest.raises(ConfigurationError) as info:
            SocketModeClient(app_token=APP_TOKEN, **options)  # type: ignore[arg-type]
        assert str(info.value).startswith("the Web API base_url must be an http:// or https:// URL with a host")
        assert str(info.value).endswith(problem) and "hunter2" not in str(info.value)
    SocketModeClient(app_token=APP_TOKEN, base_url="http://127.0.0.1:1/api/").close()  # a local server's


def test_ledger_options_are_checked(server: SocketModeServer) -> None:
    web = WebClient(base_url=server.api_url)
    for bad, message in (
        ({"ledger_max_entries": 0}, "ledger_max_entries must be at least 1"),
        ({"ledger_max_age": 0.0}, "ledger_max_age must be a positive number of seconds"),
        ({"max_ack_bytes": -1}, "max_ack_bytes must be at least 0"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            SocketModeClient(app_token=APP_TOKEN, web_client=web, **bad)  # type: ignore[arg-type]


def test_proxy_headers_without_an_http_proxy_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="slack_socket_mode"):
        SocketModeClient(APP_TOKEN, proxy_headers={"X-Team": "a"}).close()
    warned = [r for r in caplog.records if "proxy_headers" in r.getMessage()]
    assert len(warned) == 1 and "ignored" in warned[0].getMessage()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("connections", 0, "connections must be between 1 and 10 (Slack's limit per app)"),
        ("connections", 11, "connections must be between 1 and 10 (Slack's limit per app)"),
        ("concurrency", 0, "concurrency must be at least 1"),
        ("max_queue", 0, "max_queue must be at least 1"),
        ("handoff_after", 0.0, "handoff_after must be a positive number of seconds"),
        ("max_message_size", 1023, "max_message_size must be at least 1024 bytes"),
        ("slot_retry_interval", 0.0, "slot_retry_interval must be a positive number of seconds"),
        ("ping_interval", 0.0, "ping_interval must be a positive number of seconds, or None"),
    ],
)
def test_a_numeric_option_out_of_its_range_is_refused_naming_it(option: str, value: Any, message: str) -> None:
    before = client_threads()
    with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
        SocketModeClient(app_token=APP_TOKEN, **{option: value})
    assert client_threads() == before  # refused before anything started


def test_the_ends_of_each_range_are_accepted() -> None:
    for options in (
        {"connections": 1, "concurrency": 1, "max_queue": 1, "max_message_size": 1024},
        {"connections": 10, "ping_interval": None, "max_ack_bytes": 0},
    ):
        SocketModeClient(app_token=APP_TOKEN, **options).close()  # type: ignore[arg-type]


def test_base_url_and_a_web_client_together_are_refused() -> None:
    api = "http://127.0.0.1:1/api/"
    with pytest.raises(ConfigurationError, match=r"^pass base_url or web_client, not both "):
        SocketModeClient(app_token=APP_TOKEN, base_url=api, web_client=WebClient(base_url=api))


def test_the_web_client_built_for_an_app_that_passes_none() -> None:
    """Its base_url, and a per-request timeout of connect_timeout rounded up (slack_sdk's own is 30 s)."""
    with SocketModeClient(app_token=APP_TOKEN, base_url="http://127.0.0.1:1/api/", connect_timeout=2.5) as client:
        assert client.web_client.base_url == "http://127.0.0.1:1/api/"
        assert client.web_client.timeout == 3
    with SocketModeClient(app_token=APP_TOKEN) as client:
        assert client.web_client.base_url == WebClient.BASE_URL


def test_a_token_read_with_its_line_end_is_stripped() -> None:
    with SocketModeClient(app_token=f"  {APP_TOKEN}\n") as client:
        assert client.app_token == APP_TOKEN
