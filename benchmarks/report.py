"""The suite's output: one table of figures per client, and our client's targets.

:func:`evaluate_targets` checks our client against the targets of the "Performance" and
"faults" issues (as ratios to the floor or comparisons with slack_sdk's clients, all from the
same run); :func:`render` lays everything out as one plain-text table.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["CLIENT_TITLES", "SDK_KINDS", "evaluate_targets", "render"]

#: Column titles.
CLIENT_TITLES = {
    "ours": "ours",
    "ours_redis": "ours, RedisLedger",
    "aio": "ours, asyncio",
    "builtin": "slack_sdk builtin",
    "websocket_client": "slack_sdk websocket_client",
    "aiohttp": "slack_sdk aiohttp",
    "websockets": "slack_sdk websockets",
    "floor": "floor (1 thread)",
}

#: slack_sdk's clients: the thread-based two and the asyncio two.
SDK_KINDS = ("builtin", "websocket_client", "aiohttp", "websockets")

Results = dict[str, dict[str, dict[str, Any]]]


def _get(results: Results, scenario: str, kind: str, *path: str) -> Any:
    """``results[scenario][kind][path…]``, or None where anything is missing or failed."""
    value: Any = results.get(scenario, {}).get(kind)
    if value is None or value.get("failed"):
        return None
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def _num(value: Optional[float], digits: int = 0) -> str:
    """``value`` with thousands separators and ``digits`` decimals."""
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(value: Optional[float]) -> str:
    """Milliseconds, with precision suited to the size."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    return f"{value:,.0f} ms"


def _ratio(value: Optional[float], floor: Optional[float]) -> str:
    """`` (1.08x floor)`` or nothing."""
    if value is None or not floor:
        return ""
    return f" ({value / floor:.2f}x floor)"


# -- targets ---------------------------------------------------------------------------------


def _target(name: str, wanted: str, value: str, met: Optional[bool]) -> dict[str, Any]:
    """One target row: ``met`` is None when it could not be evaluated in this run."""
    return {"target": name, "wanted": wanted, "measured": value, "met": met}


