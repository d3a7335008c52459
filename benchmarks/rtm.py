"""Our RTM client side by side with slack_sdk's ``rtm_v2.RTMClient``, against the local RTM server.

Run it from the project root (with the package installed, or ``PYTHONPATH=src``)::

    python -m benchmarks.rtm            # one run of each figure, both clients: about a minute
    python -m benchmarks.rtm --quick    # smaller counts

The server (:class:`slack_socket_mode.testing.rtm.RTMServer`) runs in this process; each client
runs in a process of its own (``python -m benchmarks.rtm --child ours|sdk``), with its default
settings and one ``@rtm.on("message")`` listener that echoes the event's ``n`` back with
``send()``. Times are taken where bytes cross the socket, by the server (Linux's monotonic clock);
the client's CPU is its own process's (``getrusage``), reported by the child. Figures:

* **latency p50**: a closed loop, one event at a time: from the server's write of an event to its
  read of the listener's echo (the listener's ``send()`` included, alike for both);
* **CPU per message**: the client process's CPU over the closed loop, per event;
* **burst**: events written as fast as the socket takes them (about 64 KB per write); events per
  second until every echo arrived, echoes that never came, connections replaced meanwhile;
* **half-open detection**: the server silences the connection (TCP up, nothing read or written);
  seconds until the client's next connection is opened;
* **reset to reconnected**: the server resets the TCP connection; seconds until the new one says ``hello``;
* **close()**: the client's ``close()``, timed in the client (slack_sdk's takes no timeout), and
  the threads still running once it returned (ours joins its own; slack_sdk's leaves its runners).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
from typing import Any, Optional

from .control import LineChild

_TOKEN = "xoxb-1-bench-rtm"


# ---- the client process --------------------------------------------------------------------------


def _child(kind: str, api_url: str) -> None:
    if kind == "ours":
        from slack_socket_mode.rtm import RTMClient
    else:
        from slack_sdk.rtm_v2 import RTMClient  # type: ignore[assignment]

    # BENCH_RTM_OPTIONS: extra keyword options of our client, as JSON, for experiments (default: none)
    extra = json.loads(os.environ.get("BENCH_RTM_OPTIONS", "{}")) if kind == "ours" else {}
    rtm = RTMClient(token=_TOKEN, base_url=api_url, **extra)

    @rtm.on("message")
    def echo(client: Any, event: dict[str, Any]) -> None:
        client.send({"type": "echo", "n": event["n"]})

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    rtm.connect()
    print(json.dumps({"connected": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "cpu":
            print(json.dumps({"cpu": cpu()}), flush=True)
        elif command == "close":
            started = time.monotonic()
            rtm.close()
            took = time.monotonic() - started
            left = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
            print(json.dumps({"close": took, "threads_left": len(left)}), flush=True)
            os._exit(0)  # slack_sdk's threads outlive its close(): the process ends without waiting for them


# ---- the measurements ----------------------------------------------------------------------------


class _Echoes:
    """The echoes the client sent, by ``n``, read from the server's records as they grow (each decoded once)."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._read = 0
        self.at: dict[int, float] = {}  # n -> the server's receive time (monotonic seconds)

    def _update(self) -> None:
        messages = self._server.messages
        for message in messages[self._read :]:
            if '"echo"' in message.text:
                self.at[json.loads(message.text)["n"]] = message.received_at
        self._read = len(messages)

    def total(self) -> int:
        """How many echoes arrived so far."""
        self._update()
        return len(self.at)

    def wait(self, n: int, seconds: float) -> float:
        """The receive time of echo ``n``, once it arrived (TimeoutError after ``seconds``)."""

        def arrived() -> bool:
            self._update()
            return n in self.at

        self._server.wait_until(arrived, seconds, f"echo {n}")
        return self.at[n]


