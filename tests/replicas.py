"""Replica processes of one app and paced pushes, shared by tests/test_replicas.py and tests/test_netns.py."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from slack_socket_mode.testing import SocketModeServer

from .processes import OutputProcess

ROOT = Path(__file__).resolve().parent.parent


class Replica(OutputProcess):
    """A replica process (tests/replica_main.py); its stdout lines are read by a thread into a queue.

    ``prefix`` goes before the Python command (``ip netns exec <namespace>``); ``extra`` after
    replica_main's arguments. With ``logs``, its stderr (the client's log, lines starting
    with ``replica``) is read too, into :attr:`log`, and :meth:`expect` skips those lines;
    without, it goes to the test's stderr.
    """

    def __init__(
        self,
        api_url: str,
        url: str,
        namespace: str,
        completions: str,
        connections: int,
        *,
        prefix: Sequence[str] = (),
        extra: Sequence[str] = (),
        logs: bool = False,
    ) -> None:
        args = [
            *prefix,
            *(sys.executable, "-m", "tests.replica_main", "--api-url", api_url, "--redis-url", url),
            *("--namespace", namespace, "--completions", completions, "--connections", str(connections)),
            *extra,
        ]
        super().__init__(
            args,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            read="both" if logs else "stdout",
            name="test-replica-stdout",
        )

    def expect(self, line: str, seconds: float = 20.0) -> None:
        got = self.next_line(seconds, f"replica did not print {line!r}")
        while got.startswith("replica "):  # a log line (with logs=True)
            got = self.next_line(seconds, f"replica did not print {line!r}")
        assert got == line, f"replica printed {got!r}, expected {line!r}"


def push_paced(server: SocketModeServer, count: int, per_second: float, ids: list[str], work: float = 0.0) -> None:
    """Push ``count`` envelopes at about ``per_second``, in batches of 20 (pacing is the point here).

    With ``work``, one envelope in 60 makes its listener work that many seconds.
    """
    start = time.monotonic()
    for n in range(0, count, 20):
        due = start + n / per_second
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        batch = [
            server.make_envelope("events_api", {"event_id": f"Ev{len(ids) + i}", "work": work if i == n % 60 else 0})
            for i in range(20)
        ]
        ids += server.push_many(batch)