def evaluate_targets(results: Results) -> list[dict[str, Any]]:
    """Check our client against every target, using only figures from this run.

    A target needing a client that did not run (the floor, slack_sdk's clients) or a scenario
    that failed is reported with ``met`` None.
    """
    targets: list[dict[str, Any]] = []

    def ours(scenario: str, *path: str) -> Any:
        """Our client's figure."""
        return _get(results, scenario, "ours", *path)

    def floor(scenario: str, *path: str) -> Any:
        """The floor's figure."""
        return _get(results, scenario, "floor", *path)

    def ratio_target(name: str, limit: float, value: Optional[float], base: Optional[float], at_least: bool) -> None:
        """A ratio-to-floor target."""
        wanted = f"{'>=' if at_least else '<='} {limit}x floor"
        if value is None or not base:
            targets.append(_target(name, wanted, "n/a", None))
            return
        ratio = value / base
        met = ratio >= limit if at_least else ratio <= limit
        targets.append(_target(name, wanted, f"{ratio:.2f}x", met))

    ratio_target(
        "closed loop p50", 1.2, ours("closed_loop", "rtt_ms", "p50"), floor("closed_loop", "rtt_ms", "p50"), False
    )
    ratio_target(
        "closed loop CPU per envelope",
        1.5,
        ours("closed_loop", "cpu_per_envelope_us"),
        floor("closed_loop", "cpu_per_envelope_us"),
        False,
    )
    ratio_target(
        "mixed closed loop p50 (median of rounds)",
        1.2,
        ours("closed_loop_mix", "p50_ms_median"),
        floor("closed_loop_mix", "p50_ms_median"),
        False,
    )
    ratio_target(
        "mixed closed loop CPU per envelope (median of rounds)",
        1.5,
        ours("closed_loop_mix", "cpu_us_median"),
        floor("closed_loop_mix", "cpu_us_median"),
        False,
    )
    mix_p50 = ours("closed_loop_mix", "p50_ms_median")
    builtin_p50 = _get(results, "closed_loop_mix", "builtin", "p50_ms_median")
    if mix_p50 is None or builtin_p50 is None:
        targets.append(_target("mixed closed loop p50", "< slack_sdk builtin", "n/a", None))
    else:
        targets.append(
            _target(
                "mixed closed loop p50",
                "< slack_sdk builtin",
                f"{mix_p50:.3f} ms vs {builtin_p50:.3f} ms",
                mix_p50 < builtin_p50,
            )
        )
    ratio_target("burst acks per second", 0.5, ours("burst", "rate"), floor("burst", "rate"), True)
    rate, aiohttp_rate = ours("burst", "rate"), _get(results, "burst", "aiohttp", "rate")
    targets.append(
        _target(
            "burst acks per second",
            "> slack_sdk aiohttp",
            "n/a" if rate is None or aiohttp_rate is None else f"{rate:,.0f}/s vs {aiohttp_rate:,.0f}/s",
            None if rate is None or aiohttp_rate is None else rate > aiohttp_rate,
        )
    )
    cpu, aiohttp_cpu = ours("burst", "cpu_per_envelope_us"), _get(results, "burst", "aiohttp", "cpu_per_envelope_us")
    targets.append(
        _target(
            "burst CPU per ack",
            "<= slack_sdk aiohttp",
            "n/a" if cpu is None or aiohttp_cpu is None else f"{cpu:.0f} µs vs {aiohttp_cpu:.0f} µs",
            None if cpu is None or aiohttp_cpu is None else cpu <= aiohttp_cpu,
        )
    )
    burst = results.get("burst", {}).get("ours")
    if burst and "acked" in burst:
        counts = (burst["lost"], burst["duplicate_acks"], burst["ran_twice"])
        targets.append(
            _target(
                "burst lost / acked twice / ran twice", "0 / 0 / 0", " / ".join(map(str, counts)), counts == (0, 0, 0)
            )
        )
    else:
        targets.append(_target("burst lost / acked twice / ran twice", "0 / 0 / 0", "n/a", None))

    idle_cpu = ours("idle", "cpu_seconds")
    sdk_idle = [v for v in (_get(results, "idle", k, "cpu_seconds") for k in SDK_KINDS) if v is not None]
    if idle_cpu is None or not sdk_idle:
        targets.append(_target("idle CPU", "<= slack_sdk's clients", "n/a", None))
    else:
        targets.append(
            _target(
                "idle CPU",
                "<= slack_sdk's clients",
                f"{idle_cpu * 1000:.1f} ms vs {min(sdk_idle) * 1000:.1f} ms",
                idle_cpu <= min(sdk_idle),
            )
        )
    threads = ours("idle", "threads")
    later = ours("idle", "threads_later")
    shown = "n/a" if threads is None else str(threads)
    if threads is not None and later is not None:
        shown += f" ({later} at {ours('idle', 'threads_later_at'):g} s after the traffic)"
    targets.append(
        _target(
            "idle threads (incl. the harness's main thread)",
            "<= 6",
            shown,
            None if threads is None else threads <= 6,
        )
    )
    vcsw = ours("idle", "vcsw")
    pings = ours("idle", "pings")
    woke = ours("idle", "by_thread") or {}
    others = sorted(
        name for name, f in woke.items() if f["vcsw"] and name != "MainThread" and not _is_ping_thread(name)
    )
    wanted = "only health/reader woke; <= 3 per ping cycle"
    if vcsw is None or pings is None:
        targets.append(_target("idle wake-ups only for pings", wanted, "n/a", None))
    else:
        # A cycle: the health thread pings, the reader gets the pong, the health thread checks the
        # pong deadline. A cycle straddling the window's start counts too.
        measured = f"{vcsw} switches, {pings} pings" + (f"; also woke: {', '.join(others)}" if others else "")
        targets.append(
            _target("idle wake-ups only for pings", wanted, measured, not others and vcsw <= 3 * (pings + 1))
        )
    close_ms = ours("idle", "close_ms")
    targets.append(_target("close()", "< 200 ms", _ms(close_ms), None if close_ms is None else close_ms < 200.0))
    for scenario, label in (("idle", "RSS after traffic"), ("connect", "RSS after connect")):
        rss = ours(scenario, "rss_mb")
        sdk_rss = [v for v in (_get(results, scenario, k, "rss_mb") for k in SDK_KINDS) if v]
        if rss is None or not sdk_rss:
            targets.append(_target(label, "<= slack_sdk's clients", "n/a", None))
        else:
            targets.append(
                _target(label, "<= slack_sdk's clients", f"{rss:.1f} MB vs {min(sdk_rss):.1f} MB", rss <= min(sdk_rss))
            )

    rotation = results.get("rotation", {}).get("ours")
    if rotation and "lost" in rotation:
        gap = rotation["no_connection_gap"] * 1000.0
        ack_gap = rotation["max_ack_gap_handover"] * 1000.0
        counts = (rotation["lost"], rotation["duplicate_acks"], rotation["ran_twice"])
        met = gap == 0.0 and counts == (0, 0, 0)
        targets.append(
            _target(
                "rotation: time without a connection; lost / acked twice / ran twice",
                "0 ms; 0 / 0 / 0",
                f"{gap:.0f} ms (largest ack gap in the handover {ack_gap:.1f} ms); {' / '.join(map(str, counts))}",
                met,
            )
        )
    else:
        targets.append(_target("rotation gap", "0 ms", "n/a", None))
    for scenario, label, limit in (("reset", "reset to hello", 0.3), ("silent", "silent connection to hello", 10.0)):
        entry = results.get(scenario, {}).get("ours")
        if not entry or "to_hello" not in entry:
            targets.append(_target(label, f"<= {limit:g} s", "n/a", None))
            continue
        value = entry["to_hello"]
        shown = f"not detected in {entry['cap']:g} s" if value is None else f"{value:.3f} s"
        targets.append(_target(label, f"<= {limit:g} s", shown, value is not None and value <= limit))
    return targets


