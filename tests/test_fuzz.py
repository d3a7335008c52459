"""Fuzzing with Hypothesis: the parser, the envelope ledger, and the client on a real socket.

Three layers, each with the same promise: hostile or broken input never costs the client a
connection or an envelope.

* ``parse_message`` never raises, whatever the text, and classifies every valid envelope;
* ``EnvelopeLedger`` keeps its invariants under any sequence of deliveries, acks, returns of
  listeners (with or without a request for Slack's redelivery) and passing time (a Hypothesis
  state machine checked against a model);
* one client and one local server per module: junk text and binary frames between valid
  envelopes never replace the connection and never cost a valid envelope that follows.

CI runs a short, deterministic campaign (a few seconds). For a longer one, set
``SLACK_SOCKET_MODE_FUZZ_EXAMPLES`` (examples per test; random, not derandomized), e.g.
``SLACK_SOCKET_MODE_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py`` (see docs/security.md).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from benchmarks.soak import send_junk
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from slack_socket_mode import Backoff, SocketModeClient, messages
from slack_socket_mode.ledger import EnvelopeLedger, Receipt
from slack_socket_mode.messages import (
    ENVELOPE_TYPES,
    Disconnect,
    Envelope,
    Hello,
    Malformed,
    Other,
    parse_message,
    plain_ack,
)
from slack_socket_mode.testing import ServerConnection, SocketModeServer

from .conftest import APP_TOKEN, Recorder, Watcher, timeout

#: Examples per test for a longer campaign (0: the short CI campaign).
CAMPAIGN = int(os.environ.get("SLACK_SOCKET_MODE_FUZZ_EXAMPLES", "0") or "0")


def fuzz_settings(examples: int, **options: Any) -> settings:
    """Settings for one test: ``examples`` in CI, ``SLACK_SOCKET_MODE_FUZZ_EXAMPLES`` in a campaign.

    CI runs are derandomized (the same examples every run, so CI never flakes on a new find);
    a campaign explores at random. No example database is written into the working tree.
    """
    return settings(
        max_examples=CAMPAIGN or examples,
        deadline=None,
        derandomize=not CAMPAIGN,
        database=None,
        print_blob=bool(CAMPAIGN),
        **options,
    )


# ---- strategies -----------------------------------------------------------------------------

#: Keys Socket Mode messages use, so that random objects often look almost valid.
_KEYS = st.sampled_from(
    [
        "type",
        "envelope_id",
        "payload",
        "retry_attempt",
        "retry_reason",
        "accepts_response_payload",
        "reason",
        "debug_info",
        "approximate_connection_time",
        "num_connections",
        "connection_info",
    ]
) | st.text(max_size=12)

_TYPES = st.sampled_from(["hello", "disconnect", *sorted(ENVELOPE_TYPES), "app_rate_limited"]) | st.text(max_size=12)

#: JSON leaves, including integers too large for a float and non-finite floats.
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
    | _TYPES
)

#: Any JSON value (the shapes ``json.loads`` can return).
json_values = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=5),
    max_leaves=16,
)

#: Objects shaped like Socket Mode messages, with any value in any field.
shaped_messages = st.fixed_dictionaries(
    {"type": _TYPES},
    optional={
        "envelope_id": json_values,
        "payload": json_values,
        "retry_attempt": json_values,
        "reason": json_values,
        "num_connections": json_values,
        "debug_info": st.dictionaries(_KEYS, json_values, max_size=4),
        "connection_info": json_values,
    },
)

#: A Slack token in a message (the parser must never echo payloads in ``Malformed.problem``).
_MARKER = "xoxb-1111-2222-fuzzmarkerc0ffee"

#: Found by this file: a hello that made ``parse_message`` raise OverflowError (an integer no
#: float can hold), which ended the reader thread and so the connection.
HUGE_HELLO = '{"type":"hello","debug_info":{"approximate_connection_time":1' + "0" * 400 + "}}"


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


# ---- (a) the parser -------------------------------------------------------------------------


@fuzz_settings(300)
@given(st.text())
@example("")
@example("[" * 100_000)  # deeper than the recursion limit
@example('{"a":' * 100_000)
@example("1" * 5000)  # more digits than int() converts
def test_parse_message_never_raises_on_any_text(text: str) -> None:
    assert isinstance(parse_message(text), (Hello, Disconnect, Envelope, Other, Malformed))


@fuzz_settings(200)
@given(json_values | shaped_messages)
@example(json.loads(HUGE_HELLO))
@example({"type": []})  # an unhashable type made ``kind in ENVELOPE_TYPES`` raise TypeError
@example({"type": {"a": 1}})
@example({"type": "hello", "debug_info": {"approximate_connection_time": float("inf")}})
@example({"type": "hello", "debug_info": {"approximate_connection_time": float("nan")}})
def test_parse_message_never_raises_on_any_json(value: Any) -> None:
    message = parse_message(_dumps(value))
    assert isinstance(message, (Hello, Disconnect, Envelope, Other, Malformed))


_attempts = st.none() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=False)


@fuzz_settings(150)
@given(
    envelope_id=st.text(min_size=1, max_size=40),
    kind=st.sampled_from(sorted(ENVELOPE_TYPES)) | st.text(max_size=20),
    payload=json_values,
    attempt=_attempts,
    extra=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
def test_every_valid_envelope_is_classified_as_one(
    envelope_id: str, kind: str, payload: Any, attempt: Any, extra: dict[str, Any]
) -> None:
    body = {**extra, "envelope_id": envelope_id, "type": kind, "payload": payload}
    if attempt is not None:
        body["retry_attempt"] = attempt
    message = parse_message(_dumps(body))
    if not isinstance(payload, (dict, str)):  # SocketModeRequest refuses it: bad input, skipped with its id
        assert type(message) is Malformed
        assert "payload" in message.problem
        return
    assert type(message) is Envelope
    assert SocketModeRequest.from_dict(message.body) is not None  # what listeners get never raises
    assert message.envelope_id == envelope_id
    assert message.type == kind
    # what JSON decoding gives: json.loads', but for decode_json's one documented difference with orjson
    # installed (an integer outside 64 bits in a text orjson takes is a float); tests/test_messages.py
    # holds decode_json to json.loads
    expected = messages.decode_json(_dumps(body))
    attempt = expected.get("retry_attempt")
    counts = isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 0
    assert message.retry_attempt == (attempt if counts else 0)
    assert json.dumps(message.body, sort_keys=True) == json.dumps(expected, sort_keys=True)


@fuzz_settings(100)
@given(
    kind=st.sampled_from(sorted(ENVELOPE_TYPES)),
    envelope_id=st.none() | st.just("") | st.integers() | st.lists(st.text(max_size=3), max_size=2),
    payload=json_values,
)
def test_envelopes_without_a_usable_id_are_malformed_and_not_echoed(kind: str, envelope_id: Any, payload: Any) -> None:
    body: dict[str, Any] = {"type": kind, "payload": {"token": _MARKER, "value": payload}}
    if envelope_id is not None:
        body["envelope_id"] = envelope_id
    message = parse_message(_dumps(body))
    assert isinstance(message, Malformed)
    assert _MARKER not in message.problem


@fuzz_settings(200)
@given(
    num=st.none() | st.integers(min_value=1, max_value=10),
    seconds=st.none() | st.integers(min_value=1, max_value=86_400) | st.floats(min_value=0.001, max_value=86_400.0),
)
def test_hellos_are_classified_with_their_fields(num: Optional[int], seconds: Optional[float]) -> None:
    body: dict[str, Any] = {"type": "hello", "debug_info": {"host": "applink-1"}}
    if num is not None:
        body["num_connections"] = num
    if seconds is not None:
        body["debug_info"]["approximate_connection_time"] = seconds
    message = parse_message(_dumps(body))
    assert isinstance(message, Hello)
    assert message.num_connections == num
    assert message.approximate_connection_time == (None if seconds is None else float(seconds))


@fuzz_settings(100)
@given(reason=st.text(max_size=30))
def test_disconnects_are_classified_with_their_reason(reason: str) -> None:
    message = parse_message(_dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "x"}}))
    assert message == Disconnect(reason, {"host": "x"})


@fuzz_settings(200)
@given(envelope_id=st.text())
def test_the_plain_ack_is_the_json_of_its_envelope_id(envelope_id: str) -> None:
    text = plain_ack(envelope_id)
    assert text == json.dumps({"envelope_id": envelope_id}, separators=(",", ":"))
    assert json.loads(text) == {"envelope_id": envelope_id}


# ---- (b) the envelope ledger ----------------------------------------------------------------


class _Conn:
    """A connection as the ledger sees it: an opaque object."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __repr__(self) -> str:
        return f"<conn {self.number}>"


