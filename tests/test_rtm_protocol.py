"""The RTM client's pure parts, with no socket: parsing, ``on()``'s filtering, the keepalive text, the error type."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from slack_sdk.errors import SlackApiError

from slack_socket_mode.errors import AuthError, FatalError
from slack_socket_mode.rtm import RTMAuthError, RTMClient
from slack_socket_mode.rtm.listeners import typed_listener
from slack_socket_mode.rtm.protocol import RTM_URLS, Event, parse_event


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "message", "text": "hi"}', Event("message", {"type": "message", "text": "hi"})),
        ('{"ok": true, "reply_to": 1}', Event(None, {"ok": True, "reply_to": 1})),
        ('{"type": 7}', Event(None, {"type": 7})),
        ("[1, 2]", None),
        ("null", None),
        ('"text"', None),
        ("not JSON", None),
        ("{" * 100_000, None),  # nested past the decoder's limit: no RecursionError
    ],
)
def test_parse_event_never_raises(text: str, expected: Optional[Event]) -> None:
    assert parse_event(text) == expected


class _Client:
    def __init__(self, bot_id: Optional[str]) -> None:
        self.bot_id = bot_id
        self.message_listeners: list[Any] = []


def _calls(event_type: str, bot_id: Optional[str], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    listener = typed_listener(_Client(bot_id), event_type, lambda client, event: seen.append(event))
    for event in events:
        listener(None, event)
    return seen


EVENTS = [
    {"type": "message", "text": "a"},
    {"type": "message", "text": "mine", "bot_id": "B1"},
    {"type": "reaction_added"},
    {"reply_to": 3},
]


def test_on_filters_by_type_and_star_takes_all() -> None:
    assert _calls("message", "B1", EVENTS) == [EVENTS[0]]
    assert _calls("reaction_added", "B1", EVENTS) == [EVENTS[2]]
    assert _calls("*", "B1", EVENTS) == [EVENTS[0], EVENTS[2], EVENTS[3]]


def test_with_no_bot_id_nothing_is_skipped_as_the_bots_own() -> None:
    """slack_sdk compares ``event.get("bot_id") == None`` for a user token, skipping every event without one."""
    assert _calls("*", None, EVENTS) == EVENTS


def test_rtm_auth_error_is_ours_and_slack_sdks() -> None:
    error = RTMAuthError("rtm.connect refused the token: invalid_auth", error="invalid_auth")
    assert isinstance(error, AuthError) and isinstance(error, FatalError) and isinstance(error, SlackApiError)
    assert error.error == "invalid_auth" and error.response == {"ok": False, "error": "invalid_auth"}
    assert error.response["error"] == "invalid_auth"  # as an except written for slack_sdk reads it
    assert str(error) == "rtm.connect refused the token: invalid_auth"
    assert RTM_URLS.name == "rtm.connect" and RTM_URLS.auth_error is RTMAuthError


def test_the_token_is_not_in_vars_or_repr() -> None:
    token = "xoxb-1-2-sEcReTvAlUe"
    rtm = RTMClient(token=token)
    try:
        assert rtm.token == token
        assert token not in repr(rtm) and token not in repr(vars(rtm)) and token not in str(rtm)
    finally:
        rtm.close()
