"""Record and replay: ``listen --record``, ``SocketModeServer.replay`` and ``slack-socket-mode replay``.

Every test runs a real client against the local server on loopback; the command line runs as a
real process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest

from slack_socket_mode import SocketModeClient
from slack_socket_mode.recording import FORMAT, RecordingError, read_recording
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.replay import ReplayProgress, replay_recording
from slack_socket_mode.testing.samples import envelope_sample_names, load_sample

from .conftest import APP_TOKEN, ClientFactory, Recorder, timeout
from .test_cli import command, listen, wait_listening

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "slack_socket_mode.testing.pytest_plugin"
HEADER = json.dumps({"format": FORMAT, "version": 1, "started_at": "2026-12-05T17:00:00.000Z", "redacted": True})
BOT_TOKEN = "xoxb-1111-2222-SecretBotToken"
HOOK_SECRET = "Hk9SecretHookPart"


def envelope(kind: str = "events_api_message", **changes: Any) -> dict[str, Any]:
    """A sample envelope with a fresh envelope_id."""
    sample = load_sample(kind)
    sample["envelope_id"] = str(uuid.uuid4())
    sample.update(changes)
    return sample


def write_recording(path: Path, entries: list[tuple[float, Any]], *, raw: Optional[dict[int, str]] = None) -> str:
    """A recording of ``(t, message)`` entries; ``raw`` replaces line N (1-based, header is 1) with a text."""
    lines = [HEADER] + [json.dumps({"t": t, "connection": 1, "message": message}) for t, message in entries]
    for number, text in (raw or {}).items():
        lines[number - 1] = text
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return str(path)


def recorded_envelopes(path: str) -> list[dict[str, Any]]:
    """The first delivery of each envelope in a recording, in order."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in read_recording(path):
        if entry.envelope_id is not None and entry.message is not None:
            seen.setdefault(entry.envelope_id, entry.message)
    return list(seen.values())


class RawEnvelopes:
    """An ``on_message_listener``: every envelope as the client received it, parsed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.envelopes: list[dict[str, Any]] = []

    def __call__(self, text: str) -> None:
        message = json.loads(text)
        if "envelope_id" in message:
            with self.lock:
                self.envelopes.append(message)


# ---- the whole loop: record with listen, replay with the command and with the fixture ---------------

APP_MODULE = """
import json, os, threading

LOCK = threading.Lock()

def make_client(app_token, web_client):
    from slack_socket_mode import SocketModeClient

    def seen(text):  # every text message, as the client received it
        message = json.loads(text)
        if "envelope_id" in message:
            with LOCK, open(os.environ["SEEN_FILE"], "a", encoding="utf-8") as out:
                out.write(json.dumps(message) + "\\n")

    def ack(client, request):
        payload = {"text": "ok"} if request.accepts_response_payload else None
        client.send_socket_mode_response({"envelope_id": request.envelope_id, "payload": payload})

    client = SocketModeClient(app_token=app_token, web_client=web_client, on_message_listeners=[seen])
    client.socket_mode_request_listeners.append(ack)
    return client

def late(client, request):  # acks the slash command after Slack's 3 s
    if request.type == "slash_commands":
        threading.Event().wait(3.3)
    client.send_socket_mode_response({"envelope_id": request.envelope_id})
"""


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester with plugin autoloading off: only our plugin is loaded, by ``-p`` (as documented)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def run_cli(cwd: Path, *args: str, memory: Optional[int] = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The command as a process; ``memory``: its address space limit in bytes (RLIMIT_AS)."""
    return subprocess.run(
        command(*args, limits={"RLIMIT_AS": memory} if memory is not None else None),
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )


