"""slack_socket_mode.listeners: a coroutine function is refused, never accepted to run never.

slack_sdk's thread-based client appends an ``async def`` listener, never awaits it ("coroutine …
was never awaited") and never acks its envelope. Here the listener lists refuse one with a
TypeError that names slack_socket_mode.aio, and a coroutine that reaches dispatch anyway (a list
the app assigned, a callable that returns one) is closed and reported with an ERROR.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import warnings
from typing import Any

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.websocket_client import SocketModeClient as WebSocketClientFlavour

from .conftest import APP_TOKEN, ClientFactory, timeout


async def async_listener(client: Any, request: SocketModeRequest) -> None:
    await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))


class AsyncCallable:
    async def __call__(self, client: Any, request: SocketModeRequest) -> None:
        return None


def sync_listener(client: Any, request: SocketModeRequest) -> None:
    client.send_socket_mode_response(SocketModeResponse(request.envelope_id))


LISTS = [
    "message_listeners",
    "socket_mode_request_listeners",
    "on_message_listeners",
    "on_error_listeners",
    "on_close_listeners",
    "lifecycle_listeners",
]


@pytest.mark.parametrize("name", LISTS)
@pytest.mark.parametrize(
    "listener",
    [async_listener, AsyncCallable(), functools.partial(async_listener, None)],
    ids=["async def", "async __call__", "partial"],
)
def test_every_way_of_adding_a_coroutine_function_raises_and_leaves_the_list_as_it_was(
    make_client: ClientFactory, name: str, listener: Any
) -> None:
    client = make_client()
    lst = getattr(client, name)
    lst.append(sync_listener)
    adds = [
        lambda: lst.append(listener),
        lambda: lst.insert(0, listener),
        lambda: lst.extend([sync_listener, listener]),
        lambda: lst.__iadd__([listener]),
        lambda: lst.__setitem__(0, listener),
        lambda: lst.__setitem__(slice(0, 1), [listener]),
    ]
    for add in adds:
        with pytest.raises(TypeError, match=rf"{name}: .* coroutine function; .*slack_socket_mode\.aio"):
            add()
        assert list(lst) == [sync_listener]


def test_the_constructor_refuses_a_coroutine_function_in_a_listener_list(server: SocketModeServer) -> None:
    with pytest.raises(TypeError, match=r"on_error_listeners: .*slack_socket_mode\.aio"):
        SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), on_error_listeners=[async_listener])


def test_the_websocket_client_flavour_refuses_one_in_on_open_listeners(server: SocketModeServer) -> None:
    with pytest.raises(TypeError, match=r"on_open_listeners: .*slack_socket_mode\.aio"):
        WebSocketClientFlavour(
            APP_TOKEN, web_client=WebClient(base_url=server.api_url), on_open_listeners=[async_listener]
        )
    client = WebSocketClientFlavour(APP_TOKEN, web_client=WebClient(base_url=server.api_url))
    try:
        with pytest.raises(TypeError, match=r"on_message_listeners: .*slack_socket_mode\.aio"):
            client.on_message_listeners.append(async_listener)  # type: ignore[arg-type]
    finally:
        client.close()


def test_a_coroutine_that_reaches_dispatch_is_closed_and_reported_with_an_error_for_each_envelope(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A list the app assigned in place of the client's is not checked: dispatch refuses the coroutine."""
    client = make_client()
    seen: list[str] = []
    both = threading.Event()

    def returns_a_coroutine(client: Any, request: SocketModeRequest) -> Any:
        return async_listener(client, request)  # a sync callable that hands back a coroutine

    def after(client: Any, request: SocketModeRequest) -> None:  # runs after it: the others still run
        seen.append(request.envelope_id)
        if len(seen) == 2:
            both.set()

    client.socket_mode_request_listeners = [returns_a_coroutine, after]  # a plain list: not checked
    client.connect()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR, "slack_socket_mode"):
        warnings.simplefilter("always")
        ids = [server.push(server.make_envelope("slash_commands", {"command": "/x"})) for _ in range(2)]
        assert both.wait(timeout(5))
        gc.collect()  # a coroutine left unclosed would warn "never awaited" here
    errors = [r for r in caplog.records if "returned a coroutine" in r.getMessage()]
    assert [r.levelno for r in errors] == [logging.ERROR, logging.ERROR]
    assert "slack_socket_mode.aio" in errors[0].getMessage()
    assert ids[0] in errors[0].getMessage() and ids[1] in errors[1].getMessage()
    assert not [w for w in caught if "never awaited" in str(w.message)]  # closed, not left to warn
    assert all(not server.envelope(envelope_id).acks for envelope_id in ids)  # unacked, and said so


def test_bolts_asyncapp_is_refused_by_the_thread_handler_naming_the_asyncio_client() -> None:
    pytest.importorskip("aiohttp")
    from slack_bolt.async_app import AsyncApp

    from slack_socket_mode.bolt import SocketModeHandler

    app = AsyncApp(token="xoxb-test", signing_secret="secret")
    with pytest.raises(TypeError, match=r"AsyncApp.*slack_socket_mode\.aio"):
        SocketModeHandler(app, APP_TOKEN)  # type: ignore[arg-type]
