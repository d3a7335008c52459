"""The Celery side of the scale-out example: the worker runs ``celery -A tasks worker`` here.

Each envelope the bot hands off arrives as one ``tasks.handle_envelope`` task. Its effect (a
message posted with chat.postMessage) happens once per envelope, whatever retries and
redeliveries there are, thanks to ``once_per_envelope`` and a claim in Redis.

Environment: CELERY_BROKER_URL (``redis://…`` or ``amqp://…``), REDIS_URL (the shared ledger
and the effect claims), SLACK_BOT_TOKEN (xoxb-…); SLACK_API_URL and CELERY_QUEUE are optional.
"""

import os
from typing import Any

from celery import Celery
from slack_sdk.web import WebClient

from slack_socket_mode.celery import EnvelopeBusy, once_per_envelope
from slack_socket_mode.redis import RedisLedger

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
NAMESPACE = os.environ.get("APP_NAMESPACE", "scale-out-example")  # one per Slack app

if BROKER.startswith("amqp"):
    # RabbitMQ: the bot acks an envelope only once the broker confirmed its task. A task whose
    # worker died is requeued as soon as the broker sees its connection drop.
    TRANSPORT = {"confirm_publish": True}
else:
    TRANSPORT = {
        # Redis: a publish to a Redis that stopped answering ends (CeleryHandoff requires it).
        "socket_timeout": 5.0,
        "socket_connect_timeout": 1.0,
        # Redis cannot tell that a worker died: kombu gives its task to another worker once this
        # many seconds have passed since it was taken (kombu's default: one hour), checking every
        # 10 s. Keep it longer than a task runs: a task still running then is delivered to a
        # second worker too (once_per_envelope holds it there: EnvelopeBusy, retried).
        "visibility_timeout": 300,
        "unacked_restore_throttle": 1,
    }

celery_app = Celery("tasks", broker=BROKER)
celery_app.conf.update(
    task_default_queue=os.environ.get("CELERY_QUEUE", "slack-envelopes"),
    task_acks_late=True,  # a task whose worker dies is delivered again (see TRANSPORT for when)...
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_timeout=1.0,  # the bot publishes within Slack's 3 s
    broker_connection_retry_on_startup=True,
    broker_transport_options=TRANSPORT,
)

# ...and its effect still happens once: the claim's lease outlives a normal run, and is renewed meanwhile.
effects = RedisLedger(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), namespace=NAMESPACE, lease=30.0)
slack = WebClient(
    token=os.environ.get("SLACK_BOT_TOKEN"),
    base_url=os.environ.get("SLACK_API_URL", WebClient.BASE_URL),
)


@once_per_envelope(effects)
def post_reply(envelope: dict[str, Any]) -> None:
    """The slow part of handling an envelope, done once."""
    payload = envelope["payload"]
    if envelope["type"] == "events_api":
        event = payload.get("event", {})
        if event.get("type") == "app_mention":
            slack.chat_postMessage(channel=event["channel"], text=f"Hi <@{event['user']}>!")
    elif envelope["type"] == "slash_commands":
        slack.chat_postMessage(channel=payload["channel_id"], text=f"Deployed {payload.get('text', '')}")


@celery_app.task(
    name="tasks.handle_envelope",
    autoretry_for=(EnvelopeBusy,),  # another worker runs it now: look again later
    default_retry_delay=2,
    max_retries=30,
)
def handle_envelope(envelope: dict[str, Any]) -> None:
    post_reply(envelope)
