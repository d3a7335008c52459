"""``python -m benchmarks.publish_hop``: what the hand-off's thread hop costs a publish.

:class:`~slack_socket_mode.celery.CeleryHandoff` runs each publish on a thread of its own
(:class:`slack_socket_mode.bounded.BoundedCalls`) so that the listener waits at most
``publish_timeout``. This times ``BoundedCalls.call`` of a function that does nothing against
calling it directly, in loops of ``--calls`` (median and range of 3 loops), optionally with
``--busy`` other threads spinning in Python meanwhile (the client's readers, under load), which
compete for the GIL at each hand-over.

Usage::

    python -m benchmarks.publish_hop [--calls N] [--busy N]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from slack_socket_mode.bounded import BoundedCalls


def _nothing() -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.publish_hop")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--busy", type=int, default=0, help="threads spinning in Python meanwhile")
    args = parser.parse_args()
    stop = threading.Event()
    spinners = [
        threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)], name=f"bench-spin-{n}")
        for n in range(args.busy)
    ]
    for spinner in spinners:
        spinner.start()
    calls = BoundedCalls("bench-publish", max_threads=4, on_late=lambda *_: None)
    try:
        hops = []
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(args.calls):
                calls.call(_nothing, 2.0)
            hopped = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(args.calls):
                _nothing()
            hops.append((hopped - (time.perf_counter() - started)) / args.calls * 1e6)
    finally:
        stop.set()
        calls.close()
        for spinner in spinners:
            spinner.join()
    print(
        f"thread hop per call: {statistics.median(hops):.1f} us (range {min(hops):.1f}-{max(hops):.1f}), "
        f"{args.calls} calls x 3, {args.busy} busy threads"
    )


if __name__ == "__main__":
    main()
