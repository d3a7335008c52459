"""``python -m benchmarks.memory_soak``: memory over a long run, ours beside slack_sdk's clients, in one run.

Each client runs in a process of its own against a local server in a process of its own, all at
once, so that one run of ``--minutes`` covers every client under the same machine load. Each
server streams the realistic mix of :data:`benchmarks.server_process.MIX` (messages, app mentions,
``block_actions``, slash commands acked with a payload) at ``--rate`` envelopes per second on a fixed
schedule; one envelope in 500 goes to a slow listener (it works 1 s, or 4 s, past Slack's 3 s, so
that the server redelivers). (At 1 %, slack_sdk's thread clients fall behind for good: they run a
redelivered envelope again, so a 4 s listener costs them 8 s of one of their 10 workers, and at
3 slow envelopes a second the pool's unbounded queue grows without end, about 900 MiB in 2 minutes.)
Every ``--rotate-every`` seconds the server rotates the connection the way Slack does
(``disconnect`` reason ``warning``, ``refresh_requested`` a second later, and a close 10 s after
that if the client has not closed it), and every ``--reset-every`` seconds it resets it (TCP RST).
The servers use the same schedule. Each server forgets what it recorded of settled envelopes every
few seconds (:meth:`~slack_socket_mode.testing.SocketModeServer.forget`), so it does not grow either.

Every ``--interval`` seconds each client process samples itself: RSS, threads, open file
descriptors, the Python allocator's blocks (``sys.getallocatedblocks``), glibc malloc's arenas
(how many, and their RSS: :func:`malloc_arenas`), and what the client
retains: for ours, from ``stats()`` (the ledger's entries and kept ack bytes, deferred acks, the
worker queue, the reconnect causes) and the ack-latency window; for slack_sdk's, the length of its
message queue. The client processes keep nothing per envelope themselves (runs are counted).

The report: per client, envelopes acked, lost and acked twice (from the server's records), the
rotations that were make-before-break, RSS and threads and descriptors after the warm-up and at the
end, and the RSS slope after the warm-up (least squares, MiB per hour), with a plot of RSS over
time (matplotlib, the ``bench`` extra) and a Markdown table. Servers are pinned to core 0 and
clients to core 1 where the machine has two cores or more.

Usage::

    python -m benchmarks.memory_soak                     # 30 minutes: ours, builtin, aiohttp
    python -m benchmarks.memory_soak --quick             # 2 minutes, faults every 20/30 s
    python -m benchmarks.memory_soak --minutes 60 --clients ours,builtin,websocket_client,aiohttp
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Optional

from .client_process import KINDS, _ClientUnderTest
from .control import BenchmarkError, Child, serve
from .procinfo import machine_info, pin_process, sample_self
from .server_process import MIX, _template

__all__ = ["SoakSettings", "main", "malloc_arenas", "run", "slope"]

_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_CLIENTS = ("ours", "builtin", "aiohttp")
_SLOW_DELAYS = (1.0, 4.0)  # seconds a slow listener works: under and over Slack's 3 s ack deadline
_FORGET_EVERY = 5.0  # seconds between the server's forget() calls
_MIB = 1024 * 1024


@dataclass(frozen=True)
class SoakSettings:
    """What to run. Times are seconds.

    Attributes:
        duration: how long envelopes stream and faults happen.
        rate: envelopes per second, to each client.
        slow_fraction: share of envelopes whose listener is slow.
        rotate_every: seconds between rotations (``disconnect`` ``warning`` then ``refresh_requested``).
        reset_every: seconds between TCP resets.
        interval: seconds between samples.
        warmup: seconds after the start that the slope leaves out.
        drain: the longest wait, after the load stops, for the last acks.
        clients: the client kinds (see :data:`benchmarks.client_process.KINDS`).
        seed: seeds which envelopes are slow (the same for every client).
    """

    duration: float = 1800.0
    rate: float = 300.0
    slow_fraction: float = 0.002
    rotate_every: float = 60.0
    reset_every: float = 90.0
    interval: float = 5.0
    warmup: float = 300.0
    drain: float = 15.0
    clients: tuple[str, ...] = _DEFAULT_CLIENTS
    seed: int = 25


# ---- the server process ------------------------------------------------------------------------


@dataclass
class _Totals:
    """What one server saw, summed over its forget() calls."""

    pushed: int = 0
    held: int = 0  #: pushes that found no live connection and waited for one
    acks: int = 0
    duplicate_acks: int = 0
    redelivered: int = 0
    settled: int = 0
    lost: int = 0  #: unacked at the end
    rotations: int = 0
    make_before_break: int = 0
    rotation_gaps: list[float] = field(default_factory=list)  #: old close to new hello, where positive
    resets: int = 0
    fault_errors: list[str] = field(default_factory=list)


class _SoakServer:
    """The server process's side: the local server, its stream, its faults, its forget() calls."""

    def __init__(self) -> None:
        self.server: Any = None
        self.totals = _Totals()
        self._lock = threading.Lock()  # guards totals between the stream, fault and forget threads
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._mix = [_template(name) for name in MIX]
        self._slow = [_template("events_api_message", {"bench_delay": delay}) for delay in _SLOW_DELAYS]

    def start(self) -> str:
        from slack_socket_mode.testing import SocketModeServer

        self.server = SocketModeServer(redelivery_delay=3.0, max_retries=3).start()
        return str(self.server.api_url)

    def wait_connection(self, timeout: float = 30.0) -> None:
        self.server.wait_for_connections(1, timeout=timeout)

    def run(self, settings: dict[str, Any]) -> None:
        """Start the stream, the faults and the forgetting (on threads of this process); return at once."""
        s = SoakSettings(**{**settings, "clients": tuple(settings["clients"])})
        for name, target in (("stream", self._stream), ("faults", self._faults), ("forget", self._forget)):
            thread = threading.Thread(target=target, args=(s,), name=f"memory-soak-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _stream(self, s: SoakSettings) -> None:
        rng = random.Random(s.seed)
        interval, number = 1.0 / s.rate, 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            wait = next_at - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            slow = rng.random() < s.slow_fraction
            head, tail = self._slow[number % len(self._slow)] if slow else self._mix[number % len(self._mix)]
            text = head + str(uuid.uuid4()) + tail
            held = False
            while not self._stop.is_set():
                try:
                    self.server.push(text)
                    break
                except RuntimeError:  # no live connection: Slack holds the event until there is one
                    held = True
                    self._stop.wait(0.002)
            with self._lock:
                self.totals.pushed += 1
                self.totals.held += held
            number += 1
            next_at += interval

    def _faults(self, s: SoakSettings) -> None:
        start = time.monotonic()
        due = {"rotation": start + s.rotate_every, "reset": start + s.reset_every}
        while True:
            name = min(due, key=lambda k: due[k])
            if self._stop.wait(max(0.0, due[name] - time.monotonic())):
                return
            due[name] += s.rotate_every if name == "rotation" else s.reset_every
            try:
                self._rotation() if name == "rotation" else self._reset()
            except (RuntimeError, TimeoutError, IndexError) as e:  # IndexError: no open connection
                with self._lock:
                    self.totals.fault_errors.append(f"{name} at {time.monotonic() - start:.0f} s: {e}")

    def _rotation(self) -> None:
        server = self.server
        old = server.connections[-1]
        before = len(server.all_connections)
        server.disconnect("warning", connection=old)
        if not old.wait_closed(1.0):
            try:
                server.disconnect("refresh_requested", connection=old)
            except RuntimeError:
                pass  # closing meanwhile
        new = server.wait_for_new_connection(before, timeout=15.0)
        if not old.wait_closed(10.0):
            server.close_connection(old)
            old.wait_closed(5.0)
        closed = old.closed_at if old.closed_at is not None else time.monotonic()
        with self._lock:
            self.totals.rotations += 1
            if new.opened_at < closed:
                self.totals.make_before_break += 1
            else:
                self.totals.rotation_gaps.append(new.opened_at - closed)

    def _reset(self) -> None:
        server = self.server
        before = len(server.all_connections)
        server.reset(server.connections[-1])
        server.wait_for_new_connection(before, timeout=30.0)
        with self._lock:
            self.totals.resets += 1

    def _forget(self, s: SoakSettings) -> None:
        while not self._stop.wait(_FORGET_EVERY):
            self._forget_once()

    def _forget_once(self) -> None:
        forgotten = self.server.forget()
        with self._lock:
            self.totals.acks += forgotten.acks
            self.totals.duplicate_acks += forgotten.duplicate_acks
            self.totals.redelivered += forgotten.redelivered
            self.totals.settled += forgotten.envelopes

    def progress(self) -> dict[str, Any]:
        with self._lock:
            totals = asdict(self.totals)
        return {**totals, "rss": sample_self()["rss"]}

    def halt(self) -> None:
        """Stop the load, the faults and the forgetting now (every server is told before any drains)."""
        self._stop.set()

    def finish(self, drain: float) -> dict[str, Any]:
        """After :meth:`halt`: wait for the threads, then up to ``drain`` s for the last acks, and sum up."""
        for thread in self._threads:
            thread.join(30.0)
        try:
            self.server.wait_until(lambda: not self.server._book.unacked(), timeout=drain, what="the last acks")
        except TimeoutError:
            pass
        self._forget_once()
        with self._lock:
            self.totals.lost = len(self.server.unacked())
        return self.progress()

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.stop()


def _server_main(conn: Connection) -> None:
    """Entry point of a server process."""
    import logging

    logging.getLogger().addHandler(logging.NullHandler())
    soak = _SoakServer()
    try:
        serve(
            conn,
            {
                "pin": pin_process,
                "start": soak.start,
                "wait_connection": soak.wait_connection,
                "run": soak.run,
                "progress": soak.progress,
                "halt": soak.halt,
                "finish": soak.finish,
            },
        )
    finally:
        soak.stop()


# ---- the client process ------------------------------------------------------------------------


def _retained(under_test: _ClientUnderTest) -> dict[str, Any]:
    """What the client holds that could grow: ours from ``stats()``; slack_sdk's, its message queue."""
    client = under_test.client
    if hasattr(client, "stats"):
        stats = client.stats()
        return {
            "ledger_entries": stats.ledger_entries,
            "ledger_ack_bytes": stats.ledger_ack_bytes,
            "ledger_evicted": stats.ledger_evicted,
            "acks_deferred": stats.acks_deferred,
            "queue_depth": stats.queue_depth,
            "reconnect_causes": len(stats.reconnects),
            "latency_window": len(client._acks.latencies),  # a benchmark may look inside
            "connections_open": stats.connections_open,
        }
    queue = getattr(client, "message_queue", None)
    return {"queue_depth": queue.qsize() if queue is not None else None}


#: glibc's per-thread arenas are heaps of at most this size, aligned to it (HEAP_MAX_SIZE on 64 bits).
_ARENA_HEAP = 64 << 20


def malloc_arenas() -> tuple[Optional[int], Optional[int]]:
    """glibc malloc's arenas in this process and their RSS in bytes (the main one's ``[heap]`` included).

    A thread gets an arena of its own at its first ``malloc`` while fewer than ``MALLOC_ARENA_MAX``
    (by default 8 per core) exist, and each keeps the pages its peak touched: a process with many
    threads holds more freed memory than one with one. Read from ``/proc/self/smaps``: the main
    arena is ``[heap]``; every other is an anonymous read-write mapping that starts on a 64 MiB
    boundary and is at most 64 MiB long. (None, None) where there is no smaps.
    """
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
            lines = smaps.read().splitlines()
    except OSError:
        return None, None
    count = rss = 0
    arena = False
    for line in lines:
        head = line.split(maxsplit=6)
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:  # a mapping's first line
            start, end = (int(x, 16) for x in head[0].split("-"))
            name = head[5] if len(head) > 5 else ""
            anonymous_arena = not name and head[1] == "rw-p" and start % _ARENA_HEAP == 0 and end - start <= _ARENA_HEAP
            arena = name == "[heap]" or anonymous_arena
            count += arena
        elif arena and head[0] == "Rss:":
            rss += int(head[1]) * 1024
    return count, rss


def _client_sample(under_test: _ClientUnderTest) -> dict[str, Any]:
    own = sample_self()
    try:
        fds: Optional[int] = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    arenas, arena_rss = malloc_arenas()
    return {
        "rss": own["rss"],
        "threads": own["threads"],
        "fds": fds,
        "blocks": sys.getallocatedblocks(),
        "arenas": arenas,
        "arena_rss": arena_rss,
        "runs": under_test.runs_counted,
        "retained": _retained(under_test),
    }


def _client_main(conn: Connection, log_path: Optional[str] = None) -> None:
    """Entry point of a client process: like :func:`benchmarks.client_process.client_main`, sampling more."""
    import logging

    root = logging.getLogger()
    root.handlers[:] = []
    handler: logging.Handler = logging.NullHandler()
    if log_path:
        handler = logging.FileHandler(log_path, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    under_test = _ClientUnderTest()
    serve(
        conn,
        {
            "pin": pin_process,
            "start": lambda kind, api_url: under_test.start(kind, api_url, soak=True),
            "sample": lambda: _client_sample(under_test),
            "close": under_test.close,
        },
    )


# ---- the run -----------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> Optional[float]:
    """The least-squares slope of ``(x, y)`` points (None for fewer than 2 distinct x)."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def _summary(kind: str, samples: list[dict[str, Any]], server: dict[str, Any], warmup: float) -> dict[str, Any]:
    """One client's row: envelopes, rotations, resources after warm-up and at the end, the slope."""
    after = [x for x in samples if x["t"] >= warmup and x["rss"]] or samples[-1:]
    first, last = after[0], samples[-1]
    rss_slope = slope([(x["t"] / 3600.0, x["rss"] / _MIB) for x in after])
    blocks_slope = slope([(x["t"] / 3600.0, float(x["blocks"])) for x in after])
    arenas = [x for x in after if x.get("arena_rss") is not None]  # runs before the arenas were sampled have none
    arena_slope = slope([(x["t"] / 3600.0, x["arena_rss"] / _MIB) for x in arenas])
    retained_max: dict[str, Any] = {}
    for x in samples:
        for key, value in x["retained"].items():
            if isinstance(value, int):
                retained_max[key] = max(retained_max.get(key, value), value)
    return {
        "client": kind,
        "pushed": server["pushed"],
        "acked": server["pushed"] - server["lost"],
        "lost": server["lost"],
        "duplicate_acks": server["duplicate_acks"],
        "redelivered": server["redelivered"],
        "runs": last["runs"],
        "held": server["held"],
        "rotations": server["rotations"],
        "make_before_break": server["make_before_break"],
        "rotation_gap_max": max(server["rotation_gaps"], default=None),
        "resets": server["resets"],
        "fault_errors": server["fault_errors"],
        "warm_t": first["t"],
        "rss_warm": first["rss"],
        "rss_end": last["rss"],
        "rss_max": max(x["rss"] for x in samples if x["rss"]),
        "rss_slope_mib_h": rss_slope,
        "blocks_warm": first["blocks"],
        "blocks_end": last["blocks"],
        "blocks_slope_h": blocks_slope,
        "arenas_max": max((x["arenas"] for x in arenas), default=None),
        "arena_rss_warm": arenas[0]["arena_rss"] if arenas else None,
        "arena_rss_end": arenas[-1]["arena_rss"] if arenas else None,
        "arena_rss_slope_mib_h": arena_slope,
        "threads": [min(x["threads"] for x in after), max(x["threads"] for x in after)],
        "fds": [min(x["fds"] for x in after), max(x["fds"] for x in after)],
        "retained_max": retained_max,
        "retained_end": last["retained"],
        "server_rss_end": server["rss"],
    }


def run(settings: SoakSettings, say: Any = None, log_dir: Optional[Path] = None) -> dict[str, Any]:
    """Run every client at once, each against its own server process; return the samples and summaries."""
    say = say or (lambda line: None)
    pin = (os.cpu_count() or 1) >= 2
    pairs: dict[str, tuple[Child, Child]] = {}
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in settings.clients}
    results: dict[str, Any] = {
        "settings": asdict(settings),
        "machine": machine_info(),
        "pinned": pin,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),  # the environment the processes inherit
    }
    try:
        for kind in settings.clients:
            server = Child(_server_main, f"{kind} server")
            log = str(log_dir / f"memory-soak-{kind}.log") if log_dir is not None else None
            client = Child(_client_main, f"{kind} client", log)
            pairs[kind] = (server, client)
            if pin:
                server.call("pin", cpus=[0])
                client.call("pin", cpus=[1])
            api_url = server.call("start")
            client.call("start", timeout=60.0, kind=kind, api_url=api_url)
            server.call("wait_connection", timeout=40.0)
            say(f"{kind}: connected (server pid {server.pid}, client pid {client.pid})")
        for server, _ in pairs.values():
            server.call("run", settings={**asdict(settings), "clients": list(settings.clients)})
        start = time.monotonic()
        end = start + settings.duration
        next_sample, next_note = start, start + 60.0
        tick = threading.Event()  # never set: waits that end early at the deadline
        while True:
            now = time.monotonic()
            for kind, (_, client) in pairs.items():
                sample = client.call("sample", timeout=30.0)
                sample["t"] = round(time.monotonic() - start, 2)
                samples[kind].append(sample)
            if now >= next_note:
                next_note += 60.0
                say(
                    f"t={now - start:5.0f}s "
                    + "; ".join(
                        f"{kind} RSS {samples[kind][-1]['rss'] / _MIB:.1f} MiB runs {samples[kind][-1]['runs']}"
                        for kind in pairs
                    )
                )
            if now >= end:
                break
            next_sample += settings.interval
            tick.wait(max(0.0, min(next_sample, end) - time.monotonic()))
        for server, _ in pairs.values():
            server.call("halt", timeout=60.0)
        servers = {
            kind: server.call("finish", timeout=settings.drain + 60.0, drain=settings.drain)
            for kind, (server, _) in pairs.items()
        }
        for kind, (_, client) in pairs.items():
            final = client.call("sample", timeout=30.0)
            final["t"] = round(time.monotonic() - start, 2)
            samples[kind].append(final)
            try:
                client.call("close", timeout=40.0)
            except BenchmarkError as e:
                say(f"{kind}: close failed: {e}")
    finally:
        for server, client in pairs.values():
            client.stop()
            server.stop()
    results["samples"] = samples
    results["summaries"] = [_summary(kind, samples[kind], servers[kind], settings.warmup) for kind in settings.clients]
    return results


