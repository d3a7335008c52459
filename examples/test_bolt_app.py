"""Testing the Bolt app of bolt_app.py offline: no Slack workspace, no network, no mocks.

The fixtures come from slack_socket_mode's pytest plugin, loaded by pytest as soon as
slack-socket-mode is installed (``pip install "slack-socket-mode[testing,bolt]"``):

* ``socket_mode_server``: a local Socket Mode server (WebSocket plus Web API) that pushes the
  envelopes a test gives it, records acks and Web API calls, and redelivers like Slack;
* ``socket_mode_web_client``: a WebClient pointed at that server's Web API.

Run it with ``pytest examples/test_bolt_app.py``.
"""

import pytest
from bolt_app import create_app

from slack_socket_mode.bolt import SocketModeHandler
from slack_socket_mode.testing.samples import load_sample


@pytest.fixture
def handler(socket_mode_web_client):
    # The app exactly as in production, but its WebClient talks to the local server
    handler = SocketModeHandler(create_app(socket_mode_web_client), app_token="xapp-1-A111-test")
    handler.connect()
    yield handler
    handler.close()


def test_mention_gets_a_reply(socket_mode_server, handler):
    envelope_id = socket_mode_server.push_sample("events_api_app_mention")  # <@U111> from U222 in C111
    socket_mode_server.wait_for_acks(envelope_ids=[envelope_id])
    (post,) = socket_mode_server.wait_for_api_calls("chat.postMessage")
    assert post.params["channel"] == "C111"
    assert post.params["text"] == "Hi there, <@U222>!"


def test_command_answers_in_its_ack(socket_mode_server, handler):
    envelope_id = socket_mode_server.push_sample("slash_commands")  # /hello-socket-mode from U111
    (ack,) = socket_mode_server.wait_for_acks(envelope_ids=[envelope_id])
    assert ack.payload == {"text": "Hi <@U111>!"}


def test_button_click_is_acked_then_answered(socket_mode_server, handler):
    payload = {
        "type": "block_actions",
        "team": {"id": "T111", "domain": "example"},
        "user": {"id": "U222", "name": "someone", "team_id": "T111"},
        "api_app_id": "A111",
        "channel": {"id": "C111", "name": "random"},
        "container": {"type": "message", "channel_id": "C111", "message_ts": "1610241741.000200"},
        "trigger_id": "111.222.xxx",
        "actions": [
            {
                "type": "button",
                "action_id": "approve",
                "block_id": "b1",
                "value": "42",
                "action_ts": "1610241750.000300",
            }
        ],
    }
    envelope_id = socket_mode_server.push(socket_mode_server.make_envelope("interactive", payload))
    (ack,) = socket_mode_server.wait_for_acks(envelope_ids=[envelope_id])
    assert ack.payload is None  # a bare ack: the reply is a message of its own
    (post,) = socket_mode_server.wait_for_api_calls("chat.postMessage")
    assert post.params["text"] == "Approved by <@U222>"


@pytest.mark.parametrize(
    ("value", "payload"),
    [
        ("meh", {"response_action": "errors", "errors": {"b1": "Please write at least 5 characters"}}),
        ("Socket Mode works", None),  # ack() alone closes the modal
    ],
)
def test_feedback_modal_checks_its_input(socket_mode_server, handler, value, payload):
    envelope = load_sample("interactive_view_submission")  # callback_id "feedback-modal"
    envelope["payload"]["view"]["state"]["values"]["b1"]["a1"]["value"] = value
    (ack,) = socket_mode_server.wait_for_acks(envelope_ids=[socket_mode_server.push(envelope)])
    assert ack.payload == payload


def test_nothing_is_left_unacked(socket_mode_server, handler):
    ids = [socket_mode_server.push_sample(name) for name in ("events_api_app_mention", "slash_commands")]
    socket_mode_server.wait_for_acks(envelope_ids=ids)
    assert socket_mode_server.unacked() == []
    assert socket_mode_server.duplicate_acks() == []
