"""Charts of a benchmark report: ``python -m benchmarks --plots DIR`` (matplotlib, the ``bench`` extra).

Drawn from the same report as the table (:func:`benchmarks.report.render`), so every bar is a
figure of that run:

* ``ratios.svg``: each client's figure as a multiple of the one-thread floor's, per measure of
  the closed loops and the burst (lower is better; 1 is the floor);
* ``vs_sdk.svg``: how many times better our client did than each of slack_sdk's clients, per
  measure (above 1: ours is better; below: theirs);
* ``latency.svg``: the distribution of round trips of the closed loops (the share of envelopes
  acked within a time), and the burst's send-to-ack percentiles.

SVG by default; ``--plot-format png`` for PNG. Text stays text in the SVG (not paths), and the
files carry no date, so a run that measured the same figures writes the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from .report import CLIENT_TITLES, SDK_KINDS

__all__ = ["write_plots"]

Results = dict[str, dict[str, dict[str, Any]]]

#: A colour per client, the same in every chart.
COLOURS = {
    "ours": "#1f6feb",
    "ours_redis": "#0b3d91",
    "aio": "#5aa9e6",
    "builtin": "#d1495b",
    "websocket_client": "#edae49",
    "aiohttp": "#66a182",
    "websockets": "#8d6a9f",
    "floor": "#555555",
}


def _get(results: Results, scenario: str, kind: str, *path: str) -> Optional[float]:
    """``results[scenario][kind][path…]`` as a number, or None where missing, failed or zero."""
    value: Any = results.get(scenario, {}).get(kind)
    if not value or value.get("failed"):
        return None
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _per_second(value: Optional[float]) -> Optional[float]:
    """Seconds per ack from acks per second (so that lower is better, like every other measure)."""
    return 1.0 / value if value else None


#: (label, scenario, path, transform) of the measures with a floor, lower is better.
_FLOOR_MEASURES: list[tuple[str, str, tuple[str, ...], Callable[[Optional[float]], Optional[float]]]] = [
    ("closed loop: round trip p50", "closed_loop", ("rtt_ms", "p50"), lambda v: v),
    ("closed loop: round trip p99", "closed_loop", ("rtt_ms", "p99"), lambda v: v),
    ("closed loop: CPU per envelope", "closed_loop", ("cpu_per_envelope_us",), lambda v: v),
    ("mixed loop: round trip p50", "closed_loop_mix", ("p50_ms_median",), lambda v: v),
    ("mixed loop: CPU per envelope", "closed_loop_mix", ("cpu_us_median",), lambda v: v),
    ("burst: time per ack (1 / rate)", "burst", ("rate",), _per_second),
    ("burst: CPU per ack", "burst", ("cpu_per_envelope_us",), lambda v: v),
]

#: (label, scenario, path, higher_is_better) of the measures compared with slack_sdk's clients.
_SDK_MEASURES: list[tuple[str, str, tuple[str, ...], bool]] = [
    ("closed loop: round trip p50", "closed_loop", ("rtt_ms", "p50"), False),
    ("mixed loop: round trip p50", "closed_loop_mix", ("p50_ms_median",), False),
    ("closed loop: CPU per envelope", "closed_loop", ("cpu_per_envelope_us",), False),
    ("burst: acks per second", "burst", ("rate",), True),
    ("burst: CPU per ack", "burst", ("cpu_per_envelope_us",), False),
    ("burst: send to ack p99", "burst", ("latency_ms", "p99"), False),
    ("idle: CPU", "idle", ("cpu_seconds",), False),
    ("idle: RSS after traffic", "idle", ("rss_mb",), False),
    ("connect: construct to hello", "connect", ("to_hello_ms",), False),
    ("rotation: largest ack gap", "rotation", ("max_ack_gap_handover",), False),
    ("TCP reset: to the next hello", "reset", ("to_hello",), False),
    ("silent connection: to the next hello", "silent", ("to_hello",), False),
]


def _setup() -> Any:
    """matplotlib's pyplot, with a backend and settings for files (no display, no dates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text as text: small files, selectable labels
            "svg.hashsalt": "slack-socket-mode",  # the same ids in every run
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _save(plt: Any, figure: Any, path: Path) -> Path:
    """Write ``figure`` to ``path`` without a date in it, and close it."""
    metadata = {"Date": None} if path.suffix == ".svg" else {}
    figure.savefig(path, bbox_inches="tight", metadata=metadata, dpi=144)
    plt.close(figure)
    return path


