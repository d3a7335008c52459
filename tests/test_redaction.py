"""slack_socket_mode.redaction (and the records): secrets never shown, records equal only to their kind."""

from __future__ import annotations

from slack_socket_mode.messages import Malformed, Other
from slack_socket_mode.redaction import Secret, redact


def test_secrets_are_redacted() -> None:
    token = "xapp-1-A111-222-abcdef0123456789"
    secret = Secret(token)
    assert token not in repr(secret) and token not in str(secret)
    assert repr(secret) == "Secret('xapp-***')"
    assert secret.reveal() == token
    text = f"token={token} bot=xoxb-1-2-3 proxy=http://user:pa55@proxy:3128/"
    assert redact(text) == "token=xapp-*** bot=xoxb-*** proxy=http://***@proxy:3128/"
    assert redact("redis://:pa55@redis:6379/0") == "redis://***@redis:6379/0"  # no user, a password


def test_records_are_equal_only_to_their_own_kind() -> None:
    """NamedTuple records: ``Open(1) == Drain(1)`` would be true for plain tuples."""
    from slack_socket_mode.lifecycle import Drain, Open

    assert Open(1) == Open(1) and hash(Open(1)) == hash(Open(1))
    assert Open(1) != Drain(1)
    assert (Open(1) == Drain(1)) is False
    assert Other("x") != Malformed("x")
    assert Open(1) != (1,)
    assert (1,) != Open(1)  # noqa: SIM300 -- the reflected comparison is the point
    assert {Open(1), Drain(1), Open(1)} == {Open(1), Drain(1)}
