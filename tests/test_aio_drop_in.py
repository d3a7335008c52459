"""slack_socket_mode.aio.SocketModeClient as slack_sdk's own asyncio tests use it (scripts/outside_suites.py).

Real sockets on loopback against the local server; each test runs its coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from websockets.exceptions import WebSocketException

from slack_socket_mode import NotConnectedError as ThreadNotConnectedError
from slack_socket_mode.aio import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout


def test_send_message_without_a_connection_raises_a_connection_error(server: SocketModeServer) -> None:
    # slack_sdk's aiohttp client raises the built-in ConnectionError there, and its tests expect it
    async def main() -> None:
        client = SocketModeClient(APP_TOKEN, web_client=AsyncWebClient(base_url=server.api_url))
        try:
            await client.connect(timeout(5))
            await client.send_message("foo")
            await client.disconnect()
            with pytest.raises(ConnectionError) as raised:
                await client.send_message("foo")
            assert isinstance(raised.value, ThreadNotConnectedError)  # and still this package's error
            with pytest.raises(WebSocketException):  # as slack_sdk's websockets client raises, and its tests expect
                await client.send_message("foo")
        finally:
            await client.close()

    asyncio.run(main())


def test_on_message_listeners_get_the_text_also_shaped_like_aiohttps_wsmessage(server: SocketModeServer) -> None:
    async def main() -> list[object]:
        seen: list[object] = []
        got = asyncio.Event()

        async def on_message(message: object) -> None:
            seen.append(message)
            got.set()

        client = SocketModeClient(
            APP_TOKEN, web_client=AsyncWebClient(base_url=server.api_url), on_message_listeners=[on_message]
        )
        try:
            await client.connect(timeout(5))
            server.send_text("plain text")
            await asyncio.wait_for(got.wait(), timeout(5))
        finally:
            await client.close()
        return seen

    texts = [m for m in asyncio.run(main()) if m == "plain text"]
    assert len(texts) == 1
    (message,) = texts
    assert isinstance(message, str)
    assert message.data == "plain text" and message.type == aiohttp.WSMsgType.TEXT  # type: ignore[attr-defined]


def test_current_session_and_build_session_id_name_the_connection_as_slack_sdks_clients_do(
    server: SocketModeServer,
) -> None:
    async def main() -> tuple[str, str, str, str]:
        client = SocketModeClient(APP_TOKEN, web_client=AsyncWebClient(base_url=server.api_url))
        before = client.build_session_id(client.current_session)
        try:
            await client.connect(timeout(5))
            first = client.build_session_id(client.current_session)
            old = server.wait_for_connections(1)[0]
            server.disconnect("refresh_requested")
            await asyncio.to_thread(server.wait_for_new_connection, old.id, timeout=timeout(5))
            await asyncio.to_thread(old.wait_closed, timeout(5))
            second = client.build_session_id(client.current_session)
        finally:
            await client.close()
        return before, first, second, client.build_session_id(client.current_session)

    before, first, second, after = asyncio.run(main())
    assert before == "" and after == ""
    assert first.startswith("s_") and second.startswith("s_") and first != second
