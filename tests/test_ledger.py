"""slack_socket_mode.ledger: the EnvelopeLedger's rules, with no socket (routing, dedupe, crossing, bounds)."""

from __future__ import annotations

import pytest

from slack_socket_mode.ledger import AckRoute, EnvelopeLedger, Receipt


def test_ledger_routes_acks_to_the_delivering_connection() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    assert ledger.receive("e1", "c1", 0.0) == (Receipt.DISPATCH, None)
    assert ledger.inflight("c1") == 1
    route = ledger.ack("e1", '{"envelope_id":"e1"}', 0.0)
    assert route.conn == "c1" and route.send
    assert ledger.inflight("c1") == 1  # until the ack is written
    ledger.written("c1")
    assert ledger.inflight("c1") == 0
    assert not ledger.ack("e1", '{"envelope_id":"e1"}', 0.0).send  # no second ack
    assert ledger.suppressed_acks == 1


def test_ledger_redelivery_while_in_flight_waits_for_the_one_ack() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c1", 0.0)
    assert ledger.receive("e1", "c2", 3.0) == (Receipt.WAIT, None)
    assert ledger.inflight("c1") == 0 and ledger.inflight("c2") == 1
    route = ledger.ack("e1", "ack", 0.0)
    assert route.conn == "c2" and route.send
    assert ledger.deduplicated == 1


def test_ledger_redelivery_after_ack_is_acked_again() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c1", 0.0)
    ledger.ack("e1", '{"envelope_id":"e1","payload":{"text":"hi"}}', 0.0)
    ledger.handled("e1")
    assert ledger.receive("e1", "c2", 3.0) == (Receipt.REACK, '{"envelope_id":"e1","payload":{"text":"hi"}}')


def test_ledger_redelivery_that_crossed_the_ack_on_its_connection_is_settled_by_it() -> None:
    """Under load Slack redelivers before our ack reaches it; on the same connection the ack settles it."""
    ledger: EnvelopeLedger[str] = EnvelopeLedger(crossing_window=10.0)
    ledger.receive("e1", "c1", 0.0)
    ledger.ack("e1", "ack", 3.5)
    assert ledger.receive("e1", "c1", 4.0) == (Receipt.CROSSED, None)
    assert ledger.crossed_acks == 1 and ledger.acked == 1
    # later than the window, the ack may not have settled it: it is sent again
    assert ledger.receive("e1", "c1", 14.0) == (Receipt.REACK, "ack")
    assert ledger.acked == 2


def test_ledger_crossing_window_edges() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(crossing_window=2.0)
    ledger.receive("e1", "c1", 0.0)
    ledger.ack("e1", "ack", 1.0)
    assert ledger.receive("e1", "c1", 3.0) == (Receipt.CROSSED, None)  # 2.0 s after the ack: within
    assert ledger.receive("e1", "c1", 3.5) == (Receipt.REACK, "ack")  # 2.5 s: acked again
    assert ledger.receive("e1", "c1", 4.0) == (Receipt.CROSSED, None)  # the re-ack went out at 3.5
    assert ledger.receive("e1", "c2", 4.1) == (Receipt.REACK, "ack")  # another connection: always again
    assert ledger.receive("e1", "c2", 4.2) == (Receipt.CROSSED, None)
    ledger.sent_on("e1", None)  # the ack could not be sent anywhere (deferred)
    assert ledger.receive("e1", "c2", 4.3) == (Receipt.REACK, "ack")


def test_ledger_handled_without_ack_is_not_dispatched_again() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c1", 0.0)
    assert ledger.handled("e1") == "c1"
    assert ledger.inflight("c1") == 0
    assert ledger.receive("e1", "c1", 3.0) == (Receipt.IGNORE, None)


def test_ledger_without_dedupe_dispatches_redeliveries() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(dedupe=False)
    ledger.receive("e1", "c1", 0.0)
    assert ledger.receive("e1", "c1", 3.0) == (Receipt.DISPATCH, None)
    ledger.ack("e1", "ack", 0.0)
    assert len(ledger) == 0


