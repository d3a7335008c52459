"""``slack-socket-mode demo``: a bot, a local Socket Mode server, and every shipped envelope sample.

Starts :class:`~slack_socket_mode.testing.SocketModeServer` on loopback, connects a
:class:`~slack_socket_mode.SocketModeClient` to it through ``apps.connections.open``
exactly as with Slack, replays every envelope sample, rotates the connection halfway
through (``disconnect`` reason ``warning``), and prints one line per envelope and a
summary. Exit status 0 only if every envelope was acked exactly once.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import threading
import time
from typing import Any

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from .client import SocketModeClient

__all__ = ["run_demo"]

DEMO_TOKEN = "xapp-1-A111-demo-local"


def _answer(request: SocketModeRequest) -> tuple[str, Any]:
    """What the demo bot does with an envelope: a description and the ack payload (or None)."""
    payload = request.payload
    if request.type == "slash_commands":
        return f"replied to {payload.get('command')}", {"text": "Hello from slack-socket-mode!"}
    if request.type == "interactive":
        kind = payload.get("type")
        if kind == "view_submission":
            return "closed the modal", {"response_action": "clear"}
        if kind == "block_suggestion":
            return "offered 2 options", {
                "options": [
                    {"text": {"type": "plain_text", "text": "Apple"}, "value": "apple"},
                    {"text": {"type": "plain_text", "text": "Banana"}, "value": "banana"},
                ]
            }
        return f"handled {kind}", None
    event = payload.get("event") or {}
    return f"handled {event.get('type') or payload.get('type')}", None


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run_demo(*, quiet: bool = False, verbose: bool = False) -> int:
    """Run the demo; returns 0 if every envelope was acked. Takes about a second."""
    from .testing import SocketModeServer  # the local server needs the 'testing' extra
    from .testing.samples import envelope_sample_names, load_sample

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = (lambda *_: None) if quiet else print
    handled: dict[str, str] = {}
    runs: dict[str, int] = {}
    lock = threading.Lock()

    def bot(client: SocketModeClient, request: SocketModeRequest) -> None:
        did, answer = _answer(request)
        with lock:
            runs[request.envelope_id] = runs.get(request.envelope_id, 0) + 1
            handled[request.envelope_id] = did
        if answer is not None and request.accepts_response_payload:
            client.send_socket_mode_response(SocketModeResponse(request.envelope_id, answer))
        else:
            client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    started = time.monotonic()
    with SocketModeServer() as server:
        client = SocketModeClient(app_token=DEMO_TOKEN, web_client=WebClient(base_url=server.api_url))
        client.socket_mode_request_listeners.append(bot)
        with client:
            client.connect(timeout=10)
            out(
                f"connected to {server.api_url} (hello: num_connections={client.num_connections}, "
                f"approximate_connection_time={client.approximate_connection_time:g} s)"
            )
            names = envelope_sample_names()
            ids: list[str] = []
            for i, name in enumerate(names):
                if i == 1:  # the next sample is Slack's redelivery of the first: it comes on the new connection
                    out("-- Slack asks for a rotation (disconnect: warning); the client replaces the connection --")
                    before = len(server.all_connections)
                    (old,) = server.connections
                    server.disconnect("warning")
                    server.wait_for_new_connection(before, timeout=5)
                    old.wait_closed(timeout=5)  # drained and closed once the new one said hello
                sample = load_sample(name)
                envelope_id = server.push(sample)
                server.wait_for_acks(count=len(ids) + 1, timeout=5)  # every push is acked once
                ids.append(envelope_id)
                record = server.envelope(envelope_id)
                ack = record.acks[-1]
                delivery = record.deliveries[-1]
                rtt_ms = (ack.received_at - delivery.sent_at) * 1000
                retry = f" (retry {sample.get('retry_attempt')})" if sample.get("retry_attempt") else ""
                with lock:
                    did = handled.get(envelope_id, "?")
                if retry and runs.get(envelope_id, 0) == 1 and len(record.deliveries) > 1:
                    did = "redelivery: acked again, bot not run twice"
                payload = " with payload" if ack.payload else ""
                out(f"{sample['type']:<15} {envelope_id:<37} {did + ',':<44} acked{payload} in {rtt_ms:.2f} ms")
            rtts = []
            for envelope_id in dict.fromkeys(ids):
                record = server.envelope(envelope_id)
                for delivery, ack in zip(record.deliveries, record.acks):
                    rtts.append((ack.received_at - delivery.sent_at) * 1000)
            acked = sum(1 for envelope_id in ids if server.envelope(envelope_id).acks)
            twice = len(server.duplicate_acks())
            ran_twice = sum(1 for n in runs.values() if n > 1)
    p50 = statistics.median(rtts)
    p99 = _percentile(rtts, 0.99)
    print(
        f"{len(ids)} envelopes, {acked} acked, ack p50 {p50:.2f} ms, p99 {p99:.2f} ms "
        f"({twice} acked twice, {ran_twice} handlers run twice, {time.monotonic() - started:.2f} s in all)"
    )
    ok = acked == len(ids) and twice == 0 and ran_twice == 0
    if not ok:
        print("demo FAILED: not every envelope was acked exactly once", file=sys.stderr)
    return 0 if ok else 1
