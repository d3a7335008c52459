"""The session rules, fed messages and time: no threads, no sockets."""

from __future__ import annotations

import math

import pytest

from slack_socket_mode.errors import AuthError, ConnectionFailedError, LinkDisabledError, RateLimitedError
from slack_socket_mode.lifecycle import (
    MIN_CONNECTION_TIME,
    MIN_OPEN_INTERVAL,
    MIN_ROTATION_INTERVAL,
    OPEN_BURST,
    ROTATION_BURST,
    SLOT_RETRY_INTERVAL,
    Abort,
    Action,
    ClientState,
    Close,
    ConnectionState,
    DisconnectReason,
    Drain,
    Fail,
    Open,
    Supervisor,
    Transition,
    Warn,
    rotation_delay,
)
from slack_socket_mode.policy import Backoff

NO_JITTER = Backoff(base=1.0, cap=8.0, healthy_after=60.0, jitter=False)


def opens(actions: list[Action]) -> list[int]:
    return [a.connection_id for a in actions if isinstance(a, Open)]


def of(kind: type, actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def connected(sup: Supervisor, now: float = 0.0, act: float | None = None) -> int:
    """Drive the supervisor's pending Open to a hello'd connection; return its id."""
    (cid,) = [c for c in range(1, 100) if sup.connection_state(c) is ConnectionState.CONNECTING]
    sup.opened(cid, now)
    sup.hello(cid, act, now)
    return cid


def started(connections: int = 1) -> tuple[Supervisor, list[int]]:
    sup = Supervisor(NO_JITTER, connections=connections)
    actions = sup.start(0.0)
    assert opens(actions) == [1]
    ids = [connected(sup)]
    for _ in range(connections - 1):
        ids.append(connected(sup))
    return sup, ids


def test_start_opens_one_connection_and_is_connected_after_hello() -> None:
    sup = Supervisor(NO_JITTER)
    actions = sup.start(0.0)
    assert opens(actions) == [1]
    assert sup.state is ClientState.CONNECTING
    assert sup.opened(1, 0.1) == [
        Transition(1, ConnectionState.CONNECTING, ConnectionState.AWAITING_HELLO, "handshake done")
    ]
    actions = sup.hello(1, 18060.0, 0.2)
    assert Transition(None, ClientState.CONNECTING, ClientState.CONNECTED, "hello received") in actions
    assert sup.connected_ids() == [1]
    assert opens(actions) == []


def test_connections_are_opened_one_at_a_time_up_to_the_target() -> None:
    sup, ids = started(connections=3)
    assert ids == [1, 2, 3]
    assert sup.serving_ids() == [3, 2, 1]
    assert sup.next_deadline() is None  # nothing to do until something happens


@pytest.mark.parametrize("reason", ["warning", "refresh_requested", "something_new"])
def test_disconnect_is_make_before_break(reason: str) -> None:
    sup, [old] = started()
    actions = sup.disconnect(old, reason, 100.0)
    assert opens(actions) == [2]
    # the old connection keeps serving until the new one says hello
    assert sup.connection_state(old) is ConnectionState.CONNECTED
    assert sup.connected_ids() == [old]
    sup.opened(2, 100.1)
    assert of(Drain, sup.hello(2, None, 100.2)) == [Drain(old)]
    assert sup.connection_state(old) is ConnectionState.DRAINING
    assert sup.serving_ids() == [2]
    assert of(Close, sup.drained(old, 100.3)) == [Close(old, f"disconnect {reason}")]
    actions = sup.lost(old, "closed by client", 100.4)
    assert opens(actions) == [] and sup.state is ClientState.CONNECTED
    assert sup.attempt == 0  # a rotation of a connection that stayed up healthy_after is not a failure


def test_refresh_after_warning_on_a_draining_connection_does_nothing() -> None:
    sup, [old] = started()
    sup.disconnect(old, "warning", 1.0)
    sup.opened(2, 1.1)
    sup.hello(2, None, 1.2)
    assert sup.disconnect(old, "refresh_requested", 1.3) == []


def test_a_drain_that_takes_too_long_is_closed_at_its_deadline() -> None:
    sup, [old] = started()
    sup.disconnect(old, "warning", 1.0)
    sup.opened(2, 1.0)
    sup.hello(2, None, 1.0)
    assert sup.next_deadline() == 1.0 + sup.drain_timeout
    assert of(Close, sup.tick(1.0 + sup.drain_timeout)) == [Close(old, "disconnect warning")]
    assert of(Abort, sup.tick(1.0 + sup.drain_timeout + sup.close_timeout)) == [
        Abort(old, f"no close frame within {sup.close_timeout:g} s")
    ]


def test_rotation_before_approximate_connection_time_runs_out() -> None:
    assert rotation_delay(18060.0) == 18000.0
    assert rotation_delay(60.0) == pytest.approx(54.0)
    assert rotation_delay(2.0) == rotation_delay(0.001) == rotation_delay(MIN_CONNECTION_TIME)  # clamped
    assert rotation_delay(None) is None
    sup = Supervisor(NO_JITTER)
    sup.start(0.0)
    sup.opened(1, 0.0)
    sup.hello(1, 100.0, 0.0)
    assert sup.next_deadline() == 90.0
    assert opens(sup.tick(89.9)) == []
    assert opens(sup.tick(90.0)) == [2]
    assert sup.connected_ids() == [1]


def test_sudden_drop_reconnects_at_once_then_backs_off() -> None:
    sup, [cid] = started()
    actions = sup.lost(cid, "reset", 100.0)
    assert opens(actions) == [2]  # immediate
    assert sup.state is ClientState.RECONNECTING
    actions = sup.open_failed(2, ConnectionFailedError("refused", error="ConnectionRefusedError"), 100.1)
    assert opens(actions) == []
    assert sup.next_deadline() == pytest.approx(101.1)  # base 1 s for attempt 1
    assert opens(sup.tick(101.1)) == [3]
    sup.open_failed(3, ConnectionFailedError("refused", error="x"), 101.2)
    assert sup.next_deadline() == pytest.approx(103.2)  # 2 s
    sup.tick(103.2)
    sup.open_failed(4, ConnectionFailedError("refused", error="x"), 103.3)
    assert sup.next_deadline() == pytest.approx(107.3)  # 4 s
    sup.tick(107.3)
    sup.open_failed(5, ConnectionFailedError("refused", error="x"), 107.4)
    assert sup.next_deadline() == pytest.approx(115.4)  # capped at 8 s
    sup.tick(115.4)
    sup.open_failed(6, ConnectionFailedError("refused", error="x"), 115.5)
    assert sup.next_deadline() == pytest.approx(123.5)
    sup.tick(123.5)
    sup.opened(7, 123.6)
    actions = sup.hello(7, None, 123.6)
    assert sup.state is ClientState.CONNECTED


def test_without_auto_reconnect_losing_the_last_connection_stops_the_client() -> None:
    sup, [cid] = started()
    assert sup.lost_unexpectedly(cid)
    actions = sup.lost(cid, "reset", 100.0, reconnect=False)
    assert opens(actions) == []
    assert sup.state is ClientState.DISCONNECTED
    assert sup.next_deadline() is None  # nothing planned: no replacement later either
    assert not sup.lost_unexpectedly(cid)


def test_without_auto_reconnect_the_other_connections_go_on_serving() -> None:
    sup, [first, second] = started(connections=2)
    sup.lost(first, "reset", 100.0, reconnect=False)
    assert sup.state is ClientState.CONNECTED
    assert sup.connected_ids() == [second]


def test_without_auto_reconnect_a_drained_connection_closing_is_no_loss() -> None:
    sup, [cid] = started()
    sup.disconnect(cid, DisconnectReason.REFRESH_REQUESTED, 10.0)
    new = connected(sup, 10.5)
    assert not sup.lost_unexpectedly(cid)  # draining: its end was asked for
    actions = sup.lost(cid, "closed", 11.0, reconnect=False)
    assert sup.state is ClientState.CONNECTED and opens(actions) == []
    assert sup.connected_ids() == [new]


def test_disconnect_reasons_compare_equal_to_slacks_strings() -> None:
    assert DisconnectReason("link_disabled") is DisconnectReason.LINK_DISABLED
    assert DisconnectReason.WARNING == "warning"


def test_flapping_connections_keep_backing_off_and_healthy_ones_reset() -> None:
    sup, [cid] = started()
    sup.lost(cid, "reset", 100.0)  # healthy for 100 s: immediate
    sup.opened(2, 100.0)
    sup.hello(2, None, 100.0)
    sup.lost(2, "reset", 101.0)  # up for 1 s only: not healthy, so it backs off
    assert sup.next_deadline() == pytest.approx(102.0)
    sup.tick(102.0)
    sup.opened(3, 102.0)
    sup.hello(3, None, 102.0)
    sup.lost(3, "reset", 200.0)  # healthy for 98 s >= 60: reset, immediate
    assert sup.connection_state(4) is ConnectionState.CONNECTING


def test_rate_limit_waits_for_retry_after() -> None:
    sup = Supervisor(NO_JITTER)
    sup.start(0.0)
    sup.open_failed(1, RateLimitedError("429", retry_after=30.0), 0.0)
    assert sup.next_deadline() == pytest.approx(30.0)
    assert opens(sup.tick(29.0)) == []
    assert opens(sup.tick(30.0)) == [2]


@pytest.mark.parametrize("code", ["invalid_auth", "token_revoked", "missing_scope"])
def test_fatal_open_error_ends_reconnecting(code: str) -> None:
    sup = Supervisor(NO_JITTER)
    sup.start(0.0)
    error = AuthError(code, error=code)
    actions = sup.open_failed(1, error, 0.0)
    assert of(Fail, actions) == [Fail(error)]
    assert sup.state is ClientState.FAILED
    assert sup.next_deadline() is None
    assert sup.tick(1000.0) == []


def test_link_disabled_fails_and_closes_every_connection() -> None:
    sup, ids = started(connections=2)
    actions = sup.disconnect(ids[0], "link_disabled", 5.0)
    (fail,) = of(Fail, actions)
    assert isinstance(fail, Fail) and isinstance(fail.error, LinkDisabledError)
    assert sorted(a.connection_id for a in of(Close, actions)) == ids
    assert opens(actions) == [] and sup.state is ClientState.FAILED
    assert opens(sup.lost(ids[0], "closed", 5.1)) == []


def test_too_many_websockets_on_a_connected_connection_waits_one_slot_retry_interval() -> None:
    sup, [cid] = started()
    actions = sup.disconnect(cid, "too_many_websockets", 10.0)
    assert opens(actions) == []
    assert sup.next_deadline() == pytest.approx(10.0 + SLOT_RETRY_INTERVAL)
    assert sup.connected_ids() == [cid]  # kept while it lasts
    assert opens(sup.tick(10.0 + SLOT_RETRY_INTERVAL)) == [2]
    assert sup.attempt == 0 and not sup.lost_unexpectedly(cid)  # Slack asked: no failure


def test_no_hello_in_time_aborts_and_retries() -> None:
    sup = Supervisor(NO_JITTER, hello_timeout=10.0)
    sup.start(0.0)
    sup.opened(1, 0.0)
    actions = sup.tick(10.0)
    assert of(Abort, actions) == [Abort(1, "no hello within 10 s")]
    assert sup.connection_state(1) is ConnectionState.CLOSED
    assert opens(actions) == [2]  # first attempt after a failure of a fresh start: immediate
    sup.opened(2, 10.1)
    actions = sup.tick(20.1)
    assert of(Abort, actions) == [Abort(2, "no hello within 10 s")]
    assert opens(actions) == []  # the second one backs off
    assert sup.next_deadline() == pytest.approx(21.1)


def test_dead_connection_is_aborted_and_replaced() -> None:
    sup, ids = started(connections=3)
    actions = sup.dead(ids[1], "no pong within 3 s", 50.0)
    assert of(Abort, actions) == [Abort(ids[1], "no pong within 3 s")]
    assert opens(actions) == [4]
    assert sup.state is ClientState.CONNECTED
    assert sup.connected_ids() == [ids[0], ids[2]]


def test_stop_closes_everything_and_ignores_later_events() -> None:
    sup, ids = started(connections=2)
    actions = sup.stop(1.0, final=False)
    assert sorted(a.connection_id for a in of(Close, actions)) == ids
    assert sup.state is ClientState.DISCONNECTED
    assert opens(sup.lost(ids[0], "closed", 1.1)) == []
    assert sup.tick(100.0) == [] or not opens(sup.tick(100.0))
    # connect() again works after disconnect()
    assert opens(sup.start(200.0)) == [3]


def test_a_connection_that_finishes_opening_after_stop_is_closed() -> None:
    sup = Supervisor(NO_JITTER)
    sup.start(0.0)
    sup.stop(0.1, final=True)
    assert of(Close, sup.opened(1, 0.2)) == [Close(1, "client is stopping")]
    assert sup.start(0.3) == []  # closed is final


def test_every_transition_is_reported() -> None:
    sup = Supervisor(NO_JITTER)
    seen = [a for a in sup.start(0.0) if isinstance(a, Transition)]
    seen += [a for a in sup.opened(1, 0.0) if isinstance(a, Transition)]
    seen += [a for a in sup.hello(1, None, 0.0) if isinstance(a, Transition)]
    assert [(t.connection_id, t.new) for t in seen] == [
        (None, ClientState.CONNECTING),
        (1, ConnectionState.CONNECTING),
        (1, ConnectionState.AWAITING_HELLO),
        (1, ConnectionState.CONNECTED),
        (None, ClientState.CONNECTED),
    ]


# ---- reconnect storms (issue 12, cause 5): the rule in lifecycle.py's docstring --------------------


def _opens_per_second(sup: Supervisor, peer: str, seconds: float = 120.0) -> float:
    """Drive a peer that ends every connection right after ``hello``; return open attempts per second.

    ``peer``: ``"disconnect"`` (a ``disconnect`` after every hello, then the drop), ``"tiny-act"``
    (``approximate_connection_time`` of 0.001 s) or ``"drop"`` (a reset after every hello).
    The clock jumps to each next deadline, as the health thread would wake.
    """
    now, count = 0.0, 0
    todo = opens(sup.start(now))
    while now < seconds:
        while todo:
            cid = todo.pop(0)
            count += 1
            more = sup.opened(cid, now)
            more += sup.hello(cid, 0.001 if peer == "tiny-act" else None, now)
            if peer == "disconnect":
                more += sup.disconnect(cid, "refresh_requested", now)
            elif peer == "drop":
                more += sup.lost(cid, "server closed the TCP connection", now)
            for old in sup.connected_ids():  # a replaced connection drains and goes as soon as it may
                more += sup.drained(old, now)
                if sup.connection_state(old) is ConnectionState.CLOSING:
                    more += sup.lost(old, "closed by client", now)
            todo += opens(more)
        due = sup.next_deadline()
        assert due is not None and due > now, "the supervisor must always have a next deadline here"
        now = due
        todo += opens(sup.tick(now))
    return count / seconds


@pytest.mark.parametrize("peer", ["disconnect", "tiny-act", "drop"])
def test_no_peer_can_make_a_reconnect_storm(peer: str) -> None:
    """On main: ~200 opens per second against these peers (2,475 in 12 s); now backoff decides."""
    rate = _opens_per_second(Supervisor(Backoff(base=0.5, cap=30.0, healthy_after=60.0, jitter=False)), peer)
    assert rate < 0.2, f"{rate:.2f} open attempts per second against a {peer!r} peer"


class Never:
    """A policy that never waits (a user's)."""

    healthy_after = 60.0

    def delay(self, attempt: int) -> float:
        return 0.0


def test_the_floor_holds_per_connection_slot_even_with_no_backoff() -> None:
    """A policy that never waits still cannot open more than ``connections`` per interval."""
    for connections in (1, 3):
        sup = Supervisor(Never(), connections=connections)
        rate = _opens_per_second(sup, "drop", seconds=60.0)
        assert rate <= connections / MIN_OPEN_INTERVAL + 0.1


def test_the_rotation_floor_holds_per_connection_slot_against_a_refresh_after_every_hello() -> None:
    """Rotations wait for no backoff and no open floor: their own floor bounds a peer that always asks for one."""
    seconds = 60.0
    windows = math.ceil(seconds / (ROTATION_BURST * MIN_ROTATION_INTERVAL))
    for connections in (1, 3):
        sup = Supervisor(Never(), connections=connections)
        opened = _opens_per_second(sup, "disconnect", seconds=seconds) * seconds
        # the first connections, then a burst of ROTATION_BURST per slot in each window
        assert opened == pytest.approx(connections * (1 + ROTATION_BURST * windows))


def test_a_reset_right_after_connect_is_repaired_at_once_and_the_floor_takes_the_third() -> None:
    """The floor allows a burst of OPEN_BURST per slot: one early fault costs no wait; a storm still does."""
    sup = Supervisor(Never())
    assert opens(sup.start(0.0)) == [1]
    sup.opened(1, 0.0)
    sup.hello(1, None, 0.0)
    assert opens(sup.lost(1, "reset", 0.3)) == [2]  # the second attempt in the window: at once
    sup.opened(2, 0.3)
    sup.hello(2, None, 0.3)
    assert opens(sup.lost(2, "reset", 0.6)) == []  # a third within 2 s waits for the floor
    assert sup.next_deadline() == pytest.approx(OPEN_BURST * MIN_OPEN_INTERVAL)
    assert opens(sup.tick(OPEN_BURST * MIN_OPEN_INTERVAL)) == [3]


def test_replacements_of_healthy_connections_stay_immediate() -> None:
    """Slack's own rotations (hours apart) never wait: the backoff counts only short-lived connections."""
    sup, [cid] = started()
    for n in range(5):
        now = 3600.0 * (n + 1)
        assert opens(sup.disconnect(cid, "warning", now)) == [cid + 1]
        sup.opened(cid + 1, now)
        sup.hello(cid + 1, 3600.0, now)
        sup.drained(cid, now)
        sup.lost(cid, "closed by client", now)
        cid += 1
    assert sup.attempt == 0


def test_an_open_attempt_past_its_deadline_is_aborted_until_it_reports_back() -> None:
    sup = Supervisor(NO_JITTER, open_timeout=10.0)
    sup.start(0.0)
    assert sup.next_deadline() == 10.0
    assert of(Abort, sup.tick(9.9)) == []
    assert of(Abort, sup.tick(10.0)) == [Abort(1, "open attempt took more than 10 s")]
    assert of(Abort, sup.tick(10.0 + 0.5)) == [Abort(1, "open attempt took more than 10 s")]  # again
    sup.open_failed(1, ConnectionFailedError("aborted", error="open_aborted"), 10.6)
    assert sup.connection_state(1) is ConnectionState.CLOSED


def test_stop_aborts_an_open_attempt_under_way() -> None:
    sup = Supervisor(NO_JITTER)
    sup.start(0.0)
    assert of(Abort, sup.stop(1.0, final=True)) == [Abort(1, "close() called")]


# ---- Guarantees that mutation testing found unchecked (docs/developing.md#mutation-testing) ----------


def _line(action: Action) -> str:
    """One action as a line of the connection's life story (what the INFO log says)."""
    if isinstance(action, Transition):
        who = "client" if action.connection_id is None else str(action.connection_id)
        old = "new" if action.old is None else action.old.value
        return f"{who} {old}->{action.new.value}: {action.reason}"
    if isinstance(action, (Close, Abort)):
        return f"{type(action).__name__} {action.connection_id}: {action.reason}"
    if isinstance(action, Fail):
        return f"Fail {type(action.error).__name__}({action.error.error})"
    return f"{type(action).__name__} {action.connection_id}"


#: The transcript of test_the_life_story_of_a_client_every_state_and_every_reason.
EXPECTED_STORY = [
    "client idle->connecting: connect() called",
    "1 new->connecting: opening",
    "Open 1",
    "1 connecting->awaiting_hello: handshake done",
    "1 awaiting_hello->connected: hello received",
    "client connecting->connected: hello received",
    "2 new->connecting: opening",
    "Open 2",
    "2 connecting->awaiting_hello: handshake done",
    "2 awaiting_hello->connected: hello received",
    "1 connected->draining: replaced (disconnect warning)",
    "Drain 1",
    "1 draining->closing: drained",
    "Close 1: disconnect warning",
    "1 closing->closed: closed by client",
    "Abort 2: no pong within 3 s",
    "2 connected->closed: no pong within 3 s",
    "client connected->reconnecting: connection 2 lost: no pong within 3 s",
    "3 new->connecting: opening",
    "Open 3",
    "3 connecting->closed: open failed: ConnectionFailedError (ECONNREFUSED)",
    "4 new->connecting: opening",
    "Open 4",
    "4 connecting->closed: open failed: OSError",
    "5 new->connecting: opening",
    "Open 5",
    "5 connecting->awaiting_hello: handshake done",
    "Abort 5: no hello within 10 s",
    "5 awaiting_hello->closed: no hello within 10 s",
    "6 new->connecting: opening",
    "Open 6",
    "6 connecting->awaiting_hello: handshake done",
    "6 awaiting_hello->connected: hello received",
    "client reconnecting->connected: hello received",
    "7 new->connecting: opening",
    "Open 7",
    "7 connecting->awaiting_hello: handshake done",
    "7 awaiting_hello->connected: hello received",
    "6 connected->draining: replaced (connect_to_new_endpoint(force=True))",
    "Drain 6",
    "6 draining->closing: drained",
    "Close 6: connect_to_new_endpoint(force=True)",
    "Abort 6: no close frame within 1 s",
    "6 closing->closed: aborted",
    "client connected->disconnected: disconnect() called",
    "7 connected->closing: disconnect() called",
    "Close 7: disconnect() called",
    "7 closing->closed: closed by client",
    "client disconnected->connecting: connect() called",
    "8 new->connecting: opening",
    "Open 8",
    "8 connecting->awaiting_hello: handshake done",
    "8 awaiting_hello->connected: hello received",
    "client connecting->connected: hello received",
    "8 connected->closed: server closed the TCP connection",
    "client connected->reconnecting: connection 8 lost: server closed the TCP connection",
    "9 new->connecting: opening",
    "Open 9",
    "9 connecting->closed: open failed: AuthError (token_revoked)",
    "client reconnecting->failed: AuthError: token_revoked",
    "Fail AuthError(token_revoked)",
]


def test_the_life_story_of_a_client_every_state_and_every_reason() -> None:
    """Every transition, with its reason: what a lifecycle listener and the INFO log see."""
    sup = Supervisor(NO_JITTER)
    log: list[Action] = []
    now = 0.0

    def until_opening() -> int:
        """Let time pass deadline by deadline, as the health thread would, until an open is under way."""
        nonlocal now, log
        while True:
            ids = [c for c in range(1, 20) if sup.connection_state(c) is ConnectionState.CONNECTING]
            if ids:
                return ids[0]
            due = sup.next_deadline()
            assert due is not None
            now = max(now, due)
            log += sup.tick(now)

    def at(seconds: float) -> float:
        nonlocal now
        now += seconds
        return now

    log += sup.start(now)
    log += sup.opened(until_opening(), at(0.1)) + sup.hello(1, None, at(0.1))
    log += sup.disconnect(1, "warning", at(10.0))
    log += sup.opened(until_opening(), at(0.1)) + sup.hello(2, None, at(0.1))
    log += sup.drained(1, at(0.1)) + sup.lost(1, "closed by client", at(0.1))
    log += sup.dead(2, "no pong within 3 s", at(10.0))
    log += sup.open_failed(until_opening(), ConnectionFailedError("refused", error="ECONNREFUSED"), at(0.1))
    log += sup.open_failed(until_opening(), OSError("boom"), at(0.1))
    log += sup.opened(until_opening(), at(0.1)) + sup.tick(at(10.0))  # no hello within 10 s
    six = until_opening()
    log += sup.opened(six, at(0.1)) + sup.hello(six, None, at(0.1))
    log += sup.refresh("connect_to_new_endpoint(force=True)", at(0.1))
    seven = until_opening()
    log += sup.opened(seven, at(0.1)) + sup.hello(seven, None, at(0.1))
    log += sup.tick(at(sup.drain_timeout)) + sup.tick(at(sup.close_timeout)) + sup.lost(six, "aborted", at(0.1))
    log += sup.stop(at(1.0), final=False) + sup.lost(seven, "closed by client", at(0.1))
    log += sup.start(at(10.0))
    eight = until_opening()
    log += sup.opened(eight, at(0.1)) + sup.hello(eight, None, at(0.1))
    log += sup.lost(eight, "server closed the TCP connection", at(1.0))
    log += sup.open_failed(until_opening(), AuthError("revoked", error="token_revoked"), at(0.1))
    assert [_line(a) for a in log] == EXPECTED_STORY


def test_link_disabled_and_close_tell_their_own_story() -> None:
    sup, [cid] = started()
    actions = sup.disconnect(cid, "link_disabled", 1.0)
    assert [_line(a) for a in actions] == [
        "client connected->failed: LinkDisabledError: link_disabled",
        "1 connected->closing: link_disabled",
        "Close 1: link_disabled",
        "Fail LinkDisabledError(link_disabled)",
    ]
    (fail,) = of(Fail, actions)
    assert isinstance(fail, Fail) and fail.error.error == "link_disabled"
    assert str(fail.error) == (
        "Slack disabled Socket Mode for this app (disconnect reason link_disabled); "
        "turn Socket Mode on in the app settings and connect again"
    )
    closing = Supervisor(NO_JITTER)
    closing.start(0.0)
    assert [_line(a) for a in closing.stop(0.1, final=True) + closing.opened(1, 0.2)] == [
        "client connecting->closed: close() called",
        "Abort 1: close() called",
        "1 connecting->closing: client is stopping",
        "Close 1: client is stopping",
    ]


def test_a_new_supervisor_is_idle_with_the_documented_timeouts() -> None:
    sup = Supervisor(NO_JITTER)
    assert sup.state is ClientState.IDLE
    assert (sup.hello_timeout, sup.drain_timeout, sup.close_timeout) == (10.0, 5.0, 1.0)
    assert sup.next_deadline() is None
    sup.start(0.0)
    assert sup.next_deadline() is None  # opening: nothing is due until the open reports back


def test_events_for_unknown_or_finished_connections_are_ignored() -> None:
    sup, [cid] = started()
    for call in (
        lambda: sup.opened(99, 1.0),
        lambda: sup.hello(99, None, 1.0),
        lambda: sup.disconnect(99, "warning", 1.0),
        lambda: sup.dead(99, "no pong", 1.0),
        lambda: sup.lost(99, "reset", 1.0),
        lambda: sup.drained(99, 1.0),
        lambda: sup.drained(cid, 1.0),  # not draining
        lambda: sup.hello(cid, None, 1.0),  # a second hello
        lambda: sup.opened(cid, 1.0),  # already open
    ):
        assert call() == []
    assert [_line(a) for a in sup.open_failed(99, ConnectionFailedError("x", error="y"), 1.0)] == []
    assert sup.connected_ids() == [cid] and sup.state is ClientState.CONNECTED


def test_deadlines_fall_after_their_timeouts_not_before() -> None:
    sup = Supervisor(NO_JITTER, hello_timeout=10.0, close_timeout=1.0)
    sup.start(0.0)
    sup.opened(1, 0.0)
    assert of(Abort, sup.tick(9.9)) == []  # the hello may take 10 s
    sup.hello(1, None, 9.9)
    sup.stop(20.0, final=False)
    assert of(Abort, sup.tick(20.9)) == []  # the close reply may take 1 s
    assert of(Abort, sup.tick(21.0)) == [Abort(1, "no close frame within 1 s")]
    late = Supervisor(NO_JITTER, close_timeout=1.0)
    late.start(0.0)
    late.stop(0.1, final=True)
    late.opened(1, 0.2)
    assert of(Abort, late.tick(1.1)) == []
    assert of(Abort, late.tick(1.2)) == [Abort(1, "no close frame within 1 s")]


def test_a_fatal_open_error_closes_the_connections_still_open_in_time() -> None:
    sup = Supervisor(NO_JITTER, connections=2, close_timeout=1.0)
    sup.start(0.0)
    first = connected(sup)
    actions = sup.open_failed(2, AuthError("revoked", error="token_revoked"), 5.0)
    assert of(Close, actions) == [Close(first, "token_revoked")]
    assert sup.connection_state(first) is ConnectionState.CLOSING
    assert of(Abort, sup.tick(5.9)) == []
    assert of(Abort, sup.tick(6.0)) == [Abort(first, "no close frame within 1 s")]


def test_a_connection_waiting_for_hello_counts_toward_the_target() -> None:
    sup = Supervisor(NO_JITTER, connections=2)
    sup.start(0.0)
    first = connected(sup)
    sup.opened(2, 0.1)  # awaiting hello
    assert sup.serving_ids() == [first]
    assert opens(sup.tick(1.5)) == []  # no third connection while the second says hello (past the open floor)


def test_with_two_connections_a_replaced_one_drains_only_once_its_replacement_said_hello() -> None:
    sup, [one, two] = started(connections=2)
    actions = sup.disconnect(one, "warning", 1.0)
    assert opens(actions) == [3] and of(Drain, actions) == []
    assert of(Drain, sup.opened(3, 1.1)) == []
    assert of(Drain, sup.hello(3, None, 1.2)) == [Drain(one)]
    assert sup.serving_ids() == [3, two]


def test_every_connection_past_its_deadline_is_handled_in_one_tick() -> None:
    sup = Supervisor(NO_JITTER, connections=2, hello_timeout=10.0)
    sup.start(0.0)
    connected(sup)  # 1: connected, no deadline
    sup.opened(2, 0.0)
    assert of(Abort, sup.tick(10.0)) == [Abort(2, "no hello within 10 s")]


def test_a_connection_up_for_exactly_healthy_after_was_healthy() -> None:
    sup, [cid] = started()
    sup.lost(cid, "reset", 100.0)
    sup.opened(2, 100.0)
    sup.hello(2, None, 100.0)
    sup.lost(2, "reset", 101.0)  # short-lived: the next attempt backs off
    sup.tick(102.0)
    sup.opened(3, 102.0)
    sup.hello(3, None, 102.0)
    assert opens(sup.lost(3, "reset", 162.0)) == [4]  # up 60 s = healthy_after: immediate again


def test_backoff_without_retry_after_has_no_minimum() -> None:
    fast = Backoff(base=0.1, cap=1.0, healthy_after=60.0, jitter=False)
    sup = Supervisor(fast, min_open_interval=0.01)  # the floor per slot aside: backoff alone
    sup.start(0.0)
    sup.opened(1, 0.0)
    sup.hello(1, None, 0.0)
    sup.lost(1, "reset", 1.0)
    sup.open_failed(2, ConnectionFailedError("refused", error="x"), 1.0)
    assert sup.next_deadline() == pytest.approx(1.1)  # base 0.1 s, no 1 s floor
    sup.tick(1.1)
    sup.open_failed(3, RateLimitedError("429", retry_after=0.0), 1.1)
    assert sup.next_deadline() == pytest.approx(1.3)
    sup.tick(1.3)
    sup.opened(4, 1.3)
    sup.hello(4, None, 1.3)
    assert sup.attempt == 3
    sup.disconnect(4, "too_many_websockets", 2.0)
    assert sup.next_deadline() == pytest.approx(2.0 + SLOT_RETRY_INTERVAL)  # the slot's steady period
    assert sup.attempt == 3  # a refusal is not a failed attempt


def test_refresh_replaces_only_connections_that_said_hello() -> None:
    sup = Supervisor(NO_JITTER, connections=2)
    sup.start(0.0)
    first = connected(sup)
    sup.opened(2, 0.1)  # awaiting its hello
    sup.refresh("connect_to_new_endpoint(force=True)", 0.2)
    sup.hello(2, None, 0.3)
    assert sup.serving_ids() == [2]  # 2 serves; 1 is being replaced
    assert sup.connection_state(first) is ConnectionState.CONNECTED


def test_a_rotation_before_slack_asks_says_why() -> None:
    sup = Supervisor(NO_JITTER)
    sup.start(0.0)
    sup.opened(1, 0.0)
    sup.hello(1, 100.0, 0.0)
    sup.tick(90.0)
    sup.opened(2, 90.1)
    actions = sup.hello(2, None, 90.2) + sup.drained(1, 90.3)
    assert [_line(a) for a in actions if not isinstance(a, Transition) or a.connection_id == 1] == [
        "1 connected->draining: replaced (approximate_connection_time nearly spent)",
        "Drain 1",
        "1 draining->closing: drained",
        "Close 1: approximate_connection_time nearly spent",
    ]
    assert of(Abort, sup.tick(91.2)) == []  # the close reply may take close_timeout (1 s)
    assert of(Abort, sup.tick(91.3)) == [Abort(1, "no close frame within 1 s")]


def test_connections_waiting_for_hello_count_one_each() -> None:
    sup = Supervisor(NO_JITTER, connections=3)
    sup.start(0.0)
    connected(sup)
    sup.opened(2, 0.1)
    assert opens(sup.tick(0.2)) == [3]  # one serving, one awaiting hello: a third is wanted
    sup.opened(3, 0.3)
    assert opens(sup.tick(1.5)) == []  # one serving, two awaiting hello: enough (past the open floor)


def test_losing_the_last_connection_while_it_drains_says_why() -> None:
    sup, [old] = started()
    sup.disconnect(old, "warning", 1.0)
    sup.opened(2, 1.1)
    sup.hello(2, None, 1.2)  # 1 drains
    sup.lost(2, "reset", 1.3)  # the new one is lost first
    sup.open_failed(3, ConnectionFailedError("refused", error="x"), 1.4)
    actions = sup.lost(old, "closed by client", 1.5)
    assert [_line(a) for a in actions] == [
        "1 draining->closed: closed by client",
        "client connected->reconnecting: closed by client",
    ]


def test_an_open_attempt_is_aborted_again_only_every_abort_retry() -> None:
    from slack_socket_mode.lifecycle import ABORT_RETRY

    sup = Supervisor(NO_JITTER, open_timeout=10.0)
    sup.start(0.0)
    assert of(Abort, sup.tick(10.0)) != []
    assert of(Abort, sup.tick(10.0 + ABORT_RETRY / 2)) == []  # not before the retry is due
    assert of(Abort, sup.tick(10.0 + ABORT_RETRY)) != []


def test_a_rotation_after_exactly_healthy_after_forgets_earlier_failures_and_a_younger_one_keeps_them() -> None:
    sup, hello_at = flapped(2)  # attempt 2
    assert sup.attempt == 2
    sup.disconnect(3, "warning", hello_at + 59.9)  # healthy_after is 60 s: not yet
    assert sup.attempt == 2
    sup, hello_at = flapped(2)
    sup.disconnect(3, "warning", hello_at + 60.0)
    assert sup.attempt == 0


# ---- A planned rotation is never a failure (issue 25, item 3) -------------------------------------


def flapped(resets: int) -> tuple[Supervisor, float]:
    """A supervisor whose connection was reset ``resets`` times, each a second after its hello, and
    replaced as soon as the backoff allowed: its attempt count is ``resets``. Returns it and the time
    at which the last connection (id ``resets + 1``) said hello."""
    sup = Supervisor(NO_JITTER, connections=1)
    sup.start(0.0)
    now = 0.0
    for n in range(1, resets + 1):
        connected(sup, now)
        now += 1.0
        sup.lost(n, "reset", now)
        while sup.connection_state(n + 1) is not ConnectionState.CONNECTING:
            due = sup.next_deadline()
            assert due is not None
            now = max(now, due)
            sup.tick(now)
    connected(sup, now)
    return sup, now


def rotate(sup: Supervisor, how: str, cid: int, now: float) -> list[Action]:
    """Ask for a planned rotation of ``cid`` at ``now`` the way ``how`` names."""
    if how == "approximate_connection_time":
        return sup.tick(now)  # the hello said approximate_connection_time=None: set it up below
    if how == "refresh":
        return sup.refresh("connect_to_new_endpoint(force=True)", now)
    return sup.disconnect(cid, how, now)


@pytest.mark.parametrize(
    "how", ["warning", "refresh_requested", "something_new", "refresh", "approximate_connection_time"]
)
def test_a_planned_rotation_opens_its_replacement_at_once_whatever_the_backoff_left_by_faults(how: str) -> None:
    sup, now = flapped(6)  # six short-lived connections: attempt 6, the next failure would wait 8 s
    cid = 7
    now += 1.0
    if how == "approximate_connection_time":  # a connection whose hello promised only a minute
        sup.lost(cid, "reset", now)
        now = sup.next_deadline() or now
        sup.tick(now)
        cid += 1
        sup.opened(cid, now)
        sup.hello(cid, 60.0, now)
        now += rotation_delay(60.0) or 0.0
    attempt = sup.attempt
    actions = rotate(sup, how, cid, now)
    assert opens(actions) == [cid + 1]  # at once
    assert sup.attempt == attempt  # not a failure
    assert sup.connected_ids() == [cid]  # the old one serves until the new one said hello
    sup.opened(cid + 1, now + 0.1)
    assert of(Drain, sup.hello(cid + 1, None, now + 0.1)) == [Drain(cid)]
    assert sup.state is ClientState.CONNECTED


def test_a_rotation_does_not_wait_for_a_backoff_timer_running_for_another_slot() -> None:
    sup, [one, two] = started(connections=2)
    sup.lost(one, "reset", 0.5)  # short-lived: backs off
    sup.open_failed(3, ConnectionFailedError("refused", error="x"), 0.5)
    assert sup.next_open_at > 1.0  # the lost slot waits
    assert opens(sup.disconnect(two, "refresh_requested", 1.0)) == [4]  # the rotation does not
    sup.opened(4, 1.0)
    sup.hello(4, None, 1.0)
    assert opens(sup.tick(1.0)) == []  # the lost slot still waits for its timer
    due = sup.next_deadline()
    assert due is not None and due >= sup.next_open_at
    assert opens(sup.tick(due)) == [5]


def test_a_rotation_does_not_wait_for_the_open_floor_that_faults_used_up() -> None:
    sup = Supervisor(Never())
    sup.start(0.0)
    connected(sup, 0.0)
    sup.lost(1, "reset", 0.1)  # two attempts in a few tenths of a second: the floor is used up
    connected(sup, 0.1)
    sup.lost(2, "reset", 0.2)
    assert opens(sup.tick(0.3)) == []  # a third reconnect would wait for the floor
    assert sup.next_deadline() == pytest.approx(OPEN_BURST * MIN_OPEN_INTERVAL)
    sup.tick(OPEN_BURST * MIN_OPEN_INTERVAL)
    connected(sup, 2.0)
    assert opens(sup.disconnect(3, "warning", 2.1)) == [4]  # the floor is used up again, but this is a rotation


def test_a_rotation_asked_of_a_connection_still_waiting_for_hello_is_owed_until_it_says_hello() -> None:
    sup, [one, two] = started(connections=2)
    assert opens(sup.disconnect(one, "warning", 0.1)) == [3]
    sup.opened(3, 0.1)
    assert opens(sup.disconnect(3, "warning", 0.1)) == []  # before its hello: it still counts as pending
    assert opens(sup.disconnect(two, "warning", 0.2)) == [4]  # the open floor is used up by now (four opens)
    connected(sup, 0.3)
    assert opens(sup.hello(3, None, 0.4)) == [5]  # 3's rotation was owed all along: at once, floor or not


def test_slack_closing_a_connection_it_asked_to_refresh_is_no_failure() -> None:
    sup, now = flapped(4)
    actions = sup.disconnect(5, "refresh_requested", now + 1.0)
    assert opens(actions) == [6]
    assert not sup.lost_unexpectedly(5)
    assert opens(sup.lost(5, "server closed the TCP connection", now + 1.1)) == []  # the replacement is under way
    assert sup.attempt == 4
    assert sup.next_open_at <= now  # no backoff timer started
    sup.opened(6, now + 1.2)
    sup.hello(6, None, now + 1.2)
    assert sup.state is ClientState.CONNECTED


def test_a_rotated_connection_closed_before_its_replacement_started_is_replaced_as_a_rotation() -> None:
    sup = Supervisor(Never())
    sup.start(0.0)
    now = 0.0
    for n in range(1, ROTATION_BURST + 1):  # use the rotation floor up
        connected(sup, now)
        assert opens(sup.disconnect(n, "refresh_requested", now)) == [n + 1]
        sup.drained(n, now)
        sup.lost(n, "closed by client", now)
    connected(sup, now)
    last = ROTATION_BURST + 1
    assert opens(sup.disconnect(last, "refresh_requested", 1.0)) == []  # the rotation floor holds it
    assert opens(sup.lost(last, "server closed the TCP connection", 1.5)) == []  # still a rotation: no failure path
    assert sup.attempt == 0
    floor = ROTATION_BURST * MIN_ROTATION_INTERVAL
    assert sup.next_deadline() == pytest.approx(floor)
    assert opens(sup.tick(floor - 0.1)) == []
    assert opens(sup.tick(floor)) == [last + 1]


def test_a_failed_replacement_is_a_failed_attempt_and_backs_off() -> None:
    sup, now = flapped(2)
    assert opens(sup.disconnect(3, "warning", now + 5.0)) == [4]
    actions = sup.open_failed(4, ConnectionFailedError("refused", error="x"), now + 5.1)
    assert opens(actions) == [] and sup.attempt == 3
    assert sup.next_deadline() == pytest.approx(now + 5.1 + NO_JITTER.delay(2))  # backoff, as any failure
    assert opens(sup.tick(now + 5.1 + NO_JITTER.delay(2))) == [5]


def test_without_auto_reconnect_a_rotation_is_followed_even_if_slack_closes_the_old_one_first() -> None:
    sup, [cid] = started()
    assert opens(sup.disconnect(cid, "refresh_requested", 10.0)) == [2]
    actions = sup.lost(cid, "server closed the TCP connection", 10.1, reconnect=False)
    assert sup.state is ClientState.RECONNECTING and of(Abort, actions) == []
    sup.opened(2, 10.2)
    sup.hello(2, None, 10.2)
    assert sup.state is ClientState.CONNECTED


# ---- too_many_websockets: a slot, retried on a steady period (issue 20, item 7) -------------------


def refused(sup: Supervisor, cid: int, now: float) -> list[Action]:
    """Connection ``cid`` opens, Slack refuses it (too_many_websockets) and closes it."""
    actions = sup.opened(cid, now)
    actions += sup.disconnect(cid, "too_many_websockets", now)
    return actions + sup.lost(cid, "server closed the TCP connection", now)


def test_a_refused_slot_is_retried_on_a_steady_period_and_warned_about_once_per_episode() -> None:
    sup = Supervisor(Backoff(base=0.5, cap=30.0, healthy_after=60.0, jitter=False))
    sup.start(0.0)
    assert not sup.waiting_for_slot
    warnings: list[Action] = []
    now = 0.0
    for cid in range(1, 8):
        actions = refused(sup, cid, now)
        warnings += of(Warn, actions)
        assert opens(actions) == []
        assert not sup.lost_unexpectedly(cid)
        assert sup.waiting_for_slot and sup.attempt == 0
        assert sup.next_deadline() == pytest.approx(now + SLOT_RETRY_INTERVAL)  # steady: no growth
        now += SLOT_RETRY_INTERVAL
        assert opens(sup.tick(now - 0.01)) == []
        assert opens(sup.tick(now)) == [cid + 1]
    assert warnings == [
        Warn(
            "connection 1: Slack refused it (disconnect reason too_many_websockets): the app already "
            "holds Slack's limit of 10 Socket Mode connections, across all its processes (0 of them "
            f"here); retrying every {SLOT_RETRY_INTERVAL:g} s until one frees"
        )
    ]
    sup.opened(8, now)
    sup.hello(8, None, now)  # a slot: the episode is over
    assert not sup.waiting_for_slot and sup.state is ClientState.CONNECTED
    actions = sup.disconnect(8, "too_many_websockets", now + 1.0)  # a new episode: said again
    assert [w.message[:60] for w in of(Warn, actions)] == [
        "connection 8: Slack refused it (disconnect reason too_many_w"
    ]
    assert "(1 of them here)" in of(Warn, actions)[0].message  # type: ignore[union-attr]


def test_the_slot_retry_interval_is_the_supervisors_and_a_failure_meanwhile_backs_off() -> None:
    sup = Supervisor(NO_JITTER, slot_retry_interval=0.5, min_open_interval=0.01)  # the open floor aside
    sup.start(0.0)
    refused(sup, 1, 0.0)
    assert sup.next_deadline() == pytest.approx(0.5)
    sup.tick(0.5)
    actions = sup.open_failed(2, ConnectionFailedError("refused", error="x"), 0.6)  # a real failure: backoff
    assert sup.attempt == 1 and opens(actions) == [3]  # delay(0) is 0
    sup.open_failed(3, ConnectionFailedError("refused", error="x"), 0.7)
    assert sup.next_deadline() == pytest.approx(0.7 + 1.0)  # delay(1) with base 1 s
    assert sup.waiting_for_slot  # still the same episode: no second warning for the next refusal
    sup.tick(1.7)
    assert of(Warn, refused(sup, 4, 1.8)) == []


def test_a_refused_connection_that_never_closes_is_aborted_at_the_hello_timeout_with_no_backoff() -> None:
    sup = Supervisor(NO_JITTER, hello_timeout=10.0)
    sup.start(0.0)
    sup.opened(1, 0.0)
    sup.disconnect(1, "too_many_websockets", 0.0)
    actions = sup.tick(10.0)
    assert of(Abort, actions) == [Abort(1, "no hello within 10 s")]
    assert opens(actions) == [2] and sup.attempt == 0  # the slot retry (3 s) was long due


def test_one_open_attempt_at_a_time_for_a_failure_or_a_rotation_alike() -> None:
    sup = Supervisor(Never(), connections=2)
    sup.start(0.0)
    assert opens(sup.tick(5.0)) == []  # the second slot waits for the first attempt to report back
    connected(sup, 5.0)  # and is opened then
    assert sup.connection_state(2) is ConnectionState.CONNECTING
    assert opens(sup.disconnect(1, "warning", 6.0)) == []  # a rotation waits for the attempt under way too
    assert opens(sup.tick(7.0)) == []
    sup.opened(2, 7.0)
    assert sup.next_deadline() == 0.0  # due at once now that it reported back
    assert opens(sup.tick(7.0)) == [3]


def test_close_begins_in_closing_which_opens_nothing_and_keeps_the_connections_until_stop() -> None:
    """CLOSING is the one "closing": the connections stay for the acks, nothing replaces a lost one."""
    sup, (first, second) = started(connections=2)
    assert not sup.closing()
    actions = sup.begin_close()
    assert actions == [Transition(None, ClientState.CONNECTED, ClientState.CLOSING, "close() called")]
    assert sup.closing() and sup.state is ClientState.CLOSING
    assert sup.begin_close() == []  # once
    assert sup.connection_state(first) is ConnectionState.CONNECTED  # still there for the acks
    lost = sup.lost(second, "reset", 1.0)
    assert opens(lost) == [] and opens(sup.tick(100.0)) == []  # no replacement, not even later
    assert opens(sup.disconnect(first, "refresh_requested", 2.0)) == [] and opens(sup.tick(200.0)) == []
    assert sup.start(3.0) == [] and sup.stop(3.0, final=False) == []  # connect() and disconnect() change nothing
    assert sup.state is ClientState.CLOSING
    stopped = sup.stop(4.0, final=True)
    assert Transition(None, ClientState.CLOSING, ClientState.CLOSED, "close() called") in stopped
    assert [a.connection_id for a in of(Close, stopped)] == [first] and sup.closing()


def test_a_connection_lost_with_auto_reconnect_off_during_close_does_not_end_in_disconnected() -> None:
    sup, (cid,) = started()
    sup.begin_close()
    sup.lost(cid, "reset", 1.0, reconnect=False)
    assert sup.state is ClientState.CLOSING


def test_a_handshake_done_during_close_is_closed_at_once() -> None:
    sup = Supervisor(NO_JITTER, connections=1)
    (cid,) = opens(sup.start(0.0))
    sup.begin_close()
    actions = sup.opened(cid, 1.0)
    assert [a.connection_id for a in of(Close, actions)] == [cid]
