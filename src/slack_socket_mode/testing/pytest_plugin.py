"""pytest fixtures for testing a Slack bot offline, against the local Socket Mode server.

Installing ``slack-socket-mode`` registers this module as a pytest plugin (entry point
``slack_socket_mode`` in the ``pytest11`` group), so the fixtures are there in every test with
no import and no ``conftest.py``:

* ``socket_mode_server``: a started :class:`~slack_socket_mode.testing.SocketModeServer`
  that redelivers unacked envelopes after Slack's 3 seconds, stopped after the test;
* ``socket_mode_web_client``: a ``slack_sdk.WebClient`` whose ``base_url`` is that server's
  Web API and whose token is ``"xoxb-test"``;
* ``rtm_server``: a started :class:`~slack_socket_mode.testing.rtm.RTMServer`, the same server
  speaking the RTM API (``rtm.connect``, ``hello``, pongs, ``send_event``, ``goodbye``), for an
  RTM bot (:class:`slack_socket_mode.rtm.RTMClient`, or slack_sdk's); stopped after the test;
* ``rtm_web_client``: a ``slack_sdk.WebClient`` on ``rtm_server``'s Web API with the token ``"xoxb-test"``.

Example::

    def test_hello(socket_mode_server, socket_mode_web_client):
        app = App(client=socket_mode_web_client)
        ...
        handler = SocketModeHandler(app, app_token="xapp-1-test")
        handler.connect()
        envelope_id = socket_mode_server.push_sample("slash_commands")
        (ack,) = socket_mode_server.wait_for_acks(envelope_ids=[envelope_id])
        handler.close()

``socket_mode_server.replay(path, speed=...)`` replays a recording made with
``slack-socket-mode listen --record`` and returns a report per envelope (see
``examples/test_replay_bolt_app.py`` and ``docs/how-to/record-replay.md``)::

    def test_the_app_acks_every_recorded_envelope_within_3_seconds(socket_mode_server, handler):
        report = socket_mode_server.replay("tests/recordings/monday.jsonl", speed=None)
        assert report.retried == []  # nothing Slack would have redelivered

The server needs the ``testing`` extra (``pip install "slack-socket-mode[testing]"``); it is
imported only when a test asks for a fixture, so having this package installed never breaks a
pytest run. With plugin autoloading off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), load it with
``-p slack_socket_mode.testing.pytest_plugin``. See ``docs/testing.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from slack_sdk.web import WebClient

    from slack_socket_mode.testing.rtm import RTMServer
    from slack_socket_mode.testing.server import SocketModeServer

__all__ = [
    "BOT_TOKEN",
    "REDELIVERY_DELAY",
    "rtm_server",
    "rtm_web_client",
    "socket_mode_server",
    "socket_mode_web_client",
]

#: The bot token of :func:`socket_mode_web_client` (the local server accepts any token).
BOT_TOKEN = "xoxb-test"

#: Seconds after which :func:`socket_mode_server` redelivers an unacked envelope (Slack's deadline).
REDELIVERY_DELAY = 3.0


@pytest.fixture
def socket_mode_server() -> Iterator[SocketModeServer]:
    """A started local Socket Mode server on loopback; stopped (threads joined) after the test.

    It answers ``apps.connections.open`` for any ``xapp-…`` token, sends ``hello``, pushes the
    envelopes the test gives it (``push``, ``push_sample``, ``make_envelope``), records acks
    (``wait_for_acks``, ``envelope``) and Web API calls (``wait_for_api_calls``), and redelivers
    an envelope not acked within 3 seconds with ``retry_attempt`` 1, 2, 3 and ``retry_reason``
    ``"timeout"``, like Slack.

    Raises:
        pytest.fail.Exception: the ``testing`` extra (the ``websockets`` library) is missing.
    """
    try:
        from slack_socket_mode.testing.server import SocketModeServer  # noqa: PLC0415 - needs the extra
    except ImportError as e:
        pytest.fail(
            f"socket_mode_server needs the 'testing' extra: pip install 'slack-socket-mode[testing]' ({e})",
            pytrace=False,
        )
    with SocketModeServer(redelivery_delay=REDELIVERY_DELAY) as server:
        yield server


@pytest.fixture
def socket_mode_web_client(socket_mode_server: SocketModeServer) -> WebClient:
    """A ``slack_sdk.WebClient(base_url=socket_mode_server.api_url, token="xoxb-test")``.

    Give it to your app (``App(client=…)``, ``SocketModeClient(web_client=…)``): its Web API
    calls go to the local server, which records them (``socket_mode_server.api_calls``) and
    answers ``{"ok": true}`` (``auth.test`` answers as bot ``U111`` of team ``T111``).
    """
    from slack_sdk.web import WebClient  # noqa: PLC0415 - keep loading this plugin cheap

    return WebClient(base_url=socket_mode_server.api_url, token=BOT_TOKEN)


@pytest.fixture
def rtm_server() -> Iterator[RTMServer]:
    """A started local RTM API server on loopback; stopped (threads joined) after the test.

    ``rtm.connect`` answers any ``xoxb-…`` or ``xoxp-…`` token; each connection gets ``hello``; the
    test sends events (``send_event``) and ``goodbye``, reads what the client sent (``sent``,
    ``wait_for_events``) and injects the Socket Mode server's faults (``reset``, ``silence``, …).

    Raises:
        pytest.fail.Exception: the ``testing`` extra (the ``websockets`` library) is missing.
    """
    try:
        from slack_socket_mode.testing.rtm import RTMServer  # noqa: PLC0415 - needs the extra
    except ImportError as e:
        pytest.fail(
            f"rtm_server needs the 'testing' extra: pip install 'slack-socket-mode[testing]' ({e})",
            pytrace=False,
        )
    server = RTMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rtm_web_client(rtm_server: RTMServer) -> WebClient:
    """A ``slack_sdk.WebClient(base_url=rtm_server.api_url, token="xoxb-test")``, for ``RTMClient(web_client=…)``."""
    from slack_sdk.web import WebClient  # noqa: PLC0415 - keep loading this plugin cheap

    return WebClient(base_url=rtm_server.api_url, token=BOT_TOKEN)
