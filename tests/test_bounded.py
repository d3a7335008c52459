"""BoundedCalls (the hand-off's publishing threads): the caller waits at most its deadline; the call goes on."""

from __future__ import annotations

import queue
import threading
from typing import Any, Optional

import pytest

from slack_socket_mode.bounded import BoundedCalls, DeadlineExceeded, PoolExhausted

from .conftest import timeout


class Late:
    """Collects what on_late is told."""

    def __init__(self) -> None:
        self.ended: queue.Queue[tuple[Any, Any, Optional[BaseException]]] = queue.Queue()

    def __call__(self, context: Any, result: Any, error: Optional[BaseException], seconds: float) -> None:
        assert seconds >= 0
        self.ended.put((context, result, error))


def test_results_and_errors_come_back_to_the_caller() -> None:
    calls = BoundedCalls("test-bounded", max_threads=2, on_late=Late())
    try:
        assert calls.call(lambda: 42, timeout(5)) == 42
        with pytest.raises(ZeroDivisionError):
            calls.call(lambda: 1 / 0, timeout(5))
        assert calls.given_up_running == 0
    finally:
        assert calls.close(timeout(5)) == []


def test_a_call_past_its_deadline_is_given_up_and_goes_on_and_a_full_pool_refuses_at_once() -> None:
    late = Late()
    calls = BoundedCalls("test-bounded", max_threads=1, on_late=late)
    gate = threading.Event()
    try:
        with pytest.raises(DeadlineExceeded):
            calls.call(lambda: gate.wait(timeout(10)) and "done", 0.05, context="first")
        assert calls.given_up_running == 1
        ran: list[str] = []
        with pytest.raises(PoolExhausted, match="1 with calls given up"):  # the only thread is still busy
            calls.call(lambda: ran.append("second"), timeout(5))
        gate.set()
        assert late.ended.get(timeout=timeout(5)) == ("first", "done", None)  # it went through after all
        assert calls.given_up_running == 0
        assert calls.call(lambda: "third", timeout(5)) == "third"  # the thread is free again
        assert ran == []  # a refused call never runs
    finally:
        gate.set()
        assert calls.close(timeout(5)) == []
    assert [t for t in threading.enumerate() if t.name.startswith("test-bounded")] == []


def test_a_closed_pool_refuses_calls() -> None:
    calls = BoundedCalls("test-bounded", max_threads=1, on_late=Late())
    calls.call(lambda: None, timeout(5))
    assert calls.close(timeout(5)) == []
    with pytest.raises(PoolExhausted, match="closed"):
        calls.call(lambda: None, timeout(5))
