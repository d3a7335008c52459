"""``python -m benchmarks.ledger_rtt``: many claims in flight, their Redis a round trip away; are leases kept?

A :class:`~slack_socket_mode.redis.RedisLedger` renews every claim its replica holds in one round
trip per round (every third of the lease), and writes the done records that are ready in the
same call. This measures that where it matters: one client process with ``--claims`` listeners
running at once (``concurrency`` as many), each holding an ``events_api`` envelope (two keys),
its Redis (a ``redis-server`` of its own) behind a relay (:mod:`benchmarks.netem`) that adds
``--rtt`` seconds to every round trip. The listeners wait ``--hold`` seconds (several leases),
then ack together.

Meanwhile another Redis client, with no delay, reads the TTL of every claim every 0.25 s: what
another replica would find. Reported: the round trip through the relay, the time to claim
every envelope (one round trip each, on the readers), the renewal rounds (how many, and how
long each store call took: the client's own view, timed around ``RedisLedger.sync``), the
lowest TTL any claim fell to (the margin left), claims found missing or not the client's,
``stats().shared_leases_lost``, and once the listeners return, the time until every done
record is in Redis and the store calls that took.

Usage::

    PYTHONPATH=src python -m benchmarks.ledger_rtt [--claims 1000] [--rtt 0.05] [--lease 2] [--hold 10]
        [--connections 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.redis import RedisLedger
from slack_socket_mode.shared import Finished, Held, RoundResult
from slack_socket_mode.stats import percentile
from slack_socket_mode.testing import SocketModeServer

from .netem import Relay
from .redis_server import RedisServer

_APP_TOKEN = "xapp-1-A111-4242-ledgerrtt"
ROOT = Path(__file__).resolve().parent.parent


class TimedLedger(RedisLedger):
    """A RedisLedger that records how long each round's store call took (seconds) and what it carried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rounds: list[tuple[float, float, int, int, int]] = []  # (start, seconds, renewals, dones, releases)
        self._rounds_lock = threading.Lock()

    def sync(self, renew: Sequence[Held], done: Sequence[Finished], release: Sequence[Held]) -> RoundResult:
        start = time.monotonic()
        try:
            return super().sync(renew, done, release)
        finally:
            with self._rounds_lock:
                self.rounds.append((start, time.monotonic() - start, len(renew), len(done), len(release)))


class Gate:
    """The listener: counts the runs, waits for the gate, acks."""

    def __init__(self, hold_limit: float) -> None:
        self.open = threading.Event()
        self.cond = threading.Condition()
        self.running = 0
        self.hold_limit = hold_limit

    def __call__(self, client: SocketModeClient, request: Any) -> None:
        with self.cond:
            self.running += 1
            self.cond.notify_all()
        self.open.wait(self.hold_limit)
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    def wait_running(self, count: int, seconds: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.running >= count, seconds)


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def run(claims: int, rtt: float, lease: float, hold: float, connections: int) -> dict[str, Any]:
    """One run; returns the figures (see the module's docstring)."""
    namespace = f"rtt{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as workdir:
        redis_server = RedisServer(workdir)
        redis_server.start()
        relay = Relay("127.0.0.1", delay=rtt / 2, loss=0.0).start(("127.0.0.1", redis_server.port))
        store = TimedLedger(f"redis://127.0.0.1:{relay.address[1]}/0", namespace=namespace, lease=lease)
        direct = RedisLedger(redis_server.url, namespace=namespace)
        gate = Gate(hold + 60.0)
        try:
            store.ping()  # the connection's set-up costs round trips of its own
            t = time.monotonic()
            for _ in range(5):
                store.ping()
            measured_rtt = (time.monotonic() - t) / 5
            with SocketModeServer(redelivery_delay=None) as server:
                client = SocketModeClient(
                    _APP_TOKEN,
                    web_client=WebClient(base_url=server.api_url),
                    connections=connections,
                    concurrency=claims,
                    dedupe=store,
                    logger=logging.getLogger("benchmarks.ledger_rtt"),
                )
                client.socket_mode_request_listeners.append(gate)
                try:
                    client.connect(30)
                    server.wait_for_connections(connections, 30)
                    start = time.monotonic()
                    ids = server.push_many(
                        [server.make_envelope("events_api", {"event_id": f"Ev{n:06d}"}) for n in range(claims)]
                    )
                    if not gate.wait_running(claims, 120):
                        raise RuntimeError(f"only {gate.running} of {claims} listeners ran within 120 s")
                    admitted = time.monotonic() - start
                    keys = [f"envelope:{eid}" for eid in ids] + [f"event:Ev{n:06d}" for n in range(claims)]
                    low, missing, scans = _watch(direct, keys, hold)
                    lost_during = client.stats().shared_leases_lost
                    released = time.monotonic()
                    gate.open.set()
                    server.wait_for_acks(envelope_ids=ids, timeout=60)
                    done_s = _wait_done(direct, keys, 60) - released
                    stats = client.stats()
                finally:
                    gate.open.set()
                    client.close(10)
        finally:
            store.close()
            direct.close()
            relay.close()
            redis_server.stop()
    renewals = [seconds for begun, seconds, renewed, _, _ in store.rounds if renewed and begun < released]
    done_rounds = [r for r in store.rounds if r[0] >= released - 0.001 and r[3]]
    return {
        "claims": claims,
        "keys": len(keys),
        "rtt_s": measured_rtt,
        "lease_s": lease,
        "hold_s": hold,
        "admitted_s": admitted,
        "renewal_rounds": len(renewals),
        "renewal_call_p50_s": percentile(sorted(renewals), 0.5),
        "renewal_call_max_s": max(renewals, default=None),
        "lowest_ttl_s": low,
        "ttl_scans": scans,
        "claims_missing_in_scans": missing,
        "leases_lost_while_held": lost_during,
        "leases_lost": stats.shared_leases_lost,
        "done_records_s": done_s,
        "done_calls": len(done_rounds),
    }


