"""Replay a recording (:mod:`slack_socket_mode.recording`) through a :class:`SocketModeServer`.

:func:`replay_recording` drives the server through its public API only: it pushes the
recording's envelopes in order, at the recorded pace divided by ``speed`` or as fast as the
socket takes them, sends a ``disconnect`` where the recording had one, and lets the server apply
Slack's rules (a redelivery after its ``redelivery_delay`` without an ack, up to ``max_retries``
times). It then waits until every envelope is acked or Slack would have given up on it, and
returns a :class:`ReplayReport`: per envelope, whether it was delivered and acked, how long the ack
took, the ack's payload and how many redeliveries it needed.

Use it through :meth:`SocketModeServer.replay`, e.g. with the ``socket_mode_server`` pytest
fixture::

    def test_the_app_acks_every_recorded_envelope_in_time(socket_mode_server, app_client):
        report = socket_mode_server.replay("tests/recordings/monday.jsonl", speed=None)
        assert report.retried == []  # nothing Slack would have redelivered

Rules of the replay:

* Only first deliveries are pushed. A redelivery in the recording (an ``envelope_id`` seen
  before) is skipped and counted (:attr:`ReplayReport.recorded_redeliveries`): the server
  redelivers by Slack's rules, according to what the app does now. A first occurrence that
  was itself a redelivery (the recording began mid-retry) is pushed as it was, retry fields and all.
* Envelopes go to any live connection of the app, as Slack sends them; the recorded connection
  numbers are not mapped onto the app's. While a connection that was sent a ``disconnect`` is
  still open, envelopes go to the others (the connections the app opened to replace it), so the
  app sees them in the recorded order.
* A recorded ``disconnect`` is sent, with its reason, to the oldest open connection that was
  not yet sent one; the replay then waits (up to ``connect_timeout``) for the app's next
  connection before it pushes on, as the recording's app had connected again.
* A recorded ``hello`` sends nothing (the server greets each connection itself); any other
  message, and text that is not JSON, is sent as it was recorded.
* With ``speed=None`` envelopes between other messages are pushed in batches of up to
  :data:`BATCH` with :meth:`~SocketModeServer.push_many`.

Thread-safety: one replay at a time per server; it runs on the calling thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from ..recording import MAX_LINE_SIZE, RecordedMessage, RecordingError, read_header, read_recording

if TYPE_CHECKING:
    from ._connection import ServerConnection
    from .records import Ack, EnvelopeRecord


class ReplayServer(Protocol):
    """What a replay needs of its :class:`~slack_socket_mode.testing.SocketModeServer` (which has it all)."""

    @property
    def acks(self) -> list[Ack]: ...
    @property
    def connections(self) -> list[ServerConnection]: ...
    @property
    def all_connections(self) -> list[ServerConnection]: ...
    def duplicate_acks(self) -> list[Ack]: ...
    def envelope(self, envelope_id: str) -> EnvelopeRecord: ...
    def push(self, envelope: dict[str, Any] | str, *, connection: ServerConnection | None = None) -> str: ...
    def push_many(
        self, envelopes: Iterable[dict[str, Any] | str], *, connection: ServerConnection | None = None
    ) -> list[str]: ...
    def send_text(self, text: str, *, connection: ServerConnection | None = None) -> None: ...
    def disconnect(self, reason: str = ..., *, connection: ServerConnection | None = None) -> None: ...
    def wait_for_acks(
        self, count: int | None = None, *, envelope_ids: Iterable[str] | None = None, timeout: float = ...
    ) -> list[Ack]: ...
    def wait_for_connections(self, count: int = ..., timeout: float = ...) -> list[ServerConnection]: ...
    def wait_for_new_connection(self, after: int, timeout: float = ...) -> ServerConnection: ...


__all__ = ["ACK_DEADLINE", "BATCH", "ReplayProgress", "ReplayReport", "ReplayedEnvelope", "replay_recording"]

#: Slack's ack deadline in seconds: an envelope not acked within it is redelivered.
ACK_DEADLINE = 3.0

#: Envelopes pushed per :meth:`~SocketModeServer.push_many` call when replaying as fast as possible.
BATCH = 1000

#: Seconds between two calls of the progress callback.
PROGRESS_INTERVAL = 1.0


@dataclass(frozen=True)
class ReplayedEnvelope:
    """What happened to one envelope of the recording during a replay.

    Attributes:
        envelope_id: its id.
        type: ``events_api``, ``interactive``, ``slash_commands`` (or what the recording says).
        line: its line in the recording.
        recorded_at: its ``t`` in the recording (seconds since the recording started).
        delivered: whether it was written to a connection at least once.
        acked: whether an ack for it arrived.
        ack_time: seconds from its first delivery to its first ack, or ``None`` if not acked.
        ack_payload: the first ack's ``payload`` object, or ``None`` (a bare ack, or no ack).
        redeliveries: how many times the server redelivered it (Slack's ``retry_attempt`` 1, 2, 3).
    """

    envelope_id: str
    type: str
    line: int
    recorded_at: float
    delivered: bool
    acked: bool
    ack_time: Optional[float]
    ack_payload: Optional[dict[str, Any]]
    redeliveries: int

    @property
    def retried(self) -> bool:
        """``True`` if Slack would have redelivered it: no ack within :data:`ACK_DEADLINE` of delivery."""
        return self.ack_time is None or self.ack_time > ACK_DEADLINE or self.redeliveries > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields, plus ``retried``."""
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "line": self.line,
            "recorded_at": self.recorded_at,
            "delivered": self.delivered,
            "acked": self.acked,
            "ack_time": self.ack_time,
            "ack_payload": self.ack_payload,
            "redeliveries": self.redeliveries,
            "retried": self.retried,
        }


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of a replay (:func:`replay_recording`, :meth:`SocketModeServer.replay`).

    Attributes:
        path: the recording.
        speed: the speed it was replayed at (``None``: as fast as possible).
        envelopes: one entry per envelope pushed, in recording order.
        duration: seconds from the first push to the end of the wait for acks.
        disconnects: ``disconnect`` messages sent where the recording had them.
        disconnects_skipped: recorded ``disconnect`` messages not sent: no connection could take one.
        recorded_redeliveries: redeliveries in the recording, not pushed (see the module's rules).
        other_messages: messages sent as recorded that were neither envelopes nor ``disconnect``.
        skipped_lines: bad lines skipped (with ``skip_bad_lines``), in file order.
        error: the bad line that stopped the replay (nothing after it was pushed), or ``None``.
    """

    path: str
    speed: Optional[float]
    envelopes: list[ReplayedEnvelope]
    duration: float
    disconnects: int = 0
    disconnects_skipped: int = 0
    recorded_redeliveries: int = 0
    other_messages: int = 0
    skipped_lines: list[RecordingError] = field(default_factory=list)
    error: Optional[RecordingError] = None

    @property
    def acked(self) -> list[ReplayedEnvelope]:
        """The envelopes that were acked (in time or not)."""
        return [e for e in self.envelopes if e.acked]

    @property
    def not_acked(self) -> list[ReplayedEnvelope]:
        """The envelopes never acked."""
        return [e for e in self.envelopes if not e.acked]

    @property
    def retried(self) -> list[ReplayedEnvelope]:
        """The envelopes Slack would have redelivered (not acked within 3 s): should be empty."""
        return [e for e in self.envelopes if e.retried]

    def slowest(self, count: int = 5) -> list[ReplayedEnvelope]:
        """The ``count`` envelopes with the longest ack time, never-acked ones first."""
        return sorted(self.envelopes, key=lambda e: math.inf if e.ack_time is None else e.ack_time, reverse=True)[
            :count
        ]

    def ack_time_percentile(self, q: float) -> Optional[float]:
        """The nearest-rank ``q`` percentile (0 < q <= 1) of the ack times, in seconds; ``None`` if none.

        Raises:
            ValueError: ``q`` is out of range.
        """
        if not 0 < q <= 1:
            raise ValueError("q must be in (0, 1]")
        times = sorted(e.ack_time for e in self.envelopes if e.ack_time is not None)
        if not times:
            return None
        return times[max(0, math.ceil(q * len(times)) - 1)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with every envelope (``--json`` of ``slack-socket-mode replay``)."""
        return {
            "path": self.path,
            "speed": self.speed,
            "duration": self.duration,
            "envelopes": len(self.envelopes),
            "acked": len(self.acked),
            "retried": len(self.retried),
            "not_acked": len(self.not_acked),
            "ack_time_p50": self.ack_time_percentile(0.5),
            "ack_time_p99": self.ack_time_percentile(0.99),
            "disconnects": self.disconnects,
            "disconnects_skipped": self.disconnects_skipped,
            "recorded_redeliveries": self.recorded_redeliveries,
            "other_messages": self.other_messages,
            "skipped_lines": [str(e) for e in self.skipped_lines],
            "error": str(self.error) if self.error is not None else None,
            "per_envelope": [e.to_dict() for e in self.envelopes],
        }


@dataclass(frozen=True)
class ReplayProgress:
    """Where a replay is, for a progress display.

    Attributes:
        lines: lines of the recording read so far (the header included).
        pushed: envelopes pushed so far.
        acked: of those, how many are acked.
        elapsed: seconds since the replay began.
        done: ``True`` on the last call, once the replay is over.
    """

    lines: int
    pushed: int
    acked: int
    elapsed: float
    done: bool


class _Pushed:
    """What the replay knows about one pushed envelope."""

    __slots__ = ("envelope_id", "line", "t", "type")

    def __init__(self, entry: RecordedMessage, envelope_id: str) -> None:
        self.envelope_id = envelope_id
        self.line = entry.line
        self.t = entry.t
        self.type = entry.type or ""


class _Replay:
    """One replay's state; runs on the caller's thread."""

    def __init__(
        self,
        server: ReplayServer,
        path: str,
        speed: Optional[float],
        connect_timeout: float,
        settle_timeout: float,
        skip_bad_lines: bool,
        max_line_size: int,
        progress: Optional[Callable[[ReplayProgress], None]],
        cancel: threading.Event,
    ) -> None:
        self.server = server
        self.path = path
        self.speed = speed
        self.skip_bad_lines = skip_bad_lines
        self.max_line_size = max_line_size
        self.connect_timeout = connect_timeout
        self.settle_timeout = settle_timeout
        self.progress = progress
        self.cancel = cancel  # set: stop pushing (checked between messages and during pacing waits)
        self.pushed: dict[str, _Pushed] = {}
        self.batch: list[tuple[str, str]] = []  # (envelope_id, text) not yet pushed
        self.lines = 1
        self.disconnects = 0
        self.disconnects_skipped = 0
        self.rotations = 0  # round-robin over the connections not sent a disconnect
        self.recorded_redeliveries = 0
        self.other_messages = 0
        self.skipped: list[RecordingError] = []
        self.began = self.started = time.monotonic()
        self.first_t: Optional[float] = None
        self.next_progress = self.started + PROGRESS_INTERVAL

    # ---- pushing ---------------------------------------------------------------------------

    def run(self) -> ReplayReport:
        read_header(self.path, max_line_size=self.max_line_size)  # a bad header fails before the app sees anything
        try:
            self.server.wait_for_connections(1, timeout=self.connect_timeout)
        except TimeoutError:
            raise TimeoutError(f"the app did not connect within {self.connect_timeout:g} s") from None
        self.started = time.monotonic()
        error: Optional[RecordingError] = None
        try:
            for entry in self.entries():
                if self.cancel.is_set():
                    break
                self.lines = entry.line
                self.pace(entry)
                self.handle(entry)
                self.report_progress()
        except RecordingError as e:
            error = e
        self.flush()
        self.settle()
        duration = time.monotonic() - self.started
        report = self.report(duration, error)
        if self.progress is not None:
            self.progress(ReplayProgress(self.lines, len(self.pushed), len(report.acked), duration, True))
        return report

    def entries(self) -> Iterator[RecordedMessage]:
        return read_recording(
            self.path,
            skip_bad_lines=self.skip_bad_lines,
            on_bad_line=self.skipped.append,
            max_line_size=self.max_line_size,
        )

    def pace(self, entry: RecordedMessage) -> None:
        """Wait until the entry is due (recorded pace divided by speed, from the first message)."""
        if self.speed is None:
            return
        if self.first_t is None:
            self.first_t = entry.t  # the replay starts with the first message, however late it came
        due = self.started + (entry.t - self.first_t) / self.speed
        if due > time.monotonic():
            self.flush()
        while True:  # in steps, so that progress goes on through a long quiet spell
            delay = due - time.monotonic()
            if delay <= 0 or self.cancel.wait(min(delay, PROGRESS_INTERVAL)):
                return
            self.report_progress()

    def handle(self, entry: RecordedMessage) -> None:
        envelope_id = entry.envelope_id
        if envelope_id is not None:
            if envelope_id in self.pushed:
                self.recorded_redeliveries += 1
                return
            self.pushed[envelope_id] = _Pushed(entry, envelope_id)
            self.batch.append((envelope_id, entry.text))
            if self.speed is not None or len(self.batch) >= BATCH:
                self.flush()
            return
        if entry.type == "hello":
            return
        self.flush()
        if entry.type == "disconnect":
            self.send_disconnect(entry)
        else:
            self.other_messages += 1
            self.with_live_connection(lambda: self.server.send_text(entry.text))

    def flush(self) -> None:
        """Push the batched envelopes; if connections come and go meanwhile, none is pushed twice."""
        batch, self.batch = self.batch, []
        while batch:
            accepted = len(self.server.all_connections)
            target = self.fresh_connection()
            try:
                if len(batch) == 1:
                    self.server.push(batch[0][1], connection=target)
                else:
                    self.server.push_many([text for _, text in batch], connection=target)
                return
            except RuntimeError:
                # No live connection (the app is between connections): wait for a new one, then
                # push only what the server has no delivery of yet.
                self.wait_new_connection(accepted)
                batch = [item for item in batch if not self.delivered(item[0])]

    def fresh_connection(self) -> Optional[ServerConnection]:
        """While a connection sent a ``disconnect`` is open: one of the others (else None: the server chooses)."""
        open_ = [conn for conn in self.server.connections if conn.is_open and not conn.silenced]
        fresh = [conn for conn in open_ if not conn.disconnect_sent]
        if not fresh or len(fresh) == len(open_):
            return None
        self.rotations += 1
        return fresh[self.rotations % len(fresh)]

    def delivered(self, envelope_id: str) -> bool:
        try:
            return bool(self.server.envelope(envelope_id).deliveries)
        except KeyError:
            return False

    def send_disconnect(self, entry: RecordedMessage) -> None:
        assert entry.message is not None
        reason = entry.message.get("reason")
        for conn in self.server.connections:
            if conn.is_open and not conn.disconnect_sent and not conn.silenced:
                accepted = len(self.server.all_connections)
                try:
                    self.server.disconnect(reason if isinstance(reason, str) else "refresh_requested", connection=conn)
                except RuntimeError:  # it closed meanwhile: try the next one
                    continue
                self.disconnects += 1
                try:  # the recording's app connected again here: so does this one, before more is pushed
                    self.server.wait_for_new_connection(accepted, timeout=self.connect_timeout)
                except TimeoutError:
                    pass  # an app that does not reconnect gets the rest on the connections it has
                return
        self.disconnects_skipped += 1

    def with_live_connection(self, send: Callable[[], None]) -> None:
        accepted = len(self.server.all_connections)
        try:
            send()
        except RuntimeError:
            self.wait_new_connection(accepted)
            send()

    def wait_new_connection(self, accepted: int) -> None:
        """Wait for a connection after the first ``accepted`` ones (the app reconnecting)."""
        try:
            self.server.wait_for_new_connection(accepted, timeout=self.connect_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"the app had no live connection for {self.connect_timeout:g} s "
                f"(replaying {self.path}, line {self.lines})"
            ) from None

    def report_progress(self) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now < self.next_progress:
            return
        self.next_progress = now + PROGRESS_INTERVAL
        acked = len(self.server.acks) - len(self.server.duplicate_acks())  # first acks only
        self.progress(ReplayProgress(self.lines, len(self.pushed), acked, now - self.started, False))

    # ---- the end ---------------------------------------------------------------------------

    def settle(self) -> None:
        """Wait until every pushed envelope is acked, or ``settle_timeout`` passed since the last push."""
        if self.cancel.is_set():
            return
        deadline = time.monotonic() + self.settle_timeout
        missing = list(self.pushed)
        while True:
            # Acks counted before the check: an ack that lands in between is in both, so the
            # wait below never asks for more acks than can still come.
            received = len(self.server.acks)
            missing = [envelope_id for envelope_id in missing if not self.acked(envelope_id)]
            remaining = deadline - time.monotonic()
            if not missing or remaining <= 0:
                return
            try:
                self.server.wait_for_acks(received + len(missing), timeout=min(remaining, PROGRESS_INTERVAL))
            except TimeoutError:
                self.report_progress()  # and check again: the report says which ones were never acked

    def acked(self, envelope_id: str) -> bool:
        """Whether an ack for ``envelope_id`` arrived during this replay."""
        try:
            acks = self.server.envelope(envelope_id).acks
        except KeyError:
            return False
        return any(ack.received_at >= self.began for ack in acks)

    def report(self, duration: float, error: Optional[RecordingError]) -> ReplayReport:
        envelopes: list[ReplayedEnvelope] = []
        for pushed in self.pushed.values():
            try:
                record = self.server.envelope(pushed.envelope_id)
            except KeyError:  # never delivered: the replay was cancelled or the server stopped
                envelopes.append(
                    ReplayedEnvelope(
                        pushed.envelope_id, pushed.type, pushed.line, pushed.t, False, False, None, None, 0
                    )
                )
                continue
            # this replay's deliveries and acks only (the server may have replayed it before)
            deliveries = [d for d in record.deliveries if d.sent_at >= self.began]
            acks = [a for a in record.acks if a.received_at >= self.began]
            first_ack = acks[0] if acks else None
            first_delivery = deliveries[0] if deliveries else None
            ack_time = None
            if first_ack is not None and first_delivery is not None:
                ack_time = max(0.0, first_ack.received_at - first_delivery.sent_at)
            envelopes.append(
                ReplayedEnvelope(
                    pushed.envelope_id,
                    pushed.type,
                    pushed.line,
                    pushed.t,
                    first_delivery is not None,
                    first_ack is not None,
                    ack_time,
                    first_ack.payload if first_ack is not None else None,
                    max(0, len(deliveries) - 1),
                )
            )
        return ReplayReport(
            self.path,
            self.speed,
            envelopes,
            duration,
            self.disconnects,
            self.disconnects_skipped,
            self.recorded_redeliveries,
            self.other_messages,
            list(self.skipped),
            error,
        )


def replay_recording(
    server: ReplayServer,
    path: str,
    *,
    speed: Optional[float] = 1.0,
    skip_bad_lines: bool = False,
    max_line_size: int = MAX_LINE_SIZE,
    connect_timeout: float = 10.0,
    settle_timeout: Optional[float] = None,
    progress: Optional[Callable[[ReplayProgress], None]] = None,
    cancel: Optional[threading.Event] = None,
) -> ReplayReport:
    """Replay the recording at ``path`` through ``server`` to the app connected to it.

    Args:
        server: a started server the app connects to (or is connected to).
        path: the recording (see :mod:`slack_socket_mode.recording`).
        speed: 1.0 replays at the recorded pace, 2.0 twice as fast, 0.5 half as fast; ``None``
            pushes as fast as the socket takes them.
        skip_bad_lines: skip a bad line (listed in :attr:`ReplayReport.skipped_lines`) instead
            of stopping there.
        max_line_size: bytes; a longer line of the recording is a bad line, read no further
            (default :data:`~slack_socket_mode.recording.MAX_LINE_SIZE`, room for a message as
            large as the client's default ``max_message_size``).
        connect_timeout: seconds to wait for the app to have a live connection, at the start and
            whenever it has none (during a rotation).
        settle_timeout: seconds to wait, after the last push, for the acks still missing; default
            12, as long as Slack keeps redelivering (:data:`ACK_DEADLINE` times the first delivery
            and three redeliveries).
        progress: called on this thread about every second, and once at the end, with a
            :class:`ReplayProgress`.
        cancel: set it (from any thread) to stop pushing; the report then covers what was pushed.

    Returns:
        The report. A bad line stops the replay (nothing after it is pushed) and is in
        :attr:`ReplayReport.error`; this function does not raise for it.

    Raises:
        RecordingError: the header is bad (nothing was pushed).
        OSError: the recording cannot be read.
        TimeoutError: the app had no live connection within ``connect_timeout`` (at the start,
            or after it lost its last one).
        ValueError: ``speed`` is not positive (or ``None``), or ``max_line_size`` is not a positive int.
        RuntimeError: the server is not running.
    """
    if speed is not None and not (speed > 0 and math.isfinite(speed)):
        raise ValueError("speed must be a positive number, or None for as fast as possible")
    if settle_timeout is None:
        settle_timeout = ACK_DEADLINE * 4  # Slack's first delivery and three redeliveries
    return _Replay(
        server,
        path,
        speed,
        connect_timeout,
        settle_timeout,
        skip_bad_lines,
        max_line_size,
        progress,
        cancel if cancel is not None else threading.Event(),
    ).run()
