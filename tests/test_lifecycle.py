"""The session rules, fed messages and time: no threads, no sockets."""

from __future__ import annotations

import pytest

from slack_socket_mode.errors import AuthError, ConnectionFailedError, LinkDisabledError, RateLimitedError
from slack_socket_mode.lifecycle import (
    MIN_CONNECTION_TIME,
    MIN_OPEN_INTERVAL,
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


def test_too_many_websockets_backs_off_instead_of_opening_more() -> None:
    sup, [cid] = started()
    actions = sup.disconnect(cid, "too_many_websockets", 10.0)
    assert opens(actions) == []
    assert sup.next_deadline() == pytest.approx(11.0)
    assert sup.connected_ids() == [cid]  # kept while it lasts
    assert opens(sup.tick(11.0)) == [2]


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


def test_the_floor_holds_per_connection_slot_even_with_no_backoff() -> None:
    """A policy that never waits (a user's) still cannot open more than ``connections`` per interval."""

    class Never:
        healthy_after = 60.0

        def delay(self, attempt: int) -> float:
            return 0.0

    for connections in (1, 3):
        sup = Supervisor(Never(), connections=connections)
        rate = _opens_per_second(sup, "disconnect", seconds=60.0)
        assert rate <= connections / MIN_OPEN_INTERVAL + 0.1


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
