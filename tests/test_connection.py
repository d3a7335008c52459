"""slack_socket_mode.connection: one WebSocket against the local server, and how it ends (typed ends).

Each way a connection can end reaches ``on_closed`` as an :class:`~slack_socket_mode.ends.End` of
its own kind, the value ``stats().reconnects`` counts: nothing is parsed back from text.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode.connection import CORK_FRAMES, Connection
from slack_socket_mode.ends import End, EndKind
from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout

logger = logging.getLogger("slack_socket_mode.tests")


class Opened:
    """A Connection to the local server, with what it read and how it ended."""

    def __init__(
        self,
        server: SocketModeServer,
        *,
        max_message_size: int = 1 << 20,
        then: Optional[Callable[[Connection, str], None]] = None,
    ) -> None:
        self.unsent: list[str] = []  # what the connection gave back (on_unsent)
        self._then = then  # called on the reader after each text is kept
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
            on_unsent=self.unsent.extend,
        )
        self.conn.open(timeout(5))
        self.conn.start()
        server.wait_for_connections(1)

    def _on_text(self, conn: Connection, text: str) -> None:
        self.texts.append(text)
        self.read.set()
        if self._then is not None:
            self._then(conn, text)

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

    def make(**options: Any) -> Opened:
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


def _ack_envelopes(pause: float = 0.0, close_after: Optional[int] = None) -> Callable[[Connection, str], None]:
    """An ``on_text`` that acks each envelope from the reader (after ``pause`` seconds); closes after the n-th."""
    acked = 0

    def then(conn: Connection, text: str) -> None:
        nonlocal acked
        envelope_id = json.loads(text).get("envelope_id")
        if envelope_id is None:
            return
        time.sleep(pause)  # the GIL is let go: the server reads whatever was written meanwhile
        conn.send_text('{"envelope_id":"' + envelope_id + '"}')
        acked += 1
        if acked == close_after:
            conn.close()

    return then


def test_acks_of_envelopes_read_together_go_out_in_one_write(
    server: SocketModeServer, opened: Callable[..., Opened]
) -> None:
    """A burst read in one recv is acked from the reader in one socket write (the server reads it at once)."""
    o = opened(then=_ack_envelopes(pause=0.0003))
    assert o.read.wait(timeout(5))
    count = CORK_FRAMES - 4  # fewer than a full cork: written when the reader would wait (or 2 ms have passed)
    ids = server.push_many([server.make_envelope() for _ in range(count)])
    acks = server.wait_for_acks(envelope_ids=ids, timeout=timeout(5))
    reads = {ack.received_at for ack in acks}
    # one write per ack would be read in about `count` reads (0.3 ms apart, with the GIL let go between)
    assert len(reads) <= 3, f"{count} acks arrived in {len(reads)} reads"
    assert len(server.acks) == count


def test_held_back_acks_go_out_before_the_close_frame(server: SocketModeServer, opened: Callable[..., Opened]) -> None:
    """An ack held back on the reader is written ahead of a close frame sent right after it, not dropped."""
    o = opened(then=_ack_envelopes(close_after=1))
    assert o.read.wait(timeout(5))
    first, *_ = server.push_many([server.make_envelope() for _ in range(3)])  # read together: the first ack is held
    server.wait_for_acks(envelope_ids=[first], timeout=timeout(5))
    assert o.end().kind is EndKind.CLIENT_CLOSED


def test_held_acks_a_connection_could_not_write_are_given_back(
    server: SocketModeServer, opened: Callable[..., Opened]
) -> None:
    """An ack held back when the connection is given up goes to on_unsent (the client's next hello), not lost."""
    held: list[str] = []

    def ack_then_abort(conn: Connection, text: str) -> None:
        envelope_id = json.loads(text).get("envelope_id")
        if envelope_id is not None and not held:
            held.append('{"envelope_id":"' + envelope_id + '"}')
            conn.send_text(held[0])  # held: the other two envelopes are read ahead
            conn.abort()

    o = opened(then=ack_then_abort)
    assert o.read.wait(timeout(5))
    server.push_many([server.make_envelope() for _ in range(3)])
    assert o.end().kind is EndKind.ABORTED
    assert o.unsent == held and server.acks == []  # given back once, and never written


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
