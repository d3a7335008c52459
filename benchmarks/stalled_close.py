"""How long ``close()`` takes against a peer that stopped reading, and whether the acks in flight land.

Run it from the project root (with the package installed, or ``PYTHONPATH=src``)::

    python -m benchmarks.stalled_close            # 5 runs of each case
    python -m benchmarks.stalled_close --runs 10

Each case runs a client with the default settings against the local server on loopback. The
server stops reading one connection (:meth:`SocketModeServer.silence`) while 16 listeners of
envelopes it delivered ack with 1 MB payloads, far more than the socket buffers hold, so the
writes block; then the client calls ``close(5)``. In the second case the client holds two
connections, and 4 more listeners, running on the healthy one when ``close()`` begins, ack there
once it has begun. The third is the peer
that stopped reading with no write under way: the close frame goes out and its answer never comes.
Printed per case: the median and the largest ``close()`` time, and how many of the healthy
connection's envelopes the server saw acked.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from typing import Any

from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.testing import SocketModeServer

_TOKEN = "xapp-1-A0BENCH-1-stalled"
_BIG = {"text": "x" * 1_000_000}


def _run(case: str) -> tuple[float, int, int]:
    """One run: (close() seconds, healthy envelopes acked at the server, healthy envelopes pushed)."""
    with SocketModeServer(redelivery_delay=None) as server:
        two = case == "stalled + healthy"
        started, go, finish = threading.Semaphore(0), threading.Event(), threading.Event()

        def listener(client: SocketModeClient, request: Any) -> None:
            started.release()
            if request.payload.get("big"):
                go.wait(10.0)
                client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": _BIG})
            else:
                finish.wait(10.0)
                client.send_socket_mode_response({"envelope_id": request.envelope_id})

        client = SocketModeClient(
            _TOKEN, web_client=WebClient(base_url=server.api_url), connections=2 if two else 1, concurrency=32
        )
        client.socket_mode_request_listeners.append(listener)
        client.connect()
        conns = server.wait_for_connections(2 if two else 1)
        stalled = conns[0]
        big = 0 if case == "stalled, idle" else 16
        for _ in range(big):
            server.push(server.make_envelope("interactive", {"big": True}), connection=stalled)
        healthy = [server.push(server.make_envelope("interactive", {}), connection=conns[1]) for _ in range(4) if two]
        for _ in range(big + len(healthy)):
            started.acquire(timeout=10.0)
        server.silence(stalled)
        go.set()
        if big:
            time.sleep(0.5)  # the writes fill the socket and block
        closer = threading.Thread(target=client.close, args=(5.0,), name="bench-close")
        begun = time.monotonic()
        closer.start()
        finish.set()  # the healthy connection's listeners ack once close() has begun
        closer.join()
        took = time.monotonic() - begun
        try:
            server.wait_for_acks(envelope_ids=healthy, timeout=5.0)
        except TimeoutError:
            pass
        return took, sum(1 for i in healthy if server.envelope(i).acks), len(healthy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("slack_socket_mode").setLevel(logging.ERROR)  # each run's aborts and deferred acks
    for case in ("stalled", "stalled + healthy", "stalled, idle"):
        results = [_run(case) for _ in range(args.runs)]
        times = [took for took, _, _ in results]
        acked = sum(a for _, a, _ in results)
        pushed = sum(p for _, _, p in results)
        landed = f"; healthy acks landed {acked}/{pushed}" if pushed else ""
        print(f"{case:20} close(5) median {statistics.median(times):.2f} s, max {max(times):.2f} s{landed}")


if __name__ == "__main__":
    main()