# -- the table -------------------------------------------------------------------------------


Cell = Callable[[str], str]


def _rows(results: Results, settings: dict[str, Any]) -> list[tuple[str, Optional[Cell]]]:
    """(label, cell function) per table row; a None function makes a section heading.

    A heading's label is ``"<scenario>|<title>"``.
    """

    def get(scenario: str, *path: str) -> Callable[[str], Any]:
        """A getter of one figure for a client kind."""
        return lambda kind: _get(results, scenario, kind, *path)

    def speed_ms(scenario: str, *path: str) -> Cell:
        """Milliseconds with the ratio to the floor."""
        value = get(scenario, *path)
        return lambda kind: _ms(value(kind)) + ("" if kind == "floor" else _ratio(value(kind), value("floor")))

    def speed_us(scenario: str, *path: str) -> Cell:
        """Microseconds with the ratio to the floor."""
        value = get(scenario, *path)
        return lambda kind: (
            ("-" if value(kind) is None else f"{value(kind):,.0f} µs")
            + ("" if kind == "floor" else _ratio(value(kind), value("floor")))
        )

    def plain(scenario: str, *path: str, fmt: Callable[[Any], str] = str) -> Cell:
        """A figure formatted by ``fmt``."""
        value = get(scenario, *path)
        return lambda kind: "-" if value(kind) is None else fmt(value(kind))

    def closed_done(kind: str) -> str:
        """Envelopes measured, and whether the time cap cut the loop short."""
        entry = _get(results, "closed_loop", kind)
        if entry is None:
            return "-"
        text = f"{entry['done']:,}"
        return text + f" (capped at {settings['closed_cap']:g} s)" if entry["capped"] else text

    def burst_rate(kind: str, scenario: str = "burst") -> str:
        """Acks per second with the ratio to the floor (``scenario``: ``burst`` or ``burst_large``)."""
        value = _get(results, scenario, kind, "rate")
        if value is None:
            return "-"
        floor = _get(results, scenario, "floor", "rate")
        return f"{value:,.0f}/s" + ("" if kind == "floor" else _ratio(value, floor))

    def server_share(scenario: str) -> Cell:
        """The server process's CPU over the measured window, as a share of one core."""

        def cell(kind: str) -> str:
            """See :func:`server_share`."""
            entry = _get(results, scenario, kind, "server")
            if entry is None or not entry.get("wall"):
                return "-"
            return f"{entry['cpu']:.2f} s / {entry['wall']:.2f} s ({entry['cpu'] / entry['wall']:.0%})"

        return cell

    def rotation_counts(kind: str) -> str:
        """lost / acked twice / ran twice."""
        entry = _get(results, "rotation", kind)
        if entry is None or "lost" not in entry:
            return "-"
        return f"{entry['lost']} / {entry['duplicate_acks']} / {entry['ran_twice']}"

    def to_hello(scenario: str) -> Cell:
        """Seconds from the fault to the next hello, or not detected."""

        def cell(kind: str) -> str:
            """See :func:`to_hello`."""
            entry = _get(results, scenario, kind)
            if entry is None or "cap" not in entry:
                return "-"
            if entry["to_hello"] is None:
                return f"not detected in {entry['cap']:g} s"
            return _ms(entry["to_hello"] * 1000.0)

        return cell

    def idle_cpu(kind: str) -> str:
        """CPU milliseconds in the idle window."""
        value = _get(results, "idle", kind, "cpu_seconds")
        return "-" if value is None else f"{value * 1000:.1f} ms"

    def wakeups(kind: str) -> str:
        """Voluntary context switches per second, with the server's pings per second."""
        entry = _get(results, "idle", kind)
        if entry is None or "wakeups_per_s" not in entry:
            return "-"
        return f"{entry['wakeups_per_s']:.2f}/s ({entry['pings_per_s']:.2f} pings/s)"

    def cores(value: Any) -> str:
        """CPU of other processes, in cores."""
        return f"{value:.2f} cores"

    def by_thread(kind: str) -> str:
        """The threads that woke most in the idle window: ``name switches`` (harness thread left out)."""
        entry = _get(results, "idle", kind, "by_thread")
        if not entry:
            return "-"
        ranked = sorted(
            ((name, figures["vcsw"]) for name, figures in entry.items() if name != "MainThread" and figures["vcsw"]),
            key=lambda item: -item[1],
        )
        if not ranked:
            return "none"
        shown = [f"{_short(name)} {count}" for name, count in ranked[:2]]
        return ", ".join(shown) + (", …" if len(ranked) > 2 else "")

    def threads_later(kind: str) -> str:
        """Threads when sampled again later (our client only: its idle workers retire)."""
        entry = _get(results, "idle", kind)
        if entry is None or entry.get("threads_later") is None:
            return "-"
        return f"{entry['threads_later']} ({entry['threads_later_at']:g} s)"

    def mb(value: Any) -> str:
        """Megabytes."""
        return f"{value:.1f} MB"

    def ms_of_seconds(value: Any) -> str:
        """Seconds shown as milliseconds."""
        return _ms(value * 1000.0)

    idle = settings["idle_seconds"]
    burst_n = settings["burst_count"]
    return [
        (
            f"closed_loop|1. Closed loop ({settings['closed_count']:,} envelopes one at a time, "
            f"{settings['closed_rounds']} round(s) per client)",
            None,
        ),
        ("round trip p50", speed_ms("closed_loop", "rtt_ms", "p50")),
        ("round trip p90", speed_ms("closed_loop", "rtt_ms", "p90")),
        ("round trip p99", speed_ms("closed_loop", "rtt_ms", "p99")),
        ("client CPU per envelope", speed_us("closed_loop", "cpu_per_envelope_us")),
        ("envelopes measured", closed_done),
        ("server CPU / wall", server_share("closed_loop")),
        ("other processes' CPU", plain("closed_loop", "other_cpu_cores", fmt=cores)),
        ("CPU stolen by the hypervisor", plain("closed_loop", "steal_cores", fmt=cores)),
        (
            f"closed_loop_mix|1b. Mixed closed loop ({settings.get('mix_count', 0):,} envelopes, "
            f"{settings.get('mix_rounds', 0)} interleaved rounds, pinned)",
            None,
        ),
        ("round trip p50 (median of rounds)", speed_ms("closed_loop_mix", "p50_ms_median")),
        ("round trip p50 per round", plain("closed_loop_mix", "per_round_p50_ms", fmt=_ms_list)),
        ("round trip p99 (all rounds)", speed_ms("closed_loop_mix", "rtt_ms", "p99")),
        ("client CPU per envelope (median)", speed_us("closed_loop_mix", "cpu_us_median")),
        ("envelopes measured", plain("closed_loop_mix", "done", fmt=lambda v: f"{v:,}")),
        ("cores (server, client)", plain("closed_loop_mix", "pinned", fmt=_cores_pair)),
        ("server CPU / wall", server_share("closed_loop_mix")),
        ("other processes' CPU", plain("closed_loop_mix", "other_cpu_cores", fmt=cores)),
        (f"burst|2. Burst ({burst_n:,} envelopes, redelivery after {settings['redelivery_delay']:g} s)", None),
        ("acked per second", burst_rate),
        (f"lost (not acked in {settings['burst_bound']:g} s)", plain("burst", "lost", fmt=lambda v: f"{v:,}")),
        ("acked twice", plain("burst", "duplicate_acks", fmt=lambda v: f"{v:,}")),
        ("listener ran twice", plain("burst", "ran_twice", fmt=lambda v: f"{v:,}")),
        ("redeliveries", plain("burst", "redeliveries", fmt=lambda v: f"{v:,}")),
        ("send to ack p99", plain("burst", "latency_ms", "p99", fmt=_ms)),
        ("client CPU per envelope", speed_us("burst", "cpu_per_envelope_us")),
        ("threads after the burst", plain("burst", "threads_after")),
        ("server CPU / wall", server_share("burst")),
        ("other processes' CPU", plain("burst", "other_cpu_cores", fmt=cores)),
        ("CPU stolen by the hypervisor", plain("burst", "steal_cores", fmt=cores)),
        (
            f"burst_large|2b. Burst of 67 KB envelopes ({settings.get('burst_large_count', 0):,}, the whole "
            "block_actions sample)",
            None,
        ),
        ("acked per second", lambda kind: burst_rate(kind, "burst_large")),
        (
            f"lost (not acked in {settings.get('burst_large_bound', 0):g} s)",
            plain("burst_large", "lost", fmt=lambda v: f"{v:,}"),
        ),
        ("acked twice", plain("burst_large", "duplicate_acks", fmt=lambda v: f"{v:,}")),
        ("listener ran twice", plain("burst_large", "ran_twice", fmt=lambda v: f"{v:,}")),
        ("send to ack p99", plain("burst_large", "latency_ms", "p99", fmt=_ms)),
        ("client CPU per envelope", speed_us("burst_large", "cpu_per_envelope_us")),
        ("server CPU / wall", server_share("burst_large")),
        (f"idle|3. Idle ({idle:g} s after traffic)", None),
        ("client CPU", idle_cpu),
        ("threads in the process", plain("idle", "threads")),
        ("threads later (s after traffic)", threads_later),
        ("RSS", plain("idle", "rss_mb", fmt=mb)),
        ("wake-ups (voluntary switches)", wakeups),
        ("wake-ups by thread", by_thread),
        ("close()", plain("idle", "close_ms", fmt=_ms)),
        ("threads left after close()", plain("idle", "threads_after_close")),
        ("connect|4. Connect", None),
        ("construct to first hello", plain("connect", "to_hello_ms", fmt=_ms)),
        ("RSS after connect", plain("connect", "rss_mb", fmt=mb)),
        (f"rotation|5. Rotation ({settings['rotation_rate']:g} envelopes/s streaming)", None),
        ("time with no hello'd connection", plain("rotation", "no_connection_gap", fmt=ms_of_seconds)),
        ("largest ack gap: handover (+0.5 s)", plain("rotation", "max_ack_gap_handover", fmt=ms_of_seconds)),
        ("largest ack gap: whole stream", plain("rotation", "max_ack_gap", fmt=ms_of_seconds)),
        ("largest ack gap: before the warning", plain("rotation", "max_ack_gap_before", fmt=ms_of_seconds)),
        ("worst envelope delay (due to ack)", plain("rotation", "worst_delay", fmt=ms_of_seconds)),
        ("lost / acked twice / ran twice", rotation_counts),
        ("connections opened", plain("rotation", "connections_opened")),
        ("reset|6. TCP reset", None),
        ("reset to next hello", to_hello("reset")),
        ("silent|7. Silent connection", None),
        ("silence to next hello", to_hello("silent")),
    ]


