"""``python -m benchmarks.shared_ledger``: what the shared ledger costs a replica, beside the in-process one.

Our client with its in-process ledger (``ours``) and with ``dedupe=RedisLedger(...)``
(``ours_redis``, see :mod:`benchmarks.client_process`), in one run, on the same local server,
server on core 0 and client on core 1 (Redis, a ``redis-server`` of the run's own, on either):

* the mixed closed loop (scenario 1b: one envelope at a time, the realistic mix), in rounds
  that alternate between the two, so that a change in the machine's load falls on both: ack
  round trip p50 (median of the rounds' p50) and client CPU per envelope (median of rounds);
* a burst (``--burst`` envelopes at once): acks/s and client CPU per envelope;
* Redis round trips per envelope (redis-py's ``send_packed_command`` calls, counted in the
  client process: one command, or one pipeline), over the measured parts;
* what one round trip costs by itself, in this process: ``RedisLedger.claim`` (the claim's
  script through redis-py) and a ``PING`` written and read on a plain socket, 2,000 each: the
  CPU (user and system) and the wall time of one. The claim is on an envelope's path before its
  listeners run, so these bound what the ratios can come down to on the machine.

The ratios are ``ours_redis / ours``. Issue 21's targets: CPU per envelope at most 2x, ack p50 at
most 1.3x, and at most 1 Redis round trip per envelope on the common path.

Usage::

    python -m benchmarks.shared_ledger [--rounds 3] [--count 1000] [--burst 5000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .control import Child
from .procinfo import delta
from .redis_server import RedisServer
from .scenarios import Session, Settings
from .server_process import server_main

__all__ = ["main", "render", "run"]

KINDS = ("ours", "ours_redis")


def _round_trips(before: dict[str, Any], after: dict[str, Any]) -> int:
    return int(after.get("redis_round_trips", 0)) - int(before.get("redis_round_trips", 0))


def _mix_round(session: Session, count: int, warmup: int) -> dict[str, Any]:
    """One measured mixed closed loop of ``count`` envelopes after ``warmup`` of them."""
    session.server.call("closed_loop", timeout=90.0, count=warmup, cap=60.0, mix=True)
    before = session.sample()
    loop = session.server.call("closed_loop", timeout=150.0, count=count, cap=120.0, mix=True)
    after = session.sample()
    rtts = sorted(loop["rtts"])
    done = loop["done"]
    return {
        "done": done,
        "p50_ms": rtts[len(rtts) // 2] * 1000.0 if rtts else None,
        "cpu_us": delta(before, after, exclude_caller=True)["cpu"] / max(done, 1) * 1e6,
        "round_trips": _round_trips(before, after),
        "ran_twice": after["ran_twice"],
    }


def _burst(session: Session, count: int) -> dict[str, Any]:
    session.warm(100)
    before = session.sample()
    burst = session.server.call("burst", timeout=150.0, count=count, bound=90.0)
    time.sleep(0.2)  # listeners record their run just after sending the ack
    after = session.sample(timeout=60.0)
    acked = burst["acked"]
    return {
        "acked": acked,
        "rate": burst["rate"],
        "duplicate_acks": burst["duplicate_acks"],
        "cpu_us": delta(before, after, exclude_caller=True)["cpu"] / max(acked, 1) * 1e6,
        "round_trips": _round_trips(before, after),
        "ran_twice": after["ran_twice"],
    }


def _probe(url: str, calls: int = 2000) -> dict[str, Any]:
    """CPU and wall time of one claim through redis-py, and of one PING on a plain socket (µs)."""
    import resource
    import socket
    from urllib.parse import urlsplit

    from slack_socket_mode.redis import RedisLedger

    def timed(call: Any) -> dict[str, float]:
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for n in range(calls):
            call(n)
        after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
        return {
            "user_us": (after.ru_utime - before.ru_utime) / calls * 1e6,
            "sys_us": (after.ru_stime - before.ru_stime) / calls * 1e6,
            "wall_us": wall / calls * 1e6,
        }

    store = RedisLedger(url, namespace="probe", prefix="slack_socket_mode_bench:")
    store.claim(("envelope:warm",), "probe")
    claim = timed(lambda n: store.claim((f"envelope:p{n}", f"event:P{n}"), f"probe:{n}"))
    store.close()
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=5.0) as sock:
        ping = timed(lambda n: (sock.sendall(b"*1\r\n$4\r\nPING\r\n"), sock.recv(64)))
    return {"claim": claim, "raw_ping": ping}


def run(rounds: int, count: int, burst: int) -> dict[str, Any]:
    """Run both clients; returns ``{"mix": {kind: [round, ...]}, "burst": {kind: figures}, ...}``."""
    import os

    settings = Settings()
    results: dict[str, Any] = {"mix": {k: [] for k in KINDS}, "burst": {}, "rounds": rounds, "count": count}
    with tempfile.TemporaryDirectory(prefix="bench-shared-ledger-") as workdir:
        redis_server = RedisServer(workdir)
        redis_server.start()
        previous = os.environ.get("SLACK_SOCKET_MODE_REDIS_URL")
        os.environ["SLACK_SOCKET_MODE_REDIS_URL"] = redis_server.url  # the client processes inherit it
        server = Child(server_main, "server")
        try:
            for _ in range(rounds):
                for kind in KINDS:
                    with Session(server, kind, settings, None, pin=True) as session:
                        results["mix"][kind].append(_mix_round(session, count, settings.mix_warmup))
            if burst:
                for kind in KINDS:
                    with Session(server, kind, settings, None, pin=True) as session:
                        results["burst"][kind] = _burst(session, burst)
            results["probe"] = _probe(redis_server.url)
        finally:
            server.stop()
            redis_server.stop()
            if previous is None:
                os.environ.pop("SLACK_SOCKET_MODE_REDIS_URL", None)
            else:
                os.environ["SLACK_SOCKET_MODE_REDIS_URL"] = previous
    return results


def _median(rounds: list[dict[str, Any]], key: str) -> Optional[float]:
    values = [r[key] for r in rounds if r[key] is not None]
    return statistics.median(values) if values else None


def render(results: dict[str, Any]) -> str:
    """A Markdown table of both clients and their ratios."""
    mix = results["mix"]
    lines = [
        "| | ours | ours, RedisLedger | ratio | target |",
        "| --- | --- | --- | --- | --- |",
    ]

    def row(what: str, a: Optional[float], b: Optional[float], unit: str, target: str, digits: int = 0) -> None:
        shown = [f"{v:,.{digits}f}{unit}" if v is not None else "-" for v in (a, b)]
        ratio = f"{b / a:.2f}x" if a and b is not None else "-"
        lines.append(f"| {what} | {shown[0]} | {shown[1]} | {ratio} | {target} |")

    row("mix: ack p50", _median(mix["ours"], "p50_ms"), _median(mix["ours_redis"], "p50_ms"), " ms", "≤ 1.3x", 3)
    row("mix: CPU per envelope", _median(mix["ours"], "cpu_us"), _median(mix["ours_redis"], "cpu_us"), " µs", "≤ 2x")
    done = sum(r["done"] for r in mix["ours_redis"])
    trips = sum(r["round_trips"] for r in mix["ours_redis"])
    lines.append(f"| mix: Redis round trips per envelope | | {trips / max(done, 1):.3f} | | ≤ 1 |")
    burst = results["burst"]
    if burst:
        a, b = burst.get("ours", {}), burst.get("ours_redis", {})
        row("burst: acks/s", a.get("rate"), b.get("rate"), "/s", "")
        row("burst: CPU per envelope", a.get("cpu_us"), b.get("cpu_us"), " µs", "≤ 2x")
        if b:
            lines.append(
                f"| burst: Redis round trips per envelope | | {b['round_trips'] / max(b['acked'], 1):.3f} | | ≤ 1 |"
            )
    twice = sum(r["ran_twice"] for rounds in mix.values() for r in rounds) + sum(
        f.get("ran_twice", 0) + f.get("duplicate_acks", 0) for f in burst.values()
    )
    per_round = ", ".join(
        f"{kind}: " + " / ".join(f"{r['p50_ms']:.3f} ms, {r['cpu_us']:.0f} µs" for r in mix[kind] if r["p50_ms"])
        for kind in KINDS
    )
    lines += ["", f"Rounds (p50, CPU per envelope): {per_round}. Run or acked twice: {twice}."]
    probe = results.get("probe")
    if probe:
        shown = "; ".join(
            f"{what}: CPU {p['user_us'] + p['sys_us']:.0f} µs (user {p['user_us']:.0f}, system {p['sys_us']:.0f}), "
            f"wall {p['wall_us']:.0f} µs"
            for what, p in (
                ("a claim through redis-py", probe["claim"]),
                ("a PING on a plain socket", probe["raw_ping"]),
            )
        )
        lines.append(f"One round trip by itself: {shown}.")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Run, print the table; write the JSON with ``--json``. Returns 0, or 1 if anything ran or was acked twice."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="mixed closed-loop rounds per client (default 3)")
    parser.add_argument("--count", type=int, default=1000, help="envelopes per round (default 1,000)")
    parser.add_argument("--burst", type=int, default=5000, help="burst envelopes per client, 0: none (default 5,000)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    logging.getLogger().addHandler(logging.NullHandler())
    results = run(args.rounds, args.count, args.burst)
    print(render(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    twice = sum(r["ran_twice"] for rounds in results["mix"].values() for r in rounds)
    return 1 if twice else 0


if __name__ == "__main__":
    raise SystemExit(main())
