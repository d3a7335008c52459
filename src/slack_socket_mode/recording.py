"""Recordings of Socket Mode traffic: the file format, its writer and its reader, with no sockets.

``slack-socket-mode listen --record FILE`` writes one (:class:`RecordingWriter`);
:meth:`SocketModeServer.replay <slack_socket_mode.testing.SocketModeServer.replay>` and
``slack-socket-mode replay`` read one (:func:`read_recording`). The format is JSON Lines, UTF-8:

* line 1, the header: ``{"format": "slack-socket-mode-recording", "version": 1,
  "started_at": "2026-12-05T17:00:00.000Z", "redacted": true, "recorder": "…"}``;
* then one line per text message the app received, in the order received: ``{"t": 1.25,
  "connection": 1, "message": {…}}``, where ``t`` is the receive time in seconds since the
  recording started (never decreasing), ``connection`` the number the client gave the connection
  that carried it (1, 2, 3 … in the order they were opened), and ``message`` the message exactly as
  Slack sent it (``hello``, an envelope, a ``disconnect``), secrets redacted. A text message that is
  not a JSON object is kept as ``"text": "…"`` instead of ``"message"``.

Blank lines are ignored, and so are keys a reader does not know (a later version 1 writer may add
some); a new version number means a reader must not guess. A line longer than the reader's
``max_line_size`` (:data:`MAX_LINE_SIZE` by default: room for a message as large as the client's
default ``max_message_size``, 16 MiB) is a bad line, read no further than that; so is an
envelope whose ``envelope_id`` the client would drop as malformed (not a string of 1 to 256
characters: the client's own rule, :func:`~slack_socket_mode.messages.envelope_id_problem`).

Redaction (on by default, :func:`redact_message`) keeps ids, text and structure, so a recording
can be committed as a test fixture: the verification ``token`` field becomes ``"<redacted>"``,
Slack tokens anywhere become ``xoxb-***`` (the rules of :func:`~slack_socket_mode.redaction.redact`,
which also removes ``user:password@`` from URLs), and the secret last part of a ``response_url``
(and of every hooks.slack.com URL, such as those in ``response_urls``) becomes ``***``.

Every function here is pure or works on a file it is given; :class:`RecordingWriter` is
thread-safe.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, Callable, Final, NamedTuple, Optional, TextIO, Union

from .messages import envelope_id_problem
from .redaction import redact

__all__ = [
    "FORMAT",
    "MAX_LINE_SIZE",
    "REDACTED",
    "VERSION",
    "RecordedMessage",
    "RecordingError",
    "RecordingHeader",
    "RecordingWriter",
    "read_header",
    "read_recording",
    "redact_message",
    "redact_text",
]

#: The header's ``format`` value.
FORMAT: Final = "slack-socket-mode-recording"
#: The format version this module writes and reads.
VERSION: Final = 1
#: What a verification ``token`` field's value becomes.
REDACTED: Final = "<redacted>"
#: The longest line the reader takes by default, in bytes (its newline not counted): a message as
#: large as the client's default ``max_message_size`` (16 MiB), and 4 KiB for the line's own fields.
MAX_LINE_SIZE: Final = 16 * 1024 * 1024 + 4096

# The secret of a response URL (https://hooks.slack.com/commands/T111/1234/SECRET, /actions/…,
# /services/…) is its last path segment; everything before it (team, ids) stays.
_HOOK_URL_RE: Final = re.compile(r"(https?://hooks\.slack(?:-gov)?\.com/[^\s\"'<>?#]*/)([^/\s\"'<>?#]+)")
_LAST_SEGMENT_RE: Final = re.compile(r"^(https?://[^\s?#]*/)([^/\s?#]+)(.*)$")
_URL_KEYS: Final = frozenset({"response_url"})
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# What is read at a time of a line longer than max_line_size, to find its end.
_SKIP_CHUNK: Final = 64 * 1024


class RecordingError(ValueError):
    """A recording that cannot be read: its header, or one line, is not what the format says.

    ``str()`` names the file and the line: ``"session.jsonl, line 7: not JSON (Expecting ',' …)"``.

    Attributes:
        path: the file, as given to the reader.
        line: the line number, 1 for the header.
        problem: what is wrong with it.
    """

    def __init__(self, path: str, line: int, problem: str) -> None:
        problem = redact(problem)  # a hand-edited line may quote a token
        super().__init__(f"{path}, line {line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class RecordingHeader(NamedTuple):
    """The first line of a recording.

    Attributes:
        version: the format version (:data:`VERSION`).
        started_at: when the recording started (UTC, ISO 8601), as written.
        redacted: whether secrets were redacted (see :func:`redact_message`).
        recorder: what wrote it, e.g. ``"slack-socket-mode listen 0.1.0"``.
    """

    version: int
    started_at: str
    redacted: bool
    recorder: str


class RecordedMessage(NamedTuple):
    """One message of a recording.

    Attributes:
        line: its line number in the file.
        t: when it was received, in seconds since the recording started.
        connection: the number of the connection that carried it.
        message: the message (a JSON object), or ``None`` for a text message that is not one.
        text: the text to send: compact JSON of ``message``, or the recorded ``text``.
    """

    line: int
    t: float
    connection: int
    message: Optional[dict[str, Any]]
    text: str

    @property
    def envelope_id(self) -> Optional[str]:
        """The ``envelope_id`` if this message is an envelope, else ``None``."""
        if self.message is None:
            return None
        envelope_id = self.message.get("envelope_id")
        return envelope_id if isinstance(envelope_id, str) else None

    @property
    def type(self) -> Optional[str]:
        """The message's ``type`` (``"hello"``, ``"events_api"``, ``"disconnect"`` …), or ``None``."""
        kind = self.message.get("type") if self.message is not None else None
        return kind if isinstance(kind, str) else None


