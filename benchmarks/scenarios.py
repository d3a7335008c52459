"""The scenarios: what the suite asks the server and client processes to do, and what it keeps.

Every scenario runs each client in a fresh client process against a fresh server (in the one
server process). Client figures come from the client process sampling itself before and after
the measured part; times come from the server's records (see
:mod:`benchmarks.server_process`).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional

from .client_process import client_main
from .control import BenchmarkError, Child
from .procinfo import delta

__all__ = [
    "FLOOR_SCENARIOS",
    "ROUND_SCENARIOS",
    "SCENARIOS",
    "Settings",
    "combine_closed_loop",
    "combine_mix",
    "run_scenario",
]

#: Scenario names, in the order they run.
SCENARIOS = (
    "closed_loop",
    "closed_loop_mix",
    "burst",
    "burst_large",
    "idle",
    "connect",
    "rotation",
    "reset",
    "silent",
)

#: The floor only does these.
FLOOR_SCENARIOS = ("closed_loop", "closed_loop_mix", "burst", "burst_large", "idle", "connect")

#: Scenarios run in rounds, interleaved across clients (see :func:`rounds`).
ROUND_SCENARIOS = ("closed_loop", "closed_loop_mix")


@dataclass(frozen=True)
class Settings:
    """Counts, durations and time bounds (seconds) of one run of the suite."""

    closed_warmup: int = 200
    closed_count: int = 2000
    closed_cap: float = 20.0
    closed_rounds: int = 2
    mix_warmup: int = 200
    mix_count: int = 3000
    mix_cap: float = 45.0
    mix_rounds: int = 3
    mix_pin: bool = True
    burst_count: int = 20_000
    burst_bound: float = 30.0
    burst_large_count: int = 1000
    burst_large_bound: float = 30.0
    idle_traffic: int = 200
    idle_seconds: float = 20.0
    idle_retire_check: float = 32.0
    connect_repeats: int = 3
    rotation_rate: float = 200.0
    rotation_before: float = 1.0
    rotation_warning_gap: float = 1.0
    rotation_close_delay: float = 0.5
    rotation_after: float = 2.0
    rotation_settle: float = 8.0
    reset_cap: float = 20.0
    silent_cap: float = 40.0
    redelivery_delay: float = 3.0

    @classmethod
    def quick(cls) -> Settings:
        """Smaller counts and shorter bounds: a smoke run of about a minute."""
        return cls(
            closed_warmup=50,
            closed_count=300,
            closed_cap=5.0,
            closed_rounds=1,
            mix_warmup=50,
            mix_count=600,
            mix_cap=15.0,
            burst_count=3000,
            burst_bound=8.0,
            burst_large_count=200,
            burst_large_bound=8.0,
            idle_traffic=50,
            idle_seconds=4.0,
            idle_retire_check=0.0,
            connect_repeats=1,
            rotation_before=0.5,
            rotation_after=1.0,
            rotation_settle=4.0,
            reset_cap=10.0,
            silent_cap=10.0,
        )

    def rounds(self, scenario: str) -> int:
        """How many interleaved rounds ``scenario`` runs per client (1 for most)."""
        return {"closed_loop": self.closed_rounds, "closed_loop_mix": self.mix_rounds}.get(scenario, 1)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for the JSON report)."""
        return asdict(self)


