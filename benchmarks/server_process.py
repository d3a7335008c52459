"""The process that runs the local Socket Mode server and drives each scenario's traffic.

The suite starts one of these (``spawn``) and drives it through :mod:`benchmarks.control`.
Each scenario gets a fresh :class:`~slack_socket_mode.testing.SocketModeServer` (``start`` /
``stop``), so nothing (records, pending redeliveries) leaks from one client to the next.

Everything time-critical runs here, next to the sockets, never across the control pipe: the
closed loop (push, wait for the ack, push the next), the burst, the rotation's stream and
faults. Every time comes from the server's own records (:func:`time.monotonic` in this
process): when a delivery was written to the socket and when its ack was read from it. Each
command also reports this process's CPU time over the command, so one can see whether the
server was the bottleneck.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional

from .control import serve
from .procinfo import delta, pin_process, sample_self

__all__ = ["server_main"]

_PLACEHOLDER = "@@ENVELOPE_ID@@"

#: The mixed workload, one cycle of 10 envelopes from the shipped samples (real Slack shapes):
#: 60 % ``events_api`` (messages and app mentions, ~0.8 KB), 20 % ``block_actions``, 20 % slash
#: commands (acked with a payload). Interleaved so that every stretch of the loop sees each kind.
#: The ``block_actions`` sample's view holds a select of 10 groups of 30 options (67 KB, two
#: frames); here it keeps 2 groups of 5 (4 KB, one frame), a common size. (slack_sdk's builtin
#: client does not reassemble a message sent in several frames: it drops the 67 KB one.)
MIX = (
    "events_api_message",
    "slash_commands",
    "events_api_app_mention",
    "interactive_block_actions_70kb",
    "events_api_message",
    "events_api_app_mention",
    "slash_commands",
    "events_api_message",
    "interactive_block_actions_70kb",
    "events_api_app_mention",
)


def _template(name: str, payload: Optional[dict[str, Any]] = None, *, trim: bool = True) -> tuple[str, str]:
    """Sample ``name`` as compact JSON, split around its ``envelope_id`` (block_actions trimmed, see :data:`MIX`).

    ``payload``: fields to add to the sample's payload (the memory soak's ``bench_delay``).
    ``trim``: False keeps the 70 KB block_actions sample whole (67 KB, the large burst's).
    """
    from slack_socket_mode.testing.samples import load_sample

    sample = load_sample(name)
    sample["payload"].update(payload or {})
    if name == "interactive_block_actions_70kb" and trim:
        for block in sample["payload"]["view"]["blocks"]:
            for element in block.get("elements", []):
                if "option_groups" in element:
                    element["option_groups"] = [
                        dict(group, options=group["options"][:5]) for group in element["option_groups"][:2]
                    ]
    sample["envelope_id"] = _PLACEHOLDER
    head, _, tail = json.dumps(sample, separators=(",", ":")).partition(_PLACEHOLDER)
    return head, tail


def _percentiles(values: list[float]) -> dict[str, Optional[float]]:
    """p50/p90/p99/max/mean of ``values`` (nearest rank), in the units given; None if empty."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        """The nearest-rank ``q`` quantile."""
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def _largest_gap(times: list[float], start: float, end: float) -> float:
    """The longest interval in ``[start, end]`` containing none of ``times``."""
    points = sorted(t for t in times if start <= t <= end)
    edges = [start, *points, end]
    return max(b - a for a, b in zip(edges, edges[1:]))


def _uncovered(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """The longest stretch of ``[start, end]`` covered by none of ``intervals``."""
    longest = 0.0
    cursor = start
    for begin, finish in sorted(intervals):
        if finish <= cursor:
            continue
        if begin > cursor:
            longest = max(longest, min(begin, end) - cursor)
        cursor = max(cursor, finish)
        if cursor >= end:
            break
    if cursor < end:
        longest = max(longest, end - cursor)
    return longest


class _Driver:
    """Holds the current server and runs the server side of every scenario."""

    def __init__(self) -> None:
        self._head, self._tail = _template("events_api_message")
        self._mix = [_template(name) for name in MIX]
        self._large = _template("interactive_block_actions_70kb", trim=False)
        self.server: Any = None

    # -- helpers ---------------------------------------------------------------------------

    def _envelope(self, large: bool = False) -> tuple[str, str]:
        """A fresh envelope (``events_api`` message sample, ~0.9 KB; ``large``: the whole 67 KB
        ``block_actions`` sample): its id and its text."""
        envelope_id = str(uuid.uuid4())
        head, tail = self._large if large else (self._head, self._tail)
        return envelope_id, head + envelope_id + tail

    def _mixed(self, number: int) -> tuple[str, str]:
        """Envelope ``number`` of the mixed workload (see :data:`MIX`): its id and its text."""
        head, tail = self._mix[number % len(self._mix)]
        envelope_id = str(uuid.uuid4())
        return envelope_id, head + envelope_id + tail

    def _measured(self, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``work`` and add this process's CPU and wall time over it as ``server``."""
        before = sample_self()
        result = work()
        result["server"] = delta(before, sample_self())
        return result

    def _first_times(self, ids: list[str]) -> tuple[dict[str, float], dict[str, float], int]:
        """First delivery time and first ack time per id, and the number of redeliveries."""
        sent: dict[str, float] = {}
        acked: dict[str, float] = {}
        redeliveries = 0
        for envelope_id in ids:
            try:
                record = self.server.envelope(envelope_id)
            except KeyError:
                continue
            if record.deliveries:
                sent[envelope_id] = record.deliveries[0].sent_at
                redeliveries += len(record.deliveries) - 1
            if record.acks:
                acked[envelope_id] = record.acks[0].received_at
        return sent, acked, redeliveries

    def _describe(self, envelope_id: str, origin: float) -> dict[str, Any]:
        """One envelope's deliveries and acks, times in seconds after ``origin``, with connection ids."""
        record = self.server.envelope(envelope_id)
        return {
            "deliveries": [(round(d.sent_at - origin, 4), d.connection_id, d.attempt) for d in record.deliveries],
            "acks": [(round(a.received_at - origin, 4), a.connection_id) for a in record.acks],
        }

    def _connection_info(self) -> list[dict[str, Any]]:
        """Every connection accepted so far: id, times, who closed it, pings received."""
        return [
            {
                "id": conn.id,
                "opened_at": conn.opened_at,
                "closed_at": conn.closed_at,
                "closed_by": conn.closed_by,
                "pings_received": conn.pings_received,
            }
            for conn in self.server.all_connections
        ]

    # -- commands --------------------------------------------------------------------------

    def start(self, redelivery_delay: Optional[float] = 3.0) -> dict[str, Any]:
        """Start a fresh server (stopping the previous one); returns its ``api_url``."""
        from slack_socket_mode.testing import SocketModeServer

        self.stop()
        self.server = SocketModeServer(redelivery_delay=redelivery_delay).start()
        return {"api_url": self.server.api_url}

    def stop(self) -> dict[str, Any]:
        """Stop the current server, if any."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        return {}

    def sample(self) -> dict[str, Any]:
        """This process's CPU, context switches, threads and memory."""
        return sample_self()

    def connections(self) -> list[dict[str, Any]]:
        """Every connection accepted by the current server."""
        return self._connection_info()

    def wait_connection(self, after: int = 0, wait: float = 15.0) -> Optional[dict[str, Any]]:
        """Wait up to ``wait`` s for connection number ``after + 1`` to be accepted and sent its hello.

        Returns:
            Its description (``opened_at`` is when the hello was sent), or None on timeout.
        """
        try:
            conn = self.server.wait_for_new_connection(after, timeout=wait)
        except TimeoutError:
            return None
        return {"id": conn.id, "opened_at": conn.opened_at}

    def pin(self, cpus: Optional[list[int]] = None) -> Optional[list[int]]:
        """Run this process (and the server threads it starts later) on ``cpus`` only; None: any core."""
        return pin_process(cpus)

    def closed_loop(self, count: int, cap: float, mix: bool = False) -> dict[str, Any]:
        """Push one envelope, wait for its ack, push the next; ``count`` times or ``cap`` seconds.

        Args:
            count: envelopes.
            cap: seconds.
            mix: send the mixed workload (:data:`MIX`) instead of the message sample alone.

        Returns:
            ``rtts`` (seconds, send to ack, per envelope), ``done``, ``capped``, ``wall``.
        """
        return self._measured(lambda: self._closed_loop(count, cap, mix))

    def _closed_loop(self, count: int, cap: float, mix: bool = False) -> dict[str, Any]:
        """See :meth:`closed_loop`."""
        server = self.server
        base = len(server.acks)
        ids: list[str] = []
        started = time.monotonic()
        deadline = started + cap
        capped = False
        error = None
        for number in range(count):
            envelope_id, text = self._mixed(number) if mix else self._envelope()
            try:
                server.push(text)
            except RuntimeError as e:
                error = str(e)
                break
            ids.append(envelope_id)
            remaining = deadline - time.monotonic()
            try:
                server.wait_for_acks(count=base + number + 1, timeout=max(0.001, remaining))
            except TimeoutError:
                capped = True
                break
        wall = time.monotonic() - started
        sent, acked, redeliveries = self._first_times(ids)
        rtts = [acked[i] - sent[i] for i in ids if i in acked and i in sent]
        return {
            "done": len(rtts),
            "pushed": len(ids),
            "capped": capped,
            "error": error,
            "wall": wall,
            "rtts": rtts,
            "redeliveries": redeliveries,
        }

    def burst(self, count: int, bound: float, large: bool = False) -> dict[str, Any]:
        """Push ``count`` envelopes as fast as the socket takes them; wait for acks up to ``bound`` s.

        ``large``: each envelope is the whole 67 KB ``block_actions`` sample, not a 0.9 KB message.

        Returns:
            acked (within the bound), lost, acks per second (first send to last first ack),
            duplicate acks, redeliveries, per-envelope send-to-ack latency percentiles.
        """
        return self._measured(lambda: self._burst(count, bound, large))

    def _burst(self, count: int, bound: float, large: bool) -> dict[str, Any]:
        """See :meth:`burst`."""
        server = self.server
        envelopes = [self._envelope(large) for _ in range(count)]
        ids = [envelope_id for envelope_id, _ in envelopes]
        texts = [text for _, text in envelopes]
        del envelopes
        push_error: list[str] = []

        def push() -> None:
            """Push everything; the write blocks while the client does not read."""
            try:
                server.push_many(texts)
            except RuntimeError as e:  # the server was stopped, or the connection went away
                push_error.append(str(e))

        started = time.monotonic()
        deadline = started + bound
        pusher = threading.Thread(target=push, name="benchmark-burst-pusher", daemon=True)
        pusher.start()
        timed_out = False
        try:
            server.wait_for_acks(envelope_ids=ids, timeout=bound)
        except TimeoutError:
            timed_out = True
        acked_by = time.monotonic()
        sent, acked, redeliveries = self._first_times(ids)
        if redeliveries and not timed_out:
            # Redelivered copies may still be acked a second time: give them a moment.
            redelivered = [i for i in ids if len(server.envelope(i).deliveries) > 1]
            settle_end = min(deadline, acked_by + 3.0)
            while time.monotonic() < settle_end and not all(server.envelope(i).settled for i in redelivered):
                time.sleep(0.1)
        latencies = [acked[i] - sent[i] for i in ids if i in acked and i in sent]
        first_send = min(sent.values()) if sent else started
        last_ack = max(acked.values()) if acked else first_send
        span = last_ack - first_send
        return {
            "count": count,
            "pushed": len(sent),
            "acked": len(acked),
            "lost": count - len(acked),
            "timed_out": timed_out,
            "bound": bound,
            "span": span,
            "rate": len(acked) / span if span > 0 else None,
            "duplicate_acks": len(server.duplicate_acks()),
            "redeliveries": redeliveries,
            "latency": _percentiles(latencies),
            "push_error": push_error[0] if push_error else None,
        }

    def rotation(
        self,
        rate: float,
        before: float,
        warning_gap: float,
        close_delay: float,
        after: float,
        settle: float,
    ) -> dict[str, Any]:
        """A Slack-like rotation while envelopes stream at ``rate`` per second.

        Stream for ``before`` s; send ``disconnect`` reason ``warning`` on the connection;
        ``warning_gap`` s later ``refresh_requested`` on it; ``close_delay`` s later close it (if
        the client has not); stream ``after`` s more; then wait up to ``settle`` s for the acks.
        A push finding no live connection is retried every millisecond (Slack holds the event).

        Returns:
            The largest gap between consecutive acks, the longest time with no open connection
            that had said hello, the old connection's close and the new one's hello, the worst
            envelope delay (from when it was due to be pushed to its first ack, so time spent
            waiting for a live connection counts), lost, duplicate acks, redeliveries.
        """
        return self._measured(lambda: self._rotation(rate, before, warning_gap, close_delay, after, settle))

    def _rotation(
        self,
        rate: float,
        before: float,
        warning_gap: float,
        close_delay: float,
        after: float,
        settle: float,
    ) -> dict[str, Any]:
        """See :meth:`rotation`."""
        server = self.server
        old = server.connections[-1]
        known = len(server.all_connections)
        stop = threading.Event()
        pushed: list[str] = []
        due: dict[str, float] = {}  # when each envelope was scheduled: the event happened then
        blocked: list[float] = []  # how long each push that found no connection waited

        def stream() -> None:
            """Push at ``rate`` per second on a fixed schedule (late pushes catch up)."""
            interval = 1.0 / rate
            next_at = time.monotonic()
            while not stop.is_set():
                wait = next_at - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                envelope_id, text = self._envelope()
                tried_at = time.monotonic()
                while True:
                    try:
                        server.push(text)
                        break
                    except RuntimeError:
                        if stop.is_set():
                            return
                        time.sleep(0.001)
                if time.monotonic() - tried_at > 0.002:
                    blocked.append(time.monotonic() - tried_at)
                pushed.append(envelope_id)
                due[envelope_id] = next_at
                next_at += interval

        streamer = threading.Thread(target=stream, name="benchmark-rotation-stream", daemon=True)
        started = time.monotonic()
        streamer.start()
        notes: list[str] = []
        time.sleep(before)
        t_warning = time.monotonic()
        try:
            server.disconnect("warning", connection=old)
        except RuntimeError as e:
            notes.append(f"warning not sent: {e}")
        time.sleep(warning_gap)
        t_refresh = time.monotonic()
        try:
            server.disconnect("refresh_requested", connection=old)
        except RuntimeError:
            notes.append("refresh_requested not sent: the client had already closed the old connection")
        time.sleep(close_delay)
        t_close = time.monotonic()
        closed_by_server = False
        if old.is_open:
            try:
                server.close_connection(old)
                closed_by_server = True
            except RuntimeError:
                pass
        time.sleep(after)
        stop.set()
        streamer.join(5.0)
        t_end = time.monotonic()
        try:
            server.wait_for_acks(envelope_ids=list(pushed), timeout=settle)
        except TimeoutError:
            pass
        sent, acked, redeliveries = self._first_times(pushed)
        window_start = t_warning - 0.5
        ids = set(pushed)
        ack_times = [ack.received_at for ack in server.acks if ack.envelope_id in ids]
        conns = [c for c in server.all_connections if c.id > 0]
        intervals = [(c.opened_at, c.closed_at if c.closed_at is not None else math.inf) for c in conns]
        new = server.all_connections[known] if len(server.all_connections) > known else None
        old_closed = old.closed_at
        delays = [acked[i] - due[i] for i in pushed if i in acked]
        # The handover: from the warning until both the new hello and the old close happened, plus 0.5 s.
        handover_end = max(t_warning, new.opened_at if new is not None else t_end, old_closed or t_end) + 0.5
        slowest = sorted((i for i in pushed if i in acked and i in sent), key=lambda i: due[i] - acked[i])[:5]
        return {
            "pushed": len(pushed),
            "acked": len(acked),
            "lost": len(pushed) - len(acked),
            "duplicate_acks": len(server.duplicate_acks()),
            "redeliveries": redeliveries,
            "max_ack_gap": _largest_gap(ack_times, window_start, t_end),
            "max_ack_gap_handover": _largest_gap(ack_times, t_warning, min(handover_end, t_end)),
            "max_ack_gap_before": _largest_gap(ack_times, started + 0.2, t_warning),
            "no_connection_gap": _uncovered(intervals, started, t_end),
            "new_hello_after_warning": None if new is None else new.opened_at - t_warning,
            "old_closed_after_warning": None if old_closed is None else old_closed - t_warning,
            "old_closed_by": old.closed_by,
            "closed_by_server": closed_by_server,
            "handover_gap": (None if new is None or old_closed is None else max(0.0, new.opened_at - old_closed)),
            "worst_delay": max(delays) if delays else None,
            "delayed_over_1s": sum(1 for d in delays if d > 1.0),
            "push_blocked_max": max(blocked) if blocked else 0.0,
            "connections_opened": len(server.all_connections) - known,
            "times": {"warning": t_warning, "refresh": t_refresh, "close": t_close, "end": t_end},
            "slowest": [self._describe(i, t_warning) for i in slowest],
            "notes": notes,
        }

    def fault(self, kind: str, cap: float) -> dict[str, Any]:
        """Reset (``"reset"``: TCP RST) or silence (``"silence"``) the newest connection.

        Then wait up to ``cap`` s for the next connection's hello, and check an envelope
        pushed on it is acked.

        Returns:
            ``to_hello`` (seconds from the fault to the new hello, None if never) and
            ``ack_after`` (send-to-ack seconds of that envelope, None if not acked in 5 s).
        """
        return self._measured(lambda: self._fault(kind, cap))

    def _fault(self, kind: str, cap: float) -> dict[str, Any]:
        """See :meth:`fault`."""
        server = self.server
        conn = server.connections[-1]
        known = len(server.all_connections)
        started = time.monotonic()
        if kind == "reset":
            server.reset(conn)
        elif kind == "silence":
            server.silence(conn)
        else:
            raise ValueError(f"unknown fault {kind!r}")
        try:
            new = server.wait_for_new_connection(known, timeout=cap)
        except TimeoutError:
            return {"to_hello": None, "ack_after": None, "cap": cap}
        to_hello = new.opened_at - started
        ack_after = None
        envelope_id, text = self._envelope()
        try:
            server.push(text, connection=new)
            server.wait_for_acks(envelope_ids=[envelope_id], timeout=5.0)
            record = server.envelope(envelope_id)
            ack_after = record.acks[0].received_at - record.deliveries[0].sent_at
        except (RuntimeError, TimeoutError):
            pass
        return {"to_hello": to_hello, "ack_after": ack_after, "cap": cap}


def server_main(conn: Connection) -> None:
    """Entry point of the server process: serve commands on ``conn`` until ``exit``."""
    import logging

    logging.getLogger().addHandler(logging.NullHandler())
    driver = _Driver()
    try:
        serve(
            conn,
            {
                "start": driver.start,
                "stop": driver.stop,
                "sample": driver.sample,
                "connections": driver.connections,
                "wait_connection": driver.wait_connection,
                "closed_loop": driver.closed_loop,
                "pin": driver.pin,
                "burst": driver.burst,
                "rotation": driver.rotation,
                "fault": driver.fault,
            },
        )
    finally:
        driver.stop()
