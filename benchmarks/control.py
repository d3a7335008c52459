"""The control channel between the suite and its server and client processes.

Each child process is started with the ``spawn`` method (a fresh interpreter: its memory and
CPU figures are its own, not inherited from the suite) and gets one end of a
:func:`multiprocessing.Pipe`. The suite sends ``(command, keyword arguments)``; the child runs
the matching handler and answers ``("ok", result)`` or ``("error", traceback text)``. Every
call has a timeout, so a stuck child can never stall the suite: it is killed instead.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Callable, Optional

__all__ = ["BenchmarkError", "Child", "LineChild", "serve"]

Handler = Callable[..., Any]

_SPAWN = multiprocessing.get_context("spawn")


class BenchmarkError(RuntimeError):
    """A child process failed a command, timed out, or died."""


def serve(conn: Connection, handlers: dict[str, Handler]) -> None:
    """Answer commands on ``conn`` until ``exit`` (or until the suite goes away).

    Runs in the child process, on its main thread, which blocks in ``recv`` between
    commands (so it adds no wake-ups to the figures).

    Args:
        conn: the child's end of the pipe.
        handlers: command name to handler; a handler gets the command's keyword arguments
            and returns a picklable result.
    """
    while True:
        try:
            command, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        if command == "exit":
            conn.send(("ok", None))
            return
        try:
            result = handlers[command](**kwargs)
        except BaseException:
            reply: tuple[str, Any] = ("error", traceback.format_exc())
        else:
            reply = ("ok", result)
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


class Child:
    """A child process running :func:`serve`, and the suite's end of its pipe.

    Args:
        target: the child's entry point, ``target(conn, *args)``; it must be importable
            (a module-level function) because the child is spawned.
        name: the process name, for errors.
        args: more arguments for ``target`` (picklable).
    """

    def __init__(self, target: Callable[..., None], name: str, *args: Any) -> None:
        self.name = name
        parent, child = _SPAWN.Pipe()
        self._conn = parent
        self._process: BaseProcess = _SPAWN.Process(target=target, args=(child, *args), name=name, daemon=True)
        self._process.start()
        child.close()

    @property
    def pid(self) -> Optional[int]:
        """The child's process id."""
        return self._process.pid

    def call(self, command: str, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Run ``command`` in the child and return its result.

        Args:
            command: a handler name.
            timeout: seconds to wait for the answer.
            kwargs: the handler's keyword arguments.

        Raises:
            BenchmarkError: the handler raised (the child's traceback is in the message), the
                answer did not come within ``timeout``, or the child died.
        """
        try:
            self._conn.send((command, kwargs))
            if not self._conn.poll(timeout):
                raise BenchmarkError(f"{self.name}: no answer to {command!r} within {timeout:g} s")
            status, value = self._conn.recv()
        except (EOFError, OSError) as e:
            raise BenchmarkError(f"{self.name}: the process went away during {command!r} ({e!r})") from None
        if status != "ok":
            raise BenchmarkError(f"{self.name}: {command!r} failed:\n{value}")
        return value

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the child to exit; kill it if it does not within ``timeout`` seconds."""
        if self._process.is_alive():
            try:
                self._conn.send(("exit", {}))
            except OSError:
                pass
            self._process.join(timeout)
        self.kill()

    def kill(self) -> None:
        """Kill the child now (SIGKILL to its own pid) and reap it. Idempotent."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5.0)
        self._conn.close()


class LineChild:
    """A client process of a side-by-side benchmark (:mod:`benchmarks.rtm`, :mod:`benchmarks.bolt_async`),
    driven by one command per line on its stdin and answering one JSON object per line on its stdout.

    Started as ``python -m MODULE --child KIND --api API_URL``; its first line must be
    ``{"connected": true}``. Its stderr is dropped.
    """

    def __init__(self, module: str, kind: str, api_url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--child", kind, "--api", api_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.read()["connected"]

    def read(self) -> dict[str, Any]:
        """The next answer (RuntimeError if the process ended)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the client process ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        """Send ``command`` and return its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def kill(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
