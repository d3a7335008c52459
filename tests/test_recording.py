"""The recording format (slack_socket_mode.recording): writer, redaction and reader, with no sockets."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from slack_socket_mode.recording import (
    FORMAT,
    REDACTED,
    RecordingError,
    RecordingWriter,
    read_header,
    read_recording,
    redact_message,
)
from slack_socket_mode.testing.samples import load_sample, load_sample_text, sample_names

from .conftest import APP_TOKEN

BOT_TOKEN = "xoxb-1111-2222-SecretBotToken"
USER_TOKEN = "xoxp-3333-4444-SecretUserToken"
HOOK_SECRET = "Hk9SecretHookPart"
HEADER = json.dumps({"format": FORMAT, "version": 1, "started_at": "2026-12-05T17:00:00.000Z", "redacted": True})


def secret_envelope() -> dict[str, Any]:
    """A view_submission carrying every kind of secret a recording must not keep."""
    envelope = load_sample("interactive_view_submission")
    payload = envelope["payload"]
    payload["token"] = "SecretVerificationToken"
    payload["response_urls"] = [
        {
            "block_id": "b1",
            "action_id": "a1",
            "channel_id": "C111",
            "response_url": f"https://hooks.slack.com/app/T111/2222/{HOOK_SECRET}",
        }
    ]
    payload["view"]["private_metadata"] = f"pasted {BOT_TOKEN} and https://u:p4ss@proxy.example/ by mistake"
    payload["nested"] = {"deep": [{"token": "AnotherVerificationToken", "note": f"see {USER_TOKEN}"}]}
    return envelope


def write(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def line(t: float, message: dict[str, Any], connection: int = 1) -> str:
    return json.dumps({"t": t, "connection": connection, "message": message})


# ---- redaction -------------------------------------------------------------------------------------


def test_redaction_removes_every_secret_and_keeps_ids_text_and_structure() -> None:
    envelope = secret_envelope()
    redacted = redact_message(envelope)
    text = json.dumps(redacted)
    for secret in (
        "SecretVerificationToken",
        "AnotherVerificationToken",
        BOT_TOKEN,
        USER_TOKEN,
        HOOK_SECRET,
        "p4ss",
    ):
        assert secret not in text
    payload = redacted["payload"]
    assert payload["token"] == REDACTED
    assert payload["nested"]["deep"][0]["token"] == REDACTED
    assert payload["response_urls"][0]["response_url"] == "https://hooks.slack.com/app/T111/2222/***"
    assert payload["view"]["private_metadata"] == "pasted xoxb-*** and https://***@proxy.example/ by mistake"
    # ids, text and structure stay
    assert redacted["envelope_id"] == envelope["envelope_id"]
    assert payload["view"]["state"] == envelope["payload"]["view"]["state"]
    assert payload["user"] == envelope["payload"]["user"]
    assert redacted.keys() == envelope.keys() and payload.keys() == envelope["payload"].keys()


def test_response_url_keeps_all_but_its_secret_part_on_any_host() -> None:
    command = load_sample("slash_commands")
    command["payload"]["response_url"] = f"https://hooks.slack.com/commands/T111/1234/{HOOK_SECRET}"
    assert redact_message(command)["payload"]["response_url"] == "https://hooks.slack.com/commands/T111/1234/***"
    command["payload"]["response_url"] = f"https://hooks.example.test/commands/T111/1234/{HOOK_SECRET}?x=1"
    assert redact_message(command)["payload"]["response_url"] == "https://hooks.example.test/commands/T111/1234/***"
    text = {"text": f"the hook https://hooks.slack.com/services/T111/B222/{HOOK_SECRET} leaked into a message"}
    assert HOOK_SECRET not in json.dumps(redact_message(text))


@pytest.mark.parametrize("name", sample_names())
def test_every_sample_survives_redaction_but_for_its_secrets(name: str) -> None:
    sample = load_sample(name)
    redacted = redact_message(sample)
    assert json.dumps(redacted).count("verification-token") == 0
    if "envelope_id" in sample:
        assert redacted["envelope_id"] == sample["envelope_id"]
        assert redacted["type"] == sample["type"]


# ---- writing ---------------------------------------------------------------------------------------


def test_writer_writes_a_versioned_header_then_one_redacted_line_per_message() -> None:
    out = io.StringIO()
    times = iter([100.0, 100.5, 101.25, 102.0])
    writer = RecordingWriter(out, recorder="test", clock=lambda: next(times))
    writer.write(1, load_sample_text("hello"))
    writer.write(1, json.dumps(secret_envelope()))
    writer.write(2, f"not json {BOT_TOKEN}")
    writer.close()
    writer.write(2, load_sample_text("hello"))  # after close(): ignored
    header, *lines = (json.loads(text) for text in out.getvalue().splitlines())
    assert header["format"] == FORMAT and header["version"] == 1 and header["redacted"] is True
    assert header["recorder"] == "test" and header["started_at"].endswith("Z")
    assert [(entry["t"], entry["connection"]) for entry in lines] == [(0.5, 1), (1.25, 1), (2.0, 2)]
    assert lines[0]["message"] == load_sample("hello")
    assert lines[1]["message"] == redact_message(secret_envelope())
    assert lines[2] == {"t": 2.0, "connection": 2, "text": "not json xoxb-***"}
    assert writer.count == 3
    for secret in (BOT_TOKEN, HOOK_SECRET, "SecretVerificationToken"):
        assert secret not in out.getvalue()


def test_writer_keeps_secrets_only_when_asked() -> None:
    out = io.StringIO()
    writer = RecordingWriter(out, redact_secrets=False)
    writer.write(1, json.dumps(secret_envelope()))
    header, entry = (json.loads(text) for text in out.getvalue().splitlines())
    assert header["redacted"] is False
    assert entry["message"] == secret_envelope()


def test_what_the_writer_writes_the_reader_reads(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    with path.open("w", encoding="utf-8") as file:
        writer = RecordingWriter(file)
        for name in ("hello", "events_api_app_mention", "disconnect_warning", "slash_commands"):
            writer.write(1, load_sample_text(name))
        writer.write(2, "[1, 2]")
    assert read_header(str(path)).redacted is True
    entries = list(read_recording(str(path)))
    assert [e.line for e in entries] == [2, 3, 4, 5, 6]
    assert [e.type for e in entries] == ["hello", "events_api", "disconnect", "slash_commands", None]
    assert entries[1].envelope_id == load_sample("events_api_app_mention")["envelope_id"]
    assert json.loads(entries[3].text) == redact_message(load_sample("slash_commands"))
    assert (entries[4].message, entries[4].text, entries[4].connection) == (None, "[1, 2]", 2)


# ---- reading: every bad line is named --------------------------------------------------------------

GOOD = line(0.1, load_sample("events_api_message"))


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("{not json", "not JSON (Expecting property name enclosed in double quotes at column 2)"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"connection": 1, "message": {}}', '"t" must be a number of seconds >= 0, not None'),
        ('{"t": -1, "connection": 1, "message": {}}', '"t" must be a number of seconds >= 0'),
        ('{"t": true, "connection": 1, "message": {}}', '"t" must be a number of seconds >= 0'),
        ('{"t": 0.05, "connection": 1, "message": {}}', '"t" 0.05 is earlier than the line before (0.1)'),
        ('{"t": 1, "connection": 0, "message": {}}', '"connection" must be an integer >= 1, not 0'),
        ('{"t": 1, "connection": 1}', 'has neither "message" (an object) nor "text" (a string)'),
        ('{"t": 1, "connection": 1, "message": [1]}', '"message" must be a JSON object, not a list'),
        ('{"t": 1, "connection": 1, "message": {}, "text": "x"}', 'has both "message" and "text"'),
        ('{"t": 1, "connection": 1, "message": {"envelope_id": 5}}', "envelope_id must be a non-empty string"),
        (
            f'{{"t": "{BOT_TOKEN}", "connection": 1, "message": {{}}}}',
            "\"t\" must be a number of seconds >= 0, not 'xoxb-***'",
        ),
    ],
)
def test_a_bad_line_is_named_and_nothing_after_it_is_read(tmp_path: Path, bad: str, problem: str) -> None:
    path = write(tmp_path / "bad.jsonl", HEADER, GOOD, bad, GOOD)
    seen = []
    with pytest.raises(RecordingError) as info:
        for entry in read_recording(path):
            seen.append(entry.line)
    assert seen == [2]  # the line before it was read; nothing after it
    assert info.value.line == 3 and info.value.path == path
    assert str(info.value).startswith(f"{path}, line 3: ")
    assert problem in str(info.value)
    assert BOT_TOKEN not in str(info.value)


def test_skip_bad_lines_reads_on_and_reports_each(tmp_path: Path) -> None:
    later = line(0.2, load_sample("slash_commands"))
    path = write(tmp_path / "bad.jsonl", HEADER, GOOD, "{oops", "", '{"t": 0}', later)
    skipped: list[RecordingError] = []
    entries = list(read_recording(path, skip_bad_lines=True, on_bad_line=skipped.append))
    assert [e.line for e in entries] == [2, 6]  # the blank line 4 is not an error
    assert [e.line for e in skipped] == [3, 5]


def test_a_truncated_recording_says_so(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text(HEADER + "\n" + GOOD + "\n" + GOOD[:40], encoding="utf-8")
    with pytest.raises(RecordingError, match=r"line 3: not JSON .*the file looks truncated"):
        list(read_recording(str(path)))


def test_text_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(HEADER.encode() + b"\n" + GOOD.encode() + b"\n" + b'{"t": 1, "text": "caf\xe9"}\n')
    with pytest.raises(RecordingError, match=r"line 3: not UTF-8 text"):
        list(read_recording(str(path)))


@pytest.mark.parametrize(
    ("first", "problem"),
    [
        ("", "the file is empty: no header"),
        (GOOD, 'not a recording: the first line must be a header with "format": "slack-socket-mode-recording"'),
        (json.dumps({"format": FORMAT, "version": 2}), "format version 2 is newer than this slack-socket-mode reads"),
        (json.dumps({"format": FORMAT, "version": "1"}), "the header's version must be a positive integer"),
    ],
)
def test_a_bad_header_is_line_1_and_is_never_skipped(tmp_path: Path, first: str, problem: str) -> None:
    path = str(tmp_path / "header.jsonl")
    Path(path).write_text(first + ("\n" + GOOD + "\n" if first else ""), encoding="utf-8")
    for skip in (False, True):
        with pytest.raises(RecordingError) as info:
            list(read_recording(path, skip_bad_lines=skip))
        assert info.value.line == 1 and problem in str(info.value)
    with pytest.raises(RecordingError, match=re.escape(problem.split(":", maxsplit=1)[0])):
        read_header(path)


def test_the_app_token_never_reaches_a_recording() -> None:
    out = io.StringIO()
    RecordingWriter(out).write(1, json.dumps({"type": "hello", "debug_info": {"oops": APP_TOKEN}}))
    assert APP_TOKEN not in out.getvalue() and "xapp-***" in out.getvalue()