def one_line(stderr: str) -> str:
    """The only line of ``stderr`` (what a CLI says about bad input: one line, never a traceback)."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def record_session(server: SocketModeServer, path: Path) -> list[str]:
    """Run ``listen --ack --record`` and push every envelope sample, with secrets, and a rotation."""
    names = envelope_sample_names()
    proc = listen(server, "--ack", "--record", str(path), "--count", str(len(names)))
    wait_listening(proc)
    ids = []
    for index, name in enumerate(names):
        sample = load_sample(name)
        sample["envelope_id"] = str(uuid.uuid4())
        payload = sample["payload"]
        if "response_url" in payload:
            payload["response_url"] = f"https://hooks.slack.com/commands/T111/1234/{HOOK_SECRET}"
        if "event" in payload:
            payload["event"]["text"] = f"my token is {BOT_TOKEN}"
        ids.append(server.push(sample))
        if index == len(names) // 2:  # a rotation halfway, as Slack does every few hours
            server.wait_for_acks(envelope_ids=ids, timeout=timeout(5))
            before = len(server.all_connections)
            (old,) = server.connections
            server.disconnect("warning")
            server.wait_for_new_connection(before, timeout=timeout(5))
            # The server may go on delivering on the old connection until it closes (as Slack may):
            # wait for that, so that the recording's order is the order of the pushes.
            assert old.wait_closed(timeout(5))
    _, err = proc.communicate(timeout=timeout(20))
    assert proc.returncode == 0, err
    assert f"# recorded {len(names) + 3} message(s) to {path}" in err  # 2 hellos, a disconnect, the envelopes
    return ids


def test_record_with_listen_then_replay_with_the_command_and_the_fixture(tmp_path: Path, run: pytest.Pytester) -> None:
    recording = tmp_path / "session.jsonl"
    with SocketModeServer(redelivery_delay=None) as server:
        ids = record_session(server, recording)

    text = recording.read_text(encoding="utf-8")
    for secret in (APP_TOKEN, BOT_TOKEN, HOOK_SECRET, "verification-token"):
        assert secret not in text
    entries = list(read_recording(str(recording)))
    assert [e.type for e in entries if e.envelope_id is None] == ["hello", "disconnect", "hello"]
    assert [e.envelope_id for e in entries if e.envelope_id] == ids
    assert {e.connection for e in entries} == {1, 2}
    assert [e.t for e in entries] == sorted(e.t for e in entries)
    recorded = recorded_envelopes(str(recording))
    assert "my token is xoxb-***" in json.dumps(recorded)

    # the command line, as fast as possible
    (tmp_path / "recorded_app.py").write_text(textwrap.dedent(APP_MODULE), encoding="utf-8")
    seen_file = tmp_path / "seen.jsonl"
    proc = run_cli(
        tmp_path, "replay", str(recording), "--app", "recorded_app:make_client", "--speed", "max", "--json",
        SEEN_FILE=str(seen_file),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["envelopes"], report["acked"], report["retried"], report["disconnects"]) == (
        len(ids),
        len(ids),
        0,
        1,
    )
    seen = [json.loads(line) for line in seen_file.read_text(encoding="utf-8").splitlines()]
    assert seen == recorded  # identical envelopes, in the recorded order

    # the pytest fixture, at the recorded pace, in a test suite of its own
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(recorded), encoding="utf-8")
    run.makepyfile(test_replayed=FIXTURE_TEST.format(recording=str(recording), expected=str(expected)))
    run.runpytest("-p", PLUGIN).assert_outcomes(passed=1)


FIXTURE_TEST = """
import json
from slack_socket_mode import SocketModeClient

def test_the_recording_through_the_fixture(socket_mode_server, socket_mode_web_client):
    seen = []

    def raw(text):  # every text message, as the client received it
        message = json.loads(text)
        if "envelope_id" in message:
            seen.append(message)

    def ack(client, request):
        client.send_socket_mode_response({{"envelope_id": request.envelope_id}})

    with SocketModeClient(
        app_token="xapp-1-test", web_client=socket_mode_web_client, on_message_listeners=[raw]
    ) as client:
        client.socket_mode_request_listeners.append(ack)
        client.connect()
        report = socket_mode_server.replay({recording!r})
    assert report.retried == [] and report.disconnects == 1
    with open({expected!r}, encoding="utf-8") as file:
        assert seen == json.load(file)  # identical envelopes, in the recorded order
