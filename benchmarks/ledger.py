"""``python -m benchmarks.ledger``: the memory a full envelope ledger takes.

The client remembers each envelope it handled (see :mod:`slack_socket_mode.ledger`) until
it is 900 s old or 50,000 newer ones came after it. This fills an
:class:`~slack_socket_mode.ledger.EnvelopeLedger` to that bound the way the client does (a
first delivery, the plain ack, the listeners' return, each with its own monotonic time and a
fresh 36-character envelope id) and reports what it holds: the bytes the Python allocator
gave out (``tracemalloc``), and the growth of the process's resident set. A tenth of the acks
carry a payload (``{"envelope_id": …, "payload": {"text": …}}``), which the ledger keeps to
send again if Slack redelivers.

Usage::

    PYTHONPATH=src python -m benchmarks.ledger [--entries N]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
import uuid

from slack_socket_mode.ledger import EnvelopeLedger

from .procinfo import sample_self


def fill(entries: int) -> EnvelopeLedger[object]:
    """A fresh ledger holding ``entries`` settled envelopes."""
    conn = object()
    ledger: EnvelopeLedger[object] = EnvelopeLedger(max_entries=entries)
    for n in range(entries):
        envelope_id = str(uuid.uuid4())
        ledger.receive(envelope_id, conn, time.monotonic())
        text = None if n % 10 else '{"envelope_id":"' + envelope_id + '","payload":{"text":"Thanks!"}}'
        ledger.ack(envelope_id, text, time.monotonic())
        ledger.handled(envelope_id)
    assert len(ledger) == entries
    return ledger


def measure(entries: int) -> tuple[int, int]:
    """(RSS growth, traced bytes) of a full ledger: the RSS first, before tracemalloc adds its own."""
    gc.collect()
    before = sample_self()["rss"] or 0
    ledger = fill(entries)
    gc.collect()
    rss = (sample_self()["rss"] or 0) - before
    del ledger
    gc.collect()
    tracemalloc.start()
    ledger = fill(entries)
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return rss, traced


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50_000, help="envelopes to remember (default: 50,000)")
    args = parser.parse_args()
    rss, traced = measure(args.entries)
    print(
        f"ledger of {args.entries:,} settled envelopes: {traced / 2**20:.1f} MiB traced "
        f"({traced / args.entries:.0f} bytes an envelope, its id included); "
        f"RSS grew {rss / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