# ---- redaction -------------------------------------------------------------------------------------


def redact_text(text: str) -> str:
    """``text`` with Slack tokens, URL credentials and the secret part of hooks.slack.com URLs hidden.

    Pure. For a whole message use :func:`redact_message`, which also hides ``token`` fields.
    """
    text = redact(text)
    if "hooks.slack" in text:
        text = _HOOK_URL_RE.sub(r"\1***", text)
    return text


def _redact_url(url: str) -> str:
    """A ``response_url`` on any host: its last path segment (and query) replaced by ``***``."""
    match = _LAST_SEGMENT_RE.match(url)
    return f"{match.group(1)}***" if match else redact_text(url)


def redact_message(value: Any) -> Any:
    """A copy of a decoded JSON value with its secrets redacted; ids, text and structure stay.

    At any depth: a ``token`` field holding a string (Slack's verification token) becomes
    ``"<redacted>"``; a ``response_url`` field keeps all but its last path segment, which becomes
    ``***``; every other string (and every key) goes through :func:`redact_text`. Pure.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact_message(item) for item in value]
    if isinstance(value, dict):
        redacted: dict[str, Any] = {}
        for key, item in value.items():
            name = redact_text(key) if isinstance(key, str) else key
            if key == "token" and isinstance(item, str):
                redacted[name] = REDACTED
            elif key in _URL_KEYS and isinstance(item, str):
                redacted[name] = _redact_url(item)
            else:
                redacted[name] = redact_message(item)
        return redacted
    return value


# ---- writing ---------------------------------------------------------------------------------------


class RecordingWriter:
    """Writes a recording to an open text file: the header at once, then one line per message.

    Each line is written and flushed as it comes, so a recording cut short (Ctrl-C, a crash) is
    valid up to its last complete line. The first write that fails (a full disk) raises
    :class:`OSError` and ends the writer: nothing more is written, :attr:`error` holds it, and
    :attr:`size` says where the complete lines end (what to truncate the file to, as
    ``slack-socket-mode listen --record`` does). Thread-safe: connections' reader threads may call
    :meth:`write` at once; ``t`` is taken under the lock, so it never decreases down the file.

    Args:
        file: where to write (text mode, UTF-8); the caller closes it after :meth:`close`.
        redact_secrets: redact each message (:func:`redact_message`); ``False`` keeps them.
        recorder: the header's ``recorder``.
        clock: seconds, monotonic (:func:`time.monotonic`); ``t`` is measured from its value here.

    Raises:
        OSError: the header cannot be written.
    """

    def __init__(
        self,
        file: TextIO,
        *,
        redact_secrets: bool = True,
        recorder: str = "slack_socket_mode",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = file
        self._redact = redact_secrets
        self._clock = clock
        # A leaf lock outside the client's order (docs/threading.md, "Locks"): taken by a reader
        # (listen's client records each message before acting on it) with no lock of the client's
        # held, and nothing is taken under it.
        self._lock = threading.Lock()  # guards the file, _closed, _size, _error and the order of t
        self._closed = False
        self._count = 0
        self._size = 0
        self._error: Optional[OSError] = None
        self._start = clock()
        started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        header = {
            "format": FORMAT,
            "version": VERSION,
            "started_at": started_at.replace("+00:00", "Z"),
            "redacted": redact_secrets,
            "recorder": recorder,
        }
        self._write_line(_ENCODER.encode(header))

    @property
    def count(self) -> int:
        """How many messages were written (complete lines, the header not counted)."""
        return self._count

    @property
    def size(self) -> int:
        """Bytes of the complete lines written, the header's included (UTF-8, from where the file was)."""
        return self._size

    @property
    def error(self) -> Optional[OSError]:
        """The write error that ended the writer, or ``None``."""
        return self._error

    def write(self, connection: int, text: str) -> None:
        """Record one text message received on connection number ``connection``.

        A message written after :meth:`close`, or after a write failed, is ignored.

        Raises:
            OSError: the file cannot be written (the writer is then closed).
        """
        fields = self._fields(text)
        with self._lock:
            if self._closed:
                return
            t = round(self._clock() - self._start, 6)
            self._write_line(f'{{"t":{_ENCODER.encode(t)},"connection":{connection:d},{fields}}}')
            self._count += 1

    def _fields(self, text: str) -> str:
        """The line's ``"message": {…}`` (or ``"text": "…"``), as JSON, redacted; computed without the lock."""
        try:
            value = json.loads(text)
            if isinstance(value, dict):
                return '"message":' + _ENCODER.encode(redact_message(value) if self._redact else value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses: kept as text
            pass
        return '"text":' + _ENCODER.encode(redact_text(text) if self._redact else text)

    def close(self) -> None:
        """Write nothing more (the file stays open: its owner closes it). Idempotent."""
        with self._lock:
            self._closed = True

    def _write_line(self, line: str) -> None:
        data = line + "\n"
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as e:
            self._closed = True
            self._error = e
            raise
        self._size += len(data.encode("utf-8"))


# ---- reading ---------------------------------------------------------------------------------------

_TOO_DEEP: Final = "JSON nested too deeply to read"


def _lines(file: BinaryIO, path: str, max_line_size: int) -> Iterator[tuple[int, Union[str, RecordingError]]]:
    """Each line's number and text, or the error that makes it a bad line; never more than ``max_line_size`` held.

    A line longer than ``max_line_size`` bytes is reported at once; only if the caller reads on
    is the rest of it read, in chunks, and dropped (an endless line, /dev/zero, ends a reader
    that stops at the first error).
    """
    number = 0
    while True:
        data = file.readline(max_line_size + 1)
        if not data:
            return
        number += 1
        if len(data) > max_line_size and not (len(data) == max_line_size + 1 and data.endswith(b"\n")):
            del data
            yield number, RecordingError(path, number, _too_long(max_line_size))
            while True:  # to the end of the line, to go on with the next one
                chunk = file.readline(_SKIP_CHUNK)
                if not chunk or chunk.endswith(b"\n"):
                    break
            continue
        try:
            yield number, data.decode("utf-8")
        except UnicodeDecodeError as e:
            yield number, RecordingError(path, number, f"not UTF-8 text ({e.reason} at byte {e.start} of the line)")


def _too_long(max_line_size: int) -> str:
    problem = f"longer than max_line_size ({max_line_size} bytes)"
    if max_line_size >= MAX_LINE_SIZE:
        problem += ": its message is larger than the client's default max_message_size (16 MiB)"
    return problem


def _check_max_line_size(max_line_size: int) -> None:
    if type(max_line_size) is not int or max_line_size < 1:
        raise ValueError(f"max_line_size must be a positive number of bytes, not {max_line_size!r}")


def _parse_header(path: str, text: str) -> RecordingHeader:
    if not text.strip():
        raise RecordingError(path, 1, "the file is empty: no header")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    except RecursionError:
        raise RecordingError(path, 1, "not a recording: the first line is JSON nested too deeply to read") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise RecordingError(path, 1, f'not a recording: the first line must be a header with "format": "{FORMAT}"')
    version = value.get("version")
    if type(version) is not int or version < 1:
        raise RecordingError(path, 1, f"the header's version must be a positive integer, not {version!r}")
    if version > VERSION:
        raise RecordingError(
            path, 1, f"format version {version} is newer than this slack-socket-mode reads ({VERSION}): upgrade it"
        )
    started_at = value.get("started_at", "")
    recorder = value.get("recorder", "")
    return RecordingHeader(
        version,
        started_at if isinstance(started_at, str) else "",
        value.get("redacted") is not False,
        recorder if isinstance(recorder, str) else "",
    )


def read_header(path: str, *, max_line_size: int = MAX_LINE_SIZE) -> RecordingHeader:
    """Read and check the header of the recording at ``path`` (its first line only).

    Raises:
        RecordingError: the file is empty or its first line is not a header this version reads
            (not UTF-8, longer than ``max_line_size`` bytes, not a header).
        OSError: the file cannot be read.
        ValueError: ``max_line_size`` is not a positive int.
    """
    _check_max_line_size(max_line_size)
    with open(path, "rb") as file:
        for _, first in _lines(file, path, max_line_size):
            if isinstance(first, RecordingError):
                raise first
            return _parse_header(path, first)
    raise RecordingError(path, 1, "the file is empty: no header")


def _parse_line(path: str, number: int, text: str, last_t: float, cut_short: bool) -> RecordedMessage:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        hint = " (the line has no end: the file looks truncated)" if cut_short else ""
        raise RecordingError(path, number, f"not JSON ({e.msg} at column {e.colno}){hint}") from None
    except RecursionError:
        raise RecordingError(path, number, _TOO_DEEP) from None
    if not isinstance(value, dict):
        raise RecordingError(path, number, f"a JSON {type(value).__name__}, not an object")
    raw_t = value.get("t")
    if not isinstance(raw_t, (int, float)) or isinstance(raw_t, bool) or not math.isfinite(raw_t) or raw_t < 0:
        raise RecordingError(path, number, f'"t" must be a number of seconds >= 0, not {raw_t!r}')
    t = float(raw_t)
    if t < last_t:
        raise RecordingError(
            path, number, f'"t" {t} is earlier than the line before ({last_t}): lines are in time order'
        )
    connection = value.get("connection")
    if type(connection) is not int or connection < 1:
        raise RecordingError(path, number, f'"connection" must be an integer >= 1, not {connection!r}')
    message = value.get("message")
    raw = value.get("text")
    if message is not None and raw is not None:
        raise RecordingError(path, number, 'has both "message" and "text"; a line holds one of them')
    if isinstance(message, dict):
        problem = envelope_id_problem(message["envelope_id"]) if "envelope_id" in message else None
        if problem is not None:  # the client would drop it as malformed: the rule is the client's
            raise RecordingError(path, number, f"the envelope's {problem}")
        try:
            text = _ENCODER.encode(message)
        except RecursionError:
            raise RecordingError(path, number, _TOO_DEEP) from None
        return RecordedMessage(number, t, connection, message, text)
    if message is not None:
        raise RecordingError(path, number, f'"message" must be a JSON object, not a {type(message).__name__}')
    if isinstance(raw, str):
        return RecordedMessage(number, t, connection, None, raw)
    raise RecordingError(path, number, 'has neither "message" (an object) nor "text" (a string)')


def read_recording(
    path: str,
    *,
    skip_bad_lines: bool = False,
    on_bad_line: Optional[Callable[[RecordingError], None]] = None,
    max_line_size: int = MAX_LINE_SIZE,
) -> Iterator[RecordedMessage]:
    """Yield the messages of the recording at ``path``, in file order, reading as it goes.

    The header is checked before the first message is yielded. A bad line (not JSON, cut short,
    missing or wrong fields, ``t`` going back in time, not UTF-8, longer than ``max_line_size``
    bytes, an ``envelope_id`` the client would drop) raises :class:`RecordingError` naming it,
    after every line before it was yielded; with ``skip_bad_lines`` it is passed to
    ``on_bad_line`` instead (if given) and reading goes on. A bad header always raises.
    No more than ``max_line_size`` bytes of a line are held at a time.

    Raises:
        RecordingError: a bad header, or a bad line without ``skip_bad_lines``.
        OSError: the file cannot be read.
        ValueError: ``max_line_size`` is not a positive int (raised by the first ``next()``).
    """
    _check_max_line_size(max_line_size)
    header_seen = False
    last_t = 0.0
    with open(path, "rb") as file:
        for number, text in _lines(file, path, max_line_size):
            if not header_seen:
                if isinstance(text, RecordingError):
                    raise text
                _parse_header(path, text)
                header_seen = True
                continue
            try:
                if isinstance(text, RecordingError):
                    raise text
                if not text.strip():
                    continue
                entry = _parse_line(path, number, text, last_t, not text.endswith("\n"))
            except RecordingError as error:
                if not skip_bad_lines:
                    raise
                if on_bad_line is not None:
                    on_bad_line(error)
                continue
            last_t = entry.t
            yield entry
    if not header_seen:
        raise RecordingError(path, 1, "the file is empty: no header")
