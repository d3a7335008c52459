"""``python -m benchmarks``: run the suite, print the table, write the JSON report.

Scenario by scenario, each client runs in its own process against the local Socket Mode
server in another process (see :mod:`benchmarks.scenarios`). Progress goes to stderr; the
table goes to stdout; everything (figures, settings, machine) goes to
``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from .client_process import KINDS
from .control import BenchmarkError, Child
from .procinfo import machine_info
from .report import evaluate_targets, render
from .scenarios import (
    FLOOR_SCENARIOS,
    ROUND_SCENARIOS,
    SCENARIOS,
    Settings,
    combine_closed_loop,
    combine_mix,
    run_scenario,
)
from .server_process import server_main

__all__ = ["main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_ALIASES = {
    "wsc": "websocket_client",
    "websocket-client": "websocket_client",
    "slack_sdk": "builtin",
    "sdk": "builtin",
}


def _parse_list(text: str, known: tuple[str, ...], what: str, aliases: Optional[dict[str, str]] = None) -> list[str]:
    """A comma-separated list of names from ``known`` (in ``known``'s order)."""
    names = [(aliases or {}).get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(known)})")
    return [n for n in known if n in names]


def _parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark our Socket Mode client against slack_sdk's clients and a one-thread floor.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts and bounds: a smoke run of about a minute")
    parser.add_argument(
        "--only",
        metavar="SCENARIO[,SCENARIO]",
        type=lambda t: _parse_list(t, SCENARIOS, "scenario"),
        default=list(SCENARIOS),
        help=f"run only these scenarios ({', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--clients",
        metavar="CLIENT[,CLIENT]",
        type=lambda t: _parse_list(t, KINDS, "client", _ALIASES),
        default=[k for k in KINDS if k != "ours_redis"],
        help=f"run only these clients ({', '.join(KINDS)}; 'wsc' is short for websocket_client; all but "
        "ours_redis, which needs a Redis, by default)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        help="where to write the JSON report (default: benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 2 if our client misses a target that could be evaluated"
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="print the table of an earlier run's JSON report; run nothing"
    )
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="also draw the charts of the run (or of --render's report) into DIR: ratios, vs_sdk, latency (matplotlib)",
    )
    parser.add_argument(
        "--plot-format", choices=("svg", "png"), default="svg", help="the charts' file format (default: svg)"
    )
    return parser


def _plot(report: dict[str, Any], directory: Path, fmt: str) -> None:
    """Draw the report's charts into ``directory`` and say where (the ``bench`` extra has matplotlib)."""
    from .plots import write_plots

    for path in write_plots(report, directory, fmt):
        print(f"chart: {path}")


def _progress(text: str) -> None:
    """A progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


def _summary(scenario: str, result: dict[str, Any]) -> str:
    """A few words on a scenario's result, for the progress line."""
    if result.get("failed"):
        return "FAILED: " + str(result["failed"]).strip().splitlines()[-1]
    if scenario in ROUND_SCENARIOS:
        return f"p50 {result['rtt_ms']['p50']:.3f} ms, {result['cpu_per_envelope_us']:.0f} µs CPU/envelope"
    if scenario == "burst":
        rate = result["rate"] or 0.0
        return f"{rate:,.0f} acks/s, lost {result['lost']}, acked twice {result['duplicate_acks']}"
    if scenario == "idle":
        return (
            f"{result['cpu_seconds'] * 1000:.1f} ms CPU, {result['threads']} threads, close {result['close_ms']:.0f} ms"
        )
    if scenario == "connect":
        return f"{result['to_hello_ms']:.0f} ms to hello, {result['rss_mb']:.1f} MB"
    if scenario == "rotation":
        return (
            f"no connection {result['no_connection_gap'] * 1000:.0f} ms, ack gap {result['max_ack_gap'] * 1000:.0f} ms"
        )
    to_hello = result.get("to_hello")
    return "not detected" if to_hello is None else f"{to_hello:.3f} s to hello"


