"""``python -m benchmarks.scale_out``: replicas with a shared ledger, and the hand-off to Celery.

**Replicas.** The local server in this process models one app shared by processes
(:class:`~slack_socket_mode.testing.app_model.AppModel`: each envelope to a random open
connection, a redelivery 3 s later to a random one). Three replica processes with two
connections each share a :class:`~slack_socket_mode.redis.RedisLedger`; their listener counts
each completion in a Redis hash, then acks. ``--envelopes`` (20,000) are pushed at ``--rate``
(2,000/s); a third of the way in one replica is SIGKILLed, two thirds in another is stopped
(SIGTERM, ``close(timeout)``) and a new one started. Reported: envelopes lost (no completion),
completed twice (and how many the killed replica held unacked: the bound), time to recover
(from the kill to the last ack of an envelope the killed replica held), ack p50/p99 (first
delivery to first ack, as the server saw them).

**Hand-off.** One client process against the local server, its listener either acking in-process
(``inline``) or :class:`~slack_socket_mode.celery.CeleryHandoff` publishing to Redis or to
RabbitMQ (publisher confirms); ``--modes`` picks them, ``MODE:inline`` or ``MODE:workers`` the
client's dispatch. Per mode, after 500 envelopes to warm up: ack p50/p99 for ``--steady``
envelopes at 1,000/s in batches of 10 every 10 ms (with one reader publishing inline, an
envelope waits for those before it in its batch: queueing counts), then for as many paced one
per millisecond (the hand-off's own latency), then acks/s for a burst of ``--burst`` envelopes
pushed at once. No worker runs: the tasks are left in a queue that is deleted afterwards
(RabbitMQ: expires).

Needs Redis and RabbitMQ (``SLACK_SOCKET_MODE_REDIS_URL``, ``SLACK_SOCKET_MODE_AMQP_URL``).

Usage::

    PYTHONPATH=src python -m benchmarks.scale_out [--only replicas|handoff] [--envelopes N] [--rate R]
        [--steady N] [--burst N] [--modes inline,celery-redis,celery-redis:workers,celery-rabbitmq,...]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

APP_TOKEN = "xapp-1-A111-1-benchmark"
REDIS_URL = os.environ.get("SLACK_SOCKET_MODE_REDIS_URL", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("SLACK_SOCKET_MODE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
ROOT = Path(__file__).resolve().parent.parent


def _redis_db(db: int) -> str:
    return urlsplit(REDIS_URL)._replace(path=f"/{db}").geturl()


def _percentile(values: list[float], q: float) -> Optional[float]:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


# ---- child processes -------------------------------------------------------------------------


def replica_main(args: argparse.Namespace) -> int:
    """One replica: a client with the shared ledger; the listener counts its completion, then acks."""
    import redis
    from slack_sdk.socket_mode.response import SocketModeResponse
    from slack_sdk.web import WebClient

    from slack_socket_mode import SocketModeClient
    from slack_socket_mode.redis import RedisLedger
    from slack_socket_mode.stopping import StopWaiter

    logging.basicConfig(level=logging.ERROR)
    effects: Any = redis.Redis.from_url(args.redis_url, socket_timeout=5)
    store = RedisLedger(args.redis_url, namespace=args.namespace)
    client = SocketModeClient(
        APP_TOKEN, web_client=WebClient(base_url=args.api_url), connections=args.connections, dedupe=store
    )

    def listener(client: Any, request: Any) -> None:
        effects.hincrby(args.completions, request.envelope_id, 1)
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    client.socket_mode_request_listeners.append(listener)
    with StopWaiter((signal.SIGTERM,)) as waiter:
        client.connect(timeout=60)
        print("ready", flush=True)
        waiter.wait()
    client.close(timeout=5)
    print("closed", flush=True)
    return 0


def handoff_main(args: argparse.Namespace) -> int:
    """One client: its listener acks in-process, or hands off to Celery on Redis or RabbitMQ."""
    from slack_sdk.socket_mode.response import SocketModeResponse
    from slack_sdk.web import WebClient

    from slack_socket_mode import SocketModeClient
    from slack_socket_mode.stopping import StopWaiter

    logging.basicConfig(level=logging.ERROR)
    client = SocketModeClient(
        APP_TOKEN, web_client=WebClient(base_url=args.api_url), inline_dispatch=args.dispatch == "inline"
    )
    if args.mode == "inline":

        def listener(client: Any, request: Any) -> None:
            client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

        client.socket_mode_request_listeners.append(listener)
    else:
        from celery import Celery
        from kombu import Queue

        from slack_socket_mode.celery import CeleryHandoff

        app = Celery("benchmark", broker=args.broker)
        rabbitmq = args.broker.startswith("amqp")
        app.conf.update(
            # RabbitMQ drops the queue a minute after the run (a declared argument: no cost per
            # publish); on Redis, ``expires`` would add a MULTI/EXEC with a PEXPIRE per priority to
            # every publish (and expire waiting tasks), so the queue is deleted after the run instead.
            task_queues=[Queue(args.queue, expires=60.0 if rabbitmq else None)],
            task_default_queue=args.queue,
            broker_connection_timeout=1.0,
            broker_transport_options={"confirm_publish": True} if rabbitmq else {"socket_timeout": 5.0},
        )
        handoff = CeleryHandoff(app, "benchmark.handle")
        app.send_task("benchmark.handle", args=[{"envelope_id": "warm-up"}])  # connect the producer pool once
        client.socket_mode_request_listeners.append(handoff)
    with StopWaiter((signal.SIGTERM,)) as waiter:
        client.connect(timeout=30)
        print("ready", flush=True)
        waiter.wait()
    client.close(timeout=5)
    return 0


class Child:
    """A child process of this module; its stdout lines read by a thread."""

    def __init__(self, *argv: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scale_out", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name="benchmark-child-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("<eof>")

    def expect(self, text: str, seconds: float = 60.0) -> None:
        got = self.lines.get(timeout=seconds)
        if got != text:
            raise RuntimeError(f"child printed {got!r}, expected {text!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


# ---- scenarios -------------------------------------------------------------------------------


def run_replicas(envelopes: int, rate: float) -> dict[str, Any]:
    import redis

    from slack_socket_mode.testing import SocketModeServer
    from slack_socket_mode.testing.app_model import AppModel

    store_url = _redis_db(13)
    namespace = f"bench{uuid.uuid4().hex[:10]}"
    completions_key = f"slack_socket_mode:{namespace}:completions"
    effects: Any = redis.Redis.from_url(store_url, decode_responses=True)
    children: list[Child] = []
    try:
        with SocketModeServer(app=AppModel(), redelivery_delay=3.0) as server:

            def replica() -> Child:
                child = Child(
                    "replica", "--api-url", server.api_url, "--redis-url", store_url, "--namespace", namespace,
                    "--completions", completions_key, "--connections", "2",
                )  # fmt: skip
                children.append(child)
                return child

            for n in range(3):
                replica().expect("ready")
                server.wait_for_connections(2 * (n + 1), 30)
            killed = {conn.id for conn in server.connections[:2]}
            ids: list[str] = []
            batch = 100
            start = time.monotonic()
            t_kill = t_restart = 0.0
            restarted: Optional[Child] = None
            for n in range(0, envelopes, batch):
                due = start + n / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not t_kill and n >= envelopes // 3:
                    t_kill = time.monotonic()
                    children[0].process.send_signal(signal.SIGKILL)
                if not t_restart and n >= 2 * envelopes // 3:
                    t_restart = time.monotonic()
                    children[1].process.send_signal(signal.SIGTERM)
                    restarted = replica()
                ids += server.push_many([server.make_envelope("events_api", {"n": n + i}) for i in range(batch)])
            pushed_in = time.monotonic() - start
            server.wait_for_acks(envelope_ids=ids, timeout=120)
            assert restarted is not None
            restarted.expect("ready")
            _stop_all(children)  # before the server goes: replicas would try to reconnect to it
            counts = {k: int(v) for k, v in effects.hgetall(completions_key).items()}
            latencies: list[float] = []
            held: list[str] = []
            recovered = t_kill
            for eid in ids:
                record = server.envelope(eid)
                latencies.append(record.acks[0].received_at - record.deliveries[0].sent_at)
                on_killed = any(d.connection_id in killed for d in record.deliveries)
                if on_killed and not any(a.connection_id in killed for a in record.acks):
                    held.append(eid)
                    recovered = max(recovered, record.acks[0].received_at)
            return {
                "envelopes": len(ids),
                "rate_offered": rate,
                "rate_pushed": round(len(ids) / pushed_in),
                "lost": sum(1 for eid in ids if eid not in counts),
                "completed_twice": sum(1 for eid in ids if counts.get(eid, 0) > 1),
                "held_by_killed_replica": len(held),
                "redelivered": sum(1 for eid in ids if len(server.envelope(eid).deliveries) > 1),
                "recover_s": round(recovered - t_kill, 2),
                "ack_p50_ms": round((_percentile(latencies, 0.5) or 0) * 1000, 2),
                "ack_p99_ms": round((_percentile(latencies, 0.99) or 0) * 1000, 2),
            }
    finally:
        _stop_all(children)
        keys = list(effects.scan_iter(match=f"slack_socket_mode:{namespace}:*", count=1000))
        for start_ in range(0, len(keys), 1000):
            effects.delete(*keys[start_ : start_ + 1000])
        effects.close()


def _stop_all(children: list[Child]) -> None:
    """SIGTERM every child still running (a clean close), then wait; kill what does not exit."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.process.wait(10)
        except subprocess.TimeoutExpired:
            child.stop()


