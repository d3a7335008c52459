"""One replica of an app, as a separate process, for tests/test_replicas.py (``python -m tests.replica_main``).

It connects a SocketModeClient with a RedisLedger to the local server. Its request listener
works for the payload's ``work`` seconds (if any), records each completion in a Redis hash
(``HINCRBY <completions> <envelope_id> 1``: the listener's side effect) and then acks. It
prints ``ready`` once connected, and on SIGTERM closes the client (``close(timeout)``, as a
Kubernetes pod does in its grace period), prints ``stats <json>`` (with ``--stats``: the
client's ``stats()``) and ``closed``. SIGKILL is the crash; SIGSTOP and SIGCONT, a pause.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from typing import Any

import redis
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.policy import Backoff
from slack_socket_mode.redis import RedisLedger
from slack_socket_mode.stopping import StopWaiter

APP_TOKEN = "xapp-1-A111-4242-replica"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--completions", required=True, help="the Redis hash that counts completions")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--local-ledger", action="store_true", help="dedupe with the local ledger only")
    parser.add_argument("--reconnect-cap", type=float, help="seconds: the cap of the reconnect backoff")
    parser.add_argument("--allow-insecure-urls", action="store_true", help="ws:// beyond loopback (netns hosts)")
    parser.add_argument("--lease", type=float, default=2.0, help="seconds: the RedisLedger's lease")
    parser.add_argument("--stats", action="store_true", help="print 'stats <json>' after close(), before 'closed'")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="replica %(levelname)s %(message)s")

    effects: Any = redis.Redis.from_url(args.redis_url, socket_timeout=5)
    store = RedisLedger(args.redis_url, namespace=args.namespace, lease=args.lease)
    client = SocketModeClient(
        APP_TOKEN,
        web_client=WebClient(base_url=args.api_url),
        connections=args.connections,
        dedupe=True if args.local_ledger else store,
        reconnect_policy=Backoff(cap=args.reconnect_cap) if args.reconnect_cap is not None else None,
        allow_insecure_urls=args.allow_insecure_urls,
    )

    def listener(client: SocketModeClient, request: Any) -> None:
        work = request.payload.get("work", 0)  # seconds of the app's own work before its effect
        if work:
            time.sleep(work)
        effects.hincrby(args.completions, request.envelope_id, 1)
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    client.socket_mode_request_listeners.append(listener)
    with StopWaiter((signal.SIGTERM, signal.SIGINT)) as waiter:
        client.connect(timeout=60)
        print("ready", flush=True)
        waiter.wait()
    client.close(timeout=5)
    store.close()
    if args.stats:
        print("stats " + json.dumps(client.stats()._asdict()), flush=True)
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
