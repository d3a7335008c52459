"""slack_socket_mode.policy: the Backoff's full jitter, cap and settings."""

from __future__ import annotations

import pytest

from slack_socket_mode.policy import Backoff


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