def run_handoff(mode: str, dispatch: str, steady: int, burst: int) -> dict[str, Any]:
    """One hand-off mode (``inline``, ``celery-redis``, ``celery-rabbitmq``), its client dispatching ``dispatch``."""
    from slack_socket_mode.testing import SocketModeServer

    queue_name = f"slack_socket_mode_bench_{uuid.uuid4().hex[:10]}"
    broker = {"inline": "", "celery-redis": _redis_db(14), "celery-rabbitmq": AMQP_URL}[mode]
    with SocketModeServer(redelivery_delay=None) as server:
        child = Child(
            "handoff-client", "--api-url", server.api_url, "--mode", mode, "--broker", broker, "--queue", queue_name,
            "--dispatch", dispatch,
        )  # fmt: skip
        try:
            child.expect("ready")
            # Warm-up, not measured: with worker threads each opens its own broker connection
            # from the producer pool on its first publish.
            warm = server.push_many([server.make_envelope("events_api", {"n": n}) for n in range(500)])
            server.wait_for_acks(envelope_ids=warm, timeout=60)
            # Steady: 1,000/s in batches of 10 every 10 ms. With one reader handing off inline,
            # the 10th of a batch waits for the 9 before it: this p50 includes that queueing.
            steady_ids: list[str] = []
            start = time.monotonic()
            for n in range(0, steady, 10):
                delay = start + n / 1000.0 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                steady_ids += server.push_many([server.make_envelope("events_api", {"n": n + i}) for i in range(10)])
            server.wait_for_acks(envelope_ids=steady_ids, timeout=60)
            # Paced: the same 1,000/s one envelope at a time (each pushed when its millisecond
            # is due), so that an envelope rarely waits for another: the hand-off's own latency.
            paced_ids: list[str] = []
            start = time.monotonic()
            for n in range(steady):
                delay = start + n / 1000.0 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                paced_ids.append(server.push(server.make_envelope("events_api", {"n": n})))
            server.wait_for_acks(envelope_ids=paced_ids, timeout=60)
            # Burst: everything at once, for throughput.
            envelopes = [server.make_envelope("events_api", {"n": n}) for n in range(burst)]
            t0 = time.monotonic()
            burst_ids = server.push_many(envelopes)
            acks = server.wait_for_acks(envelope_ids=burst_ids, timeout=120)
            took = max(ack.received_at for ack in acks) - t0
            steady_ms = _latencies(server, steady_ids)
            paced_ms = _latencies(server, paced_ids)
            return {
                "mode": mode,
                "dispatch": dispatch,
                "ack_p50_ms": round((_percentile(steady_ms, 0.5) or 0) * 1000, 2),
                "ack_p99_ms": round((_percentile(steady_ms, 0.99) or 0) * 1000, 2),
                "paced_p50_ms": round((_percentile(paced_ms, 0.5) or 0) * 1000, 2),
                "paced_p99_ms": round((_percentile(paced_ms, 0.99) or 0) * 1000, 2),
                "burst": burst,
                "acks_per_s": round(burst / took),
            }
        finally:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(15)
            except subprocess.TimeoutExpired:
                child.stop()
            if mode == "celery-redis":
                import redis

                r: Any = redis.Redis.from_url(broker)
                r.delete(queue_name, f"_kombu.binding.{queue_name}")
                r.close()


