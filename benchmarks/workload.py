"""``python -m benchmarks.workload``: one client under load in *this* process, for profilers.

The suite runs every client in a child process; a profiler is easier to point at a process
it starts itself. This module starts the server process as the suite does, runs the client
in the current process and drives one workload, then prints the client's CPU and context
switches per envelope. For example, with py-spy (``--gil`` keeps only samples that hold the
GIL, i.e. Python CPU; ``--threads`` splits by thread)::

    PYTHONPATH=src py-spy record -r 1000 --gil --threads -f raw -o /tmp/ours.txt -- \\
        python -m benchmarks.workload --client ours --workload burst --count 40000

or with cProfile for the main thread only (listeners and readers run on other threads, so
a sampling profiler is the better tool here).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Optional

from .client_process import KINDS, _ClientUnderTest
from .control import Child
from .procinfo import delta, pin_process, sample_self, threads_detail
from .server_process import server_main

__all__ = ["main"]


def main(argv: Optional[list[str]] = None) -> int:
    """Run the workload; print its figures. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workload", description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=KINDS, default="ours")
    parser.add_argument("--workload", choices=("closed_loop", "closed_loop_mix", "burst"), default="burst")
    parser.add_argument(
        "--pin", action="store_true", help="server process on core 0, this one on core 1 (as the mixed closed loop)"
    )
    parser.add_argument("--count", type=int, default=20_000, help="envelopes (default 20,000)")
    parser.add_argument("--warmup", type=int, default=300, help="closed-loop envelopes first (default 300)")
    args = parser.parse_args(argv)
    logging.getLogger().addHandler(logging.NullHandler())  # the clients' warnings are not the point here
    server = Child(server_main, "server")
    try:
        if args.pin:
            server.call("pin", timeout=10.0, cpus=[0])
            pin_process([1])
        api = server.call("start", timeout=30.0)
        under_test = _ClientUnderTest()
        under_test.start(args.client, api["api_url"])
        if server.call("wait_connection", timeout=30.0, after=0) is None:
            print("no connection", file=sys.stderr)
            return 1
        mix = args.workload == "closed_loop_mix"
        server.call("closed_loop", timeout=120.0, count=args.warmup, cap=60.0, mix=mix)
        threads_before = threads_detail()
        before = sample_self()
        result: dict[str, Any]
        if args.workload in ("closed_loop", "closed_loop_mix"):
            result = server.call("closed_loop", timeout=600.0, count=args.count, cap=300.0, mix=mix)
            rtts = sorted(result.pop("rtts"))
            done = result["done"]
            shown = f"p50 {rtts[len(rtts) // 2] * 1000:.3f} ms" if rtts else "no acks"
        else:
            result = server.call("burst", timeout=600.0, count=args.count, bound=300.0)
            done = result["acked"]
            shown = f"{result['rate'] or 0:,.0f} acks/s, {result['duplicate_acks']} acked twice"
        used = delta(before, sample_self(), exclude_caller=True)
        per = max(done, 1)
        roles: dict[str, list[float]] = {}
        for name, figures in threads_detail().items():
            start = threads_before.get(name, {"cpu": 0.0, "vcsw": 0})
            role = name.rstrip("0123456789").rstrip("_-")  # worker_3 -> worker, reader-1 -> reader
            totals = roles.setdefault(role, [0.0, 0.0])
            totals[0] += figures["cpu"] - start["cpu"]
            totals[1] += figures["vcsw"] - start["vcsw"]
        print(
            f"{args.client} {args.workload}: {done:,} envelopes, {shown}; per envelope: "
            f"CPU {used['cpu'] / per * 1e6:.0f} µs (user {used['cpu_user'] / per * 1e6:.0f}, "
            f"sys {used['cpu_sys'] / per * 1e6:.0f}), voluntary switches {used['vcsw'] / per:.2f}, "
            f"involuntary {used['ivcsw'] / per:.2f}; threads {sample_self()['threads']}"
        )
        for role, (cpu, switches) in sorted(roles.items(), key=lambda item: -item[1][0]):
            if cpu * 1e6 / per >= 1.0:
                print(f"    {role:40} CPU {cpu / per * 1e6:6.0f} µs/envelope, switches {switches / per:.2f}/envelope")
    finally:
        server.stop()
    sys.stdout.flush()
    os._exit(0)  # the client's threads are not ours to stop cleanly here


if __name__ == "__main__":
    raise SystemExit(main())