def test_ledger_is_bounded_by_count_and_age_but_keeps_in_flight_entries() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(max_entries=3, max_age=100.0)
    ledger.receive("inflight", "c", 0.0)
    for i in range(10):
        ledger.receive(f"e{i}", "c", 1.0)
        ledger.ack(f"e{i}", "a", 0.0)
    assert len(ledger) == 3
    assert ledger.receive("inflight", "c", 2.0)[0] is Receipt.WAIT  # still remembered
    ledger.receive("late", "c", 500.0)  # everything settled is now too old
    assert ledger.receive("e9", "c", 500.0)[0] is Receipt.DISPATCH  # forgotten: dispatched again


def test_ledger_defaults_and_bad_settings() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    assert (ledger.max_entries, ledger.max_age, ledger.crossing_window) == (50_000, 900.0, 10.0)
    assert (ledger.max_ack_bytes, ledger.ack_bytes, ledger.evicted) == (16 * 1024 * 1024, 0, 0)
    counts = (ledger.received, ledger.redeliveries, ledger.acked, ledger.deduplicated, ledger.suppressed_acks)
    assert counts == (0, 0, 0, 0, 0) and ledger.crossed_acks == 0
    message = r"^max_entries must be >= 1, max_age > 0, crossing_window >= 0 seconds and max_ack_bytes >= 0$"
    for bad in ({"max_entries": 0}, {"max_age": 0.0}, {"crossing_window": -1.0}, {"max_ack_bytes": -1}):
        with pytest.raises(ValueError, match=message):
            EnvelopeLedger(**bad)  # type: ignore[arg-type]
    EnvelopeLedger(max_entries=1, max_age=0.1, crossing_window=0.0)


def test_ledger_counts_what_it_saw() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c1", 0.0)
    ledger.receive("e2", "c1", 0.0)
    ledger.receive("e1", "c2", 3.0)  # WAIT
    ledger.ack("e1", None, 3.1)
    ledger.ack("e1", None, 3.2)  # suppressed
    ledger.receive("e1", "c2", 3.3)  # crossed
    ledger.receive("e1", "c1", 3.4)  # acked again
    ledger.ack("unknown", None, 3.5)  # never delivered: sent as asked
    ledger.ack("e2", None, 4.0)
    ledger.ack("e2", None, 4.1)  # suppressed
    ledger.receive("e2", "c1", 4.2)  # crossed
    assert (ledger.received, ledger.redeliveries, ledger.deduplicated) == (2, 4, 4)
    assert (ledger.acked, ledger.suppressed_acks, ledger.crossed_acks) == (4, 2, 2)
    without: EnvelopeLedger[str] = EnvelopeLedger(dedupe=False)
    without.receive("e1", "c1", 0.0)
    without.receive("e1", "c2", 3.0)
    without.receive("e1", "c2", 6.0)
    assert (without.received, without.redeliveries, without.deduplicated) == (1, 2, 0)
    assert without.inflight("c1") == 0 and without.inflight("c2") == 1


def test_ledger_reack_of_a_plain_ack_rebuilds_it() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e-1", "c1", 0.0)
    ledger.ack("e-1", None, 0.1)
    assert ledger.receive("e-1", "c2", 3.0) == (Receipt.REACK, '{"envelope_id":"e-1"}')


def test_ledger_second_ack_keeps_its_route_and_says_not_to_send() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c1", 0.0)
    ledger.ack("e1", None, 0.1)
    route = ledger.ack("e1", None, 0.2)
    assert route.conn == "c1" and route.send is False


