"""Hostile and broken peers (issue 12): every wait bounded, every rule enforced at every hop.

The tests of this issue that are the job of one module are with that module's tests: a peer
that stops reading or goes silent (``tests/test_health.py``), the close path that never holds
the client's lock (``tests/test_session.py``), ``close()`` against a write that cannot progress
(``tests/test_engine.py``), one deadline for a whole open attempt (``tests/test_opening.py``) and
a redirected handshake (``tests/test_boundary.py``). Here: a malformed envelope, and
``concurrency=1``. Real sockets; no mocks; waits are bounded and scaled.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

from .conftest import (
    ClientFactory,
    Recorder,
    timeout,
)

# ---- 4. a malformed envelope ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, 5, [1, 2]], ids=["null", "number", "list"])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "pool"])
def test_a_malformed_envelope_is_skipped_and_nothing_after_it_is_lost(
    server: SocketModeServer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    payload: Any,
    inline: bool,
) -> None:
    client = make_client(inline_dispatch=inline)
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    caplog.set_level(logging.WARNING, logger="slack_socket_mode")
    bad = {"envelope_id": "bad-envelope-1", "type": "events_api", "payload": payload, "accepts_response_payload": False}
    good = server.make_envelope("events_api", {"event": {"type": "message", "text": "after"}})
    server.send_text(json.dumps(bad))
    good_id = server.push(good)
    server.wait_for_acks(envelope_ids=[good_id], timeout=timeout(5))
    assert [r.envelope_id for r in recorder.seen] == [good_id]
    assert len(server.all_connections) == 1 and client.is_connected()  # not a transport error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("bad-envelope-1" in line for line in warnings), warnings
    assert client.stats().malformed_messages == 1


# ---- 7. concurrency=1 ---------------------------------------------------------------------------------


def test_concurrency_one_runs_one_listener_at_a_time(server: SocketModeServer, make_client: ClientFactory) -> None:
    """A slow listener on the reader (inline) and the next envelope on the worker must not overlap."""
    client = make_client(concurrency=1, handoff_after=0.01)
    lock = threading.Lock()
    running = [0]
    most = [0]
    work = threading.Event()  # never set: its wait is the listener's work

    def slow(client: SocketModeClient, request: Any) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        work.wait(0.1)
        with lock:
            running[0] -= 1
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    client.socket_mode_request_listeners.append(slow)
    client.connect()
    ids = [server.push(server.make_envelope("events_api", {"n": n})) for n in range(6)]
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
    assert most[0] == 1, f"{most[0]} listeners ran at once with concurrency=1"
