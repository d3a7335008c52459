"""The pytest plugin (slack_socket_mode.testing.pytest_plugin), run by pytest itself through pytester.

Each test writes a small test suite into a temporary directory and runs pytest on it in this
process; the fixtures start real servers on loopback.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "slack_socket_mode.testing.pytest_plugin"
SERVER_THREADS = "slack_socket_mode.testing-"


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(SERVER_THREADS)]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester with plugin autoloading off: only this plugin is loaded, by ``-p`` (as documented)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def test_fixtures_give_a_started_server_and_a_web_client_pointed_at_it(run: pytest.Pytester) -> None:
    run.makepyfile(
        test_fixtures="""
        from slack_sdk.web import WebClient
        from slack_socket_mode import SocketModeClient
        from slack_socket_mode.testing import SocketModeServer

        SEEN = []

        def test_the_fixtures(socket_mode_server, socket_mode_web_client):
            assert isinstance(socket_mode_server, SocketModeServer)
            assert isinstance(socket_mode_web_client, WebClient)
            assert socket_mode_web_client.base_url == socket_mode_server.api_url
            assert socket_mode_web_client.token == "xoxb-test"
            assert socket_mode_web_client.auth_test()["user_id"] == "U111"
            (call,) = socket_mode_server.wait_for_api_calls("auth.test")
            SEEN.append(socket_mode_server)

        def test_a_client_connects_and_acks(socket_mode_server, socket_mode_web_client):
            with SocketModeClient(app_token="xapp-1-test", web_client=socket_mode_web_client) as client:
                client.socket_mode_request_listeners.append(
                    lambda c, request: c.send_socket_mode_response({"envelope_id": request.envelope_id})
                )
                client.connect()
                envelope_id = socket_mode_server.push_sample("slash_commands")
                socket_mode_server.wait_for_acks(envelope_ids=[envelope_id])

        def test_each_test_gets_a_new_server_and_the_last_one_was_stopped(socket_mode_server):
            (previous,) = SEEN
            assert previous is not socket_mode_server
            try:
                previous.push_sample("slash_commands")
            except RuntimeError as e:
                assert "not running" in str(e)
            else:
                raise AssertionError("the previous test's server still runs")
        """
    )
    result = run.runpytest("-p", PLUGIN)
    result.assert_outcomes(passed=3)
    assert server_threads() == []  # every server was stopped and its threads joined


def test_server_redelivers_after_slacks_three_seconds(run: pytest.Pytester) -> None:
    run.makepyfile(
        test_redelivery="""
        import json, threading
        from slack_socket_mode import SocketModeClient

        def test_unacked_envelope_is_redelivered(socket_mode_server, socket_mode_web_client):
            redelivered = threading.Event()

            def raw(text):  # every text frame, before the client's dedupe
                message = json.loads(text)
                if message.get("retry_attempt") == 1 and message.get("retry_reason") == "timeout":
                    redelivered.set()

            with SocketModeClient(
                app_token="xapp-1-test", web_client=socket_mode_web_client, on_message_listeners=[raw]
            ) as client:
                client.connect()
                envelope_id = socket_mode_server.push_sample("events_api_message")  # nobody acks it
                assert redelivered.wait(10)
            first, second = socket_mode_server.envelope(envelope_id).deliveries[:2]
            assert (first.attempt, second.attempt) == (0, 1)
            assert 2.9 <= second.sent_at - first.sent_at < 10  # Slack's 3 s, give or take a busy machine
        """
    )
    run.runpytest("-p", PLUGIN).assert_outcomes(passed=1)


def test_fixture_names_do_not_clash_with_a_suites_own_server_fixture(run: pytest.Pytester) -> None:
    run.makeconftest(
        """
        import pytest

        @pytest.fixture
        def server():  # this repository's own tests/conftest.py has one too
            return "the suite's own server"
        """
    )
    run.makepyfile(
        test_both="""
        def test_both(server, socket_mode_server):
            assert server == "the suite's own server"
            assert socket_mode_server.api_url.startswith("http://127.0.0.1:")
        """
    )
    run.runpytest("-p", PLUGIN).assert_outcomes(passed=1)


def test_the_documented_bolt_app_test_passes(run: pytest.Pytester) -> None:
    """examples/test_bolt_app.py, the 'test your Bolt app offline' example, next to examples/bolt_app.py."""
    for name in ("bolt_app.py", "test_bolt_app.py"):
        (run.path / name).write_text((ROOT / "examples" / name).read_text(encoding="utf-8"), encoding="utf-8")
    result = run.runpytest("-p", PLUGIN)
    result.assert_outcomes(passed=6)
    assert server_threads() == []


def test_the_documented_replay_test_passes(run: pytest.Pytester) -> None:
    """examples/test_replay_bolt_app.py: a recording replayed through the fixture to the Bolt app."""
    for name in ("bolt_app.py", "test_replay_bolt_app.py", "recordings/bolt_app_session.jsonl"):
        target = run.path / name
        target.parent.mkdir(exist_ok=True)
        target.write_text((ROOT / "examples" / name).read_text(encoding="utf-8"), encoding="utf-8")
    result = run.runpytest("-p", PLUGIN)
    result.assert_outcomes(passed=2)
    assert server_threads() == []


def test_pytest_loads_the_plugin_from_the_declared_entry_point(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Installing the package is enough: pytest finds the plugin through the pytest11 entry point.

    A minimal installed-distribution record, holding the entry point exactly as pyproject.toml
    declares it, is put on sys.path; pytest then runs with autoloading on and no ``-p``.
    """
    toml = importlib.import_module("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    with (ROOT / "pyproject.toml").open("rb") as f:
        declared = toml.load(f)["project"]["entry-points"]["pytest11"]
    assert declared == {"slack_socket_mode": PLUGIN}
    dist_info = tmp_path / "site" / "slack_socket_mode_plugin_check-0.0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: slack-socket-mode-plugin-check\nVersion: 0.0.0\n")
    entry_points = "".join(f"{name} = {value}\n" for name, value in declared.items())
    (dist_info / "entry_points.txt").write_text(f"[pytest11]\n{entry_points}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(
        test_autoload="""
        def test_fixture_is_there(socket_mode_server, socket_mode_web_client, pytestconfig):
            assert pytestconfig.pluginmanager.get_plugin("slack_socket_mode") is not None  # the entry point's name
            assert socket_mode_web_client.base_url == socket_mode_server.api_url
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