def _latencies(server: Any, ids: list[str]) -> list[float]:
    """Seconds from each envelope's first delivery to its first ack, as the server saw them."""
    latencies = []
    for eid in ids:
        record = server.envelope(eid)
        latencies.append(record.acks[0].received_at - record.deliveries[0].sent_at)
    return latencies


#: The hand-off modes and how their client dispatches by default: a publish with publisher
#: confirms waits about 1 ms for RabbitMQ, so the worker threads publish in parallel there.
HANDOFF_MODES = {"inline": "inline", "celery-redis": "inline", "celery-rabbitmq": "workers"}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_out")
    sub = parser.add_subparsers(dest="command")
    rp = sub.add_parser("replica")
    for name in ("--api-url", "--redis-url", "--namespace", "--completions"):
        rp.add_argument(name, required=True)
    rp.add_argument("--connections", type=int, default=2)
    hp = sub.add_parser("handoff-client")
    for name in ("--api-url", "--mode", "--broker", "--queue"):
        hp.add_argument(name, required=True)
    hp.add_argument("--dispatch", choices=("inline", "workers"), default="inline")
    parser.add_argument("--only", choices=("replicas", "handoff"))
    parser.add_argument("--envelopes", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--steady", type=int, default=3_000)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument(
        "--modes",
        default=",".join(HANDOFF_MODES),
        help="hand-off modes, comma-separated; MODE:inline or MODE:workers sets the client's dispatch",
    )
    args = parser.parse_args(argv)
    if args.command == "replica":
        return replica_main(args)
    if args.command == "handoff-client":
        return handoff_main(args)
    results: dict[str, Any] = {}
    if args.only in (None, "replicas"):
        print(f"replicas: 3 x 2 connections, {args.envelopes} envelopes at {args.rate:g}/s ...", file=sys.stderr)
        results["replicas"] = run_replicas(args.envelopes, args.rate)
        r = results["replicas"]
        print(
            "\n| replicas | lost | completed twice | held by the killed replica | redelivered | recover "
            "| ack p50 | ack p99 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print(
            f"| 3 x 2 connections, {r['envelopes']} at {r['rate_offered']:g}/s (pushed {r['rate_pushed']}/s), "
            f"1 SIGKILL + 1 restart | {r['lost']} | {r['completed_twice']} | {r['held_by_killed_replica']} | "
            f"{r['redelivered']} | {r['recover_s']} s | {r['ack_p50_ms']} ms | {r['ack_p99_ms']} ms |"
        )
    if args.only in (None, "handoff"):
        rows = []
        for spec in args.modes.split(","):
            mode, _, dispatch = spec.partition(":")
            dispatch = dispatch or HANDOFF_MODES[mode]
            print(f"hand-off: {mode} ({dispatch} dispatch) ...", file=sys.stderr)
            rows.append(run_handoff(mode, dispatch, args.steady, args.burst))
        results["handoff"] = rows
        print(
            "\n| hand-off | dispatch | ack p50, 1,000/s in 10s | p99 | ack p50, 1,000/s paced 1 per ms | p99 "
            f"| acks/s ({args.burst} at once) |"
        )
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print(
                f"| {row['mode']} | {row['dispatch']} | {row['ack_p50_ms']} ms | {row['ack_p99_ms']} ms "
                f"| {row['paced_p50_ms']} ms | {row['paced_p99_ms']} ms | {row['acks_per_s']} |"
            )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "scale_out.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