def _percentiles_ms(values: list[float]) -> dict[str, Optional[float]]:
    """p50/p90/p99/max/mean of ``values`` (seconds) in milliseconds; None if empty."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        """The nearest-rank ``q`` quantile, in ms."""
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000.0

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1] * 1000.0,
        "mean": statistics.fmean(ordered) * 1000.0,
    }


def _other_cores(client: dict[str, Any], server_cpu: float) -> Optional[float]:
    """CPU used by other processes during a window, in cores.

    The machine's busy time plus its stolen time (a guest's processes are charged for time
    the hypervisor gave to others, while ``/proc/stat`` counts it as stolen), minus the
    client's and the server's CPU.
    """
    busy = client.get("machine_busy")
    steal = client.get("machine_steal") or 0.0
    if busy is None or not client.get("wall"):
        return None
    used = client.get("cpu_process", client["cpu"])
    return max(0.0, float(busy) + float(steal) - float(used) - server_cpu) / float(client["wall"])


def _steal_cores(client: dict[str, Any]) -> Optional[float]:
    """CPU the hypervisor gave to other guests during a window, in cores (``/proc/stat`` steal)."""
    steal = client.get("machine_steal")
    if steal is None or not client.get("wall"):
        return None
    return float(steal) / float(client["wall"])


def _thread_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per-thread voluntary switches and CPU milliseconds between two detailed samples (non-zero only)."""
    result: dict[str, dict[str, float]] = {}
    for name, end in after.items():
        start = before.get(name, {"vcsw": 0, "cpu": 0.0})
        switches = end["vcsw"] - start["vcsw"]
        cpu_ms = (end["cpu"] - start["cpu"]) * 1000.0
        if switches or cpu_ms >= 0.01:
            result[name] = {"vcsw": switches, "cpu_ms": round(cpu_ms, 3)}
    return result


class Session:
    """A fresh server plus a fresh client process of one kind, connected (a context manager).

    Args:
        server: the server process.
        kind: the client kind (see :data:`benchmarks.client_process.KINDS`).
        settings: the run's settings.
        log_path: where the client process writes its WARNING/ERROR log lines.
        pin: run the server process on the first core and the client process on the second
            (``os.sched_setaffinity``), so that neither waits for the other's core; ignored on
            a machine with one core or without affinity.
    """

    def __init__(
        self, server: Child, kind: str, settings: Settings, log_path: Optional[Path], pin: bool = False
    ) -> None:
        self.server = server
        self.kind = kind
        self.settings = settings
        self.log_path = log_path
        self.pin = pin
        self.pinned: Optional[tuple[Any, Any]] = None  # (server cores, client cores) when pinned
        self.client: Optional[Child] = None
        self.connect_seconds: Optional[float] = None
        self.connect_returned: Optional[float] = None

    def __enter__(self) -> Session:
        """Start the server and the client (pinned if asked); wait for the client's first hello."""
        server_cores = self.server.call("pin", timeout=10.0, cpus=[0] if self.pin else None)
        api = self.server.call("start", timeout=30.0, redelivery_delay=self.settings.redelivery_delay)
        try:
            self.client = Child(client_main, f"{self.kind} client", str(self.log_path) if self.log_path else None)
            if self.pin:
                self.pinned = (server_cores, self.client.call("pin", timeout=10.0, cpus=[1]))
            started = self.client.call("start", timeout=60.0, kind=self.kind, api_url=api["api_url"])
            hello = self.server.call("wait_connection", timeout=30.0, after=0)
            if hello is None:
                raise BenchmarkError(f"{self.kind}: no connection within 15 s")
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        self.connect_seconds = hello["opened_at"] - started["t_construct"]
        self.connect_returned = started["t_connected"] - started["t_construct"]
        time.sleep(0.3)  # let the client finish handling its hello
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Kill the client process (no ``close()``: a slow client may still have a backlog), stop the server."""
        if self.client is not None:
            self.client.kill()
        self.server.call("stop", timeout=30.0)

    @property
    def proc(self) -> Child:
        """The client process."""
        assert self.client is not None
        return self.client

    def sample(self, timeout: float = 30.0, detail: str = "") -> dict[str, Any]:
        """The client process's own figures (CPU, switches, threads, RSS, listener runs; per thread with ``detail``).

        ``detail`` is ``"first"`` for a sample that opens a window, ``"last"`` for one that closes it.
        """
        result: dict[str, Any] = self.proc.call("sample", timeout=timeout, detail=detail)
        return result

    def warm(self, count: int) -> dict[str, Any]:
        """Closed-loop traffic to warm the client up (imports, lazy threads, caches)."""
        cap = max(5.0, self.settings.closed_cap / 2)
        result: dict[str, Any] = self.server.call("closed_loop", timeout=cap + 30.0, count=count, cap=cap)
        result.pop("rtts", None)
        return result


def _measured_loop(session: Session, warm: dict[str, Any], count: int, cap: float, **workload: Any) -> dict[str, Any]:
    """One measured closed loop of ``count`` envelopes (after the warm-up ``warm``), with the client's CPU around it."""
    before = session.sample()
    loop = session.server.call("closed_loop", timeout=cap + 30.0, count=count, cap=cap, **workload)
    after = session.sample()
    return {
        "rtts": loop["rtts"],
        "done": loop["done"],
        "count": count,
        "capped": loop["capped"],
        "wall": loop["wall"],
        "client": delta(before, after, exclude_caller=True),
        "server": loop["server"],
        "redeliveries": loop["redeliveries"],
        "warmup": {"done": warm["done"], "capped": warm["capped"]},
        "error": loop["error"],
    }