@dataclass
class _Model:
    """What the ledger should know about one envelope id (None state: never seen or forgotten)."""

    state: Optional[str] = None  # "inflight", "handled", "acked", "released" (the listeners raised Redeliver)
    awaiting: bool = False  # a delivery is waiting for an ack (as the ledger sees it)
    conn: Optional[_Conn] = None  # connection of the latest delivery
    ack: Optional[str] = None  # the ack text sent
    maybe_forgotten: bool = False  # settled, and the ledger may have evicted it since
    server_pending: int = 0  # deliveries since the last ack that reached Slack
    acks_sent: int = 0
    acked_at: float = 0.0  # when the last ack was sent
    history: list[str] = field(default_factory=list)


_IDS = st.sampled_from([f"env-{n}" for n in range(6)])


class LedgerMachine(RuleBasedStateMachine):
    """Random deliveries, acks, listener returns (some raising Redeliver) and time against a model of Slack and the app.

    Invariants: in-flight counts are never negative and match the model; an in-flight envelope
    is never forgotten (it is never dispatched twice while in flight); with dedupe, "Slack"
    never receives an ack when no delivery awaits one, except for an envelope the ledger was
    allowed to forget; the ledger stays within its bounds.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conns = [_Conn(n) for n in range(3)]
        self.writing: list[_Conn] = []  # acks routed to a connection and not yet written, oldest first
        self.now = 1000.0
        self.models: dict[str, _Model] = {}
        self.ledger: EnvelopeLedger[_Conn] = EnvelopeLedger()

    @initialize(
        dedupe=st.booleans(),
        max_entries=st.sampled_from([1, 3, 50_000]),
        max_age=st.sampled_from([0.5, 5.0, 900.0]),
        crossing_window=st.sampled_from([0.0, 2.0, 10.0]),
    )
    def configure(self, dedupe: bool, max_entries: int, max_age: float, crossing_window: float) -> None:
        self.ledger = EnvelopeLedger(
            dedupe=dedupe, max_entries=max_entries, max_age=max_age, crossing_window=crossing_window
        )

    def _model(self, envelope_id: str) -> _Model:
        return self.models.setdefault(envelope_id, _Model())

    def _inflight(self) -> list[_Model]:
        return [m for m in self.models.values() if m.state == "inflight"]

    @rule(envelope_id=_IDS, which=st.integers(min_value=0, max_value=2))
    def deliver(self, envelope_id: str, which: int) -> None:
        conn = self.conns[which]
        m = self._model(envelope_id)
        m.server_pending += 1
        receipt, ack = self.ledger.receive(envelope_id, conn, self.now)
        m.history.append(f"deliver on {conn} -> {receipt.value}")
        if not self.ledger.dedupe:
            assert receipt is Receipt.DISPATCH
            m.state, m.awaiting, m.conn = "inflight", True, conn
            return
        if receipt is Receipt.DISPATCH:
            # new, released for a redelivery, or settled and forgotten; an envelope in flight is never forgotten
            assert m.state in (None, "released") or m.maybe_forgotten, m.history
            m.state, m.awaiting, m.conn, m.ack, m.maybe_forgotten = "inflight", True, conn, None, False
            self._note_eviction(envelope_id)
            assert len(self.ledger) <= max(self.ledger.max_entries, len(self._inflight()))
        elif receipt is Receipt.WAIT:
            assert m.state == "inflight", m.history
            m.awaiting, m.conn = True, conn
        elif receipt is Receipt.REACK:
            assert m.state == "acked" and ack == m.ack, m.history
            assert conn is not m.conn or self.now - m.acked_at > self.ledger.crossing_window, m.history
            m.conn, m.acked_at = conn, self.now
            self._slack_receives_ack(envelope_id, m)
        elif receipt is Receipt.CROSSED:
            # the ack went out on this connection just before: it crossed this delivery and settles it
            assert m.state == "acked" and conn is m.conn and ack is None, m.history
            assert self.now - m.acked_at <= self.ledger.crossing_window, m.history
            m.server_pending = 0
        else:
            assert receipt is Receipt.IGNORE
            assert m.state == "handled", m.history

    def _note_eviction(self, envelope_id: str) -> None:
        """A first delivery may evict settled entries (over max_entries or older than max_age)."""
        for other_id, other in self.models.items():
            if other_id != envelope_id and other.state in ("handled", "acked", "released"):
                other.maybe_forgotten = True

    def _slack_receives_ack(self, envelope_id: str, m: _Model) -> None:
        """Slack (the model) receives an ack: with dedupe, only while a delivery awaits one.

        The one exception: an envelope the ledger was allowed to forget (settled, then evicted).
        """
        m.acks_sent += 1
        if m.server_pending == 0 and self.ledger.dedupe:
            assert m.state is None or m.maybe_forgotten, (envelope_id, m.history)
        m.server_pending = 0

    @rule(envelope_id=_IDS, plain=st.booleans())
    def app_acks(self, envelope_id: str, plain: bool) -> None:
        m = self._model(envelope_id)
        # None: the plain ack, which the ledger does not keep and rebuilds for a re-ack
        text = None if plain else f'{{"envelope_id":"{envelope_id}","n":{m.acks_sent}}}'
        was_inflight = m.state == "inflight"
        route = self.ledger.ack(envelope_id, text, self.now)
        m.history.append(f"ack -> send={route.send}")
        if was_inflight:
            assert route.send and route.conn is m.conn and route.received_at is not None, m.history
        if route.send and route.conn is not None:
            self.writing.append(route.conn)  # the client writes it, then reports it (written)
        if route.send:
            if self.ledger.dedupe and m.state is not None and not m.awaiting:
                assert m.maybe_forgotten, m.history  # a second ack only once the ledger may forget
            self._slack_receives_ack(envelope_id, m)
            if m.state is not None and (m.awaiting or not self.ledger.dedupe):
                m.state, m.awaiting, m.acked_at = "acked", False, self.now
                m.ack = plain_ack(envelope_id) if text is None else text
            if not self.ledger.dedupe:
                m.state = None
        else:
            assert m.state is not None and not m.awaiting, m.history

    @rule(envelope_id=_IDS)
    def listeners_return(self, envelope_id: str) -> None:
        m = self._model(envelope_id)
        was = m.state
        conn = self.ledger.handled(envelope_id)
        m.history.append(f"handled -> {conn}")
        if was == "inflight":
            assert conn is m.conn, m.history
            m.state = "handled" if self.ledger.dedupe else None
        else:
            assert conn is None, m.history

    @rule(envelope_id=_IDS)
    def listeners_ask_for_redelivery(self, envelope_id: str) -> None:
        """The listeners return, one having raised Redeliver: unless acked, the next delivery runs them again."""
        m = self._model(envelope_id)
        was = m.state
        released, conn = self.ledger.redeliver(envelope_id)
        m.history.append(f"redeliver -> {released}, {conn}")
        if was == "inflight":
            assert released and conn is m.conn, m.history
            m.state = "released" if self.ledger.dedupe else None
            m.awaiting = False  # the delivery (and any that waited with it) gets no ack: Slack redelivers
        else:
            assert not released and conn is None, m.history  # acked stays acked; handled stays handled

    @rule()
    def ack_written(self) -> None:
        if self.writing:
            self.ledger.written(self.writing.pop(0))

    @rule(seconds=st.sampled_from([0.1, 1.0, 10.0, 1000.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def inflight_counts_match(self) -> None:
        # a connection is busy with what it delivered until each ack is written (it must not close between)
        expected = Counter(id(m.conn) for m in self._inflight()) + Counter(id(conn) for conn in self.writing)
        for conn in self.conns:
            assert self.ledger.inflight(conn) >= 0
            assert self.ledger.inflight(conn) == expected.get(id(conn), 0)

    @invariant()
    def bounded(self) -> None:
        if not self.ledger.dedupe:
            assert len(self.ledger) == len(self._inflight())
        else:
            assert len(self.ledger) <= len(self.models)
            # the eviction order holds each remembered envelope once, and nothing else
            assert sorted(self.ledger._order) == sorted(self.ledger._entries)


LedgerMachine.TestCase.settings = fuzz_settings(150, stateful_step_count=40)
test_ledger_state_machine = LedgerMachine.TestCase


# ---- (c) end to end: junk between valid envelopes on one connection -------------------------


@dataclass
class Session:
    """One client and one server for the whole module."""

    server: SocketModeServer
    client: SocketModeClient
    recorder: Recorder
    watcher: Watcher


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    # Small fragments: long junk and envelopes arrive as continuation frames too.
    with SocketModeServer(redelivery_delay=None, fragment_size=512) as server:
        client = SocketModeClient(
            app_token=APP_TOKEN,
            web_client=WebClient(base_url=server.api_url),
            reconnect_policy=Backoff(base=0.05, cap=0.2, healthy_after=60.0),
        )
        recorder = Recorder()
        client.socket_mode_request_listeners.append(recorder)
        watcher = Watcher(client)
        try:
            client.connect()
            yield Session(server, client, recorder, watcher)
        finally:
            client.close()


def _inert(text: str) -> bool:
    """Junk must not be a real instruction: a ``disconnect`` or a valid envelope would act."""
    try:
        message = parse_message(text)
    except Exception:  # a parser bug: exactly the junk the client must survive
        return True
    return not isinstance(message, (Disconnect, Envelope))


def _inert_bytes(data: bytes) -> bool:
    try:
        return _inert(data.decode("utf-8"))
    except UnicodeDecodeError:
        return True


Junk = tuple[str, Any]

junk_frames: st.SearchStrategy[Junk] = st.one_of(
    st.text().filter(_inert).map(lambda t: ("text", t)),
    (json_values | shaped_messages).map(_dumps).filter(_inert).map(lambda t: ("text", t)),
    st.binary(max_size=3000).map(lambda b: ("binary", b)),
    st.binary(max_size=300).filter(_inert_bytes).map(lambda b: ("raw", b)),  # text frames, maybe not UTF-8
)


def _the_connection(session: Session) -> ServerConnection:
    """The one open connection, once the client is connected (an earlier failing example may have cost one)."""
    session.watcher.wait_connected(timeout(10))
    conns = session.server.wait_for_connections(1, timeout(5))
    for old in conns[:-1]:
        assert old.wait_closed(timeout(5))
    return conns[-1]


def _wait_acked_on(server: SocketModeServer, conn: ServerConnection, ids: list[str]) -> None:
    """Wait for the acks, failing at once (not after the whole timeout) if ``conn`` closes."""
    limit = timeout(10)
    waited = 0.0
    while True:
        try:
            server.wait_for_acks(envelope_ids=ids, timeout=0.25)
            return
        except TimeoutError:
            waited += 0.25
            assert conn.is_open, f"the connection was replaced; {len(server.unacked())} envelope(s) unacked"
            if waited >= limit:
                raise


@fuzz_settings(60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(frames=st.lists(junk_frames, min_size=1, max_size=8))
@example(frames=[("text", HUGE_HELLO)])
@example(frames=[("text", '{"type":[]}')])
def test_junk_between_envelopes_costs_no_connection_and_no_envelope(session: Session, frames: list[Junk]) -> None:
    server, client = session.server, session.client
    conn = _the_connection(session)
    opens = server.open_calls
    ids: list[str] = []
    for junk in frames:
        ids.append(server.push(server.make_envelope("events_api", {"event": {"type": "message"}}), connection=conn))
        send_junk(server, conn, junk)
    ids.append(server.push(server.make_envelope("slash_commands", {"command": "/fuzz"}), connection=conn))
    _wait_acked_on(server, conn, ids)
    assert server.connections == [conn] and conn.is_open
    assert server.open_calls == opens
    with session.recorder.lock:
        runs = Counter(r.envelope_id for r in session.recorder.seen)
    assert all(runs[i] == 1 for i in ids)
    assert client.is_connected()


def test_the_session_lost_nothing_overall(session: Session) -> None:
    """After the campaign: no ack for an envelope nobody was waiting on, nothing unacked."""
    assert session.server.duplicate_acks() == []
    assert session.server.unacked() == []
