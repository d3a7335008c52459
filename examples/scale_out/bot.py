"""The Socket Mode side of the scale-out example: run as many replicas as you like (up to 10 connections).

Every replica shares one ledger in Redis, so an envelope Slack redelivers to another replica
is not handled twice, and hands each envelope to Celery, acking it only once the broker has
the task. Slash commands are answered in the ack at once; the task does the rest.

Environment: SLACK_APP_TOKEN (xapp-…), REDIS_URL, CELERY_BROKER_URL; SLACK_API_URL is optional.
On SIGTERM (Kubernetes stopping the pod) it stops taking envelopes, finishes the hand-offs
under way, acks them, and exits well within the pod's grace period.
"""

import logging
import os
import signal
from typing import Any, Optional

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient
from tasks import NAMESPACE, celery_app

from slack_socket_mode import SocketModeClient
from slack_socket_mode.celery import CeleryHandoff
from slack_socket_mode.redis import RedisLedger
from slack_socket_mode.stopping import StopWaiter


def respond(request: SocketModeRequest) -> Optional[dict[str, Any]]:
    """The answer that must travel in the ack (slash commands, block suggestions, view submissions)."""
    if request.type == "slash_commands":
        return {"text": f"Deploying {request.payload.get('text', '')}…"}
    return None


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    ledger = RedisLedger(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), namespace=NAMESPACE)
    client = SocketModeClient(
        app_token=os.environ["SLACK_APP_TOKEN"],
        web_client=WebClient(base_url=os.environ.get("SLACK_API_URL", WebClient.BASE_URL)),
        dedupe=ledger,
    )
    client.socket_mode_request_listeners.append(CeleryHandoff(celery_app, "tasks.handle_envelope", respond=respond))
    with StopWaiter((signal.SIGTERM, signal.SIGINT)) as waiter:
        client.connect()
        print("connected", flush=True)
        waiter.wait()
    client.close(timeout=10.0)  # keep it under terminationGracePeriodSeconds (30 s by default)
    print("closed", flush=True)


if __name__ == "__main__":
    main()