def _ms_list(values: Any) -> str:
    """A list of milliseconds, compactly."""
    return ", ".join("-" if v is None else f"{v:.3f}" for v in values) + " ms"


def _cores_pair(pinned: Any) -> str:
    """``0 / 1`` for a server pinned to core 0 and a client to core 1; ``not pinned`` otherwise."""
    if not pinned or pinned[0] is None or pinned[1] is None:
        return "not pinned"
    return f"{','.join(map(str, pinned[0]))} / {','.join(map(str, pinned[1]))}"


def _is_ping_thread(thread_name: str) -> bool:
    """Whether ``thread_name`` is one of our client's health or reader threads (the ping machinery)."""
    return thread_name.startswith("slack_socket_mode-") and ("-health" in thread_name or "-reader-" in thread_name)


def _short(thread_name: str) -> str:
    """A thread name without our client's ``slack_socket_mode-<n>-`` prefix or a ``" (target)"`` suffix."""
    prefix, _, rest = thread_name.partition("-")
    if prefix == "slack_socket_mode" and rest:
        return rest.partition("-")[2] or rest
    return thread_name.split(" (", 1)[0]


def _source(source: dict[str, Any]) -> str:
    """``commit 1a2b3c4`` plus the files of ``src/`` changed since it, if any."""
    text = f"commit {source.get('commit') or 'unknown'}"
    changes = source.get("src_changes")
    if changes:
        text += f" with uncommitted changes to {', '.join(changes)}"
    return text


