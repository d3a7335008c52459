"""The examples in examples/ run as real processes against the local Socket Mode server.

Each example is started with ``SLACK_API_URL`` pointing at the server and read line by line:
no fixed sleeps, every wait ends on a line the example prints, an HTTP answer or a server event.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HEALTH_SERVER = EXAMPLES / "health_server.py"


def start_health_server(server: SocketModeServer, **env: str | None) -> subprocess.Popen[str]:
    """Start examples/health_server.py against ``server``; an ``env`` value of None unsets that variable."""
    environment = dict(
        os.environ,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=server.api_url,
        HEALTH_HOST="127.0.0.1",
        HEALTH_PORT="0",  # the example prints the port the OS chose
    )
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.Popen(
        [sys.executable, str(HEALTH_SERVER)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("serving on "), f"expected 'serving on PORT', got {line!r}"
    return int(line.split()[-1])


def get(port: int, path: str) -> tuple[int, str, str]:
    """GET http://127.0.0.1:port/path: (status, content type, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(5))
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


def probe(port: int, path: str, attempts: int = 3) -> tuple[int, str, str]:
    """:func:`get` as Kubernetes probes: a connection the server dropped is tried again, up to ``attempts``
    times in all (kubelet's ``failureThreshold`` is 3). Under a slowloris the server evicts the oldest
    connection for each new one, and on a loaded machine a probe accepted just before a burst of the
    tricklers still in the accept queue may be the one evicted before its thread reads it."""
    for attempt in range(attempts):
        try:
            return get(port, path)
        except (http.client.RemoteDisconnected, ConnectionResetError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def stop(proc: subprocess.Popen[str], signum: int = signal.SIGTERM) -> tuple[str, str]:
    proc.send_signal(signum)
    return proc.communicate(timeout=timeout(10))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; any still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=timeout(10))


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in Prometheus text: {labels or "": value}."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            if key == name or key.startswith(name + "{"):
                found[key[len(name) :]] = float(value)
    return found


def test_health_server_serves_healthz_and_metrics(
    server: SocketModeServer, processes: list[subprocess.Popen[str]]
) -> None:
    proc = start_health_server(server)
    processes.append(proc)
    port = read_port(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "connected"

    status, content_type, body = get(port, "/healthz")
    assert status == 200 and content_type == "application/json"
    assert json.loads(body) == {"status": "ok", "state": "connected", "oldest_wait": 0.0}

    envelope_id = server.push_sample("events_api_app_mention")
    server.wait_for_acks(envelope_ids=[envelope_id], timeout=timeout(5))
    (first,) = server.all_connections
    server.disconnect("warning")  # a rotation: counted under reconnects
    server.wait_for_new_connection(1, timeout=timeout(5))
    assert first.wait_closed(timeout(5))  # the client closes it once the new one said hello

    status, content_type, metrics = get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert samples(metrics, "slack_socket_mode_envelopes_received_total") == {"": 1.0}
    assert samples(metrics, "slack_socket_mode_envelopes_acked_total") == {"": 1.0}
    assert samples(metrics, "slack_socket_mode_envelopes_deduplicated_total") == {"": 0.0}
    assert samples(metrics, "slack_socket_mode_reconnects_total") == {'{reason="disconnect warning"}': 1.0}
    assert samples(metrics, "slack_socket_mode_connections_opened_total") == {"": 2.0}
    assert samples(metrics, "slack_socket_mode_healthy") == {"": 1.0}
    assert samples(metrics, "slack_socket_mode_state")['{state="connected"}'] == 1.0
    assert samples(metrics, "slack_socket_mode_queue_depth") == {"": 0.0}
    assert "slack_socket_mode_connections_open " in metrics
    assert "slack_socket_mode_num_connections " in metrics
    assert "slack_socket_mode_queue_oldest_wait_seconds " in metrics
    assert "# TYPE slack_socket_mode_ack_latency_seconds gauge" in metrics
    assert get(port, "/nothing-here")[0] == 404

    _, stderr = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, stderr
    assert all(conn.wait_closed(timeout(5)) for conn in server.all_connections)
    assert server.all_connections[-1].close_code_received == 1000  # a clean close, not a dropped socket
    assert server.duplicate_acks() == []
    assert APP_TOKEN not in stderr


def test_health_server_is_unhealthy_until_hello_and_stops_on_ctrl_c(processes: list[subprocess.Popen[str]]) -> None:
    with SocketModeServer(send_hello=False, redelivery_delay=None) as server:
        proc = start_health_server(server)
        processes.append(proc)
        port = read_port(proc)
        status, content_type, body = get(port, "/healthz")
        assert status == 503 and content_type == "application/json"
        answer = json.loads(body)
        assert answer["status"] == "unhealthy"
        assert answer["reason"].startswith("not connected")
        assert samples(get(port, "/metrics")[2], "slack_socket_mode_healthy") == {"": 0.0}
        _, stderr = stop(proc, signal.SIGINT)  # while connect() still waits for hello
        assert proc.returncode == 0, stderr


def test_health_server_exits_1_when_the_token_is_refused(
    server: SocketModeServer, processes: list[subprocess.Popen[str]]
) -> None:
    server.fail_next_opens("invalid_auth")
    proc = start_health_server(server)
    processes.append(proc)
    read_port(proc)
    _, stderr = proc.communicate(timeout=timeout(10))
    assert proc.returncode == 1
    assert "invalid_auth" in stderr
    assert APP_TOKEN not in stderr


def threads_of(proc: subprocess.Popen[str]) -> int:
    """How many threads the process has now (Linux's /proc)."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/PID/status")


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the other end closed or reset ``sock``, a non-blocking socket (a look that does not wait)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_health_server_listens_on_loopback_unless_told_otherwise(
    server: SocketModeServer, processes: list[subprocess.Popen[str]]
) -> None:
    proc = start_health_server(server, HEALTH_HOST=None)
    processes.append(proc)
    port = read_port(proc)
    assert get(port, "/nothing-here")[0] == 404  # 127.0.0.1
    with pytest.raises(ConnectionRefusedError):  # another loopback address: 0.0.0.0 would answer it
        socket.create_connection(("127.0.0.2", port), timeout=timeout(5)).close()


def test_health_server_drops_a_connection_that_sends_nothing_after_its_read_timeout(
    server: SocketModeServer, processes: list[subprocess.Popen[str]]
) -> None:
    proc = start_health_server(server, HEALTH_READ_TIMEOUT="0.5")
    processes.append(proc)
    port = read_port(proc)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as idle:
        assert idle.recv(1) == b""  # closed by the server after 0.5 s (without the bound: a timeout here)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="counts threads through Linux's /proc")
def test_health_server_answers_probes_while_200_clients_trickle_their_requests(
    server: SocketModeServer, processes: list[subprocess.Popen[str]]
) -> None:
    """Slowloris: 200 clients send a request a byte at a time, within every read timeout.

    On main each held a thread of the example's for as long as it trickled (200 threads); now at
    most HEALTH_MAX_CONNECTIONS (16) are served at once, the oldest trickler making room for each
    new connection, and a probe is answered meanwhile.
    """
    proc = start_health_server(server, HEALTH_READ_TIMEOUT="2")
    processes.append(proc)
    port = read_port(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "connected"
    assert get(port, "/healthz")[0] == 200
    threads_before = threads_of(proc)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Trickle: " + b"y" * 1000
    tricklers: list[socket.socket] = []
    paced = threading.Event()  # never set: its wait paces the trickle
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout(5))
            sock.setblocking(False)
            tricklers.append(sock)
        most_threads = 0
        for sent in range(10):  # a byte from each every 0.1 s, for a second: well within the 2 s read timeout
            for sock in tricklers:
                if not closed_by_peer(sock):
                    sock.send(request[sent : sent + 1])
            most_threads = max(most_threads, threads_of(proc))
            paced.wait(0.1)
        status, _, body = probe(port, "/healthz")  # a probe while they trickle
        assert status == 200 and json.loads(body)["status"] == "ok"
        most_threads = max(most_threads, threads_of(proc))
        still_open = sum(1 for sock in tricklers if not closed_by_peer(sock))
    finally:
        for sock in tricklers:
            sock.close()
    assert most_threads <= threads_before + 16 + 2, f"{most_threads} threads, {threads_before} before the trickle"
    assert still_open <= 16, f"{still_open} trickling connections still open"
    _, stderr = stop(proc)
    assert proc.returncode == 0, stderr


def test_every_example_has_a_smoke_test() -> None:
    """A new program in examples/ needs a test that runs it (this file, or another that names it).

    Example test modules (``examples/test_*.py``) are tests themselves and are not counted.
    """
    tests = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py"))
    programs = [path for path in sorted(EXAMPLES.glob("*.py")) if not path.name.startswith("test_")]
    untested = [path.name for path in programs if path.stem not in tests]
    assert untested == [], f"examples without a test that runs them: {untested}"
