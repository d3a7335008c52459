"""The shared ledger's rules with no store and no sockets: keys, done records, and the local ledger's release."""

from __future__ import annotations

import json

from slack_socket_mode.ledger import EnvelopeLedger, Receipt
from slack_socket_mode.messages import parse_message, plain_ack
from slack_socket_mode.shared import _ack_from_record, _done_record, envelope_keys


def test_a_released_delivery_is_dispatched_when_delivered_again() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    assert ledger.receive("e1", "conn-a", 0.0) == (Receipt.DISPATCH, None)
    ledger.release("e1")
    assert ledger.inflight("conn-a") == 0
    assert ledger.ack("e1", None, 0.1).send is False  # nothing waits for an ack here any more
    assert ledger.receive("e1", "conn-b", 3.0) == (Receipt.DISPATCH, None)
    assert ledger.inflight("conn-b") == 1
    assert ledger.ack("e1", None, 3.1).send is True
    assert ledger.ack_of("e1") == (True, None)


def test_release_settles_only_a_delivery_in_flight() -> None:
    """A release of an unknown, handled or acked envelope changes nothing: its redelivery is not run again."""
    ledger: EnvelopeLedger[str] = EnvelopeLedger(crossing_window=1.0)
    ledger.release("never")  # unknown: nothing to forget, and no error
    assert len(ledger) == 0
    ledger.receive("acked", "c", 0.0)
    ledger.ack("acked", None, 0.1)
    ledger.written("c")
    ledger.receive("handled", "c", 0.0)
    ledger.handled("handled")
    ledger.release("acked")
    ledger.release("handled")
    assert ledger.inflight("c") == 0
    assert ledger.receive("acked", "c", 5.0) == (Receipt.REACK, plain_ack("acked"))
    assert ledger.receive("handled", "c", 5.0) == (Receipt.IGNORE, None)


def test_release_uncounts_one_delivery_of_its_connection() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c", 0.0)
    ledger.receive("e2", "c", 0.0)
    ledger.release("e1")
    assert ledger.inflight("c") == 1  # e2 is still in flight on c


def test_a_released_delivery_delivered_again_counts_once_where_it_arrives() -> None:
    """It was uncounted on its old connection when released: that one keeps the count of the others."""
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("moved", "c1", 0.0)
    ledger.receive("again", "c1", 0.0)
    ledger.release("moved")
    ledger.release("again")
    ledger.receive("other", "c1", 1.0)
    assert ledger.receive("moved", "c2", 2.0) == (Receipt.DISPATCH, None)  # on another connection
    assert ledger.receive("again", "c1", 2.0) == (Receipt.DISPATCH, None)  # on the same one
    assert ledger.inflight("c1") == 2  # "other" and "again"
    assert ledger.inflight("c2") == 1


def test_ack_of_says_whether_and_how_an_envelope_was_acked() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c", 0.0)
    assert ledger.ack_of("e1") == (False, None)
    text = '{"envelope_id":"e1","payload":{"text":"hi"}}'
    ledger.ack("e1", text, 0.1)
    assert ledger.ack_of("e1") == (True, text)
    ledger.receive("e2", "c", 0.0)
    ledger.handled("e2")
    assert ledger.ack_of("e2") == (False, None)
    assert ledger.ack_of("never") == (False, None)


def test_keys_are_the_envelope_id_and_for_events_api_the_event_id() -> None:
    event = parse_message(
        json.dumps({"envelope_id": "e1", "type": "events_api", "payload": {"event_id": "Ev1"}, "retry_attempt": 0})
    )
    interactive = parse_message(json.dumps({"envelope_id": "e2", "type": "interactive", "payload": {}}))
    no_event_id = parse_message(json.dumps({"envelope_id": "e3", "type": "events_api", "payload": {"x": 1}}))
    assert envelope_keys(event) == ("envelope:e1", "event:Ev1")  # type: ignore[arg-type]
    assert envelope_keys(interactive) == ("envelope:e2",)  # type: ignore[arg-type]
    assert envelope_keys(no_event_id) == ("envelope:e3",)  # type: ignore[arg-type]


def test_a_done_record_gives_the_same_ack_for_any_envelope_id() -> None:
    with_payload = _done_record(True, '{"envelope_id":"e1","payload":{"options":[1,2]}}')
    expected = {"envelope_id": "e9", "payload": {"options": [1, 2]}}
    assert json.loads(_ack_from_record("e9", with_payload) or "") == expected
    assert _ack_from_record("e9", _done_record(True, None)) == plain_ack("e9")
    assert _ack_from_record("e9", _done_record(True, '{"envelope_id":"e1"}')) == plain_ack("e9")
    assert _ack_from_record("e9", _done_record(False, None)) is None
    assert _ack_from_record("e9", "not json") == plain_ack("e9")  # it ran: the plain ack settles it


def test_listeners_that_ask_for_a_redelivery_are_run_again_on_the_next_delivery() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    assert ledger.receive("e1", "conn-a", 0.0) == (Receipt.DISPATCH, None)
    assert ledger.receive("e1", "conn-b", 3.0) == (Receipt.WAIT, None)  # while they run: not twice
    assert ledger.redeliver("e1") == (True, "conn-b")  # settled on the connection of the latest delivery
    assert ledger.inflight("conn-a") == ledger.inflight("conn-b") == 0
    assert ledger.redeliveries_asked == 1
    assert ledger.receive("e1", "conn-a", 6.0) == (Receipt.DISPATCH, None)  # Slack's redelivery runs them again
    assert ledger.ack("e1", None, 6.1).send is True
    assert ledger.ack_of("e1") == (True, None)


def test_a_request_for_redelivery_changes_nothing_once_acked_or_handled() -> None:
    """An ack stands (never run again); a run that returned without acking and without raising stays ignored."""
    ledger: EnvelopeLedger[str] = EnvelopeLedger(crossing_window=1.0)
    assert ledger.redeliver("never") == (False, None)
    ledger.receive("acked", "c", 0.0)
    ledger.ack("acked", None, 0.1)
    ledger.written("c")
    assert ledger.redeliver("acked") == (False, None)
    ledger.receive("handled", "c", 0.0)
    ledger.handled("handled")
    assert ledger.redeliver("handled") == (False, None)
    assert ledger.inflight("c") == 0 and ledger.redeliveries_asked == 0
    assert ledger.receive("acked", "c", 5.0) == (Receipt.REACK, plain_ack("acked"))
    assert ledger.receive("handled", "c", 5.0) == (Receipt.IGNORE, None)


def test_without_dedupe_a_request_for_redelivery_forgets_the_entry() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(dedupe=False)
    ledger.receive("e1", "c", 0.0)
    assert ledger.redeliver("e1") == (True, "c")
    assert len(ledger) == 0 and ledger.inflight("c") == 0


def test_a_store_without_the_round_and_the_probe_is_refused_when_the_client_is_made() -> None:
    """A SharedStore written before sync() and ping(): said once, at construction, not an outage forever."""
    import pytest

    from slack_socket_mode import ConfigurationError, SocketModeClient

    class OldStore:
        lease, done_ttl, on_unavailable, retry_after = 2.0, 3600.0, "local", 5.0

        def claim(self, keys: object, owner: object) -> None: ...

    with pytest.raises(ConfigurationError, match=r"the shared store OldStore has no sync, ping\(\)"):
        SocketModeClient("xapp-1-A111-4242-pure", dedupe=OldStore())  # type: ignore[arg-type]