# ---- the report --------------------------------------------------------------------------------


def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / _MIB:.1f}"


def _signed(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def render_table(results: dict[str, Any]) -> str:
    """The Markdown table of a run (one row per client)."""
    s = results["settings"]
    lines = [
        f"{s['duration'] / 60:g} minutes at {s['rate']:g} envelopes/s to each client at once, "
        f"a rotation every {s['rotate_every']:g} s, a reset every {s['reset_every']:g} s, "
        f"{s['slow_fraction']:.1%} slow listeners; slope after {s['warmup'] / 60:g} min of warm-up"
        + (f"; MALLOC_ARENA_MAX={results['malloc_arena_max']}" if results.get("malloc_arena_max") else ""),
        "",
        "| Client | Envelopes acked (lost) | Acked twice | Rotations make-before-break | "
        "RSS after warm-up → end (max), MiB | RSS slope, MiB/h | Python blocks slope, /h | Threads | FDs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["summaries"]:
        lines.append(
            f"| {row['client']} | {row['acked']:,} ({row['lost']}) | {row['duplicate_acks']:,} | "
            f"{row['make_before_break']}/{row['rotations']} | "
            f"{_mib(row['rss_warm'])} → {_mib(row['rss_end'])} ({_mib(row['rss_max'])}) | "
            f"{_signed(row['rss_slope_mib_h'])} | {_signed(row['blocks_slope_h'], 0)} | "
            f"{row['threads'][0]}-{row['threads'][1]} | {row['fds'][0]}-{row['fds'][1]} |"
        )
    for row in results["summaries"]:
        held = row["retained_max"]
        if "ledger_entries" in held:
            lines += [
                "",
                f"{row['client']} retained at most: ledger {held['ledger_entries']:,} entries "
                f"({held['ledger_evicted']:,} evicted by the end), kept ack texts "
                f"{held['ledger_ack_bytes'] / 1024:.0f} KiB, deferred acks {held['acks_deferred']}, "
                f"worker queue {held['queue_depth']}, reconnect causes {held['reconnect_causes']}, "
                f"latency window {held['latency_window']}",
            ]
        if row.get("arenas_max") is not None:
            lines.append(
                f"{row['client']} malloc arenas: {row['arenas_max']} at most, their RSS "
                f"{_mib(row['arena_rss_warm'])} → {_mib(row['arena_rss_end'])} MiB after warm-up "
                f"({_signed(row['arena_rss_slope_mib_h'])} MiB/h)"
            )
        if row["fault_errors"]:
            lines.append(f"{row['client']} faults not carried out: {'; '.join(row['fault_errors'][:5])}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """RSS over time per client, and the Python allocator's blocks, with the warm-up marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["settings"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=(3, 2))
    for kind, samples in results["samples"].items():
        minutes = [x["t"] / 60.0 for x in samples]
        top.plot(minutes, [(x["rss"] or 0) / _MIB for x in samples], label=kind, linewidth=1.4)
        bottom.plot(minutes, [x["blocks"] / 1000.0 for x in samples], label=kind, linewidth=1.2)
    for axis in (top, bottom):
        axis.axvline(s["warmup"] / 60.0, color="grey", linestyle="--", linewidth=0.8)
        axis.grid(True, alpha=0.3)
    top.set_ylabel("RSS (MiB)")
    top.set_title(
        f"Memory soak: {s['rate']:g} envelopes/s each, rotation every {s['rotate_every']:g} s, "
        f"reset every {s['reset_every']:g} s",
        fontsize=10,
    )
    top.legend(loc="lower right")
    bottom.set_ylabel("Python blocks (thousands)")
    bottom.set_xlabel("minutes (dashed: end of warm-up)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    """Run, print the table, write the JSON, the table and the plot. Exit 1 if an envelope was lost."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="minutes of load and faults (default 30)")
    parser.add_argument("--quick", action="store_true", help="2 minutes, a rotation every 20 s, a reset every 30 s")
    parser.add_argument("--rate", type=float, default=300.0, help="envelopes per second to each client (default 300)")
    parser.add_argument("--clients", default=",".join(_DEFAULT_CLIENTS), help="client kinds, comma-separated")
    parser.add_argument("--interval", type=float, default=None, help="seconds between samples (default 5; quick 2)")
    parser.add_argument("--warmup", type=float, default=None, help="minutes left out of the slope (default 5)")
    results_dir = _ROOT / "benchmarks" / "results"
    parser.add_argument("--json", type=Path, default=results_dir / "memory_soak.json")
    parser.add_argument("--table", type=Path, default=results_dir / "memory_soak.md")
    parser.add_argument("--plot", type=Path, default=results_dir / "memory_soak.png", help="PNG or SVG")
    args = parser.parse_args(argv)
    clients = tuple(c.strip() for c in args.clients.split(",") if c.strip())
    unknown = [c for c in clients if c not in KINDS or c == "floor"]
    if unknown or not clients:
        parser.error(f"unknown clients {unknown}; choose from {', '.join(k for k in KINDS if k != 'floor')}")
    quick = SoakSettings(duration=120.0, rotate_every=20.0, reset_every=30.0, interval=2.0, warmup=30.0)
    base = quick if args.quick else SoakSettings()
    settings = SoakSettings(
        duration=args.minutes * 60.0 if args.minutes is not None else base.duration,
        rate=args.rate,
        rotate_every=base.rotate_every,
        reset_every=base.reset_every,
        interval=args.interval if args.interval is not None else base.interval,
        warmup=args.warmup * 60.0 if args.warmup is not None else base.warmup,
        clients=clients,
    )
    if settings.duration <= settings.warmup:
        parser.error("the run must be longer than the warm-up")
    results_dir.mkdir(parents=True, exist_ok=True)
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = run(settings, say, log_dir=results_dir)
    results["command"] = "python -m benchmarks.memory_soak " + " ".join(argv if argv is not None else sys.argv[1:])
    table = render_table(results)
    print(table)
    for path in (args.json, args.table, args.plot):
        path.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    args.table.write_text(table + "\n", encoding="utf-8")
    try:
        plot(results, args.plot)
    except ImportError:
        say("matplotlib is not installed (the bench extra): no plot")
    say(f"results: {args.json}, {args.table}, {args.plot}")
    return 1 if any(row["lost"] for row in results["summaries"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
