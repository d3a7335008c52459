"""The soak with replicas: ``python -m benchmarks.soak --replicas 3``.

The single-client soak (:mod:`benchmarks.soak`) scaled out: ``--replicas`` client processes of
one app, each with 2 connections and ``dedupe=RedisLedger(...)``, against the local server
modelling that app (:class:`~slack_socket_mode.testing.app_model.AppModel`: each envelope, and
each redelivery 3 s later, to a random open connection; an 11th connection refused with
``too_many_websockets``). The same load (``--rate`` envelopes/s, some slow listeners) and the
same protocol faults, each inflicted on a random open connection of any replica, plus replica
faults in turn every ``replica_fault_every`` seconds:

* ``replica_kill``: SIGKILL of a random replica, and a new replica started in its place;
* ``rolling_restart``: a new replica started, then an old one closed (``close(5)``, as a
  Kubernetes pod in its grace period);
* ``redis_outage``: the replicas' redis-server (the soak's own, on a free port, no persistence)
  killed for ``--redis-outage`` seconds and started again, empty (claims and done records
  gone): the documented policy keeps dispatching with the local ledger, logs one WARNING and
  says so in ``stats()``/``health()``.

Each listener works (slow ones 1 to 4 s), then records its completion, its side effect, in a
Redis list on the shared Redis (``SLACK_SOCKET_MODE_REDIS_URL``, database 13, a key of the
run's own, deleted afterwards; not the redis-server that goes down), then acks. So a listener
completed twice is counted across processes. Two causes of a double completion are allowed and
counted apart: the replica was SIGKILLed after the effect and before the envelope was recorded
done (at most the killed replica's in-flight envelopes), and a Redis outage: one of its runs
began, between the stop and the moment every replica used the ledger again, with the local
ledger alone (the replica records whether it held a claim), or a run held a claim when Redis
went down and another began after (Redis came back empty). Any other is a bug, as is an
envelope lost (never acked, or acked and never completed).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import urlsplit

from slack_socket_mode.stats import percentile
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.app_model import AppModel

from .control import BenchmarkError, Child, serve
from .peers import RawPeer, redirecting, trickling
from .redis_server import RedisServer
from .soak import (
    _APP_TOKEN,
    _REDELIVERY_DELAY,
    Sample,
    SoakReport,
    SoakSettings,
    _ClientProcess,
    _collect,
    _Driver,
    _Load,
    _load_and_drain,
    _ms,
    _open_fds,
    _resource_lines,
    _stall_and_first_loss_lines,
)

__all__ = ["REPLICA_FAULTS", "ReplicaSoakReport", "default_effects_url", "run_replica_soak"]

#: The replica faults, in the order they come round.
REPLICA_FAULTS = ("replica_kill", "rolling_restart", "redis_outage")

_UNAVAILABLE = "shared ledger unavailable"  # the start of the client's WARNING (slack_socket_mode.shared)
_CLOSE_TIMEOUT = 5.0  # a rolling restart's close(timeout), a Kubernetes pod's grace period


def default_effects_url() -> str:
    """Where listeners record their completions: the shared Redis (``SLACK_SOCKET_MODE_REDIS_URL``), database 13."""
    url = os.environ.get("SLACK_SOCKET_MODE_REDIS_URL", "redis://127.0.0.1:6379")
    return urlsplit(url)._replace(path="/13").geturl()


# ---- the report ------------------------------------------------------------------------------


@dataclass
class KillRecord:
    """One ``replica_kill``. Times are seconds since the load started.

    Attributes:
        replica: the replica killed.
        at: when.
        in_flight: envelopes delivered to its open connections and never acked there (the bound
            on its completions twice).
        recover_s: from the kill to the first ack of the last of those envelopes (None: one is lost).
        replaced_s: from the kill until the new replica's connections were open.
        last: the in-flight envelope acked last: its deliveries and first ack, in seconds after the kill.
    """

    replica: str
    at: float
    in_flight: int = 0
    recover_s: Optional[float] = None
    replaced_s: Optional[float] = None
    last: str = ""


@dataclass
class OutageRecord:
    """One ``redis_outage``. Times are seconds since the load started.

    Attributes:
        at: when the redis-server was killed.
        down_s: how long it stayed down.
        reported: the replicas whose ``stats().shared_ledger`` said "unavailable" meanwhile.
        back_s: from the restart until every replica's ``stats().shared_ledger`` said "ok" (None: not within 20 s).
    """

    at: float
    down_s: float
    reported: list[str] = field(default_factory=list)
    back_s: Optional[float] = None


@dataclass
class ReplicaRecord:
    """One replica process, start to end.

    Attributes:
        name: ``r1``, ``r2`` … in the order they were started.
        started: seconds since the soak started (the load starts once the first replicas are connected).
        end: ``"killed"``, ``"stopped"`` (rolling restart), ``"closed"`` (at the end) or ``"died"``.
        unavailable_warnings: its log's WARNINGs that the shared ledger is unavailable.
        seen: what it reported when closed (none if killed): the single soak's figures, and its
            shared ledger's counters.
    """

    name: str
    started: float
    end: str = ""
    unavailable_warnings: int = 0
    seen: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReplicaSoakReport(SoakReport):
    """What a soak of replicas saw. ``ok``: nothing lost, and no completion twice but the allowed ones.

    ``lost``: never acked; ``not_completed``: acked, never completed (acked from a done record
    with no completion behind it). Completions twice are split into ``twice_killed`` (the replica
    was killed after the effect, before recording it done), ``twice_outage`` (during a Redis
    outage) and ``twice_unexplained`` (a bug). ``run_twice``: a listener run twice within one
    process (the local ledger's promise), from the replicas that were closed.
    """

    completions: int = 0
    not_completed: list[str] = field(default_factory=list)
    completed_twice: int = 0
    twice_killed: list[str] = field(default_factory=list)
    twice_outage: list[str] = field(default_factory=list)
    twice_unexplained: list[str] = field(default_factory=list)
    twice_details: list[str] = field(default_factory=list)  #: each completion twice, explained
    killed_in_flight: int = 0
    kills: list[KillRecord] = field(default_factory=list)
    outages: list[OutageRecord] = field(default_factory=list)
    replicas: list[ReplicaRecord] = field(default_factory=list)
    refused_connections: int = 0  #: too_many_websockets
    fast_ack_p50: Optional[float] = None  #: ack latency of the envelopes whose listener is not slow
    fast_ack_p99: Optional[float] = None

    @property
    def ok(self) -> bool:
        """Nothing lost, no completion twice but the allowed ones, nothing run twice in one process, no token logged."""
        return (
            not self.lost
            and not self.not_completed
            and not self.twice_unexplained
            and len(self.twice_killed) <= self.killed_in_flight
            and not self.run_twice
            and not self.token_in_logs
        )

    def render(self) -> str:
        """A plain-text summary."""
        s = self.settings
        rescued = sum(self.rescued.values())
        lines = [
            f"soak with replicas: {self.elapsed:.0f} s (seed {self.seed}), {s.replicas} replicas x {s.connections} "
            f"connections, shared RedisLedger; {s.rate:g} envelopes/s, {s.slow_fraction:.0%} slow listeners "
            f"({s.slow_range[0]:g}-{s.slow_range[1]:g} s), server redelivers after 3 s to a random connection",
            "faults: "
            + (", ".join(f"{name} {count}" for name, count in sorted(self.faults.items())) or "none")
            + f" (skipped {self.skipped_faults}, stalls {len(self.stalls)})",
            f"envelopes: sent {self.sent}, acked {self.acked}, lost {len(self.lost)}, acked but never completed "
            f"{len(self.not_completed)}, acked twice {self.acked_twice}; redelivered {self.redelivered}",
            f"completions: {self.completions}; completed twice {self.completed_twice}: after a SIGKILL between effect "
            f"and done {len(self.twice_killed)} (bound: {self.killed_in_flight} in flight on the killed replicas), "
            f"in a Redis outage {len(self.twice_outage)}, unexplained {len(self.twice_unexplained)}; "
            f"listeners run twice in one process {len(self.run_twice)}",
            f"acked on first delivery {self.acked_first}; rescued by a redelivery {rescued}"
            + (" (" + ", ".join(f"{why} {n}" for why, n in sorted(self.rescued.items())) + ")" if self.rescued else ""),
            f"bad frames: {self.junk_frames} sent; connections they cost: {self.junk_drops}; "
            f"connections refused (too_many_websockets): {self.refused_connections}",
            f"pushes held while no connection was live: {self.held_pushes}",
            f"ack latency (server: first delivery to first ack): p50 {_ms(self.ack_latency_p50)}, "
            f"p99 {_ms(self.ack_latency_p99)}; without the slow listeners: p50 {_ms(self.fast_ack_p50)}, "
            f"p99 {_ms(self.fast_ack_p99)}",
        ]
        for kill in self.kills:
            lines.append(
                f"SIGKILL {kill.replica} at {kill.at:.0f} s: {kill.in_flight} envelopes in flight there, all acked "
                + (f"{kill.recover_s:.1f} s after the kill" if kill.recover_s is not None else "NOT all acked")
                + (f"; its replacement connected in {kill.replaced_s:.1f} s" if kill.replaced_s is not None else "")
                + (f"\n  the last of them: {kill.last}" if kill.last else "")
            )
        for outage in self.outages:
            lines.append(
                f"Redis outage at {outage.at:.0f} s for {outage.down_s:.1f} s: stats() said unavailable on "
                f"{', '.join(outage.reported) or 'no replica'}; every replica back on the shared ledger "
                + (f"{outage.back_s:.1f} s after the restart" if outage.back_s is not None else "NOT within 20 s")
            )
        warnings = ", ".join(f"{r.name} {r.unavailable_warnings}" for r in self.replicas)
        lines.append(f"WARNINGs 'shared ledger unavailable' per replica: {warnings}")
        lines.append(f"replica log records showing the app-level token: {self.token_in_logs}")
        for replica in self.replicas:
            lines.append(_replica_line(replica))
        for detail in self.twice_details[:12]:
            lines.append(f"completed twice: {detail}")
        lines += _stall_and_first_loss_lines(self.stalls, self.lost_first)
        for name, ids in (("LOST", self.lost), ("NEVER COMPLETED", self.not_completed)):
            if ids:
                lines.append(f"{name}: {', '.join(ids[:10])}{' …' if len(ids) > 10 else ''}")
        if self.twice_unexplained:
            lines.append(f"COMPLETED TWICE, UNEXPLAINED: {', '.join(self.twice_unexplained[:10])}")
        if self.run_twice:
            lines.append(f"RUN TWICE IN ONE PROCESS: {', '.join(self.run_twice[:10])}")
        lines.append("verdict: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def _replica_line(replica: ReplicaRecord) -> str:
    seen = replica.seen
    head = f"{replica.name} (started {replica.started:.0f} s, {replica.end})"
    if not seen:
        return head
    shared = seen.get("shared", {})
    counts = ", ".join(f"{k} {v}" for k, v in shared.items())
    samples = [Sample(**sample) for sample in seen.get("samples", [])]
    resources = _resource_lines(samples)
    return (
        f"{head}: ledger {counts}; reconnects {sum(seen.get('reconnects', {}).values())}; after close(): client "
        f"threads {seen.get('client_threads_after')}, threads {seen.get('threads_after')}, fds {seen.get('fds_after')} "
        f"(before connect(): {seen.get('threads_before')}, {seen.get('fds_before')})"
        + (f"\n  {resources[0]}" if resources else "")
    )


# ---- the replica process ----------------------------------------------------------------------


class _ReplicaProcess(_ClientProcess):
    """One replica: the soak's client with 2 connections and a RedisLedger; its effect goes to a Redis list.

    Commands: those of the single soak's client, and ``status`` (``stats().shared_ledger`` and
    ``health().shared_ledger``) and ``ports`` (the local ports of its connections to the server).
    """

    def __init__(
        self,
        name: str,
        api_url: str,
        concurrency: int,
        sample_interval: float,
        connections: int,
        ledger_url: str,
        namespace: str,
        effects_url: str,
        effects_key: str,
    ) -> None:
        import redis

        from slack_socket_mode.redis import RedisLedger

        self.name = name
        self.store = RedisLedger(ledger_url, namespace=namespace)
        self.effects: Any = redis.Redis.from_url(effects_url, socket_timeout=5, socket_connect_timeout=5)
        self.effects_key = effects_key
        super().__init__(api_url, concurrency, sample_interval, connections=connections, dedupe=self.store)

    def effect(self, envelope_id: str, started: float) -> None:
        """Record the completion: ``<envelope_id> <replica> <started> <done> <claimed>``.

        Times are monotonic seconds (system-wide on Linux); ``claimed`` is ``c`` if this replica
        holds a claim on the envelope in the shared ledger (its listeners are still running, so the
        claim is not yet done), ``u`` if it runs it with the local ledger alone (Redis was down).
        """
        shared = self.client._engine.shared  # a benchmark may look inside
        assert shared is not None
        with shared._lock:
            claimed = "c" if envelope_id in shared._claims else "u"
        entry = f"{envelope_id} {self.name} {started:.4f} {time.monotonic():.4f} {claimed}"
        self.effects.rpush(self.effects_key, entry)

    def status(self) -> str:
        health = self.client.health().shared_ledger
        stats = self.client.stats().shared_ledger
        return stats if stats != "ok" else health

    def ports(self, ws_port: int) -> list[int]:
        return _local_ports(ws_port)

    def finish(self) -> dict[str, Any]:
        seen = super().finish()
        shared = self.client._engine.shared  # a benchmark may look inside
        if shared is not None:
            seen["shared"] = {
                "claimed": shared.claimed,
                "acked_done": shared.acked_done,
                "held_elsewhere": shared.held_elsewhere,
                "run_unshared": shared.run_unshared,
                "leases_lost": shared.leases_lost,
            }
        self.store.close()
        self.effects.close()
        seen["fds_after"] = _open_fds()  # the soak's own Redis pools closed too
        return seen


def _local_ports(remote_port: int) -> list[int]:
    """The local ports of this process's TCP connections to ``remote_port`` (Linux: ``/proc``)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _replica_main(conn: Connection, name: str, log: str, *args: Any) -> None:
    """A replica process's entry point (spawned); its log goes to the file ``log`` at INFO."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    logging.basicConfig(
        filename=log,
        filemode="w",
        level=logging.INFO,
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    side = _ReplicaProcess(name, *args)
    serve(
        conn,
        {
            "connect": side.connect,
            "abandon": side.abandon,
            "status": side.status,
            "ports": side.ports,
            "finish": side.finish,
        },
    )


# ---- the driver's side ------------------------------------------------------------------------


@dataclass
class _Replica:
    """A replica process as the driver sees it."""

    record: ReplicaRecord
    child: Child
    log: Path


class _Run(NamedTuple):
    """One completion: which replica, when its listener started and recorded its effect (monotonic),
    and whether the replica held a claim on it in the shared ledger (else: the local ledger alone)."""

    replica: str
    started: float
    done: float
    claimed: bool


class _ReplicaDriver(_Driver):
    """The single soak's faults over every replica's connections, and the replica faults in turn."""

    def __init__(
        self,
        server: SocketModeServer,
        load: _Load,
        report: ReplicaSoakReport,
        rng: random.Random,
        peers: dict[str, RawPeer],
        spawn: Callable[[], _Replica],
        redis: RedisServer,
        start: float,
    ) -> None:
        super().__init__(server, load, report, rng, peers, spread=True)
        self.replica_report = report
        self.spawn = spawn
        self.redis = redis
        self.start = start
        self.live: list[_Replica] = []
        self.gone: dict[int, str] = {}  # server connection id -> "replica killed" / "replica stopped"
        self.killed: dict[str, tuple[float, set[int]]] = {}  # replica -> (monotonic kill time, its connections)
        self.outage_windows: list[tuple[float, float]] = []  # monotonic (stop, every replica ok again)
        s = report.settings
        every = s.replica_fault_every
        self.every = every if every is not None else min(20.0, s.duration / 4)
        self.next_replica_fault = start + self.every
        self.turn = 0

    def add(self, replica: _Replica) -> None:
        """Start ``replica`` (connect) and wait for its connections."""
        replica.child.call("connect", timeout=60.0)
        self.live.append(replica)
        self.expected = len(self.live) * self.report.settings.connections
        self.wait_connected(30.0)

    def step(self) -> None:
        if time.monotonic() < self.next_replica_fault:
            super().step()
            return
        name = REPLICA_FAULTS[self.turn % len(REPLICA_FAULTS)]
        self.turn += 1
        {"replica_kill": self.kill, "redis_outage": self.outage, "rolling_restart": self.rolling_restart}[name]()
        self.report.faults[name] = self.report.faults.get(name, 0) + 1
        self.next_replica_fault = time.monotonic() + self.every
        if not self.wait_connected(30.0):
            self.report.stalls.append(f"{name}: the replicas did not hold {self.expected} connections within 30 s")

    def _connections_of(self, replica: _Replica) -> set[int]:
        ports = set(replica.child.call("ports", ws_port=self.server.ws_port))
        return {conn.id for conn in self.server.connections if conn.peer[1] in ports}

    def kill(self) -> None:
        """SIGKILL a random replica; start a new one in its place."""
        victim = self.rng.choice(self.live)
        conns = self._connections_of(victim)
        at = time.monotonic()
        victim.child.kill()
        victim.record.end = "killed"
        self.live.remove(victim)
        self.expected = len(self.live) * self.report.settings.connections
        self.killed[victim.record.name] = (at, conns)
        for conn_id in conns:
            self.gone[conn_id] = "replica killed"
        kill = KillRecord(victim.record.name, round(at - self.start, 2))
        self.replica_report.kills.append(kill)
        self.add(self.spawn())
        kill.replaced_s = round(time.monotonic() - at, 2)

    def outage(self) -> None:
        """Kill the replicas' redis-server for ``redis_outage`` seconds, start it again, wait until all use it."""
        down_s = self.report.settings.redis_outage
        at = time.monotonic()
        self.redis.stop()
        record = OutageRecord(round(at - self.start, 2), down_s)
        self.replica_report.outages.append(record)
        reported: set[str] = set()
        pause = threading.Event()  # never set: a pause between polls
        while time.monotonic() < at + down_s:
            for replica in self.live:
                if replica.child.call("status") != "ok":
                    reported.add(replica.record.name)
            pause.wait(0.25)
        self.redis.start()
        restarted = time.monotonic()
        record.down_s = round(restarted - at, 2)
        while time.monotonic() < restarted + 20.0:
            states = [replica.child.call("status") for replica in self.live]
            if all(state == "ok" for state in states):
                record.back_s = round(time.monotonic() - restarted, 2)
                break
            pause.wait(0.1)
        self.outage_windows.append((at, time.monotonic()))
        record.reported = sorted(reported)

    def rolling_restart(self) -> None:
        """Start a new replica, then close an old one (``close(5)``) and let its process exit."""
        old = self.rng.choice(self.live)
        self.add(self.spawn())
        conns = self._connections_of(old)
        for conn_id in conns:
            self.gone[conn_id] = "replica stopped"
        try:
            old.record.seen = old.child.call("finish", timeout=30.0)
            old.record.end = "stopped"
        except BenchmarkError as e:
            old.record.end = "died"
            self.report.stalls.append(f"rolling_restart: {old.record.name}: {e}")
        old.child.stop()
        self.live.remove(old)
        self.expected = len(self.live) * self.report.settings.connections


