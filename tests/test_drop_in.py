"""A bot written exactly as slack_sdk's documentation shows runs with only the import changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from .conftest import APP_TOKEN, timeout

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slack_sdk_docs_bot.py"


def test_slack_sdk_documentation_bot_runs_unchanged(server: SocketModeServer) -> None:
    env = dict(os.environ, SLACK_APP_TOKEN=APP_TOKEN, SLACK_BOT_TOKEN="xoxb-111-222-xyz", SLACK_API_URL=server.api_url)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "connected"
        message = load_sample("events_api_message")
        shortcut = load_sample("interactive_shortcut")
        shortcut["payload"]["callback_id"] = "hello-shortcut"
        submission = load_sample("interactive_view_submission")
        submission["payload"]["view"]["callback_id"] = "hello-modal"
        ids = [server.push(message), server.push(shortcut), server.push(submission)]
        server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
        assert proc.stdout.readline().strip() == str(submission["payload"]["view"]["state"]["values"])
        (reaction,) = server.wait_for_api_calls("reactions.add", timeout=timeout(5))
        assert reaction.params["name"] == "eyes" and reaction.params["channel"] == "C111"
        server.wait_for_api_calls("views.open", timeout=timeout(5))
        assert server.duplicate_acks() == []
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=timeout(10))
    assert "xapp-1-A111" not in stderr
