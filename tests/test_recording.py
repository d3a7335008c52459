"""The recording format (slack_socket_mode.recording): writer, redaction and reader, with no sockets."""

from __future__ import annotations

import inspect
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from slack_socket_mode import SocketModeClient
from slack_socket_mode.messages import MAX_ENVELOPE_ID, Envelope, Malformed, parse_message
from slack_socket_mode.recording import (
    FORMAT,
    MAX_LINE_SIZE,
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
        (
            '{"t": 1, "connection": 1, "message": {"envelope_id": 5}}',
            "the envelope's envelope_id is not a string of 1 to 256 characters",
        ),
        (
            json.dumps({"t": 1, "connection": 1, "message": {"type": "events_api", "envelope_id": "e" * 257}}),
            "the envelope's envelope_id is not a string of 1 to 256 characters",
        ),
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


# ---- hostile files: deep nesting, bytes that are not UTF-8, lines without end ------------------------


def test_a_header_nested_too_deeply_is_a_recording_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 200_000 + "]" * 200_000 + "\n" + GOOD + "\n", encoding="utf-8")
    with pytest.raises(RecordingError, match=r"line 1: not a recording: the first line is JSON nested too deeply"):
        read_header(str(path))
    for skip in (False, True):
        with pytest.raises(RecordingError, match=r"line 1: .*nested too deeply") as info:
            list(read_recording(str(path), skip_bad_lines=skip))
        assert info.value.line == 1


def test_a_byte_that_is_not_utf8_on_line_3_is_line_3_and_can_be_skipped(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    later = line(0.2, load_sample("slash_commands"))
    path.write_bytes(
        HEADER.encode() + b"\n" + GOOD.encode() + b"\n" + b'{"t": 1, "connection": 1, "text": "caf\xe9"}\n'
        + later.encode() + b"\n"
    )  # fmt: skip
    assert read_header(str(path)).version == 1  # the header reader decodes line 1 only
    skipped: list[RecordingError] = []
    entries = list(read_recording(str(path), skip_bad_lines=True, on_bad_line=skipped.append))
    assert [e.line for e in entries] == [2, 4]
    assert [(e.line, e.problem) for e in skipped] == [
        (3, "not UTF-8 text (invalid continuation byte at byte 38 of the line)")
    ]


def test_a_line_longer_than_max_line_size_is_named_and_skipped_without_being_held(tmp_path: Path) -> None:
    long_line = line(0.15, {"type": "events_api", "envelope_id": "e1", "payload": {"pad": "x" * 5000}})
    later = line(0.2, load_sample("slash_commands"))
    path = write(tmp_path / "long.jsonl", HEADER, GOOD, long_line, later)
    cap = len(long_line) - 1
    with pytest.raises(RecordingError) as info:
        list(read_recording(path, max_line_size=cap))
    assert (info.value.line, info.value.problem) == (3, f"longer than max_line_size ({cap} bytes)")
    skipped: list[RecordingError] = []
    entries = list(read_recording(path, max_line_size=cap, skip_bad_lines=True, on_bad_line=skipped.append))
    assert [e.line for e in entries] == [2, 4] and [e.line for e in skipped] == [3]
    assert [e.line for e in read_recording(path, max_line_size=len(long_line))] == [2, 3, 4]  # newline not counted
    with pytest.raises(RecordingError, match=r"line 1: longer than max_line_size \(20 bytes\)"):
        read_header(path, max_line_size=20)
    with pytest.raises(ValueError, match="max_line_size"):
        read_header(path, max_line_size=0)


def test_a_file_with_no_line_end_is_refused_at_the_default_cap(tmp_path: Path) -> None:
    # /dev/zero: one endless line; the reader stops at MAX_LINE_SIZE instead of growing without bound
    with pytest.raises(RecordingError) as info:
        read_header("/dev/zero")
    assert info.value.line == 1
    assert info.value.problem == (
        f"longer than max_line_size ({MAX_LINE_SIZE} bytes): "
        "its message is larger than the client's default max_message_size (16 MiB)"
    )


def test_the_default_line_cap_has_room_for_the_clients_default_max_message_size() -> None:
    default = inspect.signature(SocketModeClient).parameters["max_message_size"].default
    assert default + 4096 == MAX_LINE_SIZE and default == 16 * 1024 * 1024


def test_the_reader_and_the_client_apply_one_envelope_id_rule(tmp_path: Path) -> None:
    for length in (1, MAX_ENVELOPE_ID, MAX_ENVELOPE_ID + 1):
        message = {"type": "events_api", "envelope_id": "e" * length, "payload": {}}
        path = write(tmp_path / f"id{length}.jsonl", HEADER, line(0.1, message))
        client_view = parse_message(json.dumps(message))
        if length <= MAX_ENVELOPE_ID:
            assert isinstance(client_view, Envelope)
            assert [e.envelope_id for e in read_recording(path)] == [message["envelope_id"]]
        else:
            assert isinstance(client_view, Malformed)
            with pytest.raises(RecordingError) as info:
                list(read_recording(path))
            assert info.value.problem == f"the envelope's {client_view.problem}"


def test_a_message_nested_too_deeply_is_recorded_as_text() -> None:
    out = io.StringIO()
    writer = RecordingWriter(out)
    deep = "[" * 100_000 + "]" * 100_000
    writer.write(1, deep)  # what json.loads gives up on
    writer.write(1, '{"a":' * 990 + "1" + "}" * 990)  # what it decodes, and redaction then recurses into
    _, first, second = out.getvalue().splitlines()
    assert json.loads(first) == {"t": json.loads(first)["t"], "connection": 1, "text": deep}
    assert json.loads(second)["text"].startswith('{"a":{"a":')
    assert writer.count == 2


class _FullDisk(io.StringIO):
    """A file whose writes fail once ``room`` characters are taken (as a full disk does)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, text: str) -> int:
        if self.tell() + len(text) > self.room:
            super().write(text[: self.room - self.tell()])  # a torn line, as a short write leaves
            raise OSError(28, "No space left on device")
        return super().write(text)


def test_a_write_that_fails_ends_the_writer_and_says_where_the_complete_lines_end() -> None:
    with pytest.raises(OSError, match="No space left"):
        RecordingWriter(_FullDisk(10))
    file = _FullDisk(600)
    writer = RecordingWriter(file)
    text = json.dumps({"type": "events_api", "envelope_id": "e1", "payload": {"note": "é" * 40}})
    written = 0
    with pytest.raises(OSError, match="No space left"):
        for _ in range(20):
            writer.write(1, text)
            written += 1
    assert writer.count == written and isinstance(writer.error, OSError)
    writer.write(1, text)  # after the error: ignored
    assert writer.count == written
    complete = file.getvalue().encode("utf-8")[: writer.size]
    assert complete.endswith(b"\n") and len(complete.splitlines()) == written + 1  # the header, then each line
    assert len(file.getvalue().encode("utf-8")) > writer.size  # the torn line is past it