def _schedule(settings: Settings, scenarios: list[str], kinds: list[str]) -> list[tuple[str, str]]:
    """(scenario, client) in the order they run: scenario by scenario; closed-loop rounds interleaved."""
    order: list[tuple[str, str]] = []
    for scenario in scenarios:
        for _ in range(settings.rounds(scenario)):
            order += [(scenario, kind) for kind in kinds if kind != "floor" or scenario in FLOOR_SCENARIOS]
    return order


def run(settings: Settings, scenarios: list[str], kinds: list[str], log_dir: Optional[Path]) -> dict[str, Any]:
    """Run ``scenarios`` for ``kinds``; returns ``{scenario: {kind: figures}}``.

    A scenario that fails (a process error or timeout) is recorded as ``{"failed": text}``;
    the server process is restarted if it stopped answering.
    """
    parts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    server = Child(server_main, "server")
    try:
        for scenario, kind in _schedule(settings, scenarios, kinds):
            log_path = log_dir / f"{kind}-{scenario}.log" if log_dir else None
            started = time.monotonic()
            try:
                result = run_scenario(scenario, server, kind, settings, log_path)
            except BenchmarkError:
                result = {"failed": traceback.format_exc()}
                try:
                    server.call("stop", timeout=15.0)
                except BenchmarkError:
                    server.kill()
                    server = Child(server_main, "server")
            result["elapsed"] = time.monotonic() - started
            parts.setdefault((scenario, kind), []).append(result)
            shown = (
                combine_closed_loop([result]) if scenario in ROUND_SCENARIOS and not result.get("failed") else result
            )
            _progress(f"{scenario:12} {kind:17} {result['elapsed']:5.1f} s  {_summary(scenario, shown)}")
    finally:
        server.stop()
    results: dict[str, dict[str, Any]] = {}
    for (scenario, kind), runs in parts.items():
        combine = {"closed_loop": combine_closed_loop, "closed_loop_mix": combine_mix}.get(scenario)
        results.setdefault(scenario, {})[kind] = combine(runs) if combine is not None else runs[0]
    return results


def _byte_compile_ours() -> None:
    """Give our package the ``.pyc`` files pip gives slack_sdk at install.

    Run from a checkout (``PYTHONPATH=src`` or an editable install) with
    ``PYTHONDONTWRITEBYTECODE`` set, as on some CI machines, every client process would compile
    our sources on import (2.5 MB more RSS, and slower), while slack_sdk's come compiled.
    """
    import compileall

    import slack_socket_mode

    compileall.compile_dir(str(Path(slack_socket_mode.__file__).parent), quiet=2)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the suite. Returns 0, 1 if a scenario failed to run, or 2 with ``--check`` and a missed target."""
    args = _parser().parse_args(argv)
    if args.render is not None:
        earlier = json.loads(args.render.read_text(encoding="utf-8"))
        earlier["targets"] = evaluate_targets(earlier["results"])
        print(render(earlier))
        if args.plots is not None:
            _plot(earlier, args.plots, args.plot_format)
        return 0
    _byte_compile_ours()
    settings = Settings.quick() if args.quick else Settings()
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    log_dir = output.parent / "logs"
    log_dir.mkdir(exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    machine = machine_info()
    _progress(f"benchmarks: {', '.join(args.only)} for {', '.join(args.clients)}{' (quick)' if args.quick else ''}")
    started = time.monotonic()
    results = run(settings, args.only, args.clients, log_dir)
    report: dict[str, Any] = {
        "machine": machine,
        "quick": args.quick,
        "settings": settings.as_dict(),
        "clients": args.clients,
        "scenarios": args.only,
        "runtime_seconds": time.monotonic() - started,
        "results": results,
    }
    report["targets"] = evaluate_targets(results)
    output.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(render(report))
    print(f"\nJSON: {output}")
    if args.plots is not None:
        _plot(report, args.plots, args.plot_format)
    if any(entry.get("failed") for per_kind in results.values() for entry in per_kind.values()):
        return 1
    if args.check and any(t["met"] is False for t in report["targets"]):
        return 2
    return 0
