"""The command line: ``listen`` and ``demo``, run as real processes against the local server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from slack_socket_mode.recording import read_recording
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.samples import load_sample

from .conftest import APP_TOKEN, timeout

# Sets resource limits (RLIMIT_AS=..., RLIMIT_FSIZE=...), then execs the command: no preexec_fn
# in a test process that may run threads.
_LIMITED = """
import os, resource, sys
for item in sys.argv[1].split(","):
    name, value = item.split("=")
    resource.setrlimit(getattr(resource, name), (int(value), int(value)))
os.execv(sys.executable, [sys.executable, "-m", "slack_socket_mode", *sys.argv[2:]])
"""


def command(*args: str, limits: dict[str, int] | None = None) -> list[str]:
    """``slack-socket-mode ARGS`` as a process's argv, under ``limits`` (``{"RLIMIT_AS": bytes}``) if given."""
    if not limits:
        return [sys.executable, "-m", "slack_socket_mode", *args]
    spec = ",".join(f"{name}={value}" for name, value in limits.items())
    return [sys.executable, "-c", _LIMITED, spec, *args]


def listen(
    server: SocketModeServer, *args: str, token: str | None = APP_TOKEN, limits: dict[str, int] | None = None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLACK_APP_TOKEN"}
    if token is not None:
        env["SLACK_APP_TOKEN"] = token
    return subprocess.Popen(
        command("listen", "--api-url", server.api_url, *args, limits=limits),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_listening(proc: subprocess.Popen[str]) -> str:
    """Wait for listen's "# listening" line; returns standard error up to it."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("# listening"):
            return "".join(seen)
    raise AssertionError(f"listen never said it was listening: {''.join(seen)}")


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
    assert proc.returncode == 1
    # said once (not also as each connection's log line, the client's last one and an on_error line)
    assert err == "slack-socket-mode listen: apps.connections.open refused the app-level token: invalid_auth\n"
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


def test_each_failed_attempt_is_one_hash_line(server: SocketModeServer) -> None:
    server.fail_next_opens("internal_error", count=2)  # an outage: retried, each attempt said once
    proc = listen(server, "--count", "1")
    err = wait_listening(proc)
    server.push(load_sample("events_api_message"))
    err += proc.communicate(timeout=timeout(10))[1]
    assert proc.returncode == 0, err
    failed = [line for line in err.splitlines() if "internal_error" in line]
    assert len(failed) == 2 and all(line.startswith("# connection ") for line in failed), err


def run_listen_args(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("listen", *args),
        env={**os.environ, "SLACK_APP_TOKEN": APP_TOKEN},
        capture_output=True,
        text=True,
        timeout=timeout(20),  # a bad option is said at once, not retried for connect()'s 30 s
        check=False,
    )


def test_listen_refuses_a_web_api_url_it_cannot_call_at_once() -> None:
    for url, problem in (("not a url", "'not a url/' has no scheme"), ("ftp://127.0.0.1/api/", "scheme 'ftp'")):
        proc = run_listen_args("--api-url", url)
        assert proc.returncode == 2
        (line,) = proc.stderr.splitlines()
        assert line.startswith("slack-socket-mode listen: the Web API base_url must be an http:// or https:// URL")
        assert line.endswith(problem)


def test_listen_refuses_a_count_below_1() -> None:
    for count in ("-1", "0", "many"):
        proc = run_listen_args("--count", count)
        assert proc.returncode == 2 and "argument --count" in proc.stderr and "Traceback" not in proc.stderr


def test_listen_record_to_a_full_disk_is_one_line_and_exit_2(server: SocketModeServer) -> None:
    proc = listen(server, "--record", "/dev/full")  # the header cannot be written
    _, err = proc.communicate(timeout=timeout(10))
    assert proc.returncode == 2
    assert err == "slack-socket-mode listen: cannot write the recording /dev/full: No space left on device\n"
    assert server.open_calls == 0


def test_a_recording_that_cannot_be_written_further_stops_listen_keeping_its_complete_lines(
    server: SocketModeServer, tmp_path: Path
) -> None:
    path = tmp_path / "session.jsonl"
    # the file may not grow past 6000 bytes: a write beyond fails with EFBIG (Python ignores SIGXFSZ)
    proc = listen(server, "--ack", "--record", str(path), limits={"RLIMIT_FSIZE": 6000})
    try:
        wait_listening(proc)
        pushed = 0
        while proc.poll() is None and pushed < 100:
            try:
                envelope_id = server.push(load_sample("events_api_app_mention"))
                server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
            except (RuntimeError, TimeoutError):  # the connection closed as listen stopped
                break
            pushed += 1
        _, err = proc.communicate(timeout=timeout(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, err
    recorded = list(read_recording(str(path)))  # every line complete: the one cut short was truncated away
    assert 1 < len(recorded) < pushed + 1  # the hello and some envelopes, not all of them
    assert err.splitlines()[-1] == (
        f"slack-socket-mode listen: cannot write the recording {path}: File too large; "
        f"it keeps the {len(recorded)} message(s) recorded before"
    )
    assert "Traceback" not in err and "# recorded" not in err
    assert path.read_bytes().endswith(b"\n") and path.stat().st_size <= 6000