"""


def _web_client(server: SocketModeServer) -> Any:
    from slack_sdk.web import WebClient

    return WebClient(base_url=server.api_url)


# ---- SocketModeServer.replay -----------------------------------------------------------------------


def test_replay_pushes_first_deliveries_in_order_and_reports_each(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    command = envelope("slash_commands")
    mention = envelope("events_api_app_mention")
    redelivered = dict(mention, retry_attempt=1, retry_reason="timeout")
    began_retrying = envelope("events_api_message", retry_attempt=2, retry_reason="timeout")
    path = write_recording(
        tmp_path / "r.jsonl",
        [
            (0.0, load_sample("hello")),
            (0.01, mention),
            (0.02, command),
            (0.03, redelivered),
            (0.04, began_retrying),
            (0.05, {"type": "something_new"}),
            (0.06, {}),
        ],
        raw={8: json.dumps({"t": 0.06, "connection": 1, "text": "not JSON at all"})},
    )
    texts: list[str] = []
    last_sent = threading.Event()

    def on_text(text: str) -> None:
        texts.append(text)
        if text == "not JSON at all":
            last_sent.set()

    raw = RawEnvelopes()
    client = make_client(on_message_listeners=[raw, on_text])
    client.socket_mode_request_listeners.append(Recorder(payload={"text": "hi"}))
    client.connect()
    report = server.replay(path, speed=None)
    assert raw.envelopes == [mention, command, began_retrying]  # the recorded redelivery is not pushed
    assert report.recorded_redeliveries == 1
    assert report.other_messages == 2  # sent as recorded; the hello was not (the server sent its own)
    assert last_sent.wait(timeout(5))
    assert texts.count('{"type":"something_new"}') == 1
    assert [(e.envelope_id, e.type, e.line) for e in report.envelopes] == [
        (mention["envelope_id"], "events_api", 3),
        (command["envelope_id"], "slash_commands", 4),
        (began_retrying["envelope_id"], "events_api", 6),
    ]
    for e in report.envelopes:
        assert e.delivered and e.acked and e.redeliveries == 0 and not e.retried
        assert e.ack_time is not None and 0 <= e.ack_time < 3
    assert [e.ack_payload for e in report.envelopes] == [None, {"text": "hi"}, None]
    assert report.ack_time_percentile(0.5) is not None and report.slowest(1)[0] in report.envelopes
    assert server.duplicate_acks() == []


def test_a_second_replay_on_one_server_reports_only_its_own_deliveries_and_acks(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    once = envelope()
    path = write_recording(tmp_path / "r.jsonl", [(0.0, once)])
    client = make_client(dedupe=False)  # runs and acks the envelope again when it comes again
    client.socket_mode_request_listeners.append(Recorder())
    client.connect()
    server.replay(path, speed=None)
    (again,) = server.replay(path, speed=None).envelopes
    assert len(server.envelope(once["envelope_id"]).deliveries) == 2
    assert (again.acked, again.redeliveries) == (True, 0)
    assert again.ack_time is not None and again.ack_time > 0  # its own ack, not the first replay's


def test_an_envelope_not_acked_is_redelivered_by_the_rules_and_reported(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    ignored = envelope("events_api_message")
    acked = envelope("slash_commands")
    path = write_recording(tmp_path / "r.jsonl", [(0.0, ignored), (0.0, acked)])

    def ack_commands_only(client: SocketModeClient, request: Any) -> None:
        if request.type == "slash_commands":
            client.send_socket_mode_response({"envelope_id": request.envelope_id})

    with SocketModeServer(redelivery_delay=0.2, max_retries=2) as server:
        client = SocketModeClient(app_token=APP_TOKEN, web_client=_web_client(server))
        try:
            client.socket_mode_request_listeners.append(ack_commands_only)
            client.connect()
            report = server.replay(path, speed=None)
        finally:
            client.close()
    first, second = report.envelopes
    assert (first.delivered, first.acked, first.ack_time, first.redeliveries, first.retried) == (
        True,
        False,
        None,
        2,
        True,
    )
    assert (second.acked, second.retried) == (True, False)
    assert report.retried == [first] and report.not_acked == [first]
    assert report.to_dict()["retried"] == 1


def test_a_recorded_disconnect_rotates_the_app_and_nothing_is_lost(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    before = [envelope() for _ in range(200)]
    after = [envelope("slash_commands") for _ in range(200)]
    entries = [(0.0, e) for e in before] + [(0.0, load_sample("disconnect_refresh_requested"))]
    entries += [(0.0, e) for e in after]
    path = write_recording(tmp_path / "r.jsonl", entries)
    recorder = Recorder()
    client = make_client()
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    report = server.replay(path, speed=None)
    assert report.disconnects == 1 and report.disconnects_skipped == 0
    assert server.all_connections[0].disconnect_sent
    server.wait_for_new_connection(1, timeout=timeout(5))  # the app rotated (maybe after its last ack)
    assert [e.envelope_id for e in report.envelopes] == [e["envelope_id"] for e in before + after]
    assert all(e.acked and e.redeliveries == 0 for e in report.envelopes)
    assert sorted(r.envelope_id for r in recorder.seen) == sorted(e["envelope_id"] for e in before + after)
    # After the disconnect, nothing more went to the connection told to go: the app saw the
    # envelopes in the recorded order (on the old connection until the disconnect, then on the new).
    old_id = server.all_connections[0].id
    delivered_on = [server.envelope(e["envelope_id"]).deliveries[0].connection_id for e in after]
    assert old_id not in delivered_on
    assert [r.envelope_id for r in recorder.seen] == [e["envelope_id"] for e in before + after]


def test_replay_keeps_the_recorded_pace_divided_by_speed(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    first, second = envelope(), envelope()
    path = write_recording(tmp_path / "r.jsonl", [(1.0, first), (1.8, second)])
    client = make_client()
    client.socket_mode_request_listeners.append(Recorder())
    client.connect()
    report = server.replay(path, speed=2.0)
    sent = [server.envelope(e["envelope_id"]).deliveries[0].sent_at for e in (first, second)]
    assert sent[1] - sent[0] >= 0.4 - 0.01  # (1.8 - 1.0) / 2, never earlier
    assert report.speed == 2.0 and report.duration >= 0.4 - 0.01  # from the first message, not from t=0
    with pytest.raises(ValueError, match="speed"):
        server.replay(path, speed=0)


def test_a_bad_line_stops_the_replay_there_unless_skipped(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    def bad_recording(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        good, after = envelope(), envelope()  # fresh ids for each replay
        entries = [(0.0, good), (0.0, {}), (0.0, after)]
        return write_recording(tmp_path / name, entries, raw={3: '{"t": 0.0, "conn'}), good, after

    client = make_client()
    client.socket_mode_request_listeners.append(Recorder())
    client.connect()
    path, good, after = bad_recording("r.jsonl")
    with pytest.raises(RecordingError, match=r"r\.jsonl, line 3: not JSON") as info:
        server.replay(path, speed=None)
    assert info.value.line == 3
    assert server.envelope(good["envelope_id"]).acks  # what came before was replayed
    with pytest.raises(KeyError):
        server.envelope(after["envelope_id"])  # nothing after the bad line was pushed

    path, good, after = bad_recording("r2.jsonl")
    report = replay_recording(server, path, speed=None)  # the engine reports the error instead of raising
    assert report.error is not None and report.error.line == 3
    assert [(e.envelope_id, e.acked) for e in report.envelopes] == [(good["envelope_id"], True)]

    path, good, after = bad_recording("r3.jsonl")
    report = server.replay(path, speed=None, skip_bad_lines=True)
    assert [e.line for e in report.skipped_lines] == [3]
    assert [(e.envelope_id, e.acked) for e in report.envelopes] == [
        (good["envelope_id"], True),
        (after["envelope_id"], True),
    ]


def test_replay_waits_for_the_app_and_says_when_it_never_connects(server: SocketModeServer, tmp_path: Path) -> None:
    path = write_recording(tmp_path / "r.jsonl", [(0.0, envelope())])
    with pytest.raises(TimeoutError, match=r"the app did not connect within 0\.2 s"):
        server.replay(path, connect_timeout=0.2)


def test_progress_is_reported_and_ends_with_done(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = write_recording(tmp_path / "r.jsonl", [(0.0, envelope()) for _ in range(50)])
    client = make_client()
    client.socket_mode_request_listeners.append(Recorder())
    client.connect()
    calls: list[ReplayProgress] = []
    replay_recording(server, path, speed=None, progress=calls.append)
    assert calls[-1].done and calls[-1].pushed == 50 and calls[-1].acked == 50 and calls[-1].lines == 51


# ---- slack-socket-mode replay ------------------------------------------------------------------------


def test_command_exits_1_when_an_envelope_would_have_been_retried(tmp_path: Path) -> None:
    (tmp_path / "recorded_app.py").write_text(textwrap.dedent(APP_MODULE), encoding="utf-8")
    command, message = envelope("slash_commands"), envelope()
    path = write_recording(tmp_path / "r.jsonl", [(0.0, message), (0.1, command)])
    proc = run_cli(tmp_path, "replay", path, "--app", "recorded_app:late")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "2 envelopes: 1 acked within 3 s, 1 not acked within 3 s (Slack would have retried), 0 never acked" in out
    slowest = out.split("slowest:\n")[1].splitlines()
    assert command["envelope_id"] in slowest[0] and "acked late, 1 redeliveries" in slowest[0]
    assert "# replay: line 3/3, 2 envelopes pushed" in proc.stderr  # progress on stderr


def test_command_names_a_bad_line_and_exits_2_or_skips_it(tmp_path: Path) -> None:
    (tmp_path / "recorded_app.py").write_text(textwrap.dedent(APP_MODULE), encoding="utf-8")
    good, after = envelope(), envelope()
    path = write_recording(tmp_path / "r.jsonl", [(0.0, good), (0.0, {}), (0.0, after)], raw={3: "{truncated"})
    seen = tmp_path / "seen.jsonl"
    proc = run_cli(tmp_path, "replay", path, "--app", "recorded_app:make_client", "--quiet", SEEN_FILE=str(seen))
    assert proc.returncode == 2
    assert f"{path}, line 3: not JSON" in proc.stderr and "nothing after it was replayed" in proc.stderr
    assert "# replay:" not in proc.stderr  # --quiet
    assert [json.loads(x)["envelope_id"] for x in seen.read_text().splitlines()] == [good["envelope_id"]]

    seen.unlink()
    proc = run_cli(
        tmp_path, "replay", path, "--app", "recorded_app:make_client", "--skip-bad-lines", "--json",
        SEEN_FILE=str(seen),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {path}, line 3: not JSON" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["acked"] == 2 and report["skipped_lines"] == [
        f"{path}, line 3: not JSON (Expecting property name enclosed in double quotes at column 2)"
    ]
    assert [json.loads(x)["envelope_id"] for x in seen.read_text().splitlines()] == [
        good["envelope_id"],
        after["envelope_id"],
    ]


def test_command_runs_a_bolt_app_factory_and_a_listener(tmp_path: Path) -> None:
    (tmp_path / "bolt_app.py").write_text((ROOT / "examples" / "bolt_app.py").read_text(), encoding="utf-8")
    mention, command = envelope("events_api_app_mention"), envelope("slash_commands")
    path = write_recording(tmp_path / "r.jsonl", [(0.0, mention), (0.0, command)])
    proc = run_cli(tmp_path, "replay", path, "--app", "bolt_app:create_app", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["app"] == "Bolt app 'bolt_app.py'"
    payloads = {e["envelope_id"]: e["ack_payload"] for e in report["per_envelope"]}
    assert payloads == {mention["envelope_id"]: None, command["envelope_id"]: {"text": "Hi <@U111>!"}}

    listener = """
        import logging

        def handle(client, request):
            client.send_socket_mode_response({"envelope_id": request.envelope_id})
            logging.getLogger("my_bot").error("could not save it")  # names no envelope: counted by thread
            raise RuntimeError("a bug after the ack")  # the client's log line names the envelope
    """
    (tmp_path / "listener.py").write_text(textwrap.dedent(listener), encoding="utf-8")
    proc = run_cli(tmp_path, "replay", path, "--app", "listener:handle", "--speed", "10")
    assert proc.returncode == 0, proc.stderr
    assert "4 errors and 0 warnings logged by the app" in proc.stdout
    assert "error x2: could not save it" in proc.stdout and "RuntimeError: a bug after the ack" in proc.stdout
    assert proc.stdout.count(", 2 errors") == 2  # each envelope in the slowest list, with both of its errors


def test_listen_says_when_it_cannot_write_the_recording(server: SocketModeServer, tmp_path: Path) -> None:
    proc = listen(server, "--record", str(tmp_path / "no" / "such" / "dir.jsonl"))
    _, err = proc.communicate(timeout=timeout(10))
    assert proc.returncode == 2 and "cannot write the recording" in err and "No such file or directory" in err
    assert server.open_calls == 0


def test_command_reports_progress_through_a_quiet_spell_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "recorded_app.py").write_text(textwrap.dedent(APP_MODULE), encoding="utf-8")
    path = write_recording(tmp_path / "r.jsonl", [(0.0, envelope()), (600.0, envelope())])  # 10 minutes apart
    proc = subprocess.Popen(
        [sys.executable, "-m", "slack_socket_mode", "replay", path, "--app", "recorded_app:late"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # about one a second while it waits for the second envelope
            if line.startswith("# replay: line 3/3, 1 envelopes pushed, 1 acked"):  # waits for line 3
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err


def test_command_refuses_a_speed_that_is_not_positive(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "r.jsonl", [(0.0, envelope())])
    for speed in ("0", "-1", "fast"):
        proc = run_cli(tmp_path, "replay", path, "--app", "x:y", "--speed", speed)
        assert proc.returncode == 2 and "--speed" in proc.stderr


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nocolon", "--app must be MODULE:ATTR"),
        ("no_such_module:app", "cannot import no_such_module"),
        ("listener:nothing", "listener has no attribute nothing"),
        ("listener:NUMBER", "is a int: expected a Bolt App, a listener or a factory"),
        ("listener:returns_none", "returned a NoneType, not a SocketModeClient or a Bolt App"),
    ],
)
def test_command_explains_an_app_it_cannot_run(tmp_path: Path, app: str, message: str) -> None:
    (tmp_path / "listener.py").write_text("NUMBER = 5\ndef returns_none(web_client):\n    return None\n")
    path = write_recording(tmp_path / "r.jsonl", [(0.0, envelope())])
    proc = run_cli(tmp_path, "replay", path, "--app", app)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ---- hostile recordings and apps: one line and exit 2, never a traceback ------------------------------


def test_a_header_nested_200000_deep_is_a_bad_recording(server: SocketModeServer, tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 200_000 + "]" * 200_000 + "\n", encoding="utf-8")
    proc = run_cli(tmp_path, "replay", str(path), "--app", "nothing:here")
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        f"slack-socket-mode replay: {path}, line 1: not a recording: the first line is JSON nested too deeply to read"
    )
    with pytest.raises(RecordingError, match="nested too deeply") as info:
        server.replay(str(path), connect_timeout=0.2)
    assert info.value.line == 1


def test_a_byte_that_is_not_utf8_on_line_3_is_named_there_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "recorded_app.py").write_text(textwrap.dedent(APP_MODULE), encoding="utf-8")
    good, after = envelope(), envelope()
    path = tmp_path / "latin1.jsonl"
    write_recording(path, [(0.0, good), (0.0, {}), (0.0, after)])
    lines = path.read_bytes().split(b"\n")
    lines[2] = b'{"t": 0.0, "connection": 1, "text": "caf\xe9"}'
    path.write_bytes(b"\n".join(lines))
    proc = run_cli(tmp_path, "replay", str(path), "--app", "recorded_app:make_client", "--quiet")
    assert proc.returncode == 2
    assert f"{path}, line 3: not UTF-8 text" in proc.stderr and "line 1" not in proc.stderr
    seen = tmp_path / "seen.jsonl"
    proc = run_cli(
        tmp_path, "replay", str(path), "--app", "recorded_app:make_client", "--skip-bad-lines", "--json",
        SEEN_FILE=str(seen),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["acked"] == 2
    assert f"skipped {path}, line 3: not UTF-8 text" in proc.stderr


def test_a_file_with_no_line_end_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    # /dev/zero is one endless line: the reader stops at the cap instead of growing without bound
    proc = run_cli(tmp_path, "replay", "/dev/zero", "--app", "nothing:here", memory=1 << 30)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        "slack-socket-mode replay: /dev/zero, line 1: longer than max_line_size (16781312 bytes): "
        "its message is larger than the client's default max_message_size (16 MiB)"
    )


def test_a_line_over_max_line_size_is_named_with_the_cap_and_can_be_skipped(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    (tmp_path / "recorded_app.py").write_text(textwrap.dedent(APP_MODULE), encoding="utf-8")
    good, after = envelope(), envelope()
    large = envelope()
    large["payload"]["event"]["text"] = "x" * 5000
    path = write_recording(tmp_path / "r.jsonl", [(0.0, good), (0.0, large), (0.0, after)])
    seen = tmp_path / "seen.jsonl"
    proc = run_cli(
        tmp_path, "replay", path, "--app", "recorded_app:make_client", "--quiet", "--max-line-size", "4096",
        SEEN_FILE=str(seen),
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"{path}, line 3: longer than max_line_size (4096 bytes); nothing after it was replayed" in proc.stderr
    assert [json.loads(x)["envelope_id"] for x in seen.read_text().splitlines()] == [good["envelope_id"]]
    proc = run_cli(
        tmp_path, "replay", path, "--app", "recorded_app:make_client", "--json", "--max-line-size", "4096",
        "--skip-bad-lines", SEEN_FILE=str(seen),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["skipped_lines"] == [f"{path}, line 3: longer than max_line_size (4096 bytes)"]
    for bad in ("0", "-5", "lots"):
        proc = run_cli(tmp_path, "replay", path, "--app", "x:y", "--max-line-size", bad)
        assert proc.returncode == 2 and "--max-line-size" in proc.stderr

    client = make_client()
    client.socket_mode_request_listeners.append(Recorder())
    client.connect()
    with pytest.raises(RecordingError, match=r"line 3: longer than max_line_size \(4096 bytes\)"):
        server.replay(path, speed=None, max_line_size=4096)
    assert len(server.replay(path, speed=None).envelopes) == 3  # the default cap takes it


def test_an_envelope_id_the_client_would_drop_is_a_bad_line(
    server: SocketModeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    good = envelope()
    path = write_recording(tmp_path / "r.jsonl", [(0.0, good), (0.0, envelope(envelope_id="e" * 257))])
    client = make_client()
    client.socket_mode_request_listeners.append(Recorder())
    client.connect()
    with pytest.raises(RecordingError, match=r"line 3: the envelope's envelope_id is not a string of 1 to 256"):
        server.replay(path, speed=None)
    assert server.envelope(good["envelope_id"]).acks


@pytest.mark.parametrize(
    ("module", "app", "message"),
    [
        (
            f"raise SystemExit('set SLACK_BOT_TOKEN, not {APP_TOKEN}')",
            "exits:app",
            "cannot run exits:app: importing exits raised SystemExit('set SLACK_BOT_TOKEN, not xapp-***')",
        ),
        ("import sys\nsys.exit(3)", "exits:app", "cannot run exits:app: importing exits raised SystemExit(3)"),
        (
            f"def make(app_token):\n    raise SystemExit('{APP_TOKEN} is refused')",
            "exits:make",
            "cannot run exits:make: the factory exits:make raised SystemExit('xapp-*** is refused')",
        ),
        (
            f"raise RuntimeError('cannot start with {APP_TOKEN}')",
            "exits:app",
            "cannot run exits:app: importing exits raised RuntimeError: cannot start with xapp-***",
        ),
    ],
)
def test_an_app_that_exits_or_raises_is_one_redacted_line_and_exit_2(
    tmp_path: Path, module: str, app: str, message: str
) -> None:
    (tmp_path / "exits.py").write_text(module + "\n", encoding="utf-8")
    path = write_recording(tmp_path / "r.jsonl", [(0.0, envelope())])
    proc = run_cli(tmp_path, "replay", path, "--app", app, "--quiet")
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"slack-socket-mode replay: {message}"
    assert APP_TOKEN not in proc.stderr + proc.stdout


BOLT_NO_ACK = """
from slack_bolt import App