def _grouped_bars(
    plt: Any, rows: list[tuple[str, dict[str, float]]], kinds: list[str], title: str, xlabel: str, reference: float
) -> Any:
    """A horizontal grouped bar chart on a log scale: a group per row, a bar per client, a line at ``reference``."""
    figure, axes = plt.subplots(figsize=(8.0, 0.5 + 0.28 * len(kinds) * len(rows) + 0.35 * len(rows)))
    height = 0.8 / max(1, len(kinds))
    values = [v for _, per_kind in rows for v in per_kind.values()]
    for i, kind in enumerate(kinds):
        ys, xs = [], []
        for r, (_, per_kind) in enumerate(rows):
            if kind in per_kind:
                ys.append(r + (i - (len(kinds) - 1) / 2) * height)
                xs.append(per_kind[kind])
        bars = axes.barh(ys, xs, height=height * 0.9, color=COLOURS.get(kind, "#999999"), label=CLIENT_TITLES[kind])
        axes.bar_label(bars, labels=[f"{x:.2f}x" if x < 10 else f"{x:.0f}x" for x in xs], padding=2, fontsize=7)
    axes.set_yticks(range(len(rows)), [label for label, _ in rows])
    axes.invert_yaxis()
    axes.set_xscale("log")
    low, high = min([*values, reference]), max([*values, reference])
    axes.set_xlim(low / 1.6, high * 2.2)
    axes.axvline(reference, color="#333333", linewidth=0.8, linestyle="--")
    axes.set_xlabel(xlabel)
    axes.set_title(title, loc="left", fontsize=11)
    axes.legend(loc="lower right", fontsize=8, frameon=False)
    axes.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}x"))
    return figure


def _ratios(plt: Any, results: Results, kinds: list[str], path: Path) -> Optional[Path]:
    """``ratios``: every client's figure over the floor's."""
    shown = [k for k in kinds if k != "floor"]
    rows: list[tuple[str, dict[str, float]]] = []
    for label, scenario, keys, transform in _FLOOR_MEASURES:
        floor = transform(_get(results, scenario, "floor", *keys))
        if floor is None:
            continue
        per_kind = {}
        for kind in shown:
            value = transform(_get(results, scenario, kind, *keys))
            if value is not None:
                per_kind[kind] = value / floor
        if per_kind:
            rows.append((label, per_kind))
    if not rows:
        return None
    figure = _grouped_bars(
        plt,
        rows,
        [k for k in shown if any(k in r for _, r in rows)],
        "Against the one-thread floor (lower is better; the dashed line is the floor)",
        "the client's figure as a multiple of the floor's (log scale)",
        1.0,
    )
    return _save(plt, figure, path)


def _vs_sdk(plt: Any, results: Results, kinds: list[str], path: Path) -> Optional[Path]:
    """``vs_sdk``: how many times better ours did than each slack_sdk client."""
    sdk = [k for k in SDK_KINDS if k in kinds]
    if "ours" not in kinds or not sdk:
        return None
    rows: list[tuple[str, dict[str, float]]] = []
    for label, scenario, keys, higher_is_better in _SDK_MEASURES:
        ours = _get(results, scenario, "ours", *keys)
        if ours is None:
            continue
        per_kind = {}
        for kind in sdk:
            theirs = _get(results, scenario, kind, *keys)
            if theirs is not None:
                per_kind[kind] = ours / theirs if higher_is_better else theirs / ours
        if per_kind:
            rows.append((label, per_kind))
    if not rows:
        return None
    figure = _grouped_bars(
        plt,
        rows,
        [k for k in sdk if any(k in r for _, r in rows)],
        "Ours against slack_sdk's clients (above 1: ours is better)",
        "times better than slack_sdk's client (log scale); no bar: that client did not detect the fault",
        1.0,
    )
    return _save(plt, figure, path)


