"""What the client and the local server retain is bounded: each test pushes more than a bound through it.

The bounds (docs/performance.md, "Memory"): the envelope ledger's settled entries (``ledger_max_entries``,
``ledger_max_age``) and the ack texts they keep (``max_ack_bytes``), and the local server's records
(``forget()``). The acks kept for the next ``hello`` (:data:`~slack_socket_mode.acks.MAX_DEFERRED`) are
tested in ``tests/test_acks.py``, the causes counted in ``stats().reconnects``
(:data:`~slack_socket_mode.stats.MAX_CAUSES`) in ``tests/test_stats.py``. Each test reads what is retained
from ``stats()`` (or the server's records), so it fails if the bound is removed.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from slack_socket_mode.ledger import EnvelopeLedger, Receipt
from slack_socket_mode.testing import SocketModeServer

from .conftest import ClientFactory, Recorder, timeout


def _push(server: SocketModeServer, count: int, *, accepts_payload: bool = False) -> list[str]:
    kind = "slash_commands" if accepts_payload else "events_api"
    envelopes = [server.make_envelope(kind, {"n": n}, accepts_response_payload=accepts_payload) for n in range(count)]
    server.push_many(envelopes)
    return [envelope["envelope_id"] for envelope in envelopes]


def test_the_ledger_keeps_at_most_ledger_max_entries_settled_envelopes(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    client = make_client(ledger_max_entries=50)
    recorder = Recorder()
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    ids = _push(server, 200)
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(10.0))
    recorder.wait_for(200)
    stats = client.stats()
    assert stats.envelopes_received == 200
    assert stats.ledger_entries == 50
    assert stats.ledger_evicted == 150
    # the newest are remembered (a redelivery is not run again), the oldest forgotten (it is)
    for envelope_id in (ids[-1], ids[0]):
        server.push(server.make_envelope("events_api", envelope_id=envelope_id) | {"retry_attempt": 1})
    marker = server.push(server.make_envelope("events_api"))
    server.wait_for_acks(envelope_ids=[marker], timeout=timeout(5.0))  # read after both
    assert (recorder.runs(ids[-1]), recorder.runs(ids[0])) == (1, 2)
    assert client.stats().envelopes_deduplicated == 1


def test_the_ledger_keeps_at_most_max_ack_bytes_of_ack_payloads(
    server: SocketModeServer, make_client: ClientFactory
) -> None:
    payload = {"text": "x" * 200}  # an ack text of about 270 characters
    client = make_client(max_ack_bytes=2_000)
    recorder = Recorder(payload=payload)
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    ids = _push(server, 40, accepts_payload=True)
    acks = server.wait_for_acks(envelope_ids=ids, timeout=timeout(10.0))
    assert all(ack.payload == payload for ack in acks)
    stats = client.stats()
    kept = stats.ledger_entries
    assert 0 < stats.ledger_ack_bytes <= 2_000
    assert stats.ledger_ack_bytes == kept * len(acks[-1].raw)
    assert kept < 40 and stats.ledger_evicted == 40 - kept
    # what is kept still works: a redelivery of the newest on a new connection is acked again with its payload
    before = len(server.all_connections)
    server.reset()
    new = server.wait_for_new_connection(before, timeout=timeout(5.0))
    server.push(
        connection=new,
        envelope=server.make_envelope("slash_commands", envelope_id=ids[-1], accepts_response_payload=True),
    )
    (again,) = server.wait_for_acks(count=41, timeout=timeout(5.0))[40:]
    assert again.connection_id == new.id
    assert again.envelope_id == ids[-1] and again.payload == payload
    assert recorder.runs(ids[-1]) == 1


def test_the_ledger_bounds_ack_bytes_without_sockets() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(max_ack_bytes=100)
    for n in range(10):
        envelope_id = f"e{n}"
        assert ledger.receive(envelope_id, "c", float(n)) == (Receipt.DISPATCH, None)
        ledger.ack(envelope_id, "y" * 30 if n % 2 else None, float(n))  # payloads on odd ones only
        ledger.written("c")
        ledger.handled(envelope_id)
    # 5 payloads of 30: the oldest entries go, payload or not, until at most 100 are kept: e4 to e9
    assert (ledger.ack_bytes, len(ledger), ledger.evicted) == (90, 6, 4)
    assert ledger.ack_of("e5") == (True, "y" * 30) and ledger.ack_of("e3") == (False, None)
    assert ledger.receive("e3", "c", 10.0) == (Receipt.DISPATCH, None)  # forgotten: dispatched again
    zero: EnvelopeLedger[str] = EnvelopeLedger(max_ack_bytes=0)
    zero.receive("p", "c", 0.0)
    zero.ack("p", "z", 0.0)
    zero.receive("plain", "c", 0.0)
    zero.ack("plain", None, 0.0)
    assert zero.ack_bytes == 0 and zero.ack_of("plain") == (True, None) and len(zero) == 1


def test_the_server_forgets_settled_envelopes(server: SocketModeServer, make_client: ClientFactory) -> None:
    client = make_client(dedupe=False)  # so that it sends a second ack of an envelope, below
    recorder = Recorder()
    kept = threading.Event()

    def listener(client_: Any, request: Any) -> None:
        if request.payload.get("keep"):
            kept.set()  # never acked
        else:
            recorder(client_, request)

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    acked = _push(server, 30)
    server.wait_for_acks(envelope_ids=acked, timeout=timeout(5.0))
    unacked = server.push(server.make_envelope("events_api", {"keep": True}))
    assert kept.wait(timeout(5.0))
    forgotten = server.forget()
    assert (forgotten.envelopes, forgotten.redelivered, forgotten.acks, forgotten.duplicate_acks) == (30, 0, 30, 0)
    assert forgotten.messages == 30
    assert (server.acks, server.messages, server.duplicate_acks()) == ([], [], [])
    with pytest.raises(KeyError):
        server.envelope(acked[0])
    assert server.unacked() == [unacked] and len(server.envelope(unacked).deliveries) == 1
    # it goes on recording; a second ack of a forgotten envelope is a duplicate
    more = _push(server, 5)
    server.wait_for_acks(envelope_ids=more, timeout=timeout(5.0))
    client.send_socket_mode_response({"envelope_id": acked[0]})
    server.wait_for_acks(count=6, timeout=timeout(5.0))
    assert [ack.envelope_id for ack in server.duplicate_acks()] == [acked[0]]
    assert server.forget().envelopes == 5 and server.unacked() == [unacked]