def run_replica_soak(
    settings: SoakSettings,
    progress: Optional[Callable[[str], None]] = None,
    *,
    effects_url: Optional[str] = None,
    log_dir: Optional[Path] = None,
) -> ReplicaSoakReport:
    """Run one soak with ``settings.replicas`` replica processes and return what it saw.

    Bounded: ``duration`` plus at most ``drain`` plus the time to start and close the replicas.
    ``effects_url``: the Redis where listeners record completions (default :func:`default_effects_url`);
    ``log_dir``: where each replica's INFO log goes (``r1.log`` …; default a temporary directory,
    removed afterwards). Needs ``redis-server`` on PATH and redis-py.

    Raises:
        ValueError: ``settings.replicas`` is below 1.
        RuntimeError: no ``redis-server``, or it did not start.
        redis.RedisError: the effects Redis cannot be reached.
    """
    import redis

    if settings.replicas < 1:
        raise ValueError("settings.replicas must be at least 1")
    seed = settings.seed if settings.seed is not None else random.SystemRandom().randrange(2**32)
    report = ReplicaSoakReport(settings=settings, seed=seed)
    say = progress or (lambda line: None)
    namespace = f"soak{uuid.uuid4().hex[:10]}"
    effects_key = f"slack_socket_mode:{namespace}:completions"
    effects_url = effects_url or default_effects_url()
    effects: Any = redis.Redis.from_url(effects_url, decode_responses=True, socket_timeout=5)
    start = time.monotonic()
    replicas: list[_Replica] = []
    with ExitStack() as stack:
        stack.callback(effects.close)
        effects.ping()
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-replicas-"))
        logs = log_dir if log_dir is not None else Path(workdir)
        logs.mkdir(parents=True, exist_ok=True)
        ledger = RedisServer(workdir)
        ledger.start()
        stack.callback(ledger.stop)
        stack.callback(_delete, effects, effects_key)
        model = AppModel(seed=seed + 2)
        server = stack.enter_context(SocketModeServer(app=model, redelivery_delay=_REDELIVERY_DELAY, max_retries=3))
        trickler = stack.enter_context(RawPeer(trickling(0.5)))
        redirector = stack.enter_context(RawPeer(redirecting(server.new_connection_url())))

        def spawn() -> _Replica:
            name = f"r{len(replicas) + 1}"
            log = logs / f"{name}.log"
            child = Child(
                _replica_main, f"soak-{name}", name, str(log), server.api_url, settings.concurrency,
                settings.sample_interval, settings.connections, ledger.url, namespace, effects_url,
                effects_key,
            )  # fmt: skip
            replica = _Replica(ReplicaRecord(name, round(time.monotonic() - start, 2)), child, log)
            replicas.append(replica)
            return replica

        def stop_all() -> None:
            for replica in replicas:
                replica.child.kill()

        stack.callback(stop_all)
        load = _Load(server, settings, random.Random(seed + 1))
        driver = _ReplicaDriver(
            server, load, report, random.Random(seed), {"trickle": trickler, "redirect": redirector}, spawn, ledger,
            start,
        )  # fmt: skip
        for _ in range(settings.replicas):
            driver.add(spawn())
        say(f"{settings.replicas} replicas connected in {time.monotonic() - start:.1f} s")
        driver.start = time.monotonic()  # the load starts: the replica faults count from here
        driver.next_replica_fault = driver.start + driver.every

        def abandon() -> None:
            for replica in driver.live:
                replica.child.call("abandon")

        sent = _load_and_drain(server, load, driver, settings, driver.start, say, abandon)
        _collect(report, server, sent, load.slow, driver.gone)
        report.held_pushes = load.held
        report.refused_connections = model.refused
        for replica in list(driver.live):
            try:
                replica.record.seen = replica.child.call("finish", timeout=60.0)
                replica.record.end = "closed"
            except BenchmarkError as e:
                replica.record.end = "died"
                report.stalls.append(f"close: {replica.record.name}: {e}")
            replica.child.stop()
        runs = _completions(effects.lrange(effects_key, 0, -1))
        _judge(report, server, sent, runs, driver, load.slow)
        for replica in replicas:
            text = replica.log.read_text(encoding="utf-8", errors="replace") if replica.log.exists() else ""
            replica.record.unavailable_warnings = text.count(_UNAVAILABLE)
            report.token_in_logs += sum(1 for line in text.splitlines() if _APP_TOKEN in line)
            report.run_twice += replica.record.seen.get("run_twice", [])
        report.replicas = [replica.record for replica in replicas]
    report.elapsed = time.monotonic() - start
    return report


