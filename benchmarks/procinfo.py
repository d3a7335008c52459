"""Measurements of the current process and of the machine, for the benchmark suite.

Each benchmark process (the server, every client) samples itself with :func:`sample_self`:
CPU time from ``getrusage(RUSAGE_SELF)`` (every thread of the process, microsecond
resolution), voluntary and involuntary context switches from the same call (all threads,
including ones that have ended), and the thread count and resident set size from
``/proc/self/status``. :func:`machine_info` describes where the suite ran.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import sys
import time
from importlib import metadata
from typing import Any, Optional

__all__ = ["cpu_seconds", "delta", "machine_info", "pin_process", "sample_self", "threads_detail"]


def _status_fields() -> dict[str, str]:
    """The ``Name: value`` lines of ``/proc/self/status`` (empty where there is no /proc)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
    except OSError:
        pass
    return fields


def _kib(value: Optional[str]) -> Optional[int]:
    """Bytes from a ``/proc`` value such as ``"12345 kB"`` (None if absent)."""
    if not value:
        return None
    number = value.split()[0]
    return int(number) * 1024 if number.isdigit() else None


def _machine_cpu() -> tuple[Optional[float], Optional[float]]:
    """Busy and stolen CPU seconds of the whole machine so far, all cores (from ``/proc/stat``).

    Busy is user + nice + system + irq + softirq; stolen is time the hypervisor gave to others.
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None, None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None, None
    ticks = [int(x) for x in fields[1:9]]
    hertz = os.sysconf("SC_CLK_TCK")
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    return busy / hertz, ticks[7] / hertz


def threads_detail() -> dict[str, dict[str, float]]:
    """Voluntary context switches and CPU seconds of each Python thread of this process, by name.

    From ``/proc/self/task/<native id>/status`` and ``…/schedstat``; threads that end meanwhile
    are skipped.
    """
    import threading

    detail: dict[str, dict[str, float]] = {}
    for thread in threading.enumerate():
        native = thread.native_id
        if native is None:
            continue
        try:
            with open(f"/proc/self/task/{native}/status", encoding="ascii", errors="replace") as status:
                text = status.read()
            with open(f"/proc/self/task/{native}/schedstat", encoding="ascii") as schedstat:
                on_cpu_ns = int(schedstat.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        vcsw = 0
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vcsw = int(line.split()[1])
        detail[thread.name] = {"vcsw": vcsw, "cpu": on_cpu_ns / 1e9}
    return detail


def pin_process(cpus: Optional[list[int]]) -> Optional[list[int]]:
    """Pin every thread of this process (and the threads it starts later) to ``cpus``.

    ``os.sched_setaffinity`` on Linux sets one thread's affinity; new threads inherit their
    creator's, so each existing thread (``/proc/self/task``) is set. ``None`` allows every core
    again.

    Returns:
        The cores the calling thread may now run on, or None where affinity is not supported
        (not Linux) or the machine has a single core.
    """
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    wanted = set(cpus) if cpus is not None else set(range(os.cpu_count() or 1))
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), wanted)
        except (ProcessLookupError, OSError):
            pass  # a thread that just ended
    return sorted(os.sched_getaffinity(0))


def cpu_seconds() -> float:
    """User plus system CPU seconds used so far by every thread of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sample_self() -> dict[str, Any]:
    """A snapshot of this process: monotonic time, CPU, context switches, threads, memory.

    The CPU figures are read last, so the cost of the rest of the snapshot falls before them.

    Returns:
        ``{"t": monotonic seconds, "cpu_user": s, "cpu_sys": s, "cpu": s, "vcsw": n,
        "ivcsw": n, "threads": n, "rss": bytes, "rss_peak": bytes, "machine_busy": s,
        "machine_steal": s, "caller_cpu": s}``: ``machine_*`` for the whole machine (all
        cores), ``caller_cpu`` for the calling thread only (in a client process, the harness's
        own thread, whose CPU :func:`delta` reports apart).
    """
    fields = _status_fields()
    threads = fields.get("Threads")
    busy, steal = _machine_cpu()
    own = time.thread_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "t": time.monotonic(),
        "cpu_user": usage.ru_utime,
        "cpu_sys": usage.ru_stime,
        "cpu": usage.ru_utime + usage.ru_stime,
        "vcsw": usage.ru_nvcsw,
        "ivcsw": usage.ru_nivcsw,
        "threads": int(threads) if threads and threads.isdigit() else None,
        "rss": _kib(fields.get("VmRSS")),
        "rss_peak": _kib(fields.get("VmHWM")),
        "machine_busy": busy,
        "machine_steal": steal,
        "caller_cpu": own,
    }


def delta(before: dict[str, Any], after: dict[str, Any], *, exclude_caller: bool = False) -> dict[str, Any]:
    """Wall time, CPU seconds and context switches between two :func:`sample_self` snapshots.

    With ``exclude_caller``, ``cpu`` leaves out the CPU of the thread that took the snapshots
    (in a client process, the harness's own thread answering the suite); ``cpu_process`` is
    always the whole process's and ``cpu_harness`` that thread's. ``cpu_user``, ``cpu_sys`` and
    the context switches are the whole process's.

    ``machine_busy`` and ``machine_steal`` are the whole machine's (all processes, all cores),
    None where ``/proc/stat`` is not available.
    """
    machine: dict[str, Optional[float]] = {}
    for key in ("machine_busy", "machine_steal"):
        machine[key] = None if before.get(key) is None or after.get(key) is None else after[key] - before[key]
    harness = after["caller_cpu"] - before["caller_cpu"] if "caller_cpu" in before and "caller_cpu" in after else 0.0
    return {
        **machine,
        "wall": after["t"] - before["t"],
        "cpu": max(0.0, after["cpu"] - before["cpu"] - (harness if exclude_caller else 0.0)),
        "cpu_process": after["cpu"] - before["cpu"],
        "cpu_harness": harness,
        "cpu_user": after["cpu_user"] - before["cpu_user"],
        "cpu_sys": after["cpu_sys"] - before["cpu_sys"],
        "vcsw": after["vcsw"] - before["vcsw"],
        "ivcsw": after["ivcsw"] - before["ivcsw"],
    }


def _cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution``; for our package run from source, its ``__version__``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pass
    if distribution == "slack-socket-mode":
        try:
            import slack_socket_mode
        except ImportError:
            return None
        return f"{slack_socket_mode.__version__} (source)"
    return None


def _source_state() -> dict[str, Any]:
    """The project's git commit and whether ``src/`` differs from it (read-only git commands)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "src_changes": None}
    return {"commit": commit or None, "src_changes": [line[3:] for line in changed if line.strip()]}


def machine_info() -> dict[str, Any]:
    """Where and when the suite ran: CPU, cores, OS, Python and package versions, load."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "load_average": load,
        "source": _source_state(),
        "packages": {
            name: _version(name) for name in ("slack-socket-mode", "slack_sdk", "websocket-client", "websockets")
        },
    }
