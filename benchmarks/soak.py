"""A soak test: our client under load and random faults against the local Socket Mode server.

Run it from the project root (with the package installed, or ``PYTHONPATH=src``)::

    python -m benchmarks.soak                 # about 2 minutes
    python -m benchmarks.soak --minutes 30    # longer; --seed N repeats a run's choices
    python -m benchmarks.soak --replicas 3    # 3 replica processes sharing a RedisLedger, replica faults too
                                              # (see benchmarks/soak_replicas.py)
    python -m benchmarks.soak --trace         # the client's log at DEBUG: its pings, pongs, reader take-overs

For the whole run, envelopes stream in at ``--rate`` per second while a fault happens every
few seconds, chosen at random: a rotation (``disconnect`` reason ``warning``), a TCP reset,
a silent peer (the client pings every 0.5 s, so it notices within about a second), a burst
of bad frames (non-JSON, binary, invalid UTF-8, envelopes without an id), HTTP 429 from
``apps.connections.open`` with ``Retry-After``, a server close frame, and hostile peers
(:mod:`benchmarks.peers`): the next open attempt meets a handshake that trickles a byte every
0.5 s (cut off at the client's ``connect_timeout``, 2 s here), a handshake answered with a
redirect (refused), or a Web API error that echoes the request's ``Authorization`` header
(redacted; the client's log is checked for the token at the end). A few listeners are
slow (1 to 4 s) and the server redelivers unacked envelopes after 3 s, as Slack does.

The client runs in a process of its own (``spawn``, driven through :mod:`benchmarks.control`),
so the threads, open file descriptors and RSS it samples every second are the client's alone,
not the server's (which keeps a record of every envelope). They should stay flat; the RSS
rises while the envelope ledger fills up to its bound (settled ids are kept 900 s, at most
50,000), then levels off.

At the end every envelope sent must be acked (Slack's retries included) and no listener may
have run twice for one envelope. Acked is not the whole story: the report counts the envelopes
acked on their first delivery apart from those rescued by a redelivery (first acked only after
the server sent it again), and sorts the rescued by why: a slow listener (it may run past 3 s),
a fault that took the connection of the first delivery (a reset, a silent peer, a server close,
a connection the client gave up on), or nothing, which is a first delivery the client lost. The
exit status is 1 if an envelope was lost or a listener ran twice, else 0. The run is bounded:
``--minutes`` of load and faults, then at most ``--drain`` seconds for the last acks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Optional

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from slack_socket_mode import Backoff, SocketModeClient
from slack_socket_mode.testing import ServerConnection, SocketModeServer

from .control import Child, serve
from .peers import RawPeer, redirecting, trickling
from .procinfo import sample_self

__all__ = ["FAULTS", "Sample", "SoakReport", "SoakSettings", "main", "run_soak"]

#: The faults and their relative weights.
FAULTS: dict[str, int] = {
    "rotation": 3,
    "reset": 3,
    "silence": 2,
    "bad_frames": 3,
    "rate_limited": 1,
    "server_close": 1,
    "trickle": 1,
    "redirect": 1,
    "echo": 1,
}

_APP_TOKEN = "xapp-1-A111-soak-5eed5eed5eed"
_CLIENT_PREFIX = "slack_socket_mode-"  # the client's threads
_RECOVERY = 15.0  # seconds a fault may take to heal before it counts as a stall
_REDELIVERY_DELAY = 3.0  # the server's, like Slack's ack deadline
_GIVEN_UP = "connection given up by the client"


@dataclass(frozen=True)
class SoakSettings:
    """What to run. Times are seconds.

    Attributes:
        duration: how long envelopes stream and faults happen.
        rate: envelopes pushed per second.
        slow_fraction: share of envelopes whose listener is slow.
        slow_range: how long a slow listener works before acking (Slack redelivers after 3 s).
        fault_gap: the pause between one fault healing and the next one, drawn uniformly.
        drain: the longest wait, after the load stops, for every envelope's ack.
        sample_interval: how often threads, descriptors and RSS are sampled.
        concurrency: the client's worker threads.
        seed: seeds the choice of faults, junk and slow listeners (None: a random seed).
        replicas: 0 for one client process; N for N replica processes of one app sharing a
            RedisLedger, with replica faults too (see :mod:`benchmarks.soak_replicas`).
        connections: each replica's connections (replicas only).
        redis_outage: seconds the replicas' redis-server stays down in a Redis outage (replicas only).
        replica_fault_every: seconds between replica faults (a SIGKILL and restart, a rolling
            restart, a Redis outage, in turn); None: a quarter of ``duration``, at most 20 s (replicas only).
    """

    duration: float = 120.0
    rate: float = 100.0
    slow_fraction: float = 0.02
    slow_range: tuple[float, float] = (1.0, 4.0)
    fault_gap: tuple[float, float] = (1.0, 4.0)
    drain: float = 30.0
    sample_interval: float = 1.0
    concurrency: int = 16
    seed: Optional[int] = None
    replicas: int = 0
    connections: int = 2
    redis_outage: float = 4.0
    replica_fault_every: Optional[float] = None


@dataclass(frozen=True)
class Sample:
    """The client's process at one moment.

    Attributes:
        t: seconds since the client connected.
        threads: the process's threads.
        client_threads: threads named ``slack_socket_mode-…``.
        fds: open file descriptors (None where there is no ``/proc``).
        rss: resident set size in bytes (None if unknown).
        ledger: envelope ids the client's ledger holds (bounded: 50,000, 900 s).
    """

    t: float
    threads: int
    client_threads: int
    fds: Optional[int]
    rss: Optional[int]
    ledger: int


@dataclass(frozen=True)
class Rotation:
    """One rotation fault, by the server's clock: ``disconnect`` (reason ``warning``) sent at ``t``.

    Attributes:
        t: seconds since the run started.
        hello_after: seconds from the ``disconnect`` to the replacement's ``hello``.
        closed_after: seconds from the ``disconnect`` to the old connection's close (the client drains it).
    """

    t: float
    hello_after: float
    closed_after: float

    @property
    def make_before_break(self) -> bool:
        """The replacement said ``hello`` before the old connection closed: no moment without a connection."""
        return self.hello_after < self.closed_after


@dataclass
class SoakReport:
    """What a soak run saw. ``ok`` is False if an envelope was lost or a listener ran twice."""

    settings: SoakSettings
    seed: int
    elapsed: float = 0.0
    sent: int = 0
    acked: int = 0
    lost: list[str] = field(default_factory=list)
    acked_twice: int = 0
    duplicates: list[str] = field(default_factory=list)  #: what happened to each envelope acked twice
    run_twice: list[str] = field(default_factory=list)
    redelivered: int = 0
    acked_first: int = 0  #: acked before any redelivery was sent
    rescued: dict[str, int] = field(default_factory=dict)  #: first acked after a redelivery, by why
    lost_first: list[str] = field(default_factory=list)  #: rescued with no fault or slow listener to explain it
    given_up: list[str] = field(default_factory=list)  #: each connection given up by the client, and what it cost
    deduplicated: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    rotations: list[Rotation] = field(default_factory=list)
    skipped_faults: int = 0
    stalls: list[str] = field(default_factory=list)
    junk_frames: int = 0
    junk_drops: int = 0
    held_pushes: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)
    ack_latency_p50: Optional[float] = None
    ack_latency_p99: Optional[float] = None
    samples: list[Sample] = field(default_factory=list)
    threads_before: int = 0  #: the client process's threads before connect()
    threads_after: int = 0  #: and after close()
    client_threads_after: int = 0
    token_in_logs: int = 0  #: the client process's log records that show the app-level token

    @property
    def ok(self) -> bool:
        """No envelope lost, no listener run twice, and no token in the client's log."""
        return not self.lost and not self.run_twice and not self.token_in_logs

    def to_json(self) -> dict[str, Any]:
        """Everything, as JSON-ready values."""
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def render(self) -> str:
        """A plain-text summary."""
        s = self.settings
        lines = [
            f"soak: {self.elapsed:.0f} s (seed {self.seed}), {s.rate:g} envelopes/s, "
            f"{s.slow_fraction:.0%} slow listeners ({s.slow_range[0]:g}-{s.slow_range[1]:g} s), "
            "server redelivers after 3 s",
            "faults: "
            + (", ".join(f"{name} {count}" for name, count in sorted(self.faults.items())) or "none")
            + f" (skipped {self.skipped_faults}, stalls {len(self.stalls)})",
            f"envelopes: sent {self.sent}, acked {self.acked}, lost {len(self.lost)}, acked twice {self.acked_twice}, "
            f"listeners run twice {len(self.run_twice)}; redelivered {self.redelivered}, "
            f"redeliveries not dispatched {self.deduplicated}",
            f"acked on first delivery {self.acked_first}; rescued by a redelivery {sum(self.rescued.values())}"
            + (" (" + ", ".join(f"{why} {n}" for why, n in sorted(self.rescued.items())) + ")" if self.rescued else ""),
            f"bad frames: {self.junk_frames} sent; connections they cost: {self.junk_drops}",
            _rotation_line(self.rotations),
            f"pushes held while no connection was live: {self.held_pushes}",
            f"ack latency: p50 {_ms(self.ack_latency_p50)}, p99 {_ms(self.ack_latency_p99)}",
            "client reconnects: " + (", ".join(f"{k} {v}" for k, v in sorted(self.reconnects.items())) or "none"),
            f"client log records showing the app-level token: {self.token_in_logs}",
        ]
        lines += _resource_lines(self.samples)
        lines.append(
            f"after close(): client threads {self.client_threads_after}, "
            f"threads of the client's process {self.threads_after} (before connect(): {self.threads_before})"
        )
        for given_up in self.given_up[:10]:
            lines.append(f"given up by the client: {given_up}")
        for duplicate in self.duplicates[:5]:
            lines.append(f"acked twice: {duplicate}")
        lines += _stall_and_first_loss_lines(self.stalls, self.lost_first)
        if self.lost:
            lines.append(f"LOST: {', '.join(self.lost[:10])}{' …' if len(self.lost) > 10 else ''}")
        if self.run_twice:
            lines.append(f"RUN TWICE: {', '.join(self.run_twice[:10])}{' …' if len(self.run_twice) > 10 else ''}")
        lines.append("verdict: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def _stall_and_first_loss_lines(stalls: list[str], lost_first: list[str]) -> list[str]:
    """The report lines for stalls and first deliveries lost (both soaks)."""
    lines = [f"stall: {stall}" for stall in stalls[:10]]
    if lost_first:
        shown = ", ".join(lost_first[:10]) + (" …" if len(lost_first) > 10 else "")
        lines.append(f"FIRST DELIVERY LOST (rescued by a redelivery, no fault to explain it): {shown}")
    return lines


def _rotation_line(rotations: list[Rotation]) -> str:
    """The report line for the rotations: make-before-break or not, and how soon the replacement said hello."""
    if not rotations:
        return "rotations: none"
    hellos = sorted(r.hello_after for r in rotations)
    return (
        f"rotations: {len(rotations)}, make-before-break {sum(r.make_before_break for r in rotations)}; "
        f"disconnect to the replacement's hello: p50 {_ms(hellos[len(hellos) // 2])}, max {_ms(hellos[-1])}"
    )


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _resource_lines(samples: list[Sample]) -> list[str]:
    """Threads, descriptors and RSS: after a warm-up (a quarter of the run), at the end, and the maximum."""
    if not samples:
        return []
    warm_index = min(len(samples) - 1, len(samples) // 4)
    warm, last = samples[warm_index], samples[-1]

    def span(name: str, values: list[Optional[int]], scale: int = 1, unit: str = "") -> str:
        known = [v for v in values if v is not None]
        first, end = values[warm_index], values[-1]
        if first is None or end is None or not known:
            return f"{name} -"
        digits = 1 if scale > 1 else 0
        return (
            f"{name} {first / scale:.{digits}f} -> {end / scale:.{digits}f}{unit} (max {max(known) / scale:.{digits}f})"
        )

    return [
        f"client process, at {warm.t:.0f} s -> {last.t:.0f} s: "
        + "; ".join(
            [
                span("threads", [x.threads for x in samples]),
                span("client threads", [x.client_threads for x in samples]),
                span("fds", [x.fds for x in samples]),
                span("RSS", [x.rss for x in samples], 1024 * 1024, " MiB"),
                span("ledger entries", [x.ledger for x in samples]),
            ]
        )
    ]


def _client_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(_CLIENT_PREFIX))


def _open_fds() -> Optional[int]:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


class _Sampler:
    """Samples this process (the client's) every ``interval`` seconds on its own thread."""

    def __init__(self, client: SocketModeClient, interval: float) -> None:
        self.samples: list[Sample] = []
        self._client = client
        self._interval = interval
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def sample(self) -> Sample:
        return Sample(
            t=round(time.monotonic() - self._start, 2),
            threads=threading.active_count(),
            client_threads=_client_threads(),
            fds=_open_fds(),
            rss=sample_self().get("rss"),
            ledger=len(self._client._ledger),  # a benchmark may look inside
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.samples.append(self.sample())

    def start(self) -> None:
        self.samples.append(self.sample())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _ClientProcess:
    """The client side, in its own process: connects, runs the listeners, samples itself.

    Commands (see :func:`benchmarks.control.serve`): ``connect``, ``abandon`` (slow listeners
    stop working at once) and ``finish`` (close the client; return what it saw).
    """

    def __init__(
        self,
        api_url: str,
        concurrency: int,
        sample_interval: float,
        *,
        connections: int = 1,
        dedupe: Any = True,
        trace: bool = False,
    ) -> None:
        self.fds_before = _open_fds()
        self.runs: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.abandoned = threading.Event()
        self.threads_before = threading.active_count()
        self.client = SocketModeClient(
            app_token=_APP_TOKEN,
            web_client=WebClient(base_url=api_url),
            ping_interval=0.5,
            ping_timeout=0.5,
            receive_timeout=3.0,
            connect_timeout=2.0,
            reconnect_policy=Backoff(base=0.05, cap=0.5, healthy_after=5.0),
            concurrency=concurrency,
            connections=connections,
            dedupe=dedupe,
            ping_pong_trace_enabled=trace,
        )
        self.client.socket_mode_request_listeners.append(self.listener)
        self.sampler = _Sampler(self.client, sample_interval)
        self.leaks = _TokenLeaks(_APP_TOKEN)
        logging.getLogger().addHandler(self.leaks)

    def listener(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        """Count the run; work as long as the payload says (Slack redelivers meanwhile); its effect; ack."""
        started = time.monotonic()
        with self.lock:
            self.runs[request.envelope_id] += 1
        work = request.payload.get("work") if isinstance(request.payload, dict) else 0
        if work:
            self.abandoned.wait(float(work))
        self.effect(request.envelope_id, started)
        client.send_socket_mode_response({"envelope_id": request.envelope_id})

    def effect(self, envelope_id: str, started: float) -> None:
        """The listener's side effect, after its work and before its ack (none here; replicas record it)."""

    def connect(self) -> None:
        self.client.connect()
        self.sampler.start()

    def abandon(self) -> None:
        self.abandoned.set()

    def finish(self) -> dict[str, Any]:
        stats = self.client.stats()
        self.client.close()
        self.sampler.stop()
        with self.lock:
            twice = sorted(i for i, n in self.runs.items() if n > 1)
        return {
            "run_twice": twice,
            "deduplicated": stats.envelopes_deduplicated,
            "reconnects": dict(stats.reconnects),
            "ack_latency_p50": stats.ack_latency_p50,
            "ack_latency_p99": stats.ack_latency_p99,
            "samples": [asdict(sample) for sample in self.sampler.samples],
            "threads_before": self.threads_before,
            "threads_after": threading.active_count(),
            "client_threads_after": _client_threads(),
            "fds_before": self.fds_before,
            "fds_after": _open_fds(),
            "token_in_logs": self.leaks.count,
        }


class _TokenLeaks(logging.Handler):
    """Counts log records (message and traceback, as emitted) that contain ``token``."""

    def __init__(self, token: str) -> None:
        super().__init__(logging.DEBUG)
        self.token = token
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        if self.token in text:
            self.count += 1


def _client_main(
    conn: Connection, api_url: str, concurrency: int, sample_interval: float, log: Optional[str], trace: bool = False
) -> None:
    """The client process's entry point (spawned); its log goes to the file ``log`` at INFO, if given.

    With ``trace`` the log is at DEBUG and the client logs each ping and pong it sends and
    receives, and each reader take-over (``ping_pong_trace_enabled``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    if log is not None:
        logging.basicConfig(
            filename=log,
            filemode="w",
            level=logging.DEBUG if trace else logging.INFO,
            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
        )
    side = _ClientProcess(api_url, concurrency, sample_interval, trace=trace)
    serve(conn, {"connect": side.connect, "abandon": side.abandon, "finish": side.finish})


class _Load:
    """Pushes envelopes at ``rate`` per second; holds one while no connection is live, like Slack."""

    def __init__(self, server: SocketModeServer, settings: SoakSettings, rng: random.Random) -> None:
        self.server = server
        self.settings = settings
        self.rng = rng
        self.sent: list[str] = []
        self.slow: set[str] = set()  # ids whose listener is slow (it may run past the redelivery delay)
        self.held = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-load", daemon=True)

    def envelope(self) -> dict[str, Any]:
        """An events_api envelope; its payload says how long its listener works (0: fast)."""
        s = self.settings
        work = round(self.rng.uniform(*s.slow_range), 2) if self.rng.random() < s.slow_fraction else 0
        payload: dict[str, Any] = {"event": {"type": "message", "text": "soak"}, "work": work}
        if s.replicas:  # as Slack's: the shared ledger keys an events_api envelope on its event_id too
            payload["event_id"] = f"Ev{self.rng.getrandbits(64):016X}"
        return self.server.make_envelope("events_api", payload)

    def record(self, envelope_id: str) -> None:
        with self.lock:
            self.sent.append(envelope_id)

    def _run(self) -> None:
        interval = 1.0 / self.settings.rate
        next_at = time.monotonic()
        pending: Optional[dict[str, Any]] = None
        while not self._stop.is_set():
            if pending is None:
                pending = self.envelope()
            try:
                envelope_id = self.server.push(pending)
                self.record(envelope_id)
                if pending["payload"]["work"]:
                    self.slow.add(envelope_id)  # read by _collect once this thread is joined
                pending = None
            except RuntimeError:  # no live connection this instant (a fault): try again shortly
                self.held += 1
                self._stop.wait(0.02)
                continue
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind schedule: carry on at the rate, no burst

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _junk(rng: random.Random) -> tuple[str, Any]:
    """One bad frame: ``("text", str)``, ``("binary", bytes)`` or ``("raw", bytes)`` (a text frame, maybe not UTF-8)."""
    choice = rng.randrange(13)
    if choice == 0:
        return "text", "not json at all " + "xoxb-" + "7" * rng.randint(0, 40)
    if choice == 1:
        return "text", json.dumps([1, 2, {"envelope_id": "inside-an-array"}])
    if choice == 2:
        return "text", '{"type":"events_api","payload":{"event":{}}}'  # no envelope_id
    if choice == 3:
        return "text", '{"envelope_id":5,"type":"events_api"}'
    if choice == 4:
        return "text", '{"envelope_id":"","type":"slash_commands"}'
    if choice == 5:
        return "text", '{"type":"some_future_message","x":' + "[" * 50 + "]" * 50 + "}"
    if choice == 6:
        return "binary", rng.randbytes(rng.randint(0, 4096))
    if choice == 7:
        return "raw", b'{"envelope_id":"\xff\xfe","type":"events_api"}'
    if choice == 8:
        return "text", "x" * rng.randint(10_000, 300_000)
    if choice == 9:
        return "text", "[" * 100_000  # deeper than the parser's recursion limit
    if choice == 10:
        return "text", '{"type":[]}'  # found by tests/test_fuzz.py: an unhashable type
    if choice == 11:  # found by tests/test_fuzz.py: an integer too large for a float
        return "text", '{"type":"hello","debug_info":{"approximate_connection_time":1' + "0" * 400 + "}}"
    return "text", '{"type":"hello","num_connections":"many","debug_info":[]}'


def send_junk(server: SocketModeServer, conn: ServerConnection, junk: tuple[str, Any]) -> None:
    """Send one bad frame: ``("text", str)``, ``("binary", bytes)`` or ``("raw", bytes)`` (a text frame
    whose bytes may not be UTF-8). Also used by tests/test_fuzz.py."""
    kind, data = junk
    if kind == "text":
        server.send_text(data, connection=conn)
    elif kind == "binary":
        server.send_binary(data, connection=conn)
    else:
        server.send_raw_text_bytes(data, connection=conn)


class _Driver:
    """Runs the faults, one at a time, each until the client has recovered."""

    def __init__(
        self,
        server: SocketModeServer,
        load: _Load,
        report: SoakReport,
        rng: random.Random,
        peers: dict[str, RawPeer],
        *,
        spread: bool = False,
        start: Optional[float] = None,
    ) -> None:
        self.server = server
        self.load = load
        self.report = report
        self.rng = rng
        self.peers = peers  # "trickle", "redirect": hostile WebSocket peers the next open may be sent to
        self.spread = spread  # inflict a fault on a random open connection (replicas), not the newest
        self.expected = 1  # open connections the clients hold when they have recovered
        self.start = time.monotonic() if start is None else start  # the run's (monotonic seconds)

    def wait_connected(self, seconds: float) -> bool:
        """Wait until the server holds ``expected`` open connections (it sends ``hello`` as one opens)."""
        try:
            self.server.wait_for_connections(self.expected, seconds)
        except TimeoutError:
            return False
        return True

    def step(self) -> None:
        """The next fault: one of :data:`FAULTS`, at random by weight."""
        self.run(self.rng.choices(list(FAULTS), list(FAULTS.values()))[0])

    def run(self, name: str) -> None:
        """Inflict fault ``name`` on the newest connection and wait for the client to recover."""
        server = self.server
        conns = server.connections
        if not conns:
            self.report.skipped_faults += 1
            return
        conn = self.rng.choice(conns) if self.spread else conns[-1]
        before = len(server.all_connections)
        try:
            if name == "rotation":
                sent_at = time.monotonic()
                server.disconnect("warning", connection=conn)
                new = server.wait_for_new_connection(before, _RECOVERY)
                if not conn.wait_closed(_RECOVERY) or conn.closed_at is None:  # drained and closed by the client
                    raise TimeoutError("the rotated connection was not closed")
                self.report.rotations.append(
                    Rotation(
                        t=round(sent_at - self.start, 3),
                        hello_after=new.opened_at - sent_at,
                        closed_after=conn.closed_at - sent_at,
                    )
                )
            elif name == "reset":
                server.reset(conn)
                server.wait_for_new_connection(before, _RECOVERY)
            elif name == "silence":
                server.silence(conn)
                server.wait_for_new_connection(before, _RECOVERY)
                server.reset(conn)  # the dead path times out at last: free the server's socket
            elif name == "bad_frames":
                self.bad_frames(conn, before)
            elif name == "rate_limited":
                server.fail_next_opens(status=429, retry_after=1)
                server.reset(conn)
                server.wait_for_new_connection(before, _RECOVERY)
            elif name == "server_close":
                server.close_connection(conn, code=1001)
                server.wait_for_new_connection(before, _RECOVERY)
            elif name in ("trickle", "redirect"):  # the next attempt meets the peer; the one after, this server
                server.send_next_opens_to(self.peers[name].url())
                server.reset(conn)
                server.wait_for_new_connection(before, _RECOVERY)
            elif name == "echo":
                server.fail_next_opens("internal_error", echo=True)
                server.reset(conn)
                server.wait_for_new_connection(before, _RECOVERY)
            else:
                raise ValueError(f"unknown fault {name!r}")
        except RuntimeError:  # the connection closed under us (the client replaced it): nothing to inflict
            self.report.skipped_faults += 1
            return
        except TimeoutError as e:
            self.report.stalls.append(f"{name}: {e}")
        self.report.faults[name] = self.report.faults.get(name, 0) + 1
        if not self.wait_connected(_RECOVERY):
            self.report.stalls.append(f"{name}: the client did not reconnect within {_RECOVERY:g} s")

    def bad_frames(self, conn: ServerConnection, before: int) -> None:
        """A burst of junk, then an envelope on the same connection: it must be acked there."""
        for _ in range(self.rng.randint(3, 10)):
            send_junk(self.server, conn, _junk(self.rng))
            self.report.junk_frames += 1
        marker_envelope = self.load.envelope() | {"payload": {"event": {"type": "marker"}}}
        try:
            marker = self.server.push(marker_envelope, connection=conn)
        except RuntimeError:  # the connection is already gone: the junk cost it
            self.report.junk_drops += 1
            return
        self.load.record(marker)
        self.server.wait_for_acks(envelope_ids=[marker], timeout=_RECOVERY)
        if len(self.server.all_connections) != before or not conn.is_open:
            self.report.junk_drops += 1


def run_soak(
    settings: SoakSettings,
    progress: Optional[Callable[[str], None]] = None,
    client_log: Optional[Path] = None,
    *,
    trace: bool = False,
) -> SoakReport:
    """Run one soak and return what it saw. Bounded: ``duration`` plus at most ``drain`` plus a few seconds.

    The server, the load and the faults run in this process; the client in a spawned one,
    which logs to ``client_log`` at INFO if given (else WARNING and above go to stderr); with
    ``trace``, at DEBUG with each ping, pong and reader take-over. ``progress`` gets a line of
    figures about every 10 s.
    """
    seed = settings.seed if settings.seed is not None else random.SystemRandom().randrange(2**32)
    report = SoakReport(settings=settings, seed=seed)
    say = progress or (lambda line: None)
    start = time.monotonic()
    with ExitStack() as stack:
        server = stack.enter_context(SocketModeServer(redelivery_delay=_REDELIVERY_DELAY, max_retries=3))
        trickler = stack.enter_context(RawPeer(trickling(0.5)))
        redirector = stack.enter_context(RawPeer(redirecting(server.new_connection_url())))
        log = str(client_log) if client_log is not None else None
        child = Child(
            _client_main, "soak-client", server.api_url, settings.concurrency, settings.sample_interval, log, trace
        )
        try:
            child.call("connect", timeout=60.0)
            load = _Load(server, settings, random.Random(seed + 1))
            peers = {"trickle": trickler, "redirect": redirector}
            driver = _Driver(server, load, report, random.Random(seed), peers, start=start)
            sent = _load_and_drain(server, load, driver, settings, start, say, abandon=lambda: child.call("abandon"))
            _collect(report, server, sent, load.slow, start=start)
            report.held_pushes = load.held
            seen = child.call("finish", timeout=60.0)
        finally:
            child.stop()
    report.run_twice = seen["run_twice"]
    report.deduplicated = seen["deduplicated"]
    report.reconnects = seen["reconnects"]
    report.ack_latency_p50 = seen["ack_latency_p50"]
    report.ack_latency_p99 = seen["ack_latency_p99"]
    report.samples = [Sample(**sample) for sample in seen["samples"]]
    report.threads_before = seen["threads_before"]
    report.threads_after = seen["threads_after"]
    report.client_threads_after = seen["client_threads_after"]
    report.token_in_logs = seen["token_in_logs"]
    report.elapsed = time.monotonic() - start
    return report


def _load_and_drain(
    server: SocketModeServer,
    load: _Load,
    driver: _Driver,
    settings: SoakSettings,
    start: float,
    say: Callable[[str], None],
    abandon: Callable[[], None],
) -> list[str]:
    """Start the load, inject faults until the soak's time is up, then wait for the last acks.

    On Ctrl-C, ``abandon()`` tells the client processes to stop at once and nothing more is waited
    for. Returns the ids of every envelope sent.
    """
    load.start()
    interrupted = False
    try:
        _drive(driver, settings, start, say)
    except KeyboardInterrupt:
        interrupted = True
        abandon()
        say("interrupted: draining")
    finally:
        load.stop()
    with load.lock:
        sent = list(load.sent)
    say(f"load stopped after {time.monotonic() - start:.0f} s; waiting for the last acks")
    try:
        server.wait_for_acks(envelope_ids=sent, timeout=0.0 if interrupted else settings.drain)
    except TimeoutError:
        pass
    return sent


def _drive(driver: _Driver, settings: SoakSettings, start: float, say: Callable[[str], None]) -> None:
    """Faults, one after another with a random pause, until ``settings.duration`` has passed."""
    end = start + settings.duration
    next_note = start + 10.0
    pause = threading.Event()  # never set: a pause between faults that ends early at the deadline
    while time.monotonic() < end:
        pause.wait(min(driver.rng.uniform(*settings.fault_gap), max(0.0, end - time.monotonic())))
        if time.monotonic() >= end:
            return
        driver.step()
        if time.monotonic() >= next_note:
            next_note += 10.0
            report = driver.report
            say(
                f"t={time.monotonic() - start:5.0f}s sent={len(driver.load.sent)} "
                f"acked={len(driver.server.acks)} faults={sum(report.faults.values())} stalls={len(report.stalls)}"
            )


def _collect(
    report: SoakReport,
    server: SocketModeServer,
    sent: list[str],
    slow: set[str],
    gone: Optional[dict[int, str]] = None,
    *,
    start: Optional[float] = None,
) -> None:
    """Fill in the envelope counts from the server's records.

    ``slow``: ids of slow listeners; ``gone``: connection id to why its process went (replicas:
    ``"replica killed"``, ``"replica stopped"``), the reason for an envelope first delivered there;
    ``start``: the run's start (monotonic seconds; the times in ``report.given_up`` count from it,
    default: the server's first connection).
    """
    unacked = set(server.unacked())
    report.sent = len(sent)
    report.lost = [i for i in sent if i in unacked]
    report.acked = report.sent - len(report.lost)
    duplicates = server.duplicate_acks()
    report.acked_twice = len(duplicates)
    report.duplicates = [_describe_duplicate(server, ack.envelope_id) for ack in duplicates]
    report.redelivered = sum(1 for i in sent if len(server.envelope(i).deliveries) > 1)
    connections = {conn.id: conn for conn in server.all_connections}
    rescued: Counter[str] = Counter()
    given_up: Counter[int] = Counter()  # server connection id: its first deliveries rescued
    for envelope_id in sent:
        record = server.envelope(envelope_id)
        if not record.acks:
            continue  # lost for good: counted above
        if len(record.deliveries) == 1 or record.acks[0].received_at < record.deliveries[1].sent_at:
            report.acked_first += 1
            continue
        first = record.deliveries[0].connection_id
        why = (gone or {}).get(first) or _why_redelivered(connections.get(first), envelope_id in slow)
        rescued[why] += 1
        if why == _GIVEN_UP:
            given_up[first] += 1
        if why == "no fault":
            report.lost_first.append(envelope_id)
    report.rescued = dict(rescued)
    if start is None:
        start = min((conn.opened_at for conn in connections.values()), default=0.0)
    report.given_up = [_describe_given_up(connections[cid], n, start) for cid, n in sorted(given_up.items())]


def _why_redelivered(conn: Optional[ServerConnection], slow: bool) -> str:
    """Why an envelope first delivered on ``conn`` was acked only after a redelivery."""
    if slow:
        return "slow listener"
    if conn is None:
        return "no fault"
    if conn.silenced:
        return "silent peer"
    if conn.closed_by in ("reset", "server", "error"):
        return f"connection {'closed by the server' if conn.closed_by == 'server' else conn.closed_by}"
    if conn.closed_by == "client" and conn.close_code_received is None:
        return _GIVEN_UP  # aborted without a close frame: a liveness verdict
    return "no fault"


def _describe_given_up(conn: ServerConnection, rescued: int, start: float) -> str:
    """One connection the client aborted while the server thought it healthy: when, and what it cost.

    Times are seconds after the soak's ``start`` (monotonic), and the wall clock of the close
    (the client's log is stamped with it).
    """
    closed = conn.closed_at if conn.closed_at is not None else time.monotonic()
    wall = time.strftime("%H:%M:%S", time.localtime(time.time() - time.monotonic() + closed))
    return (
        f"server connection {conn.id}: open {conn.opened_at - start:.1f} s -> {closed - start:.1f} s "
        f"(closed {wall}), pings received {conn.pings_received}, first deliveries rescued {rescued}"
    )


def _describe_duplicate(server: SocketModeServer, envelope_id: str) -> str:
    """When the deliveries and acks of ``envelope_id`` happened (ms after its first delivery)."""
    try:
        record = server.envelope(envelope_id)
    except KeyError:
        return f"{envelope_id}: never pushed"
    if not record.deliveries:
        return f"{envelope_id}: no delivery"
    t0 = record.deliveries[0].sent_at
    deliveries = ", ".join(f"#{d.attempt} {1000 * (d.sent_at - t0):.1f}" for d in record.deliveries)
    acks = ", ".join(f"{1000 * (a.received_at - t0):.1f}" for a in record.acks)
    return f"{envelope_id}: deliveries at {deliveries} ms; acks at {acks} ms"


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m benchmarks.soak``: run, print the summary, write the JSON report; 1 on loss or a double run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of load and faults (default 2)")
    parser.add_argument("--rate", type=float, default=100.0, help="envelopes per second (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="repeat a run's random choices")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last acks (default 30)")
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="N replica processes of one app (2 connections each, a shared RedisLedger) with replica faults "
        "too (see benchmarks/soak_replicas.py); default 0: one client process",
    )
    parser.add_argument(
        "--redis-outage", type=float, default=4.0, help="seconds a Redis outage lasts (replicas; default 4)"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="the client's log at DEBUG, with each ping and pong sent and received and each reader take-over",
    )
    results = Path(__file__).resolve().parent / "results"
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the full report (default benchmarks/results/soak.json, or soak-replicas.json)",
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=None,
        help="where the client's log goes, at INFO (default benchmarks/results/soak.log; with --replicas a "
        "directory, default benchmarks/results/soak-replicas/, one log per replica)",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.replicas < 0 or args.redis_outage <= 0:
        parser.error("--minutes, --rate and --redis-outage must be positive, --replicas not negative")
    settings = SoakSettings(
        duration=args.minutes * 60.0,
        rate=args.rate,
        seed=args.seed,
        drain=args.drain,
        replicas=args.replicas,
        redis_outage=args.redis_outage,
    )
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    report: SoakReport
    if args.replicas:
        from .soak_replicas import run_replica_soak

        args.json = args.json or results / "soak-replicas.json"
        args.log = args.log or results / "soak-replicas"
        report = run_replica_soak(settings, say, log_dir=args.log)
    else:
        args.json = args.json or results / "soak.json"
        args.log = args.log or results / "soak.log"
        args.log.parent.mkdir(parents=True, exist_ok=True)
        report = run_soak(settings, progress=say, client_log=args.log, trace=args.trace)
    print(report.render())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"full report: {args.json}; client log: {args.log}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
