"""slack_socket_mode.interval_runner: its thread runs a function again after the delay it returns, or when woken."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

import pytest

from slack_socket_mode.interval_runner import IntervalRunner

from .conftest import timeout

LOGGER = logging.getLogger("slack_socket_mode.tests")

#: How long a check that something does *not* happen waits (a bound, not a pause before a result).
QUIET = 0.2


class Runs:
    """A target that counts its runs and the threads they ran on, and returns ``delay`` (or what ``then`` returns)."""

    def __init__(self, delay: Optional[float], then: Optional[Callable[[int], Optional[float]]] = None) -> None:
        self.delay = delay
        self.then = then
        self.count = 0
        self.threads: list[str] = []
        self.cond = threading.Condition()

    def __call__(self) -> Optional[float]:
        with self.cond:
            self.count += 1
            count = self.count
            self.threads.append(threading.current_thread().name)
            self.cond.notify_all()
        return self.then(count) if self.then is not None else self.delay

    def reach(self, count: int, seconds: float = 5.0) -> bool:
        """True once the target has run ``count`` times; False if it did not within ``seconds``."""
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= count, seconds)


def test_the_target_runs_on_its_named_thread_again_after_the_delay_it_returns() -> None:
    runs = Runs(0.01)
    runner = IntervalRunner(runs, name="test-interval", logger=LOGGER)
    assert runner.name == "test-interval" and not runner.is_alive()
    assert runner.start() is runner
    try:
        assert runs.reach(5, timeout(5)), f"ran {runs.count} times"
        assert runner.is_alive()
        assert set(runs.threads) == {"test-interval"}
    finally:
        assert runner.stop(timeout(5))
    assert not runner.is_alive()


def test_a_target_that_returns_none_runs_again_only_when_woken() -> None:
    runs = Runs(None)
    runner = IntervalRunner(runs, name="test-interval", logger=LOGGER).start()
    try:
        assert runs.reach(1, timeout(5))
        assert not runs.reach(2, QUIET)  # no delay: it waits for wake() alone
        runner.wake()
        assert runs.reach(2, timeout(5))
        assert not runs.reach(3, QUIET)  # one wake, one run
    finally:
        assert runner.stop(timeout(5))


def test_a_wake_cuts_a_long_delay_short() -> None:
    runs = Runs(3600.0)
    runner = IntervalRunner(runs, name="test-interval", logger=LOGGER).start()
    try:
        assert runs.reach(1, timeout(5))
        runner.wake()
        assert runs.reach(2, timeout(5)), "wake() did not end the hour's wait"
    finally:
        assert runner.stop(timeout(5))


def test_a_wake_while_the_target_runs_is_not_lost() -> None:
    entered, release = threading.Event(), threading.Event()

    def then(count: int) -> None:
        if count == 1:
            entered.set()
            release.wait(timeout(5))  # the wake below arrives while this run is under way

    runs = Runs(None, then)
    runner = IntervalRunner(runs, name="test-interval", logger=LOGGER).start()
    try:
        assert entered.wait(timeout(5))
        runner.wake()
        release.set()
        assert runs.reach(2, timeout(5)), "the wake during the first run was lost"
    finally:
        release.set()
        assert runner.stop(timeout(5))


def test_an_exception_from_the_target_is_logged_and_the_runner_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    def then(count: int) -> None:
        if count == 1:
            raise RuntimeError("target bug")

    runs = Runs(None, then)
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        runner = IntervalRunner(runs, name="test-interval", logger=LOGGER).start()
        try:
            assert runs.reach(1, timeout(5))
            runner.wake()  # after an exception it waits as after None: for a wake
            assert runs.reach(2, timeout(5)), "the runner did not survive its target's exception"
            assert runner.is_alive()
        finally:
            assert runner.stop(timeout(5))
    (record,) = [r for r in caplog.records if r.name == LOGGER.name]
    assert record.getMessage() == "test-interval: unexpected error; continuing"
    assert record.exc_info is not None and str(record.exc_info[1]) == "target bug"


def test_stop_wakes_the_wait_and_ends_the_thread() -> None:
    runs = Runs(3600.0)
    runner = IntervalRunner(runs, name="test-interval", logger=LOGGER).start()
    assert runs.reach(1, timeout(5))
    assert runner.stop(timeout(5)), "stop() did not end a thread waiting out an hour"
    assert not runner.is_alive()
    runner.wake()  # harmless once stopped
    assert not runs.reach(2, QUIET)


def test_stop_before_start_and_from_the_runners_own_thread() -> None:
    assert IntervalRunner(Runs(None), name="test-interval", logger=LOGGER).stop(timeout(1)) is True  # never started
    stopped_itself: list[bool] = []
    holder: list[IntervalRunner] = []
    asked = threading.Event()

    def then(count: int) -> None:
        stopped_itself.append(holder[0].stop(timeout(5)))  # it does not join its own thread
        asked.set()

    runs = Runs(None, then)
    runner = IntervalRunner(runs, name="test-interval", logger=LOGGER)
    holder.append(runner)
    runner.start()
    assert asked.wait(timeout(5))
    assert stopped_itself == [False]
    runner.wake()
    assert not runs.reach(2, QUIET)  # it asked to stop: no run after that one
    assert runner.stop(timeout(5)) and not runner.is_alive()


def test_stop_waits_at_most_its_timeout_for_a_run_under_way() -> None:
    entered, release = threading.Event(), threading.Event()

    def then(count: int) -> None:
        entered.set()
        release.wait(timeout(10))

    runner = IntervalRunner(Runs(None, then), name="test-interval", logger=LOGGER).start()
    try:
        assert entered.wait(timeout(5))
        assert runner.stop(QUIET) is False  # the run goes on past the timeout: not ended
        assert runner.is_alive()
    finally:
        release.set()
    assert runner.stop(timeout(5)) is True  # the run returned: the thread ends without another
    assert not runner.is_alive()