def test_ledger_an_ack_sent_on_another_connection_is_the_one_a_redelivery_there_crossed() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c1", 0.0)
    assert ledger.ack("e1", None, 0.1).conn == "c1"
    ledger.sent_on("e1", "c2")  # c1 could not send it; c2 did
    assert ledger.receive("e1", "c2", 1.0) == (Receipt.CROSSED, None)
    ledger.sent_on("never-seen", "c2")  # nothing to update: no error
    without: EnvelopeLedger[str] = EnvelopeLedger(dedupe=False)
    without.receive("e2", "c1", 0.0)
    without.ack("e2", None, 0.1)
    without.sent_on("e2", "c2")  # forgotten once acked: nothing to update
    in_flight: EnvelopeLedger[str] = EnvelopeLedger()
    in_flight.receive("e3", "c1", 0.0)
    in_flight.sent_on("e3", "c2")  # not acked yet: its route stays with its delivery
    assert in_flight.ack("e3", None, 0.1).conn == "c1"


def test_ledger_keeps_no_count_for_a_connection_with_nothing_in_flight() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    for number in range(3):
        ledger.receive(f"e{number}", f"c{number}", 0.0)
        ledger.receive(f"e{number}", "c9", 1.0)  # moved to c9
        ledger.ack(f"e{number}", None, 2.0)
        ledger.written("c9")
    assert ledger._inflight == {}  # one dict entry per connection ever seen would be a leak


def test_ledger_forgets_an_entry_exactly_max_age_old() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(max_age=10.0)
    ledger.receive("old", "c", 1.0)
    ledger.ack("old", None, 1.0)
    ledger.receive("new", "c", 11.0)  # "old" is now exactly max_age old: forgotten
    assert ledger.receive("old", "c", 11.0)[0] is Receipt.DISPATCH
    early: EnvelopeLedger[str] = EnvelopeLedger(max_age=0.1)  # any clock reading counts, even under 1 s
    early.receive("a", "c", 0.0)
    early.ack("a", None, 0.0)
    early.receive("b", "c", 0.5)
    assert early.receive("a", "c", 0.5)[0] is Receipt.DISPATCH


def test_ledger_at_its_bound_keeps_exactly_max_entries() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(max_entries=2, max_age=100.0)
    for number in range(3):
        ledger.receive(f"e{number}", "c", float(number))
        ledger.ack(f"e{number}", None, float(number))
    assert len(ledger) == 2
    assert ledger.receive("e1", "c9", 3.0)[0] is Receipt.REACK  # the second oldest is still remembered


def test_ledger_a_connection_stays_busy_until_the_ack_routed_to_it_is_written() -> None:
    """Between routing an ack and writing it, a draining connection must not look idle and close."""
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    ledger.receive("e1", "c1", 0.0)
    ledger.receive("e2", "c1", 0.0)
    route = ledger.ack("e1", None, 0.1)  # routed to c1, not written yet
    assert ledger.inflight("c1") == 2
    ledger.handled("e2")  # e2's listeners return without acking
    assert ledger.inflight("c1") == 1  # e1's ack is still on its way
    ledger.written(route.conn)
    assert ledger.inflight("c1") == 0
    ledger.handled("e1")
    late = ledger.ack("e2", None, 0.2)  # acked after its listeners returned: c1 is busy again until written
    assert late.send and late.conn == "c1" and ledger.inflight("c1") == 1
    ledger.written("c1")
    assert ledger.inflight("c1") == 0
    assert ledger.ack("unknown", None, 0.3).conn is None  # nothing counted: nothing to report written


