"""``python -m benchmarks.replay``: record N envelopes with ``listen --record``, replay them as fast as possible.

1. Records a session: ``slack-socket-mode listen --ack --record FILE`` runs against the local
   server, which pushes N envelopes (the shipped samples in turn, each with a fresh id).
2. Replays it: ``slack-socket-mode replay FILE --app benchmarks.replay:ack --speed max --json --quiet``
   runs as a process of its own, with a listener that acks each envelope at once.

Prints the command's wall time (process start to exit: imports, server, connect, replay, report)
and the replay's own ``duration`` (first push to last ack), with the ack time p50/p99. Run it from
the repository's root::

    python -m benchmarks.replay                  # 20,000 envelopes
    python -m benchmarks.replay --envelopes 2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

__all__ = ["ack", "main"]

_TOKEN = "xapp-1-A111-bench-replay"


def ack(client: Any, request: Any) -> None:
    """The replayed app: ack each envelope at once (a listener function for ``--app``)."""
    client.send_socket_mode_response({"envelope_id": request.envelope_id})


def record(path: str, count: int) -> float:
    """Record ``count`` envelopes with ``listen --ack --record path``; returns the seconds it took."""
    from slack_socket_mode.testing import SocketModeServer
    from slack_socket_mode.testing.samples import envelope_sample_names, load_sample

    samples = [load_sample(name) for name in envelope_sample_names()]
    envelopes = []
    for index in range(count):
        envelope = dict(samples[index % len(samples)], envelope_id=str(uuid.uuid4()))
        envelope.pop("retry_attempt", None)
        envelope.pop("retry_reason", None)
        envelopes.append(envelope)
    env = dict(os.environ, SLACK_APP_TOKEN=_TOKEN)
    with SocketModeServer(redelivery_delay=None) as server:
        command = [sys.executable, "-m", "slack_socket_mode", "listen", "--ack", "--json"]
        command += ["--api-url", server.api_url, "--record", path, "--count", str(count)]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("# listening"):
                break
        started = time.monotonic()
        server.push_many(envelopes)
        server.wait_for_acks(envelope_ids=[e["envelope_id"] for e in envelopes], timeout=600)
        proc.communicate(timeout=120)
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    """Record, then replay; print the figures. Returns the replay's exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=20_000, help="how many envelopes (20000)")
    parser.add_argument("--keep", metavar="FILE", help="write the recording here and keep it")
    args = parser.parse_args(argv)
    directory = tempfile.TemporaryDirectory()
    path = args.keep or os.path.join(directory.name, "session.jsonl")
    took = record(path, args.envelopes)
    size = os.path.getsize(path)
    print(f"recorded {args.envelopes} envelopes with listen --record in {took:.1f} s ({size / 1e6:.1f} MB)")
    command = [sys.executable, "-m", "slack_socket_mode", "replay", path, "--app", "benchmarks.replay:ack"]
    command += ["--speed", "max", "--json", "--quiet"]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    report = json.loads(proc.stdout)
    print(
        f"replayed {report['envelopes']} envelopes: {report['acked']} acked, {report['retried']} not within 3 s; "
        f"command {wall:.2f} s wall, replay {report['duration']:.2f} s "
        f"({report['envelopes'] / report['duration']:,.0f} envelopes/s); "
        f"ack time p50 {report['ack_time_p50'] * 1000:.1f} ms, p99 {report['ack_time_p99'] * 1000:.1f} ms"
    )
    directory.cleanup()
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
