"""The scale-out example as a Bolt for Python app: the same hand-off, from Bolt listeners.

``process_before_response=True`` makes Bolt send the ack after the listener returns, so the
ack goes out only once ``apply_async`` returned, that is once the broker has the task (with
publisher confirms on RabbitMQ). A publish that raises makes the listener fail: Bolt answers
500, no ack is sent, and Slack redelivers the envelope.

Environment: as bot.py, plus SLACK_BOT_TOKEN (xoxb-…).
"""

import logging
import os

from bot import serve  # the same life: wait for a slot of Slack's 10, serve, close on SIGTERM
from slack_bolt import Ack, App
from slack_sdk.web import WebClient
from tasks import NAMESPACE, handle_envelope

from slack_socket_mode.bolt import SocketModeHandler
from slack_socket_mode.redis import RedisLedger

PUBLISH = {"retry": True, "retry_policy": {"max_retries": 1}, "timeout": 2.0, "confirm_timeout": 2.0}


def create_app() -> App:
    client = WebClient(
        token=os.environ.get("SLACK_BOT_TOKEN"),
        base_url=os.environ.get("SLACK_API_URL", WebClient.BASE_URL),
    )
    app = App(client=client, process_before_response=True)

    @app.event("app_mention")
    def mention(body: dict) -> None:
        # Bolt's body has no envelope_id: the event_id identifies the event across Slack's retries.
        envelope = {"envelope_id": body["event_id"], "type": "events_api", "payload": body}
        handle_envelope.apply_async(args=[envelope], **PUBLISH)

    @app.command("/deploy")
    def deploy(ack: Ack, body: dict) -> None:
        envelope = {"envelope_id": body["trigger_id"], "type": "slash_commands", "payload": body}
        handle_envelope.apply_async(args=[envelope], **PUBLISH)
        ack(f"Deploying {body.get('text', '')}…")

    return app


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    ledger = RedisLedger(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), namespace=NAMESPACE)
    handler = SocketModeHandler(create_app(), os.environ["SLACK_APP_TOKEN"], dedupe=ledger)
    serve(handler.client)


if __name__ == "__main__":
    main()