def create_app(client):
    app = App(client=client, token_verification_enabled=False, signing_secret="unused")

    @app.command("/hello-socket-mode")
    def forgets_to_ack(body):
        pass

    @app.event("message")
    def on_message(event):  # Bolt acks events itself
        pass

    return app
"""


def test_the_report_counts_the_warnings_the_app_logged(tmp_path: Path) -> None:
    (tmp_path / "no_ack.py").write_text(textwrap.dedent(BOLT_NO_ACK), encoding="utf-8")
    slash, message = envelope("slash_commands"), envelope("events_api_message")
    path = write_recording(tmp_path / "r.jsonl", [(0.0, slash), (0.0, message)])
    args = ["replay", path, "--app", "no_ack:create_app", "--quiet", "--speed", "max"]
    # both at once: each waits out Slack's redeliveries of the command that is never acked (12 s)
    text, as_json = (
        subprocess.Popen(command(*argv), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv in (args, [*args, "--json"])
    )
    try:
        out, err = text.communicate(timeout=timeout(60))
        json_out, _ = as_json.communicate(timeout=timeout(60))
    finally:
        for proc in (text, as_json):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert text.returncode == 1, err  # the command was never acked
    summary = re.search(r"; 0 errors and (\d+) warnings logged by the app\n", out)
    assert summary is not None and int(summary.group(1)) >= 1, out
    assert "  warning x1: forgets_to_ack didn't call ack()\n" in out
    (slowest,) = [line for line in out.split("slowest:\n")[1].splitlines() if slash["envelope_id"] in line]
    assert re.search(r"never acked, 3 redeliveries, \d+ warnings$", slowest), slowest

    report = json.loads(json_out)
    assert report["warnings"] >= 1 and report["warning_messages"]["forgets_to_ack didn't call ack()"] == 1
    per_envelope = {e["envelope_id"]: e for e in report["per_envelope"]}
    assert per_envelope[slash["envelope_id"]]["warnings"] >= 1
    assert per_envelope[message["envelope_id"]]["warnings"] == 0