def _delete(effects: Any, key: str) -> None:
    effects.delete(key)


def _completions(entries: list[str]) -> dict[str, list[_Run]]:
    """The effects list, by envelope id."""
    runs: dict[str, list[_Run]] = {}
    for entry in entries:
        envelope_id, replica, started, done, claimed = entry.split(" ")
        runs.setdefault(envelope_id, []).append(_Run(replica, float(started), float(done), claimed == "c"))
    return runs


def _judge(
    report: ReplicaSoakReport,
    server: SocketModeServer,
    sent: list[str],
    runs: dict[str, list[_Run]],
    driver: _ReplicaDriver,
    slow: set[str],
) -> None:
    """Completions, completions twice (explained), the kills' bounds and recovery, ack percentiles."""
    report.completions = sum(len(r) for r in runs.values())
    lost = set(report.lost)
    report.not_completed = [i for i in sent if i not in lost and i not in runs]
    killed_conns = {conn for _, conns in driver.killed.values() for conn in conns}
    latencies: list[float] = []
    fast: list[float] = []
    in_flight: dict[str, set[str]] = {name: set() for name in driver.killed}
    last_ack: dict[str, float] = {}
    last_id: dict[str, str] = {}
    for envelope_id in sent:
        record = server.envelope(envelope_id)
        if record.acks and record.deliveries:
            latencies.append(record.acks[0].received_at - record.deliveries[0].sent_at)
            if envelope_id not in slow:
                fast.append(latencies[-1])
        if not killed_conns.intersection(d.connection_id for d in record.deliveries):
            continue
        for name, (at, conns) in driver.killed.items():
            there = [d for d in record.deliveries if d.connection_id in conns and d.sent_at <= at]
            if there and not any(a.connection_id in conns for a in record.acks):
                in_flight[name].add(envelope_id)
                if record.acks and record.acks[0].received_at > last_ack.get(name, at):
                    last_ack[name], last_id[name] = record.acks[0].received_at, envelope_id
    for kill in report.kills:
        at, _ = driver.killed[kill.replica]
        kill.in_flight = len(in_flight[kill.replica])
        unacked = [i for i in in_flight[kill.replica] if i in lost]
        kill.recover_s = None if unacked else round(last_ack.get(kill.replica, at) - at, 2)
        if kill.replica in last_id:
            kill.last = _describe_last(server, last_id[kill.replica], at, last_id[kill.replica] in slow)
    report.killed_in_flight = sum(len(ids) for ids in in_flight.values())
    latencies.sort()
    report.ack_latency_p50 = percentile(latencies, 0.5)
    report.ack_latency_p99 = percentile(latencies, 0.99)
    fast.sort()
    report.fast_ack_p50 = percentile(fast, 0.5)
    report.fast_ack_p99 = percentile(fast, 0.99)
    for envelope_id, these in sorted(runs.items()):
        if len(these) < 2:
            continue
        report.completed_twice += 1
        why = _why_twice(envelope_id, these, in_flight, driver)
        kind = why.split(":")[0]
        {"killed": report.twice_killed, "outage": report.twice_outage}.get(kind, report.twice_unexplained).append(
            envelope_id
        )
        report.twice_details.append(_describe_twice(server, envelope_id, these, why, driver.start))


