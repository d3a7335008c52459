"""A ``redis-server`` of one's own, to stop and start again: Redis outages in the soak and the tests.

The benchmarks (``benchmarks.soak --replicas``) and the tests (``tests/services.py``, which skips
when there is no ``redis-server``) both use this one class.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Optional

__all__ = ["RedisServer"]


class RedisServer:
    """A ``redis-server`` on a free port of ``host``, keeping nothing on disk.

    Args:
        workdir: the server's working directory (it writes nothing there with these settings).
        host: the address it binds; ``--protected-mode no`` lets hosts on a test bridge reach it.

    Raises:
        FileNotFoundError: ``redis-server`` is not on ``PATH``.

    Not thread-safe: one owner starts and stops it.
    """

    def __init__(self, workdir: str, host: str = "127.0.0.1") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary = binary
        self.workdir = workdir
        self.host = host
        with socket.socket() as s:
            s.bind((host, 0))
            self.port = int(s.getsockname()[1])
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start it and return once it accepts connections.

        Raises:
            RuntimeError: it exited, or did not accept within ``timeout`` seconds.
        """
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"),
                *("--protected-mode", "no"),
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
            time.sleep(0.02)  # polling a port that is not yet bound: nothing to wait on

    def stop(self) -> None:
        """Kill it (an outage: no shutdown, nothing saved) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
