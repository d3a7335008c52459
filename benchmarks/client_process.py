"""The process that runs one client under test.

The suite starts one of these per client and scenario (``spawn``: a fresh interpreter) and
drives it through :mod:`benchmarks.control`. The process builds the client with its default
settings, pointed at the local server's Web API, adds one request listener that acks the
envelope (a slash command with a payload) and records that it ran, and connects. It then
answers ``pin`` (to run on given cores only), ``sample`` (its own CPU,
context switches, threads and memory, see :mod:`benchmarks.procinfo`, plus how often the
listener ran per envelope) and ``close`` (timed).

Clients (``kind``):

* ``ours``: ``slack_socket_mode.SocketModeClient``;
* ``ours_redis``: the same, with ``dedupe=RedisLedger(...)`` (the shared ledger) on the Redis at
  ``SLACK_SOCKET_MODE_REDIS_URL`` (``redis://127.0.0.1:6379``), a namespace of its own per
  process; ``sample`` adds the Redis round trips the process made (``redis_round_trips``);
* ``aio``: ``slack_socket_mode.aio.SocketModeClient`` (ours, asyncio: coroutine listeners on a loop);
* ``builtin``: ``slack_sdk.socket_mode.SocketModeClient`` (slack_sdk's builtin client);
* ``websocket_client``: ``slack_sdk.socket_mode.websocket_client.SocketModeClient``;
* ``aiohttp``: ``slack_sdk.socket_mode.aiohttp.SocketModeClient`` (asyncio, on aiohttp);
* ``websockets``: ``slack_sdk.socket_mode.websockets.SocketModeClient`` (asyncio, on websockets);
* ``floor``: :class:`benchmarks.floor.FloorClient`.

The asyncio clients (ours and slack_sdk's two) run on an event loop in a thread of their own (``bench-loop``), started
here; their listener is a coroutine function, as slack_sdk's asyncio clients take it. They need
the ``bench`` extra (aiohttp); a kind whose package is missing fails at ``start``, and the suite
reports that scenario as not run.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional

from .control import serve
from .procinfo import pin_process, sample_self, threads_detail

__all__ = ["APP_TOKEN", "KINDS", "client_main"]

#: The app-level token every client uses (the local server accepts any ``xapp-`` token).
APP_TOKEN = "xapp-1-A111-1-benchmark"

#: The clients the suite knows, in the order they run.
KINDS = ("ours", "ours_redis", "aio", "builtin", "websocket_client", "aiohttp", "websockets", "floor")

#: The asyncio clients among them (run on an event loop thread of this process).
ASYNC_KINDS = ("aio", "aiohttp", "websockets")


class _ClientUnderTest:
    """One client of any kind, its listener's record of runs, and its timings."""

    def __init__(self) -> None:
        self.client: Any = None
        self.runs: list[str] = []  # envelope ids, one entry per listener run (list.append is thread-safe)
        self.closer: Optional[Callable[[], None]] = None
        self.soak = False  # the memory soak's listener: slow where asked, runs counted (not listed)
        self.runs_counted = 0
        self._count_lock = threading.Lock()
        self.redis_round_trips: Optional[Callable[[], int]] = None  # ours_redis: the count so far

    def _count_run(self, envelope_id: str) -> None:
        """The memory soak's record of a run: a count, so that the harness keeps nothing per envelope."""
        with self._count_lock:
            self.runs_counted += 1

    def _delay(self, request: Any) -> float:
        """Seconds the memory soak's listener works before acking (``bench_delay`` in the payload), else 0."""
        payload = request.payload if self.soak else None
        return float(payload.get("bench_delay", 0.0)) if isinstance(payload, dict) else 0.0

    def start(self, kind: str, api_url: str, soak: bool = False) -> dict[str, Any]:
        """Import and build the client, add the listener, connect.

        With ``soak`` (:mod:`benchmarks.memory_soak`), the listener first works (sleeps) for the
        ``bench_delay`` seconds an envelope's payload names, and runs are counted in
        ``runs_counted`` instead of listed in ``runs`` (so that the harness keeps nothing per
        envelope); the floor ignores it.

        Returns:
            monotonic times: ``t_import`` (before the import), ``t_construct`` (before the
            constructor), ``t_connected`` (when ``connect()`` returned).
        """
        self.soak = soak
        runs_append = self._count_run if soak else self.runs.append
        t_import = time.monotonic()
        if kind == "floor":
            from .floor import FloorClient

            t_construct = time.monotonic()
            floor = FloorClient(APP_TOKEN, api_url, runs_append)
            floor.connect()
            self.client = floor
            self.closer = floor.close
            return {"t_import": t_import, "t_construct": t_construct, "t_connected": time.monotonic()}

        if kind in ASYNC_KINDS:
            return self._start_async(kind, api_url, t_import)

        from slack_sdk.socket_mode.request import SocketModeRequest
        from slack_sdk.socket_mode.response import SocketModeResponse
        from slack_sdk.web import WebClient

        client_class: Any
        options: dict[str, Any] = {}
        if kind == "ours":
            from slack_socket_mode import SocketModeClient as client_class
        elif kind == "ours_redis":
            from slack_socket_mode import SocketModeClient as client_class

            options["dedupe"] = self._redis_ledger()
        elif kind == "builtin":
            from slack_sdk.socket_mode.builtin import SocketModeClient as client_class
        elif kind == "websocket_client":
            from slack_sdk.socket_mode.websocket_client import SocketModeClient as client_class
        else:
            raise ValueError(f"unknown client kind {kind!r}")

        from .floor import SLASH_COMMAND_REPLY

        delay = self._delay

        def listener(client: Any, request: SocketModeRequest) -> None:
            """Ack at once (the documented pattern; a slash command with a reply), then record the run."""
            if soak and (seconds := delay(request)):
                time.sleep(seconds)  # a slow listener's work
            if request.type == "slash_commands":
                response = SocketModeResponse(envelope_id=request.envelope_id, payload=SLASH_COMMAND_REPLY)
            else:
                response = SocketModeResponse(envelope_id=request.envelope_id)
            client.send_socket_mode_response(response)
            runs_append(request.envelope_id)

        t_construct = time.monotonic()
        client = client_class(app_token=APP_TOKEN, web_client=WebClient(base_url=api_url), **options)
        client.socket_mode_request_listeners.append(listener)
        client.connect()
        self.client = client
        self.closer = client.close
        return {"t_import": t_import, "t_construct": t_construct, "t_connected": time.monotonic()}

    def _redis_ledger(self) -> Any:
        """A RedisLedger on the benchmark's Redis, in a namespace of this process's own, counting round trips.

        A round trip is one ``send_packed_command`` of redis-py's connection: one command, or
        one pipeline (the lease thread's rounds). The count wraps redis-py's method in this
        process only; the client's code is not touched.
        """
        import os

        import redis.connection

        from slack_socket_mode.redis import RedisLedger

        sent = [0]
        lock = threading.Lock()
        packed = redis.connection.AbstractConnection.send_packed_command

        def counted(connection: Any, command: Any, check_health: bool = True) -> None:
            with lock:
                sent[0] += 1
            packed(connection, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        self.redis_round_trips = lambda: sent[0]
        url = os.environ.get("SLACK_SOCKET_MODE_REDIS_URL", "redis://127.0.0.1:6379")
        return RedisLedger(url, namespace=f"bench{os.getpid()}", prefix="slack_socket_mode_bench:")

    def _start_async(self, kind: str, api_url: str, t_import: float) -> dict[str, Any]:
        """Start one of slack_sdk's asyncio clients on an event loop thread of its own, and connect it."""
        import asyncio

        from slack_sdk.socket_mode.request import SocketModeRequest
        from slack_sdk.socket_mode.response import SocketModeResponse
        from slack_sdk.web.async_client import AsyncWebClient

        client_class: Any
        if kind == "aiohttp":
            from slack_sdk.socket_mode.aiohttp import SocketModeClient as client_class
        elif kind == "aio":
            from slack_socket_mode.aio import SocketModeClient as client_class
        else:
            from slack_sdk.socket_mode.websockets import SocketModeClient as client_class

        from .floor import SLASH_COMMAND_REPLY

        runs_append = self._count_run if self.soak else self.runs.append
        delay = self._delay
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="bench-loop", daemon=True)
        thread.start()

        async def listener(client: Any, request: SocketModeRequest) -> None:
            """The same listener as the thread clients', as a coroutine function."""
            if self.soak and (seconds := delay(request)):
                await asyncio.sleep(seconds)
            if request.type == "slash_commands":
                response = SocketModeResponse(envelope_id=request.envelope_id, payload=SLASH_COMMAND_REPLY)
            else:
                response = SocketModeResponse(envelope_id=request.envelope_id)
            await client.send_socket_mode_response(response)
            runs_append(request.envelope_id)

        async def build_and_connect() -> Any:
            client = client_class(app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=api_url))
            client.socket_mode_request_listeners.append(listener)
            await client.connect()
            return client

        t_construct = time.monotonic()
        client = asyncio.run_coroutine_threadsafe(build_and_connect(), loop).result(30.0)
        self.client = client

        def close() -> None:
            asyncio.run_coroutine_threadsafe(client.close(), loop).result(30.0)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)

        self.closer = close
        return {"t_import": t_import, "t_construct": t_construct, "t_connected": time.monotonic()}

    def sample(self, detail: str = "") -> dict[str, Any]:
        """:func:`~benchmarks.procinfo.sample_self` plus listener runs: total, envelopes, run twice.

        Args:
            detail: ``"first"`` or ``"last"`` adds ``threads_detail`` (switches and CPU per thread,
                by name), read before or after the process's own figures, so that its cost falls
                outside a window that this sample opens (``"first"``) or closes (``"last"``).
        """
        runs = list(self.runs)
        counts = Counter(runs)
        summary: dict[str, Any] = {
            "runs": len(runs),
            "envelopes_run": len(counts),
            "ran_twice": sum(1 for count in counts.values() if count > 1),
        }
        if self.redis_round_trips is not None:
            summary["redis_round_trips"] = self.redis_round_trips()
        if detail == "first":
            summary["threads_detail"] = threads_detail()
        result = {**summary, **sample_self()}
        if detail == "last":
            result["threads_detail"] = threads_detail()
        return result

    def close(self) -> dict[str, Any]:
        """Call the client's ``close()`` and time it.

        Returns:
            ``{"close_seconds": s, "threads_after": n}``: how long ``close()`` took and the
            threads left in the process afterwards (the suite's own main thread included).
        """
        if self.closer is None:
            return {"close_seconds": 0.0, "threads_after": sample_self()["threads"]}
        started = time.monotonic()
        self.closer()
        elapsed = time.monotonic() - started
        time.sleep(0.05)  # let threads that were told to stop finish exiting
        return {"close_seconds": elapsed, "threads_after": sample_self()["threads"]}


def client_main(conn: Connection, log_path: Optional[str] = None) -> None:
    """Entry point of a client process: serve commands on ``conn`` until ``exit``.

    Args:
        conn: this process's end of the control pipe.
        log_path: where to write the clients' WARNING and ERROR log lines (None: nowhere).
    """
    root = logging.getLogger()
    root.handlers[:] = []
    if log_path:
        handler: logging.Handler = logging.FileHandler(log_path, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
        handler.setLevel(logging.WARNING)
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    sys.stderr.flush()
    under_test = _ClientUnderTest()
    serve(conn, {"start": under_test.start, "sample": under_test.sample, "close": under_test.close, "pin": pin_process})