def _run(kind: str, *, loop: int, burst: int, fault_bound: float) -> dict[str, Optional[float]]:
    from slack_socket_mode.testing.rtm import RTMServer

    figures: dict[str, Optional[float]] = {}
    with RTMServer() as server:
        client = LineChild("benchmarks.rtm", kind, server.api_url)
        try:
            server.wait_for_connections(1)
            echoes = _Echoes(server)
            n = 0
            for _ in range(50):  # warm-up
                n += 1
                server.send_event({"type": "message", "n": n})
                echoes.wait(n, 5.0)
            latencies: list[float] = []
            before = client.ask("cpu")["cpu"]
            for _ in range(loop):
                n += 1
                sent = time.monotonic()
                server.send_event({"type": "message", "n": n})
                latencies.append(echoes.wait(n, 5.0) - sent)
            figures["cpu_per_message_us"] = (client.ask("cpu")["cpu"] - before) / loop * 1e6
            figures["latency_p50_ms"] = statistics.median(latencies) * 1e3
            first = n + 1
            started = time.monotonic()
            # written about 64 KB per socket write (push_many; the envelope_id is only for the server's
            # records: to the RTM clients it is one more field of the event)
            events = [{"type": "message", "n": i, "envelope_id": f"burst-{i}"} for i in range(n + 1, n + burst + 1)]
            n += burst
            server.push_many(events)
            last = n
            before = len(echoes.at)
            try:
                server.wait_until(lambda: echoes.total() - before == burst, 60.0, "every echo of the burst")
                done = max(echoes.at[i] for i in range(first, last + 1))
                figures["burst_per_s"] = burst / (done - started)
            except TimeoutError:
                figures["burst_per_s"] = None
            figures["burst_lost"] = burst - (echoes.total() - before)
            figures["burst_reconnects"] = len(server.all_connections) - 1
            (conn,) = server.connections
            silenced = time.monotonic()
            server.silence(conn)
            try:
                new = server.wait_for_new_connection(1, timeout=fault_bound)
                figures["half_open_s"] = new.opened_at - silenced
            except TimeoutError:
                figures["half_open_s"] = None  # not within the bound
            server.wait_until(lambda: len(server.connections) >= 1 and server.connections[-1].hello_sent, 10.0)
            opened = len(server.all_connections)
            reset = time.monotonic()
            server.reset(server.connections[-1])
            try:
                new = server.wait_for_new_connection(opened, timeout=fault_bound)
                figures["reset_to_reconnected_s"] = new.opened_at - reset
            except TimeoutError:
                figures["reset_to_reconnected_s"] = None
            closed = client.ask("close")
            figures["close_s"] = closed["close"]
            figures["threads_left"] = closed["threads_left"]
        finally:
            client.kill()
    return figures


_ROWS = [
    ("latency_p50_ms", "message to listener, p50 (ms)", False),
    ("cpu_per_message_us", "client CPU per message (µs)", False),
    ("burst_per_s", "burst (messages/s)", True),
    ("burst_lost", "burst: messages whose echo never came", False),
    ("burst_reconnects", "burst: connections replaced meanwhile", False),
    ("half_open_s", "half-open detected (s)", False),
    ("reset_to_reconnected_s", "reset to reconnected (s)", False),
    ("close_s", "close() (s)", False),
    ("threads_left", "threads left running after close()", False),
]


def _table(ours: dict[str, Optional[float]], sdk: dict[str, Optional[float]], bound: float) -> str:
    lines = ["| Figure | ours | slack_sdk rtm_v2 | ratio (ours better when > 1) |", "| --- | --- | --- | --- |"]
    for key, name, higher_better in _ROWS:
        a, b = ours.get(key), sdk.get(key)
        missing = "not all within 60 s" if key == "burst_per_s" else f"> {bound:g} s"
        shown = [f"{v:.3g}" if v is not None else missing for v in (a, b)]
        if key in ("threads_left", "burst_lost", "burst_reconnects"):
            ratio = "n/a"
        elif a is not None and b is not None and a > 0 and b > 0:
            ratio = f"{(a / b if higher_better else b / a):.2f}x"
        elif a is not None and b is None:
            ratio = "theirs not within the bound"
        else:
            ratio = "n/a"
        lines.append(f"| {name} | {shown[0]} | {shown[1]} | {ratio} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", choices=["ours", "sdk"])
    parser.add_argument("--api")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.api)
        return
    loop, burst, bound = (200, 2000, 40.0) if args.quick else (1000, 10_000, 40.0)
    results = {}
    for kind in ("ours", "sdk"):
        print(f"running {kind} …", file=sys.stderr, flush=True)
        results[kind] = _run(kind, loop=loop, burst=burst, fault_bound=bound)
    print(_table(results["ours"], results["sdk"], bound))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