def _closed_loop(session: Session) -> dict[str, Any]:
    """Scenario 1, one round: push one envelope, wait for its ack, push the next.

    A round measures ``closed_count / closed_rounds`` envelopes; :func:`combine_closed_loop`
    merges the rounds (the suite runs them interleaved across clients, so a change in the
    machine's load affects every client alike).
    """
    s = session.settings
    count = max(1, s.closed_count // s.closed_rounds)
    cap = s.closed_cap / s.closed_rounds
    warm = session.warm(s.closed_warmup)
    return _measured_loop(session, warm, count, cap)


def combine_closed_loop(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge closed-loop rounds: percentiles over every round trip, CPU summed over the rounds."""
    ok = [r for r in rounds if not r.get("failed")]
    if not ok:
        return rounds[-1]
    rtts = [rtt for r in ok for rtt in r["rtts"]]
    done = sum(r["done"] for r in ok)
    client: dict[str, Any] = {}
    for key in ok[0]["client"]:
        values = [r["client"][key] for r in ok]
        client[key] = None if any(v is None for v in values) else sum(values)
    server = {key: sum(r["server"][key] for r in ok) for key in ok[0]["server"]}
    return {
        "rtt_ms": _percentiles_ms(rtts),
        "done": done,
        "count": sum(r["count"] for r in ok),
        "rounds": len(ok),
        "capped": any(r["capped"] for r in ok),
        "wall": sum(r["wall"] for r in ok),
        "cpu_per_envelope_us": client["cpu"] / done * 1e6 if done else None,
        "server_cpu_per_envelope_us": server["cpu"] / done * 1e6 if done else None,
        "client": client,
        "server": server,
        "redeliveries": sum(r["redeliveries"] for r in ok),
        "other_cpu_cores": _other_cores(client, server["cpu"]),
        "steal_cores": _steal_cores(client),
        "per_round_p50_ms": [_percentiles_ms(r["rtts"])["p50"] for r in ok],
        "connect_ms": statistics.median(r["connect_ms"] for r in ok),
        "error": next((r["error"] for r in ok if r["error"]), None),
        "failed": next((r["failed"] for r in rounds if r.get("failed")), None),
        "elapsed": sum(r.get("elapsed", 0.0) for r in rounds),
        "rtts_ms": [round(rtt * 1000.0, 4) for rtt in rtts],
    }


def _closed_loop_mix(session: Session) -> dict[str, Any]:
    """Scenario 1b, one round: the closed loop on the mixed workload, server and client pinned apart.

    60 % ``events_api`` message/app_mention, 20 % ``block_actions``, 20 % slash commands acked
    with a payload (see :data:`benchmarks.server_process.MIX`). The suite runs ``mix_rounds``
    rounds interleaved across clients; :func:`combine_mix` takes medians over the rounds.
    """
    s = session.settings
    count = max(1, s.mix_count // s.mix_rounds)
    cap = s.mix_cap / s.mix_rounds
    warm: dict[str, Any] = session.server.call("closed_loop", timeout=cap + 30.0, count=s.mix_warmup, cap=cap, mix=True)
    return {**_measured_loop(session, warm, count, cap, mix=True), "pinned": session.pinned}


def combine_mix(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge mixed closed-loop rounds: :func:`combine_closed_loop`, plus the median over rounds
    of each round's p50 (``p50_ms_median``) and CPU per envelope (``cpu_us_median``)."""
    combined = combine_closed_loop(rounds)
    ok = [r for r in rounds if not r.get("failed") and r["done"]]
    if not ok:
        return combined
    combined["per_round_cpu_us"] = [r["client"]["cpu"] / r["done"] * 1e6 for r in ok]
    combined["p50_ms_median"] = statistics.median(p for p in combined["per_round_p50_ms"] if p is not None)
    combined["cpu_us_median"] = statistics.median(combined["per_round_cpu_us"])
    combined["pinned"] = ok[0].get("pinned")
    return combined


def _burst(session: Session, large: bool = False) -> dict[str, Any]:
    """Scenario 2: ``burst_count`` envelopes pushed as fast as the socket takes them.

    ``large`` (scenario 2b): ``burst_large_count`` envelopes of 67 KB (the whole ``block_actions`` sample).
    """
    s = session.settings
    session.warm(100)
    before = session.sample()
    count, bound = (s.burst_large_count, s.burst_large_bound) if large else (s.burst_count, s.burst_bound)
    burst = session.server.call("burst", timeout=bound + 90.0, count=count, bound=bound, large=large)
    time.sleep(0.2)  # listeners record their run just after sending the ack
    after = session.sample(timeout=60.0)
    client = delta(before, after, exclude_caller=True)
    acked = burst["acked"]
    latency = burst.pop("latency")
    return {
        **burst,
        "latency_ms": {k: (v * 1000.0 if v is not None else None) for k, v in latency.items()},
        "ran_twice": after["ran_twice"],
        "listener_runs": after["runs"] - before["runs"],
        "cpu_per_envelope_us": client["cpu"] / acked * 1e6 if acked else None,
        "client": client,
        "other_cpu_cores": _other_cores(client, burst["server"]["cpu"]),
        "steal_cores": _steal_cores(client),
        "threads_after": after["threads"],
    }


def _idle(session: Session) -> dict[str, Any]:
    """Scenario 3: some traffic, then ``idle_seconds`` of nothing; then ``close()``."""
    s = session.settings
    session.warm(s.idle_traffic)
    burst = session.server.call("burst", timeout=60.0, count=s.idle_traffic, bound=15.0)
    traffic_end = time.monotonic()
    time.sleep(1.0)
    conns_before = {c["id"]: c["pings_received"] for c in session.server.call("connections")}
    server_before = session.server.call("sample")
    before = session.sample(detail="first")
    threads_before = before["threads"]
    time.sleep(s.idle_seconds)
    after = session.sample(detail="last")
    server_after = session.server.call("sample")
    per_thread = _thread_deltas(before["threads_detail"], after["threads_detail"])
    conns_after = {c["id"]: c["pings_received"] for c in session.server.call("connections")}
    pings = sum(count - conns_before.get(cid, 0) for cid, count in conns_after.items())
    client = delta(before, after, exclude_caller=True)
    threads_later = None
    if session.kind == "ours" and s.idle_retire_check:
        # Our client lets idle workers go after worker_idle_timeout (30 s); slack_sdk's pools never shrink.
        time.sleep(max(0.0, traffic_end + s.idle_retire_check - time.monotonic()))
        threads_later = session.sample()["threads"]
    closing = session.proc.call("close", timeout=60.0)
    wall = client["wall"]
    # The harness's main thread wakes once in the window (to answer the closing sample): leave it out.
    harness = per_thread.get("MainThread", {}).get("vcsw", 0)
    switches = max(0, client["vcsw"] - harness)
    return {
        "seconds": wall,
        "traffic": {"closed_loop": s.idle_traffic, "burst": s.idle_traffic, "burst_lost": burst["lost"]},
        "cpu_seconds": client["cpu"],
        "threads": after["threads"],
        "threads_at_start": threads_before,
        "threads_later": threads_later,
        "threads_later_at": s.idle_retire_check if threads_later is not None else None,
        "rss_mb": after["rss"] / 2**20 if after["rss"] else None,
        "wakeups_per_s": switches / wall,
        "vcsw": switches,
        "vcsw_harness": harness,
        "pings": pings,
        "pings_per_s": pings / wall,
        "close_ms": closing["close_seconds"] * 1000.0,
        "threads_after_close": closing["threads_after"],
        "server_cpu_seconds": server_after["cpu"] - server_before["cpu"],
        "other_cpu_cores": _other_cores(client, server_after["cpu"] - server_before["cpu"]),
        "steal_cores": _steal_cores(client),
        "by_thread": per_thread,
        "client": client,
    }


def _connect(server: Child, kind: str, settings: Settings, log_path: Optional[Path]) -> dict[str, Any]:
    """Scenario 4: constructing the client to its first hello; RSS after connecting."""
    samples: list[dict[str, Any]] = []
    for _ in range(settings.connect_repeats):
        with Session(server, kind, settings, log_path) as session:
            after = session.sample()
            samples.append(
                {
                    "to_hello_ms": (session.connect_seconds or 0.0) * 1000.0,
                    "connect_returned_ms": (session.connect_returned or 0.0) * 1000.0,
                    "rss_mb": after["rss"] / 2**20 if after["rss"] else None,
                    "threads": after["threads"],
                }
            )
    return {
        "to_hello_ms": statistics.median(s["to_hello_ms"] for s in samples),
        "connect_returned_ms": statistics.median(s["connect_returned_ms"] for s in samples),
        "rss_mb": statistics.median(s["rss_mb"] for s in samples if s["rss_mb"] is not None),
        "threads": samples[-1]["threads"],
        "samples": samples,
    }


def _rotation(session: Session) -> dict[str, Any]:
    """Scenario 5: Slack's rotation (warning, refresh_requested, close) while envelopes stream."""
    s = session.settings
    session.warm(50)
    before = session.sample()
    result: dict[str, Any] = session.server.call(
        "rotation",
        timeout=s.rotation_before + s.rotation_warning_gap + s.rotation_close_delay + s.rotation_after + 60.0,
        rate=s.rotation_rate,
        before=s.rotation_before,
        warning_gap=s.rotation_warning_gap,
        close_delay=s.rotation_close_delay,
        after=s.rotation_after,
        settle=s.rotation_settle,
    )
    time.sleep(0.2)
    after = session.sample()
    result["ran_twice"] = after["ran_twice"]
    result["client"] = delta(before, after, exclude_caller=True)
    return result


def _fault(session: Session, kind: str, cap: float) -> dict[str, Any]:
    """Scenarios 6 and 7: reset or silence the connection; time until the next hello."""
    session.warm(50)
    result: dict[str, Any] = session.server.call("fault", timeout=cap + 30.0, kind=kind, cap=cap)
    return result


def run_scenario(
    name: str, server: Child, kind: str, settings: Settings, log_path: Optional[Path] = None
) -> dict[str, Any]:
    """Run scenario ``name`` for client ``kind`` and return its figures.

    Raises:
        BenchmarkError: a process failed or timed out.
    """
    if name == "connect":
        return _connect(server, kind, settings, log_path)
    runners: dict[str, Callable[[Session], dict[str, Any]]] = {
        "closed_loop": _closed_loop,
        "closed_loop_mix": _closed_loop_mix,
        "burst": _burst,
        "burst_large": lambda session: _burst(session, large=True),
        "idle": _idle,
        "rotation": _rotation,
        "reset": lambda session: _fault(session, "reset", settings.reset_cap),
        "silent": lambda session: _fault(session, "silence", settings.silent_cap),
    }
    pin = name == "closed_loop_mix" and settings.mix_pin
    with Session(server, kind, settings, log_path, pin=pin) as session:
        result = runners[name](session)
        result["connect_ms"] = (session.connect_seconds or 0.0) * 1000.0
        return result