def _describe_last(server: SocketModeServer, envelope_id: str, at: float, slow: bool) -> str:
    """The deliveries and first ack of ``envelope_id``, in seconds after ``at`` (a kill)."""
    record = server.envelope(envelope_id)
    deliveries = ", ".join(f"{d.sent_at - at:+.2f}" for d in record.deliveries)
    acked = record.acks[0].received_at - at
    kind = "slow" if slow else "fast"
    return f"{envelope_id} ({kind} listener): delivered at {deliveries} s, acked at {acked:+.2f} s"


def _why_twice(envelope_id: str, runs: list[_Run], in_flight: dict[str, set[str]], driver: _ReplicaDriver) -> str:
    """Why ``envelope_id`` was completed more than once: ``"killed: …"``, ``"outage: …"`` or ``"unexplained"``."""
    for run in runs:
        kill = driver.killed.get(run.replica)
        if kill is not None and run.done <= kill[0] and envelope_id in in_flight[run.replica]:
            return f"killed: {run.replica} was killed after the effect, before recording it done"
    for begin, end in driver.outage_windows:
        if any(not run.claimed and begin <= run.started <= end for run in runs):
            return "outage: a run with the local ledger alone while Redis was down (no claim to find)"
        if any(run.claimed and run.started < begin <= run.done for run in runs) and any(
            run.started >= begin for run in runs
        ):
            return "outage: a claim held when Redis went down, gone when it came back empty"
    return "unexplained"


def _describe_twice(server: SocketModeServer, envelope_id: str, runs: list[_Run], why: str, start: float) -> str:
    """Deliveries, acks and completions of ``envelope_id`` (seconds since the soak's load started)."""
    record = server.envelope(envelope_id)
    deliveries = ", ".join(f"#{d.attempt} conn {d.connection_id} at {d.sent_at - start:.2f}" for d in record.deliveries)
    acks = ", ".join(f"conn {a.connection_id} at {a.received_at - start:.2f}" for a in record.acks)
    completions = ", ".join(f"{r.replica} {r.started - start:.2f}-{r.done - start:.2f}" for r in runs)
    return f"{envelope_id} ({why}): deliveries {deliveries}; acks {acks}; completions {completions}"
