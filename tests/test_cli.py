"""The command line: ``listen`` and ``demo``, run as real processes against the local server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from .conftest import APP_TOKEN, timeout


def listen(server: SocketModeServer, *args: str, token: str | None = APP_TOKEN) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLACK_APP_TOKEN"}
    if token is not None:
        env["SLACK_APP_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "slack_socket_mode", "listen", "--api-url", server.api_url, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_listening(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("# listening"):
            return
    raise AssertionError("listen never said it was listening")


def test_listen_prints_readable_lines_and_acks_with_flag(server: SocketModeServer) -> None:
    proc = listen(server, "--ack", "--count", "2")
    wait_listening(proc)
    ids = [server.push(load_sample("events_api_app_mention")), server.push(load_sample("slash_commands"))]
    out, _ = proc.communicate(timeout=timeout(10))
    assert proc.returncode == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert "events_api" in lines[0] and "app_mention" in lines[0] and ids[0] in lines[0]
    assert "slash_commands" in lines[1] and "/hello-socket-mode" in lines[1]
    server.wait_for_acks(envelope_ids=ids)


def test_listen_json_without_ack_shows_redeliveries() -> None:
    with SocketModeServer(redelivery_delay=0.2, max_retries=1) as server:
        proc = listen(server, "--json", "--count", "2")
        wait_listening(proc)
        envelope_id = server.push(load_sample("events_api_message"))
        out, _ = proc.communicate(timeout=timeout(10))
        assert proc.returncode == 0
        first, second = (json.loads(line) for line in out.splitlines())
        assert first["envelope_id"] == second["envelope_id"] == envelope_id
        assert first["retry_attempt"] in (0, None) and second["retry_attempt"] == 1
        assert second["retry_reason"] == "timeout"
        assert first["payload"] == load_sample("events_api_message")["payload"]
        assert server.envelope(envelope_id).acks == []  # not acked without --ack


def test_listen_stops_on_ctrl_c(server: SocketModeServer) -> None:
    proc = listen(server)
    wait_listening(proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=timeout(10))
    assert proc.returncode == 0
    (conn,) = server.all_connections
    assert conn.wait_closed(timeout(5)) and conn.close_code_received == 1000


def test_listen_stops_on_ctrl_c_while_still_connecting() -> None:
    with SocketModeServer(send_hello=False, redelivery_delay=None) as server:
        proc = listen(server)
        server.wait_for_connections(1, timeout=timeout(10))  # handshake done, no hello: connect() waits
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout(10))
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        (conn,) = server.all_connections
        assert conn.wait_closed(timeout(5))


def test_debug_reconnects_reaches_the_url(server: SocketModeServer) -> None:
    from slack_sdk.web import WebClient

    from slack_socket_mode import SocketModeClient

    with SocketModeClient(APP_TOKEN, web_client=WebClient(base_url=server.api_url), debug_reconnects=True) as client:
        client.connect()
        assert client.wss_uri is not None and client.wss_uri.endswith("&debug_reconnects=true")
        assert client.is_connected()


def test_listen_without_token_or_with_a_bad_one(server: SocketModeServer) -> None:
    proc = listen(server, token=None)
    _, err = proc.communicate(timeout=timeout(10))
    assert proc.returncode == 2 and "SLACK_APP_TOKEN" in err
    server.fail_next_opens("invalid_auth")
    proc = listen(server)
    _, err = proc.communicate(timeout=timeout(10))
    assert proc.returncode == 1 and "invalid_auth" in err
    assert "# listening" not in err
    assert APP_TOKEN not in err


def test_demo_acks_every_sample() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "slack_socket_mode", "demo"],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.splitlines()[-1]
    assert summary.startswith("10 envelopes, 10 acked, ack p50 ")
    assert "0 acked twice, 0 handlers run twice" in summary
