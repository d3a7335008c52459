"""Bolt's ``AsyncApp`` on our handler side by side with Bolt's aiohttp handler, against the local server.

Run it from the project root (with the ``bench`` extra installed, or ``PYTHONPATH=src``)::

    python -m benchmarks.bolt_async            # one run of each figure, both handlers: about a minute
    python -m benchmarks.bolt_async --quick    # smaller counts

The server (:class:`slack_socket_mode.testing.SocketModeServer`) runs in this process; each
handler runs in a process of its own (``python -m benchmarks.bolt_async --child ours|bolt``):
``slack_socket_mode.bolt.AsyncSocketModeHandler`` or
``slack_bolt.adapter.socket_mode.aiohttp.AsyncSocketModeHandler``, each with its default settings,
over the same ``AsyncApp``. The app has three listeners, and the envelopes cycle through them (a
realistic mix): a slash command acked with a text payload, a ``view_submission`` acked with
``response_action: errors``, and an ``app_mention`` event (Bolt acks events itself). Each listener
counts its runs by a key in the payload, so a listener run twice is seen. Times are the server's,
where bytes cross the socket (Linux's monotonic clock); the CPU is the handler process's own
(``getrusage``), reported by the child. Figures:

* **ack p50, p90**: a closed loop, one envelope at a time: from the server's write of an envelope
  to its read of the ack;
* **CPU per envelope**: the handler process's CPU over the closed loop, per envelope;
* **burst**: envelopes written as fast as the socket takes them (about 64 KB per write); acks per
  second until every envelope was acked, the handler's CPU per envelope meanwhile, envelopes acked
  twice, listener runs beyond one per envelope;
* **reset to hello**: the server resets the TCP connection; seconds until a new connection says ``hello``;
* **close_async()**: timed in the child; the threads still running once it returned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import sys
import threading
import time
from collections import Counter
from typing import Any, Optional

from .control import LineChild

_APP_TOKEN = "xapp-1-A111-4242-bench0bolt0async"
_BOT_TOKEN = "xoxb-1-bench-bolt-async"
_KINDS = ("ours", "bolt")


# ---- the handler process -------------------------------------------------------------------------


def _child(kind: str, api_url: str) -> None:
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    if kind == "ours":
        from slack_socket_mode.bolt import AsyncSocketModeHandler
    else:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler  # type: ignore[assignment]

    logging.getLogger().addHandler(logging.NullHandler())
    runs: Counter[str] = Counter()

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="bench-loop", daemon=True).start()

    async def build() -> Any:
        app = AsyncApp(
            token=_BOT_TOKEN,
            signing_secret="not-used-in-socket-mode",
            client=AsyncWebClient(token=_BOT_TOKEN, base_url=api_url),
            logger=logging.getLogger("bench.bolt_async"),
        )

        @app.command("/bench")
        async def command(ack: AsyncAck, command: dict[str, Any]) -> None:
            runs[command["text"]] += 1
            await ack(f"got {command['text']}")

        @app.view("bench-modal")
        async def submitted(ack: AsyncAck, view: dict[str, Any]) -> None:
            runs[view["private_metadata"]] += 1
            await ack(response_action="errors", errors={"b1": "no"})

        @app.event("app_mention")
        async def mentioned(event: dict[str, Any]) -> None:
            runs[event["text"]] += 1

        handler = AsyncSocketModeHandler(app, _APP_TOKEN)
        await handler.connect_async()
        return handler

    handler = asyncio.run_coroutine_threadsafe(build(), loop).result(60)
    print(json.dumps({"connected": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "cpu":
            print(json.dumps({"cpu": cpu()}), flush=True)
        elif command == "runs":
            twice = sum(n - 1 for n in runs.values() if n > 1)
            print(json.dumps({"runs": sum(runs.values()), "twice": twice}), flush=True)
        elif command == "close":
            started = time.monotonic()
            asyncio.run_coroutine_threadsafe(handler.close_async(), loop).result(60)
            took = time.monotonic() - started
            mine = {threading.main_thread().ident, *(t.ident for t in threading.enumerate() if t.name == "bench-loop")}
            left = [t for t in threading.enumerate() if t.ident not in mine and t.is_alive()]
            names = sorted(t.name for t in left)
            print(json.dumps({"close": took, "threads_left": len(left), "left": names}), flush=True)
            os._exit(0)  # the loop thread (the benchmark's) and any thread a handler left: not waited for


# ---- the measurements ----------------------------------------------------------------------------


def _envelopes(server: Any, first: int, count: int) -> list[dict[str, Any]]:
    """``count`` envelopes of the mix, keyed ``first`` … ``first + count - 1`` (one key per envelope)."""
    from slack_socket_mode.testing.samples import load_sample

    slash = load_sample("slash_commands")["payload"]
    view = load_sample("interactive_view_submission")["payload"]
    mention = load_sample("events_api_app_mention")["payload"]
    made: list[dict[str, Any]] = []
    for n in range(first, first + count):
        key = str(n)
        if n % 3 == 0:
            payload = dict(slash, command="/bench", text=key)
            made.append(server.make_envelope("slash_commands", payload, accepts_response_payload=True))
        elif n % 3 == 1:
            payload = dict(view, view=dict(view["view"], callback_id="bench-modal", private_metadata=key))
            made.append(server.make_envelope("interactive", payload, accepts_response_payload=True))
        else:
            payload = dict(mention, event=dict(mention["event"], text=key))
            made.append(server.make_envelope("events_api", payload))
    return made


def _run(kind: str, *, loop: int, burst: int, bound: float) -> dict[str, Optional[float]]:
    from slack_socket_mode.testing import SocketModeServer

    figures: dict[str, Optional[float]] = {}
    with SocketModeServer(redelivery_delay=None) as server:
        child = LineChild("benchmarks.bolt_async", kind, server.api_url)
        try:
            server.wait_for_new_connection(0, timeout=10.0)
            n = 0
            for envelope in _envelopes(server, n, 60):  # warm-up
                server.wait_for_acks(envelope_ids=[server.push(envelope)], timeout=10.0)
            n += 60
            latencies: list[float] = []
            before = child.ask("cpu")["cpu"]
            for envelope in _envelopes(server, n, loop):
                sent = time.monotonic()
                (ack,) = server.wait_for_acks(envelope_ids=[server.push(envelope)], timeout=10.0)
                latencies.append(ack.received_at - sent)
            n += loop
            figures["cpu_per_envelope_us"] = (child.ask("cpu")["cpu"] - before) / loop * 1e6
            latencies.sort()
            figures["ack_p50_ms"] = statistics.median(latencies) * 1e3
            figures["ack_p90_ms"] = latencies[int(len(latencies) * 0.9)] * 1e3
            acks_before = len(server.acks)
            before = child.ask("cpu")["cpu"]
            started = time.monotonic()
            ids = server.push_many(_envelopes(server, n, burst))
            n += burst
            try:
                firsts = server.wait_for_acks(envelope_ids=ids, timeout=bound)
                figures["burst_per_s"] = burst / (max(a.received_at for a in firsts) - started)
            except TimeoutError:
                figures["burst_per_s"] = None
            figures["burst_cpu_per_ack_us"] = (child.ask("cpu")["cpu"] - before) / burst * 1e6
            burst_acks = Counter(a.envelope_id for a in server.acks[acks_before:])
            figures["burst_acked_twice"] = sum(c - 1 for c in burst_acks.values() if c > 1)
            deadline = time.monotonic() + 10.0  # every listener run ended (events are acked before they run)
            while (counted := child.ask("runs"))["runs"] < n and time.monotonic() < deadline:
                time.sleep(0.05)
            figures["runs_twice"] = counted["twice"]
            figures["burst_reconnects"] = len(server.all_connections) - 1
            opened = len(server.all_connections)
            reset = time.monotonic()
            server.reset(server.connections[-1])
            try:
                server.wait_for_new_connection(opened, timeout=bound)  # returns once it said hello
                figures["reset_to_hello_s"] = time.monotonic() - reset
            except TimeoutError:
                figures["reset_to_hello_s"] = None
            closed = child.ask("close")
            figures["close_s"] = closed["close"]
            figures["threads_left"] = closed["threads_left"]
            if closed["left"]:
                print(f"{kind}: threads left after close_async(): {', '.join(closed['left'])}", file=sys.stderr)
        finally:
            child.kill()
    return figures


_ROWS = [
    ("ack_p50_ms", "envelope to ack, p50 (ms)", False),
    ("ack_p90_ms", "envelope to ack, p90 (ms)", False),
    ("cpu_per_envelope_us", "handler CPU per envelope (µs)", False),
    ("burst_per_s", "burst (acks/s)", True),
    ("burst_cpu_per_ack_us", "burst: handler CPU per envelope (µs)", False),
    ("burst_acked_twice", "burst: envelopes acked twice", False),
    ("runs_twice", "listener runs beyond one per envelope", False),
    ("burst_reconnects", "connections replaced during the loop and burst", False),
    ("reset_to_hello_s", "reset to a new hello (s)", False),
    ("close_s", "close_async() (s)", False),
    ("threads_left", "threads left running after close_async()", False),
]
_COUNTS = ("burst_acked_twice", "runs_twice", "burst_reconnects", "threads_left")


def _table(ours: dict[str, Optional[float]], bolt: dict[str, Optional[float]], bound: float) -> str:
    lines = [
        "| Figure | ours | Bolt's aiohttp handler | ratio (ours better when > 1) |",
        "| --- | --- | --- | --- |",
    ]
    for key, name, higher_better in _ROWS:
        a, b = ours.get(key), bolt.get(key)
        shown = [f"{v:.3g}" if v is not None else f"not within {bound:g} s" for v in (a, b)]
        if key in _COUNTS:
            ratio = ""
        elif a is not None and b is not None and a > 0 and b > 0:
            ratio = f"{(a / b if higher_better else b / a):.2f}x"
        elif a is not None and b is None:
            ratio = "theirs not within the bound"
        else:
            ratio = "n/a"
        lines.append(f"| {name} | {shown[0]} | {shown[1]} | {ratio} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    """Run both handlers one after the other; print the table, then the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", choices=_KINDS)
    parser.add_argument("--api")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.api)
        return
    loop, burst, bound = (150, 1500, 60.0) if args.quick else (1500, 10_000, 60.0)
    if os.environ.get("BENCH_BOLT_BURST"):  # a longer burst alone, for a profiler
        loop, burst = 10, int(os.environ["BENCH_BOLT_BURST"])
    results = {}
    for kind in os.environ.get("BENCH_BOLT_KINDS", ",".join(_KINDS)).split(","):
        print(f"running {kind} …", file=sys.stderr, flush=True)
        results[kind] = _run(kind, loop=loop, burst=burst, bound=bound)
    print(_table(results.get("ours", {}), results.get("bolt", {}), bound))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
