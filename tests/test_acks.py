"""slack_socket_mode.acks: each ack once, on its envelope's connection, else the newest, else kept until hello."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from typing import Any

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from slack_socket_mode import NotConnectedError, SocketModeClient
from slack_socket_mode.acks import MAX_DEFERRED
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from . import test_faults
from .conftest import ClientFactory, Recorder, timeout

#: The fixture of tests/test_faults.py: the local server redelivers an envelope not acked within 3 s, as Slack does.
server = test_faults.server


def test_acks_with_payloads(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()

    def slash(client: SocketModeClient, request: SocketModeRequest) -> None:
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id, {"text": "pong"}))

    client.socket_mode_request_listeners.append(slash)
    client.connect()
    envelope_id = server.push(load_sample("slash_commands"))
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id])
    assert ack.payload == {"text": "pong"}
    assert json.loads(ack.raw) == {"envelope_id": envelope_id, "payload": {"text": "pong"}}


def test_send_message_routes_acks_through_the_ledger_and_sends_other_text_as_it_is(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """slack_sdk's send_message: an ack goes out once, with its payload; other text goes out unchanged."""
    client = make_client()
    recorder = Recorder(ack=False)
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    first = server.push(load_sample("slash_commands"))
    second = server.push(load_sample("events_api_message"))
    recorder.wait_for(2)
    ack = json.dumps({"envelope_id": first, "payload": {"text": "pong"}})
    client.send_message(ack)
    with caplog.at_level(logging.DEBUG, logger="slack_socket_mode"):
        client.send_message(ack)  # a second ack of the same envelope is not sent
    assert f"envelope {first}: a second ack was not sent" in [r.getMessage() for r in caplog.records]
    client.send_message('{"envelope_id": not json')  # looks like an ack, is not: sent as it is
    client.send_message("hello, server")
    client.send_socket_mode_response({"envelope_id": "never-delivered"})  # unknown here: sent all the same
    client.send_message(json.dumps({"envelope_id": second}))  # on the same connection, after the others
    server.wait_for_acks(envelope_ids=[first, second])
    assert [a.payload for a in server.acks if a.envelope_id == first] == [{"text": "pong"}]
    assert [a.envelope_id for a in server.duplicate_acks()] == ["never-delivered"]
    texts = [m.text for m in server.messages]
    assert '{"envelope_id": not json' in texts and "hello, server" in texts
    with pytest.raises(ValueError, match=r"^a Socket Mode response needs an envelope_id$"):
        client.send_socket_mode_response({"payload": {"text": "to whom?"}})
    client.disconnect()
    with pytest.raises(NotConnectedError, match=r"^no open Socket Mode connection$"):
        client.send_message("hello, nobody")


def test_an_ack_without_payload_is_the_compact_json_of_its_envelope_id(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    """The common ack is written without an encoder; it must be exactly what json.dumps gives."""
    client = make_client()
    client.socket_mode_request_listeners.append(
        lambda client, request: client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
    )
    client.connect()
    odd = 'é"\\\u2028\x01-id'
    envelope_id = server.push(server.make_envelope(envelope_id=odd))
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id])
    assert ack.raw == json.dumps({"envelope_id": odd}, separators=(",", ":"))
    assert json.loads(ack.raw) == {"envelope_id": odd}


class _HeldAck:
    """A request listener that holds the ack of its first envelope until released; acks others at once."""

    def __init__(self) -> None:
        self.started = threading.Event()  # the first envelope's listener runs
        self.release = threading.Event()
        self.acked = threading.Event()  # the first envelope's ack was handed to the client
        self.runs: Counter[str] = Counter()
        self.first: str | None = None

    def __call__(self, client: SocketModeClient, request: Any) -> None:
        self.runs[request.envelope_id] += 1
        if self.first is None:
            self.first = request.envelope_id
            self.started.set()
            assert self.release.wait(timeout(10))
            client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": {"text": "late"}})
            self.acked.set()
        else:
            client.send_socket_mode_response({"envelope_id": request.envelope_id})


def _holding_an_ack(
    server: SocketModeServer, make_client: ClientFactory
) -> tuple[SocketModeClient, _HeldAck, Any, str]:
    """A connected client whose listener holds the ack of one envelope (delivered on ``old``) until released."""
    listener = _HeldAck()
    client = make_client()
    client.socket_mode_request_listeners.append(listener)
    client.connect()
    (old,) = server.wait_for_connections(1)
    envelope_id = server.push(server.make_envelope(), connection=old)
    assert listener.started.wait(timeout(5))
    return client, listener, old, envelope_id