def _watch(direct: RedisLedger, keys: list[str], hold: float) -> tuple[Optional[float], int, int]:
    """Read every claim's TTL every 0.25 s for ``hold`` seconds: (the lowest seen, keys found missing, scans)."""
    names = [f"slack_socket_mode:{direct.namespace}:{k}" for k in keys]
    low: Optional[float] = None
    missing = scans = 0
    end = time.monotonic() + hold
    while time.monotonic() < end:
        with direct.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.pttl(name)
            ttls = pipe.execute()
        scans += 1
        missing += sum(1 for ttl in ttls if ttl < 0)
        present = [ttl for ttl in ttls if ttl >= 0]
        if present:
            lowest = min(present) / 1000
            low = lowest if low is None else min(low, lowest)
        time.sleep(0.25)  # a sampling period: nothing to wait on
    return low, missing, scans


def _wait_done(direct: RedisLedger, keys: list[str], seconds: float) -> float:
    """Wait until every key holds a done record; return the monotonic time it did."""
    names = [f"slack_socket_mode:{direct.namespace}:{k}" for k in keys]
    deadline = time.monotonic() + seconds
    while True:
        with direct.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.getrange(name, 0, 1)
            heads = pipe.execute()
        if all(head == b"d:" for head in heads):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sum(1 for h in heads if h != b'd:')} keys not done after {seconds} s")
        time.sleep(0.005)  # polling Redis, which another process writes


def render(r: dict[str, Any]) -> str:
    """The run as a few lines of text."""
    return "\n".join(
        [
            f"{r['claims']} claims ({r['keys']} keys) in flight, Redis round trip {_ms(r['rtt_s'])}, "
            f"lease {r['lease_s']:g} s, held {r['hold_s']:g} s",
            f"  claimed in {r['admitted_s']:.2f} s (one round trip each, on the readers)",
            f"  renewal rounds: {r['renewal_rounds']}, store call p50 {_ms(r['renewal_call_p50_s'])}, "
            f"max {_ms(r['renewal_call_max_s'])}",
            f"  lowest TTL seen of any claim: {_ms(r['lowest_ttl_s'])} over {r['ttl_scans']} scans; "
            f"claims missing in the scans: {r['claims_missing_in_scans']}",
            f"  leases lost: {r['leases_lost_while_held']} while held, {r['leases_lost']} in all",
            f"  every done record in Redis {r['done_records_s']:.3f} s after the listeners returned, "
            f"in {r['done_calls']} store call(s)",
        ]
    )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--rtt", type=float, default=0.05, help="seconds added to each Redis round trip")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds every listener runs")
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args(argv)
    result = run(args.claims, args.rtt, args.lease, args.hold, args.connections)
    print(render(result))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ledger_rtt.json").write_text(json.dumps(result, indent=2) + "\n")
    lost = result["leases_lost"] or result["claims_missing_in_scans"]
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
