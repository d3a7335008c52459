"""A named thread that runs a function again after the delay it returns, or sooner when woken."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

__all__ = ["IntervalRunner"]


class IntervalRunner:
    """Runs ``target`` in its own named thread, then waits, then runs it again.

    After each run the thread waits the number of seconds ``target`` returned, or until
    :meth:`wake` is called, whichever comes first; when ``target`` returns None it waits for
    :meth:`wake` only. Waiting is ``Event.wait``: an idle runner costs nothing between deadlines.

    A ``wake()`` that arrives while ``target`` runs is not lost: ``target`` runs again.
    An exception from ``target`` is logged and the runner keeps going.

    Thread-safe: :meth:`wake` and :meth:`stop` may be called from any thread.
    """

    def __init__(
        self,
        target: Callable[[], Optional[float]],
        *,
        name: str,
        logger: logging.Logger,
    ) -> None:
        self._target = target
        self._logger = logger
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def name(self) -> str:
        """The thread's name."""
        return self._thread.name

    def start(self) -> IntervalRunner:
        """Start the thread (once). Returns self."""
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def wake(self) -> None:
        """Run ``target`` as soon as possible."""
        self._wakeup.set()

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to end and join it for up to ``timeout`` seconds; True if it ended.

        Safe to call from the runner's own thread (it then does not join itself).
        """
        self._stopping.set()
        self._wakeup.set()
        if self._thread.ident is None:  # never started
            return True
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                delay = self._target()
            except Exception:
                self._logger.exception("%s: unexpected error; continuing", self._thread.name)
                delay = None
            if self._stopping.is_set():
                break
            self._wakeup.wait(None if delay is None else max(delay, 0.0))
