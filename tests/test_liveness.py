"""slack_socket_mode.liveness: when to ping and when a connection is dead, with no socket."""

from __future__ import annotations

import pytest

from slack_socket_mode.ends import End, EndKind
from slack_socket_mode.liveness import Liveness


def test_liveness_pings_on_interval_and_detects_silence() -> None:
    live = Liveness(ping_interval=5.0, ping_timeout=3.0, receive_timeout=10.0)
    v = live.check(1.0, last_received=0.0, last_ping=None)
    assert v.dead is None and not v.ping and v.next_check == 5.0
    v = live.check(5.0, last_received=0.0, last_ping=None)
    assert v.ping and v.next_check == 8.0
    # the ping went out at 5.0; nothing came back
    v = live.check(7.9, last_received=0.0, last_ping=5.0)
    assert v.dead is None and not v.ping and v.next_check == 8.0
    assert live.check(8.0, last_received=0.0, last_ping=5.0).dead == End(EndKind.NO_PONG, "within 3 s")
    assert str(live.check(8.0, last_received=0.0, last_ping=5.0).dead) == "no pong within 3 s"
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
    assert str(live.check(10.0, last_received=0.0, last_ping=None).dead) == "no frame for 10.0 s"
    with pytest.raises(ValueError):
        Liveness(ping_interval=0)


def test_a_dead_verdict_asks_for_no_ping_and_is_due_now() -> None:
    from slack_socket_mode.liveness import LivenessVerdict

    live = Liveness(ping_interval=5.0, ping_timeout=3.0, receive_timeout=10.0)
    assert live.check(10.0, last_received=0.0, last_ping=None) == LivenessVerdict(
        End(EndKind.NO_FRAMES, "for 10.0 s"), False, 10.0
    )
    assert live.check(8.0, last_received=0.0, last_ping=5.0) == LivenessVerdict(
        End(EndKind.NO_PONG, "within 3 s"), False, 8.0
    )
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