def render(report: dict[str, Any]) -> str:
    """The whole report as plain text: the figures table, the targets, the machine."""
    results: Results = report["results"]
    kinds: list[str] = report["clients"]
    rows = _rows(results, report["settings"])
    header = ["", *(CLIENT_TITLES.get(kind, kind) for kind in kinds)]
    table: list[Optional[list[str]]] = []
    showing = False
    for label, cell in rows:
        if cell is None:
            scenario, _, title = label.partition("|")
            showing = scenario in results
            if showing:
                table.append(None)
                table.append([title, *([""] * len(kinds))])
            continue
        if showing:
            table.append([f"  {label}", *(cell(kind) for kind in kinds)])
    widths = [max(len(header[i]), *(len(r[i]) for r in table if r is not None)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        """One row, columns padded."""
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for row in table:
        out.append("" if row is None else line(row))
    errors = [
        f"  {scenario} / {kind}: {entry['failed'].strip().splitlines()[-1]}"
        for scenario, per_kind in results.items()
        for kind, entry in per_kind.items()
        if entry.get("failed")
    ]
    if errors:
        out += ["", "Errors:", *errors]
    targets = report.get("targets") or []
    if targets:
        out += ["", "Targets for ours:"]
        width = max(len(t["target"]) for t in targets)
        for t in targets:
            mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            out.append(f"  {mark:6}  {t['target'].ljust(width)}  wanted {t['wanted']}; measured {t['measured']}")
    machine = report["machine"]
    out += [
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{machine['platform']}; load average at start {', '.join(f'{x:.2f}' for x in machine['load_average'])}",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()),
        f"Run: {machine['date']}, {report['runtime_seconds']:.0f} s{' (--quick)' if report['quick'] else ''}; "
        f"source {_source(machine.get('source') or {})}",
    ]
    return "\n".join(out)