def _latency(plt: Any, results: Results, kinds: list[str], path: Path) -> Optional[Path]:
    """``latency``: the closed loops' round-trip distributions, and the burst's percentiles."""
    panels = [
        (s, t) for s, t in (("closed_loop", "Closed loop"), ("closed_loop_mix", "Mixed closed loop")) if s in results
    ]
    has_burst = any(_get(results, "burst", k, "latency_ms", "p50") for k in kinds)
    count = len(panels) + (1 if has_burst else 0)
    if not count:
        return None
    figure, axes_list = plt.subplots(1, count, figsize=(4.2 * count, 3.6), squeeze=False)
    axes_iter = iter(axes_list[0])
    for scenario, title in panels:
        axes = next(axes_iter)
        for kind in kinds:
            entry = results[scenario].get(kind) or {}
            rtts = sorted(x for x in entry.get("rtts_ms") or () if x > 0)
            if not rtts or entry.get("failed"):
                continue
            # At most about 400 steps of the distribution (each a quantile): the file stays small.
            picked = sorted({round(i * (len(rtts) - 1) / 400) for i in range(401)} | {len(rtts) - 1})
            xs = [rtts[i] for i in picked]
            shares = [(i + 1) / len(rtts) for i in picked]
            axes.step(xs, shares, where="post", color=COLOURS.get(kind), label=CLIENT_TITLES[kind], linewidth=1.2)
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))
        axes.set_ylim(0, 1.01)
        axes.set_xlabel("round trip, ms (log scale)")
        axes.set_ylabel("share of envelopes acked within")
        axes.set_title(f"{title}: round trips", loc="left", fontsize=11)
        axes.grid(True, which="major", linewidth=0.3)
        axes.legend(fontsize=7, frameon=False, loc="lower right")
    if has_burst:
        axes = next(axes_iter)
        marks = ("p50", "p90", "p99", "max")
        shown = [k for k in kinds if _get(results, "burst", k, "latency_ms", "p50")]
        for i, kind in enumerate(shown):
            values = [_get(results, "burst", kind, "latency_ms", m) for m in marks]
            points = [(j, v) for j, v in enumerate(values) if v is not None]
            axes.plot(
                [j + (i - (len(shown) - 1) / 2) * 0.08 for j, _ in points],
                [v for _, v in points],
                marker="o",
                color=COLOURS.get(kind),
                label=CLIENT_TITLES[kind],
                linewidth=1,
            )
        axes.set_xticks(range(len(marks)), marks)
        axes.set_yscale("log")
        axes.set_ylabel("send to ack, ms (log scale)")
        count_text = results["burst"].get("ours", {}).get("count")
        axes.set_title(
            "Burst: send to ack" + (f" ({count_text:,} envelopes)" if count_text else ""), loc="left", fontsize=11
        )
        axes.yaxis.set_major_formatter(plt.FuncFormatter(lambda y, _: f"{y:g}"))
        axes.grid(True, which="major", linewidth=0.3)
        axes.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    figure.tight_layout()
    return _save(plt, figure, path)


def write_plots(report: dict[str, Any], directory: Path, fmt: str = "svg") -> list[Path]:
    """Write the charts of ``report`` (as :func:`benchmarks.cli.main` builds it) into ``directory``.

    Returns the files written; a chart with nothing to show (its clients or scenarios did not
    run) is left out.

    Raises:
        ImportError: matplotlib is not installed (``pip install -e ".[bench]"``).
    """
    plt = _setup()
    directory.mkdir(parents=True, exist_ok=True)
    results: Results = report["results"]
    kinds: list[str] = [k for k in report["clients"] if k in CLIENT_TITLES]
    written = [
        _ratios(plt, results, kinds, directory / f"ratios.{fmt}"),
        _vs_sdk(plt, results, kinds, directory / f"vs_sdk.{fmt}"),
        _latency(plt, results, kinds, directory / f"latency.{fmt}"),
    ]
    return [p for p in written if p is not None]
