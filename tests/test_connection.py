"""slack_socket_mode.connection: one WebSocket against the local server, and how it ends (typed ends).

Each way a connection can end reaches ``on_closed`` as an :class:`~slack_socket_mode.ends.End` of
its own kind, the value ``stats().reconnects`` counts: nothing is parsed back from text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Callable

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode.connection import Connection
from slack_socket_mode.ends import End, EndKind
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout

logger = logging.getLogger("slack_socket_mode.tests")


class Opened:
    """A Connection to the local server, with what it read and how it ended."""

    def __init__(self, server: SocketModeServer, *, max_message_size: int = 1 << 20) -> None:
        url = WebClient(base_url=server.api_url).apps_connections_open(app_token=APP_TOKEN)["url"]
        self.texts: list[str] = []
        self.ends: list[End] = []
        self.read = threading.Event()
        self.ended = threading.Event()
        self.conn = Connection(
            1,
            url,
            on_text=self._on_text,
            on_closed=self._on_closed,
            logger=logger,
            thread_name="slack_socket_mode-test-reader-1",
            max_message_size=max_message_size,
        )
        self.conn.open(timeout(5))
        self.conn.start()
        server.wait_for_connections(1)

    def _on_text(self, conn: Connection, text: str) -> None:
        self.texts.append(text)
        self.read.set()

    def _on_closed(self, conn: Connection, end: End) -> None:
        self.ends.append(end)
        self.ended.set()

    def end(self) -> End:
        assert self.ended.wait(timeout(5)), "the connection did not end"
        assert self.conn.join(timeout(5))
        (end,) = self.ends  # once, and only once
        return end


@pytest.fixture
def opened(server: SocketModeServer) -> Iterator[Callable[..., Opened]]:
    made: list[Opened] = []

    def make(**options: int) -> Opened:
        made.append(Opened(server, **options))
        return made[-1]

    yield make
    for o in made:
        o.conn.abort()
        o.conn.join(timeout(5))


def test_a_text_message_reaches_on_text_and_an_ack_goes_back(
    server: SocketModeServer, opened: Callable[..., Opened]
) -> None:
    o = opened()
    assert o.read.wait(timeout(5)) and '"hello"' in o.texts[0]
    envelope_id = server.push(server.make_envelope())
    o.conn.send_text('{"envelope_id":"' + envelope_id + '"}')
    server.wait_for_acks(envelope_ids=[envelope_id])


def test_the_servers_close_frame_ends_it_as_server_closed_with_its_code(
    server: SocketModeServer, opened: Callable[..., Opened]
) -> None:
    o = opened()
    server.close_connection(code=4000, reason="bye")
    end = o.end()
    assert end == End(EndKind.SERVER_CLOSED, code=4000) and str(end) == "server closed the connection (code 4000)"


def test_our_close_frame_answered_ends_it_as_closed_by_client(
    server: SocketModeServer, opened: Callable[..., Opened]
) -> None:
    o = opened()
    o.conn.close(1000, "done")
    assert o.end().kind is EndKind.CLIENT_CLOSED


def test_an_abort_ends_it_as_aborted(server: SocketModeServer, opened: Callable[..., Opened]) -> None:
    o = opened()
    o.conn.abort()
    assert o.end().kind is EndKind.ABORTED


def test_a_reset_ends_it_as_a_transport_error_or_a_closed_tcp_connection(
    server: SocketModeServer, opened: Callable[..., Opened]
) -> None:
    o = opened()
    server.reset()
    assert o.end().kind in (EndKind.TRANSPORT_ERROR, EndKind.TCP_CLOSED)


def test_a_message_over_max_message_size_ends_it_as_oversize_before_its_payload_is_read(
    server: SocketModeServer, opened: Callable[..., Opened]
) -> None:
    o = opened(max_message_size=1000)
    assert o.read.wait(timeout(5))
    server.send_text("x" * 5000)
    end = o.end()
    assert end == End(EndKind.OVERSIZE, "(5000 bytes)") and o.texts[1:] == []
