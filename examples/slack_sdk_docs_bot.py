"""The bot from slack_sdk's Socket Mode guide, with one line changed: the import.

    https://docs.slack.dev/tools/python-slack-sdk/socket-mode

Run it against Slack with SLACK_APP_TOKEN (xapp-…) and SLACK_BOT_TOKEN (xoxb-…) set.
SLACK_API_URL, if set, points the WebClient at another API host (our tests use the local
server from slack_socket_mode.testing); that is configuration, not code.
"""

import os
from threading import Event

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

# from slack_sdk.socket_mode import SocketModeClient   <- before
from slack_socket_mode import SocketModeClient  # <- after: the only change

client = SocketModeClient(
    # This app-level token will be used only for establishing a connection
    app_token=os.environ.get("SLACK_APP_TOKEN"),  # xapp-A111-222-xyz
    # You will be using this WebClient for performing Web API calls in listeners
    web_client=WebClient(
        token=os.environ.get("SLACK_BOT_TOKEN"),  # xoxb-111-222-xyz
        base_url=os.environ.get("SLACK_API_URL", WebClient.BASE_URL),
    ),
)


def process(client: SocketModeClient, req: SocketModeRequest):
    if req.type == "events_api":
        # Acknowledge the request anyway
        response = SocketModeResponse(envelope_id=req.envelope_id)
        client.send_socket_mode_response(response)

        # Add a reaction to the message if it's a new message
        if req.payload["event"]["type"] == "message" and req.payload["event"].get("subtype") is None:
            client.web_client.reactions_add(
                name="eyes",
                channel=req.payload["event"]["channel"],
                timestamp=req.payload["event"]["ts"],
            )
    if req.type == "interactive" and req.payload.get("type") == "shortcut":
        if req.payload["callback_id"] == "hello-shortcut":
            # Acknowledge the request
            response = SocketModeResponse(envelope_id=req.envelope_id)
            client.send_socket_mode_response(response)
            # Open a welcome modal
            client.web_client.views_open(
                trigger_id=req.payload["trigger_id"],
                view={
                    "type": "modal",
                    "callback_id": "hello-modal",
                    "title": {"type": "plain_text", "text": "Greetings!"},
                    "submit": {"type": "plain_text", "text": "Good Bye"},
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hello!"}}],
                },
            )

    if req.type == "interactive" and req.payload.get("type") == "view_submission":
        if req.payload["view"]["callback_id"] == "hello-modal":
            # Acknowledge the request and close the modal
            response = SocketModeResponse(envelope_id=req.envelope_id)
            client.send_socket_mode_response(response)
            # Do something inside this app with the submitted data
            print(req.payload["view"]["state"]["values"], flush=True)


# Add a new listener to receive messages from Slack
# You can add more listeners like this
client.socket_mode_request_listeners.append(process)
# Establish a WebSocket connection to the Socket Mode servers
client.connect()
print("connected", flush=True)
# Just not to stop this process
Event().wait()