def test_ledger_with_on_routed_tells_the_caller_and_stops_counting_at_once() -> None:
    """With ``on_routed`` the caller counts an ack on its way; the ledger is not entered again for it."""
    routed: list[str] = []
    made: list[EnvelopeLedger[str]] = []

    def count_when_routed(conn: str) -> None:  # the caller's count goes up before the ledger's goes down
        (ledger,) = made
        assert ledger.inflight(conn) == (1 if len(routed) == 0 else 0)
        routed.append(conn)

    made.append(EnvelopeLedger(on_routed=count_when_routed))
    ledger = made[0]
    ledger.receive("e1", "c1", 0.0)
    route = ledger.ack("e1", None, 1.0)
    assert route.send and route.conn == "c1" and not route.held
    assert routed == ["c1"] and ledger.inflight("c1") == 0  # no written() to come
    assert ledger.handled("e1") is None and ledger.inflight("c1") == 0  # acked: nothing changes
    # an ack after the listeners returned without one: routed again, not counted by the ledger
    ledger.receive("e2", "c1", 2.0)
    assert ledger.handled("e2") == "c1"
    assert not ledger.ack("e2", None, 3.0).held
    assert routed == ["c1", "c1"] and ledger.inflight("c1") == 0
    assert not ledger.ack("e2", None, 3.0).send and routed == ["c1", "c1"]  # a second ack: not routed
    assert EnvelopeLedger[str]().ack(*("e3", None, 0.0)).held is False  # unknown: nowhere to count it


# ---- Counters and routes that mutation testing found unchecked (2026-12-08) ----------------------


def test_ack_bytes_count_every_kept_text_and_evictions_give_them_back_one_entry_at_a_time() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(max_entries=3, max_ack_bytes=100)
    for envelope_id, text in (("e0", "x" * 10), ("e1", "y" * 20)):
        ledger.receive(envelope_id, "c", 0.0)
        ledger.ack(envelope_id, text, 0.0)
    assert ledger.ack_bytes == 30  # both texts, added up
    for envelope_id in ("e2", "e3", "e4"):  # in flight: never forgotten; e0 then e1 go
        ledger.receive(envelope_id, "c", 0.0)
    assert (ledger.evicted, ledger.ack_bytes, len(ledger)) == (2, 0, 3)


def test_ack_texts_exactly_at_max_ack_bytes_are_all_kept() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(max_ack_bytes=10)
    ledger.receive("e0", "c", 0.0)
    ledger.ack("e0", None, 0.0)
    ledger.receive("e1", "c", 800.0)
    ledger.ack("e1", "x" * 10, 800.0)  # exactly max_ack_bytes: not over it
    ledger.receive("e2", "c", 901.0)  # e0 is past max_age (900 s): the eviction forgets it, and stops at e1
    assert (ledger.evicted, len(ledger), ledger.ack_of("e1")) == (1, 2, (True, "x" * 10))


def test_max_ack_bytes_of_0_keeps_no_ack_text() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(max_ack_bytes=0)  # allowed: every payload ack is forgotten
    ledger.receive("e0", "c", 0.0)
    ledger.ack("e0", "x", 0.0)
    assert (ledger.evicted, ledger.ack_bytes, len(ledger)) == (1, 0, 0)
    with pytest.raises(ValueError):
        EnvelopeLedger(max_ack_bytes=-1)


def test_each_redelivery_asked_for_is_counted() -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger()
    for envelope_id in ("e0", "e1"):
        ledger.receive(envelope_id, "c", 0.0)
        assert ledger.redeliver(envelope_id) == (True, "c")
    assert ledger.redeliveries_asked == 2


@pytest.mark.parametrize("dedupe", [True, False])
def test_an_ack_route_names_the_connection_the_first_delivery_time_and_that_it_is_held(dedupe: bool) -> None:
    ledger: EnvelopeLedger[str] = EnvelopeLedger(dedupe=dedupe)
    ledger.receive("e0", "c", 5.0)
    assert ledger.ack("e0", None, 6.0) == AckRoute("c", True, 5.0, True)
    assert ledger.inflight("c") == 1  # held: counted until written()
    ledger.written("c")
    assert ledger.inflight("c") == 0


def test_with_on_routed_an_ack_uncounts_its_one_delivery_at_once() -> None:
    routed: list[str] = []
    ledger: EnvelopeLedger[str] = EnvelopeLedger(on_routed=routed.append)
    ledger.receive("e0", "c", 5.0)
    ledger.receive("e1", "c", 5.0)
    assert ledger.ack("e0", None, 6.0) == AckRoute("c", True, 5.0, False)
    assert (routed, ledger.inflight("c")) == (["c"], 1)  # e1 is still in flight
