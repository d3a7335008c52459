"""A Bolt for Python app on Socket Mode, with one line changed: the import of the handler.

    https://docs.slack.dev/tools/bolt-python/concepts/socket-mode/

Run it against Slack with SLACK_APP_TOKEN (xapp-…) and SLACK_BOT_TOKEN (xoxb-…) set
(``pip install "slack-socket-mode[bolt]"``). SLACK_API_URL, if set, points the app's WebClient
at another API host (the tests use the local server from slack_socket_mode.testing); that is
configuration, not code. examples/test_bolt_app.py tests these listeners offline.
"""

import os
from typing import Optional

from slack_bolt import Ack, App, Say
from slack_sdk.web import WebClient

# from slack_bolt.adapter.socket_mode import SocketModeHandler   <- before
from slack_socket_mode.bolt import SocketModeHandler  # <- after: the only change


def create_app(client: Optional[WebClient] = None) -> App:
    """The app with its listeners; tests pass a WebClient pointed at a local server."""
    if client is None:
        client = WebClient(
            token=os.environ.get("SLACK_BOT_TOKEN"),  # xoxb-111-222-xyz
            base_url=os.environ.get("SLACK_API_URL", WebClient.BASE_URL),
        )
    app = App(client=client)

    @app.event("app_mention")
    def greet(event: dict, say: Say) -> None:
        say(f"Hi there, <@{event['user']}>!")

    @app.command("/hello-socket-mode")
    def hello_command(ack: Ack, command: dict) -> None:
        # The text goes back in the ack itself: the user sees it at once
        ack(f"Hi <@{command['user_id']}>!")

    @app.action("approve")
    def approve(ack: Ack, body: dict, say: Say) -> None:
        ack()
        say(f"Approved by <@{body['user']['id']}>")

    @app.view("feedback-modal")
    def feedback(ack: Ack, view: dict) -> None:
        value = view["state"]["values"]["b1"]["a1"]["value"] or ""
        if len(value) < 5:
            ack(response_action="errors", errors={"b1": "Please write at least 5 characters"})
            return
        ack()

    return app


if __name__ == "__main__":
    SocketModeHandler(create_app(), os.environ["SLACK_APP_TOKEN"]).start()
