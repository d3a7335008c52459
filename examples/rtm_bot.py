"""The bot from slack_sdk's RTM guide, with one line changed: the import.

    https://docs.slack.dev/tools/python-slack-sdk/rtm

Slack offers the RTM API to classic apps only (a bot token, ``xoxb-…``, of a classic app); a new
app uses Socket Mode (``slack_socket_mode.SocketModeClient``). Run it with SLACK_BOT_TOKEN set.
SLACK_API_URL, if set, points the client at another API host (our tests use the local server
from slack_socket_mode.testing.rtm); that is configuration, not code. Ctrl-C stops it.
"""

import os

# from slack_sdk.rtm_v2 import RTMClient   <- before
from slack_socket_mode.rtm import RTMClient  # <- after: the only change

rtm = RTMClient(
    token=os.environ["SLACK_BOT_TOKEN"],
    base_url=os.environ.get("SLACK_API_URL", "https://slack.com/api/"),
)


@rtm.on("message")
def handle(client: RTMClient, event: dict):
    if "Hello" in event.get("text", ""):
        channel_id = event["channel"]
        thread_ts = event["ts"]
        user = event["user"]  # This is not username but user ID (the format is either U*** or W***)

        client.web_client.chat_postMessage(channel=channel_id, text=f"Hi <@{user}>!", thread_ts=thread_ts)


@rtm.on("hello")
def ready(client: RTMClient, event: dict):
    print("connected", flush=True)


if __name__ == "__main__":
    try:
        rtm.start()
    except KeyboardInterrupt:
        print("stopped", flush=True)
