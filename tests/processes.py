"""Child processes whose output a test reads line by line (Celery workers, replicas, examples)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Literal

from .conftest import timeout

#: Which of the child's streams is read: its stdout, its stderr (stdout discarded), or both merged.
Stream = Literal["stdout", "stderr", "both"]


class OutputProcess:
    """A child process; a thread reads the lines of one stream into a queue and a log.

    Attributes:
        process: the ``subprocess.Popen`` (tests kill or signal it).
        log: every line read so far, without its newline (for failure messages).
    """

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], read: Stream, name: str) -> None:
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if read == "stderr" else subprocess.PIPE,
            stderr={"stdout": None, "stderr": subprocess.PIPE, "both": subprocess.STDOUT}[read],
            text=True,
        )
        self._stream = self.process.stderr if read == "stderr" else self.process.stdout
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._stream is not None
        for line in self._stream:
            self.log.append(line.rstrip())
            self.lines.put(line.strip())

    def next_line(self, seconds: float, what: str) -> str:
        """The next line, waiting up to ``seconds`` (scaled); else AssertionError saying ``what`` and the log's end."""
        try:
            return self.lines.get(timeout=timeout(seconds))
        except queue.Empty:
            raise AssertionError(
                f"{what} within {seconds:g} s; the output ends:\n" + "\n".join(self.log[-30:])
            ) from None

    def wait_for(self, text: str, seconds: float = 30.0) -> None:
        """Read lines until one contains ``text``, for at most ``seconds`` (scaled)."""
        deadline = time.monotonic() + timeout(seconds)
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {text!r} in the output within {seconds:g} s; it ends:\n" + "\n".join(self.log[-30:])
                ) from None
            if text in line:
                return

    def stop(self) -> None:
        """Kill the process (if it still runs) and wait for it and its reader."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(5)
