"""``python -m benchmarks.memory``: what a full envelope ledger takes, and whether RSS stays flat past it.

**The ledger.** The client remembers each envelope it handled (see :mod:`slack_socket_mode.ledger`) until
it is 900 s old or 50,000 newer ones came after it. This fills an
:class:`~slack_socket_mode.ledger.EnvelopeLedger` to that bound the way the client does (a
first delivery, the plain ack, the listeners' return, each with its own monotonic time and a
fresh 36-character envelope id) and reports what it holds: the bytes the Python allocator
gave out (``tracemalloc``), and the growth of the process's resident set. A tenth of the acks
carry a payload (``{"envelope_id": …, "payload": {"text": …}}``), which the ledger keeps to
send again if Slack redelivers.

**A long run.** Our client, in this process, against the local server in a spawned one: rounds
of 10,000 envelopes pushed in batches of 200 (each batch acked before the next), with a rotation
(``disconnect`` ``warning``) after every 2,000 and a TCP reset once a round, until ``--envelopes``
were acked. The listener acks and keeps nothing, so the process's RSS after each round is the
client's own: it should grow while the ledger fills to its bound of 50,000 and then stay level.
(The soak, :mod:`benchmarks.soak`, keeps a record of every listener run to count runs twice, and
its RSS grows with that record too.)

Usage::

    PYTHONPATH=src python -m benchmarks.memory [--entries N] [--envelopes N]
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
import tracemalloc
import uuid
from multiprocessing.connection import Connection
from typing import Any

from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.ledger import EnvelopeLedger
from slack_socket_mode.testing import SocketModeServer

from .control import Child, serve
from .procinfo import sample_self

_ROUND, _BATCH, _ROTATE_EVERY = 10_000, 200, 2_000


def fill(entries: int) -> EnvelopeLedger[object]:
    """A fresh ledger holding ``entries`` settled envelopes."""
    conn = object()
    ledger: EnvelopeLedger[object] = EnvelopeLedger(max_entries=entries)
    for n in range(entries):
        envelope_id = str(uuid.uuid4())
        ledger.receive(envelope_id, conn, time.monotonic())
        text = None if n % 10 else '{"envelope_id":"' + envelope_id + '","payload":{"text":"Thanks!"}}'
        ledger.ack(envelope_id, text, time.monotonic())
        ledger.written(conn)
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
    assert len(ledger) == entries  # alive until measured
    return rss, traced


def _server_main(conn: Connection) -> None:
    """The spawned server process: ``start``, ``push`` (a batch, then wait for all acks), ``rotate``, ``reset``."""
    server = SocketModeServer(redelivery_delay=None)
    pushed = 0

    def push(count: int) -> int:
        nonlocal pushed
        server.wait_for_connections(1, timeout=60.0)
        for _ in range(count):
            server.push(
                {
                    "type": "events_api",
                    "envelope_id": str(uuid.uuid4()),
                    "payload": {"event": {"type": "message", "text": "memory"}},
                    "accepts_response_payload": False,
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
        pushed += count
        server.wait_for_acks(pushed, timeout=60.0)
        return pushed

    def replace(fault: str) -> None:
        before = len(server.all_connections)
        if fault == "rotate":
            server.disconnect("warning")
        else:
            server.reset()
        server.wait_for_new_connection(before, timeout=60.0)

    serve(
        conn,
        {
            "start": lambda: server.start().api_url,
            "push": push,
            "rotate": lambda: replace("rotate"),
            "reset": lambda: replace("reset"),
        },
    )
    server.stop()


def long_run(envelopes: int) -> list[dict[str, Any]]:
    """Run our client through ``envelopes`` envelopes; RSS and ledger size after each round."""
    logging.getLogger("slack_socket_mode").setLevel(logging.ERROR)
    server = Child(_server_main, "memory-server")
    rounds: list[dict[str, Any]] = []
    try:
        api_url = server.call("start")
        client = SocketModeClient(app_token="xapp-1-A111-1-memory", web_client=WebClient(base_url=api_url))
        client.socket_mode_request_listeners.append(
            lambda c, r: c.send_socket_mode_response(SocketModeResponse(envelope_id=r.envelope_id))
        )
        client.connect()
        acked, started = 0, time.monotonic()
        try:
            while acked < envelopes:
                for _ in range(_ROUND // _BATCH):
                    acked = server.call("push", timeout=120.0, count=_BATCH)
                    if acked % _ROTATE_EVERY == 0:
                        last = acked % _ROUND == 0
                        server.call("reset" if last else "rotate", timeout=120.0)
                gc.collect()
                rounds.append(
                    {
                        "acked": acked,
                        "seconds": round(time.monotonic() - started, 1),
                        "ledger": len(client._acks.ledger),  # a benchmark may look inside
                        "rss": sample_self()["rss"],
                    }
                )
                print(
                    f"  {acked:>7,} acked, {rounds[-1]['seconds']:>5.0f} s: ledger {rounds[-1]['ledger']:,}, "
                    f"RSS {(rounds[-1]['rss'] or 0) / 2**20:.1f} MiB",
                    flush=True,
                )
        finally:
            client.close()
    finally:
        server.stop()
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50_000, help="envelopes in the ledger (default: 50,000)")
    parser.add_argument(
        "--envelopes", type=int, default=150_000, help="envelopes in the long run (default: 150,000; 0: skip it)"
    )
    args = parser.parse_args()
    rss, traced = measure(args.entries)
    print(
        f"ledger of {args.entries:,} settled envelopes: {traced / 2**20:.1f} MiB traced "
        f"({traced / args.entries:.0f} bytes an envelope, its id included); "
        f"RSS grew {rss / 2**20:.1f} MiB"
    )
    if args.envelopes > 0:
        print(f"long run: {args.envelopes:,} envelopes, a rotation every {_ROTATE_EVERY:,}, a reset every {_ROUND:,}")
        rounds = long_run(args.envelopes)
        full = [r for r in rounds if r["ledger"] >= 50_000 and r["rss"]]
        if len(full) >= 2:
            growth = (full[-1]["rss"] - full[0]["rss"]) / 2**20
            print(
                f"RSS once the ledger was full: {full[0]['rss'] / 2**20:.1f} -> {full[-1]['rss'] / 2**20:.1f} MiB "
                f"({growth:+.1f} MiB over {full[-1]['acked'] - full[0]['acked']:,} envelopes)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