def test_an_ack_whose_connection_is_gone_goes_out_on_the_newest_and_a_redelivery_there_is_not_acked_again(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The ack takes the newest connection; the ledger then knows it went there (a redelivery there crossed it)."""
    client, listener, old, envelope_id = _holding_an_ack(server, make_client)
    server.reset(old)
    new = server.wait_for_new_connection(1)
    probe = server.push(server.make_envelope(), connection=new)  # acked at once: the client reads the new one
    server.wait_for_acks(envelope_ids=[probe])
    listener.release.set()
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id])
    assert ack.connection_id == new.id and ack.payload == {"text": "late"}
    assert len(server.envelope(envelope_id).deliveries) == 1  # sent as acked, not re-sent for a redelivery
    again = dict(server.make_envelope(envelope_id=envelope_id), retry_attempt=1, retry_reason="timeout")
    with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
        server.push(again, connection=new)  # it crossed the ack that went out on this connection
        after = server.push(server.make_envelope(), connection=new)
        server.wait_for_acks(envelope_ids=[after])  # read after the redelivery, on the same reader
    assert [r.getMessage() for r in caplog.records] == []  # settled quietly
    assert len(server.envelope(envelope_id).acks) == 1
    assert listener.runs[envelope_id] == 1
    stats = client.stats()
    assert stats.ack_latency_p99 is not None and stats.ack_latency_p99 < timeout(5)


def test_an_ack_with_no_connection_to_go_on_is_kept_and_sent_after_the_next_hello(
    server: SocketModeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client, listener, _old, envelope_id = _holding_an_ack(server, make_client)
    client.disconnect()
    with caplog.at_level(logging.WARNING, logger="slack_socket_mode"):
        listener.release.set()
        assert listener.acked.wait(timeout(5))
    assert [r.getMessage() for r in caplog.records if "deferred" in r.getMessage()] == [
        "no open connection: ack deferred until the next hello"
    ]
    assert server.acks == []
    client.connect()
    new = server.wait_for_new_connection(1)
    (ack,) = server.wait_for_acks(envelope_ids=[envelope_id])
    assert ack.connection_id == new.id and ack.payload == {"text": "late"}
    assert len(server.envelope(envelope_id).deliveries) == 1  # sent as acked, not re-sent for a redelivery
    assert listener.runs[envelope_id] == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_acks_kept_for_the_next_hello_are_bounded(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client()
    logger_name = client.logger.name
    logging.getLogger(logger_name).setLevel(logging.ERROR)  # one "ack deferred" WARNING per ack otherwise
    try:
        for n in range(MAX_DEFERRED + 5):  # no connection yet: each is kept for the first hello
            client.send_socket_mode_response({"envelope_id": f"deferred-{n}"})
    finally:
        logging.getLogger(logger_name).setLevel(logging.NOTSET)
    stats = client.stats()
    assert (stats.acks_deferred, stats.acks_deferred_dropped) == (MAX_DEFERRED, 5)
    client.connect()
    acks = server.wait_for_acks(count=MAX_DEFERRED, timeout=timeout(20.0))
    assert {ack.envelope_id for ack in acks} == {f"deferred-{n}" for n in range(5, MAX_DEFERRED + 5)}
    assert client.stats().acks_deferred == 0


def test_acks_kept_for_the_next_hello_are_bounded_in_characters(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    client = make_client(max_ack_bytes=1_000)
    logger_name = client.logger.name
    logging.getLogger(logger_name).setLevel(logging.ERROR)
    texts = [f'{{"envelope_id":"big-{n:02}","payload":{{"text":"{"x" * 200}"}}}}' for n in range(20)]
    try:
        for text in texts:
            client.send_socket_mode_response(json.loads(text))
    finally:
        logging.getLogger(logger_name).setLevel(logging.NOTSET)
    kept = 1_000 // len(texts[0])  # the newest that fit in 1,000 characters
    stats = client.stats()
    assert (stats.acks_deferred, stats.acks_deferred_dropped) == (kept, 20 - kept)
    client.connect()
    acks = server.wait_for_acks(count=kept, timeout=timeout(5.0))
    assert [ack.envelope_id for ack in acks] == [f"big-{n:02}" for n in range(20 - kept, 20)]
