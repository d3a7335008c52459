"""Message parsing, liveness, backoff and the envelope ledger: pure code, no sockets."""

from __future__ import annotations

import json

import pytest

from slack_socket_mode.ledger import EnvelopeLedger, Receipt
from slack_socket_mode.liveness import Liveness
from slack_socket_mode.messages import Disconnect, Envelope, Hello, Malformed, Other, parse_message
from slack_socket_mode.policy import Backoff
from slack_socket_mode.redaction import Secret, redact
from slack_socket_mode.testing.samples import envelope_sample_names, load_sample_text


def test_hello_sample() -> None:
    hello = parse_message(load_sample_text("hello"))
    assert isinstance(hello, Hello)
    assert hello.num_connections == 1
    assert hello.approximate_connection_time == 18060
    assert hello.debug_info["host"] == "applink-111-xxx"
    assert hello.connection_info == {"app_id": "A111"}


@pytest.mark.parametrize("reason", ["warning", "refresh_requested", "link_disabled", "too_many_websockets"])
def test_disconnect_samples(reason: str) -> None:
    assert parse_message(load_sample_text(f"disconnect_{reason}")) == Disconnect(reason, {"host": "applink-111-xxx"})


@pytest.mark.parametrize("name", envelope_sample_names())
def test_envelope_samples(name: str) -> None:
    text = load_sample_text(name)
    envelope = parse_message(text)
    assert isinstance(envelope, Envelope)
    assert envelope.envelope_id == json.loads(text)["envelope_id"]
    assert envelope.type in {"events_api", "interactive", "slash_commands"}
    assert envelope.retry_attempt == json.loads(text).get("retry_attempt", 0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ('"hello"', "JSON str, not an object"),
        ('{"type": "events_api", "payload": {}}', "events_api envelope without envelope_id"),
        ('{"envelope_id": 5, "type": "events_api"}', "envelope_id is not a string of 1 to 256 characters"),
        ('{"envelope_id": "e1"}', "envelope e1 has no type"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_malformed(text: str, problem: str) -> None:
    assert parse_message(text) == Malformed(problem)


def test_other_types_are_ignored_not_malformed() -> None:
    assert parse_message('{"type": "something_new"}') == Other("something_new")
    assert parse_message("{}") == Other(None)


def test_unknown_envelope_types_are_still_envelopes() -> None:
    message = parse_message('{"envelope_id": "e1", "type": "future_kind", "payload": {}}')
    assert isinstance(message, Envelope) and message.type == "future_kind"


def test_liveness_pings_on_interval_and_detects_silence() -> None:
    live = Liveness(ping_interval=5.0, ping_timeout=3.0, receive_timeout=10.0)
    v = live.check(1.0, last_received=0.0, last_ping=None)
    assert v.dead is None and not v.ping and v.next_check == 5.0
    v = live.check(5.0, last_received=0.0, last_ping=None)
    assert v.ping and v.next_check == 8.0
    # the ping went out at 5.0; nothing came back
    v = live.check(7.9, last_received=0.0, last_ping=5.0)
    assert v.dead is None and not v.ping and v.next_check == 8.0
    assert live.check(8.0, last_received=0.0, last_ping=5.0).dead == "no pong within 3 s"
    # any frame after the ping answers it
    v = live.check(8.0, last_received=6.0, last_ping=5.0)
    assert v.dead is None and v.next_check == 10.0


def test_liveness_worst_case_is_within_ten_seconds() -> None:
    live = Liveness()
    last = 0.0  # the last frame; silence after it
    now, last_ping = 0.0, None
    while True:
        v = live.check(now, last_received=last, last_ping=last_ping)
        if v.dead:
            break
        if v.ping:
            last_ping = now
        now = v.next_check
    assert now <= 10.0


def test_liveness_without_pings_uses_receive_timeout() -> None:
    live = Liveness(ping_interval=None, receive_timeout=10.0)
    assert live.check(9.0, last_received=0.0, last_ping=None).next_check == 10.0
    assert live.check(10.0, last_received=0.0, last_ping=None).dead == "no frame for 10.0 s"
    with pytest.raises(ValueError):
        Liveness(ping_interval=0)


def test_backoff_is_full_jitter_capped_and_immediate_first() -> None:
    b = Backoff(base=0.5, cap=30.0)
    assert b.delay(0) == 0.0
    assert [b.bound(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    delays = [b.delay(3) for _ in range(2000)]
    assert all(0.0 <= d <= 2.0 for d in delays)
    assert min(delays) < 0.2 and max(delays) > 1.8  # spread over the whole range
    assert b.bound(10_000) == 30.0
    with pytest.raises(ValueError):
        Backoff(base=-1)


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


def test_secrets_are_redacted() -> None:
    token = "xapp-1-A111-222-abcdef0123456789"
    secret = Secret(token)
    assert token not in repr(secret) and token not in str(secret)
    assert repr(secret) == "Secret('xapp-***')"
    assert secret.reveal() == token
    text = f"token={token} bot=xoxb-1-2-3 proxy=http://user:pa55@proxy:3128/"
    assert redact(text) == "token=xapp-*** bot=xoxb-*** proxy=http://***@proxy:3128/"
    assert redact("redis://:pa55@redis:6379/0") == "redis://***@redis:6379/0"  # no user, a password


def test_records_are_equal_only_to_their_own_kind() -> None:
    """NamedTuple records: ``Open(1) == Drain(1)`` would be true for plain tuples."""
    from slack_socket_mode.lifecycle import Drain, Open
    from slack_socket_mode.messages import Malformed, Other

    assert Open(1) == Open(1) and hash(Open(1)) == hash(Open(1))
    assert Open(1) != Drain(1)
    assert (Open(1) == Drain(1)) is False
    assert Other("x") != Malformed("x")
    assert Open(1) != (1,)
    assert (1,) != Open(1)  # noqa: SIM300 -- the reflected comparison is the point
    assert {Open(1), Drain(1), Open(1)} == {Open(1), Drain(1)}


# ---- Guarantees that mutation testing found unchecked (docs/developing.md#mutation-testing) ----------


def test_an_envelope_id_of_exactly_256_characters_is_kept_and_one_more_is_not() -> None:
    longest = "e" * 256
    message = parse_message(json.dumps({"envelope_id": longest, "type": "events_api"}))
    assert isinstance(message, Envelope) and message.envelope_id == longest
    assert isinstance(parse_message(json.dumps({"envelope_id": longest + "e", "type": "events_api"})), Malformed)


def test_hello_and_disconnect_fields_of_the_wrong_type_are_replaced_not_passed_on() -> None:
    hello = parse_message(
        json.dumps({"type": "hello", "num_connections": "2", "connection_info": ["A1"], "debug_info": "x"})
    )
    assert hello == Hello(num_connections=None, approximate_connection_time=None, debug_info={}, connection_info={})
    disconnect = parse_message(json.dumps({"type": "disconnect", "reason": 7, "debug_info": ["h"]}))
    assert disconnect == Disconnect("unknown", {})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (365 * 24 * 3600, 365 * 24 * 3600.0),  # a year, the most kept (int and float)
        (365 * 24 * 3600.0, 365 * 24 * 3600.0),
        (0.5, 0.5),
        (0, None),
        (0.0, None),
        (-1.0, None),
        (365 * 24 * 3600 + 1, None),
        (365 * 24 * 3600 + 0.5, None),
        (10**400, None),
        ("nan", None),
        ("inf", None),
        (True, None),
    ],
)
def test_approximate_connection_time_is_kept_only_when_positive_finite_and_at_most_a_year(
    value: object, seconds: float | None
) -> None:
    from slack_socket_mode.messages import classify

    act = float(value) if isinstance(value, str) else value  # NaN and infinity are not JSON: classify the object
    hello = classify({"type": "hello", "debug_info": {"approximate_connection_time": act}})
    assert isinstance(hello, Hello) and hello.approximate_connection_time == seconds


def test_a_dead_verdict_asks_for_no_ping_and_is_due_now() -> None:
    from slack_socket_mode.liveness import LivenessVerdict

    live = Liveness(ping_interval=5.0, ping_timeout=3.0, receive_timeout=10.0)
    assert live.check(10.0, last_received=0.0, last_ping=None) == LivenessVerdict("no frame for 10.0 s", False, 10.0)
    assert live.check(8.0, last_received=0.0, last_ping=5.0) == LivenessVerdict("no pong within 3 s", False, 8.0)
    assert live.check(1.0, last_received=0.0, last_ping=None) == LivenessVerdict(None, False, 5.0)


def test_a_frame_in_the_same_instant_as_the_ping_answers_it() -> None:
    live = Liveness(ping_interval=5.0, ping_timeout=3.0, receive_timeout=10.0)
    v = live.check(8.0, last_received=5.0, last_ping=5.0)
    assert v.dead is None and v.ping is False and v.next_check == 10.0


@pytest.mark.parametrize(
    "settings",
    [
        {"ping_interval": 0},
        {"ping_interval": -1.0},
        {"ping_timeout": 0},
        {"receive_timeout": 0},
        {"ping_timeout": -1.0, "receive_timeout": 5.0},
        {"ping_timeout": 5.0, "receive_timeout": -1.0},
    ],
)
def test_liveness_refuses_settings_that_are_not_positive(settings: dict[str, float]) -> None:
    with pytest.raises(
        ValueError,
        match=r"^(ping_interval must be a positive number of seconds, or None|"
        r"ping_timeout and receive_timeout must be positive numbers of seconds)$",
    ):
        Liveness(**settings)


def test_liveness_takes_short_positive_settings() -> None:
    live = Liveness(ping_interval=0.5, ping_timeout=0.5, receive_timeout=0.5)
    assert live.check(0.4, last_received=0.0, last_ping=None).dead is None


@pytest.mark.parametrize("settings", [{"base": -1.0}, {"cap": -0.1}, {"healthy_after": -1.0}])
def test_backoff_refuses_negative_seconds(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"^Backoff base, cap and healthy_after are seconds >= 0$"):
        Backoff(**settings)


def test_backoff_takes_zero_and_short_settings_and_jitters_below_a_second() -> None:
    assert Backoff(base=0.0, cap=0.0, healthy_after=0.0).delay(3) == 0.0
    b = Backoff(base=0.4, cap=0.5, healthy_after=0.5)
    delays = {b.delay(1) for _ in range(50)}
    assert len(delays) > 1 and all(0.0 <= d <= 0.4 for d in delays)  # full jitter, even under 1 s
    assert Backoff(base=0.4, jitter=False).delay(1) == 0.4


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


@pytest.mark.parametrize(
    ("payload", "kind"), [("null", "null"), ("true", "boolean"), ("1", "number"), ("1.5", "number"), ("[]", "array")]
)
def test_an_envelope_whose_payload_is_not_an_object_says_what_json_it_is(payload: str, kind: str) -> None:
    text = '{"envelope_id": "e1", "type": "' + "k" * 70 + '", "payload": ' + payload + "}"
    assert parse_message(text) == Malformed(
        f"envelope e1 ({'k' * 64}) has a payload that is JSON {kind}, not an object"
    )
