"""Replaying recorded Socket Mode traffic against the Bolt app of bolt_app.py, offline.

``recordings/bolt_app_session.jsonl`` is a session recorded with
``slack-socket-mode listen --ack --record recordings/bolt_app_session.jsonl`` (secrets redacted):
two mentions, two slash commands, a button click and a modal submission, with a connection
rotation (``disconnect`` reason ``warning``) halfway. ``socket_mode_server.replay()`` pushes those
envelopes to the app with Slack's rules (a redelivery after 3 s without an ack) and returns a
report with, per envelope: delivered, acked, ack time, ack payload, redeliveries.

Record your own traffic the same way (against Slack, with your app's token) and commit the file
next to your tests. Run this one with ``pytest examples/test_replay_bolt_app.py``.
"""

from pathlib import Path

import pytest
from bolt_app import create_app

from slack_socket_mode.bolt import SocketModeHandler

RECORDING = str(Path(__file__).parent / "recordings" / "bolt_app_session.jsonl")


@pytest.fixture
def handler(socket_mode_web_client):
    # The app exactly as in production, but its WebClient talks to the local server
    handler = SocketModeHandler(create_app(socket_mode_web_client), app_token="xapp-1-A111-test")
    handler.connect()
    yield handler
    handler.close()


def test_the_app_acks_every_recorded_envelope_within_3_seconds(socket_mode_server, handler):
    report = socket_mode_server.replay(RECORDING, speed=None)  # as fast as the socket takes them
    assert len(report.envelopes) == 6
    assert report.retried == []  # nothing Slack would have redelivered
    assert all(envelope.ack_time < 3 for envelope in report.envelopes)


def test_recorded_commands_are_answered_in_their_ack(socket_mode_server, handler):
    report = socket_mode_server.replay(RECORDING, speed=4)  # the recorded pace, four times as fast
    commands = [envelope for envelope in report.envelopes if envelope.type == "slash_commands"]
    assert [envelope.ack_payload for envelope in commands] == [{"text": "Hi <@U111>!"}] * 2
    assert report.disconnects == 1  # the app rode through the recorded rotation
    posts = socket_mode_server.wait_for_api_calls("chat.postMessage", count=3)  # 2 greetings, 1 approval
    assert sorted(post.params["text"] for post in posts) == [
        "Approved by <@U222>",
        "Hi there, <@U222>!",
        "Hi there, <@U222>!",
    ]
