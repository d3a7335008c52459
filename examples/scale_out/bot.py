"""The Socket Mode side of the scale-out example: run as many replicas as you like (up to 10 connections).

Every replica shares one ledger in Redis, so an envelope Slack redelivers to another replica
is not handled twice, and hands each envelope to Celery, acking it only once the broker has
the task. Slash commands are answered in the ack at once; the task does the rest.

Environment: SLACK_APP_TOKEN (xapp-…), REDIS_URL, CELERY_BROKER_URL; SLACK_API_URL is optional.
On SIGTERM (Kubernetes stopping the pod) it stops taking envelopes, finishes the hand-offs
under way, acks them, and exits well within the pod's grace period. A replica started while the
app holds Slack's 10 connections (a rolling deploy) waits for a slot: the client logs one WARNING
and retries every few seconds until another replica frees one; SIGTERM still ends it at once.
"""

import logging
import os
import signal
import sys
import threading
from typing import Any, Optional

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient
from tasks import NAMESPACE, celery_app

from slack_socket_mode import FatalError, SocketModeClient, SocketModeError
from slack_socket_mode.celery import CeleryHandoff
from slack_socket_mode.redis import RedisLedger
from slack_socket_mode.stopping import StopWaiter


def respond(request: SocketModeRequest) -> Optional[dict[str, Any]]:
    """The answer that must travel in the ack (slash commands, block suggestions, view submissions)."""
    if request.type == "slash_commands":
        return {"text": f"Deploying {request.payload.get('text', '')}…"}
    return None


def connect_when_a_slot_frees(client: SocketModeClient, waiter: StopWaiter) -> None:
    """Connect with no timeout (on a thread of its own: the main thread waits for SIGTERM meanwhile).

    Slack refuses an 11th connection (``too_many_websockets``); the client tries again every
    ``slot_retry_interval`` (3 s) until a slot frees. A FatalError (a revoked token, Socket Mode
    turned off) stops the bot.
    """
    try:
        client.connect(timeout=None)
    except FatalError:  # logged by the client; retrying cannot help
        waiter.stop()
        return
    except SocketModeError:  # close() came first: the bot is stopping
        return
    print("connected", flush=True)


def serve(client: SocketModeClient) -> None:
    """Connect (waiting for a slot if need be) and serve until SIGTERM or SIGINT; then close within the grace period."""
    with StopWaiter((signal.SIGTERM, signal.SIGINT)) as waiter:
        connecting = threading.Thread(target=connect_when_a_slot_frees, args=(client, waiter), name="bot-connect")
        connecting.start()
        signum = waiter.wait()  # None: stopped by connect_when_a_slot_frees, on a FatalError
    client.close(timeout=10.0)  # running listeners finish and ack, under terminationGracePeriodSeconds (30 s)
    connecting.join()
    print("closed", flush=True)
    if signum is None:
        sys.exit(1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    ledger = RedisLedger(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), namespace=NAMESPACE)
    client = SocketModeClient(
        app_token=os.environ["SLACK_APP_TOKEN"],
        web_client=WebClient(base_url=os.environ.get("SLACK_API_URL", WebClient.BASE_URL)),
        dedupe=ledger,
    )
    handoff = CeleryHandoff(celery_app, "tasks.handle_envelope", respond=respond)
    client.socket_mode_request_listeners.append(handoff)
    try:
        serve(client)
    finally:
        handoff.close()  # its publishing threads, once the client has closed


if __name__ == "__main__":
    main()
