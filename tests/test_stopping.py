"""StopWaiter: a stop by a call from another thread or by a signal, with the handlers put back after.

pytest runs tests on the main thread, so these get real signals (sent to this process with
``os.kill`` from another thread).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator

import pytest

from slack_socket_mode.stopping import StopWaiter, default_stop_signals

from .conftest import timeout

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def later(action: object, delay: float = 0.05) -> threading.Timer:
    timer = threading.Timer(delay, action)  # type: ignore[arg-type]
    timer.start()
    return timer


@pytest.fixture
def sigterm_is_default() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_stop_from_another_thread_ends_the_wait() -> None:
    with StopWaiter() as waiter:
        later(waiter.stop)
        assert waiter.wait() is None
        assert waiter.stopped


def test_a_stop_before_the_wait_ends_it_at_once() -> None:
    with StopWaiter([signal.SIGTERM]) as waiter:
        waiter.stop()
        assert waiter.wait() is None
        assert waiter.wait() is None  # one-shot


def test_a_signal_ends_the_wait_and_the_handler_and_wakeup_fd_are_put_back(sigterm_is_default: None) -> None:
    previous_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous_fd)
    with StopWaiter([signal.SIGTERM]) as waiter:
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        later(lambda: os.kill(os.getpid(), signal.SIGTERM))
        assert waiter.wait() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.set_wakeup_fd(previous_fd) == previous_fd


def test_a_signal_before_the_wait_is_kept_for_it(sigterm_is_default: None) -> None:
    with StopWaiter([signal.SIGTERM]) as waiter:
        os.kill(os.getpid(), signal.SIGTERM)  # handled before wait() is even called
        assert waiter.wait() == signal.SIGTERM


def test_another_signal_wakes_the_wait_but_does_not_end_it() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with StopWaiter([signal.SIGTERM]) as waiter:
            later(lambda: os.kill(os.getpid(), signal.SIGUSR1))
            stopper = later(waiter.stop, delay=0.5)
            assert waiter.wait() is None  # ended by stop(), not by SIGUSR1
            stopper.join(timeout(5))
        assert seen == [signal.SIGUSR1]  # the application's own handler still ran
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_off_the_main_thread_only_stop_ends_the_wait(sigterm_is_default: None) -> None:
    result: list[object] = []

    def run() -> None:
        with StopWaiter([signal.SIGTERM]) as waiter:  # no handlers can be set off the main thread
            result.append(signal.getsignal(signal.SIGTERM))
            later(waiter.stop)
            result.append(waiter.wait())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout(5))
    assert result == [signal.SIG_DFL, None]


def test_closed_waiter_refuses_to_wait_and_stop_is_harmless() -> None:
    waiter = StopWaiter()
    waiter.close()
    waiter.close()
    waiter.stop()
    with pytest.raises(RuntimeError, match="closed"):
        waiter.wait()


def test_default_stop_signals_leave_the_applications_own_handlers_alone(sigterm_is_default: None) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # pytest leaves SIGINT as Python sets it
    assert default_stop_signals() == (signal.SIGINT, signal.SIGTERM)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        assert default_stop_signals() == (signal.SIGINT,)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_taken_by_another_thread_still_ends_the_wait(sigterm_is_default: None) -> None:
    """The race an Event loses, made certain.

    Python runs a signal's handler on the main thread, between two bytecodes. When the C-level
    handler runs without interrupting the main thread's blocking wait (the signal landed just
    before the wait blocked, or another thread took it), a wait on an Event stays blocked until
    something else wakes it. Here SIGTERM is blocked on the main thread, so the kernel gives it
    to the sender thread: only the wakeup descriptor can end the wait. With an Event and a
    handler that sets it, only the watchdog would.
    """
    go = threading.Event()

    def send() -> None:  # started before SIGTERM is blocked on the main thread: it may take the signal
        go.wait(timeout(5))
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send)
    sender.start()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with StopWaiter([signal.SIGTERM]) as waiter:
            woken_by_watchdog = threading.Event()
            watchdog = later(lambda: (woken_by_watchdog.set(), waiter.stop()), delay=timeout(5))
            go.set()
            assert waiter.wait() == signal.SIGTERM
            watchdog.cancel()
            assert not woken_by_watchdog.is_set()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        sender.join(timeout(5))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_close_releases_the_socket_pair() -> None:
    before = len(os.listdir("/proc/self/fd"))
    waiter = StopWaiter()
    assert len(os.listdir("/proc/self/fd")) == before + 2
    waiter.close()
    assert len(os.listdir("/proc/self/fd")) == before
