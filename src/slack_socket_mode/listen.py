"""``slack-socket-mode listen``: print every envelope an app receives, as it arrives.

Like a payments CLI's ``listen``: the first thing to run to see what Slack sends your app.
Connects with the app-level token in ``SLACK_APP_TOKEN``; acks only with ``--ack`` (without
it, Slack redelivers each envelope up to three times, and each redelivery is printed too).
With ``--record FILE`` it also writes every message of the session (``hello``, envelopes,
``disconnect``) to a recording (:mod:`slack_socket_mode.recording`), secrets redacted, for
``slack-socket-mode replay`` and :meth:`SocketModeServer.replay
<slack_socket_mode.testing.SocketModeServer.replay>`.

Standard error carries lines starting with ``#``: connection changes, and the client's log at
WARNING and above (each failed attempt to connect, once). What ends the command is said once,
in one line starting ``slack-socket-mode listen:``, never as a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional, TextIO

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from .client import SocketModeClient
from .errors import FatalError, SocketModeError
from .lifecycle import ClientState, Transition
from .recording import RecordingWriter
from .redaction import redact
from .stopping import StopWaiter

__all__ = ["describe", "run_listen"]


def describe(request: SocketModeRequest) -> str:
    """One readable line for an envelope: its type, what is inside, its id and retry."""
    payload = request.payload
    if request.type == "events_api":
        event = payload.get("event") or {}
        inner = event.get("type") or payload.get("type") or "?"
        detail = event.get("text") or ""
    elif request.type == "interactive":
        inner = payload.get("type") or "?"
        detail = payload.get("callback_id") or (payload.get("view") or {}).get("callback_id") or ""
    elif request.type == "slash_commands":
        inner = payload.get("command") or "?"
        detail = payload.get("text") or ""
    else:
        inner, detail = "", ""
    retry = f" retry {request.retry_attempt} ({request.retry_reason})" if request.retry_attempt else ""
    detail = f" {detail[:60]!r}" if detail else ""
    return f"{time.strftime('%H:%M:%S')} {request.type:<15} {inner:<20} {request.envelope_id}{retry}{detail}"


def run_listen(
    *,
    as_json: bool = False,
    ack: bool = False,
    debug_reconnects: bool = False,
    api_url: Optional[str] = None,
    count: Optional[int] = None,
    record: Optional[str] = None,
    redact_recording: bool = True,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Listen until interrupted (or ``count`` envelopes); returns the exit status.

    With ``record``, every text message received (``hello``, envelopes, ``disconnect``) is also
    written to that file as a recording (see :mod:`slack_socket_mode.recording`), redacted
    unless ``redact_recording`` is false.

    Exit status: 0 on Ctrl-C or after ``count`` envelopes; 1 on a fatal error (a refused
    token, Socket Mode disabled, no ``hello``); 2 when ``SLACK_APP_TOKEN`` is missing, an
    option is invalid (a malformed ``api_url``), or the recording cannot be created or
    written. A write that fails (a full disk) ends the command; the recording keeps every
    complete line written before it (a line cut short is truncated away).
    """
    name = "slack-socket-mode listen"
    token = os.environ.get("SLACK_APP_TOKEN")
    if not token:
        print(f"{name}: set SLACK_APP_TOKEN to an app-level token (xapp-...)", file=err)
        return 2
    if record is None:
        return _listen(token, None, as_json, ack, debug_reconnects, api_url, count, out, err)
    try:
        recording = open(record, "w", encoding="utf-8")  # noqa: SIM115 - closed after the client
    except OSError as e:
        print(f"{name}: cannot write the recording {record}: {_strerror(e)}", file=err)
        return 2
    try:
        writer = RecordingWriter(recording, redact_secrets=redact_recording, recorder=_recorder_name())
    except OSError as e:  # the header could not be written (a full disk)
        _close_quietly(recording)
        _truncate(record, 0)
        print(f"{name}: cannot write the recording {record}: {_strerror(e)}", file=err)
        return 2
    try:
        status = _listen(token, writer, as_json, ack, debug_reconnects, api_url, count, out, err)
    finally:
        writer.close()
        failed = _close_quietly(recording)
        error = writer.error or failed
        if error is not None:
            _truncate(record, writer.size)  # the complete lines stay; a line cut short goes
    if error is not None:
        print(
            f"{name}: cannot write the recording {record}: {_strerror(error)}; "
            f"it keeps the {writer.count} message(s) recorded before",
            file=err,
        )
        return 2
    print(f"# recorded {writer.count} message(s) to {record}", file=err)
    return status


def _strerror(error: OSError) -> str:
    return error.strerror or str(error)


def _close_quietly(file: TextIO) -> Optional[OSError]:
    """Close ``file``; the error if its last flush failed (the file is closed all the same)."""
    try:
        file.close()
    except OSError as e:
        return e
    return None


def _truncate(path: str, size: int) -> None:
    """Cut the file at ``path`` to ``size`` bytes, if it is a file that can be cut (not /dev/full)."""
    try:
        if os.path.isfile(path) and os.path.getsize(path) > size:
            os.truncate(path, size)
    except OSError:
        pass


def _listen(
    token: str,
    writer: Optional[RecordingWriter],
    as_json: bool,
    ack: bool,
    debug_reconnects: bool,
    api_url: Optional[str],
    count: Optional[int],
    out: TextIO,
    err: TextIO,
) -> int:
    name = "slack-socket-mode listen"
    web_client = WebClient(base_url=api_url) if api_url else WebClient()
    seen = 0
    # Ctrl-C, --count or a fatal error ends it; a signal that lands as the wait begins is not lost
    done = StopWaiter([signal.SIGINT] if _main_thread() else [])
    lock = threading.Lock()

    def say(stream: TextIO, line: str) -> None:
        with lock:  # one write per line: lines from several threads never interleave
            stream.write(line + "\n")
            stream.flush()

    def on_request(client: SocketModeClient, request: SocketModeRequest) -> None:
        nonlocal seen
        if ack:
            client.send_socket_mode_response({"envelope_id": request.envelope_id})
        line = json.dumps(request_dict(request), separators=(",", ":")) if as_json else describe(request)
        say(out, line)
        with lock:
            seen += 1
            if count is not None and seen >= count:
                done.stop()

    failure: list[str] = []  # why the client failed, if it did
    fatal: list[str] = []  # the fatal error, in its own words (the final line says it, once)
    write_error: list[OSError] = []  # the recording could not be written: stop

    def on_transition(t: Transition) -> None:
        if t.connection_id is None and t.new in (ClientState.CONNECTED, ClientState.RECONNECTING):
            say(err, f"# {t.new.value} ({t.reason})")
        if t.connection_id is None and t.new is ClientState.FAILED:
            # Noted here: once done.stop() wakes the main thread, its close() may end connect()
            # before connect() can report the failure itself.
            failure.append(t.reason)
            done.stop()

    try:
        client = SocketModeClient(
            app_token=token,
            web_client=web_client,
            dedupe=False,  # show (and record) Slack's redeliveries as they come
            debug_reconnects=debug_reconnects,
            lifecycle_listeners=[on_transition],
        )
    except SocketModeError as e:  # a ConfigurationError: said once, never retried
        done.close()
        print(f"{name}: {e}", file=err)
        return 2
    if writer is not None:

        def write_failed(error: OSError) -> None:
            write_error.append(error)
            done.stop()

        client.message_tap = _recorder(writer, write_failed)
    client.socket_mode_request_listeners.append(on_request)

    def on_error(error: Exception) -> None:  # each failed attempt is in the log: only the fatal one is kept
        if isinstance(error, FatalError):
            fatal.append(str(error))

    client.on_error_listeners.append(on_error)
    log_lines = _LogLines(lambda line: say(err, line))
    client.logger.addHandler(log_lines)

    def connect() -> None:
        try:
            client.connect(timeout=30)
        except SocketModeError as e:
            if not client.closed or isinstance(e, FatalError):  # close() on Ctrl-C interrupts connect()
                failure.append(str(e))
            done.stop()
            return
        except BaseException as e:  # a bug: say so, and do not leave the main thread waiting
            failure.append(f"unexpected error while connecting: {type(e).__name__}")
            done.stop()
            raise
        hint = "acking each envelope" if ack else "not acking (Slack will redeliver; pass --ack to ack)"
        say(err, f"# listening, {hint}; Ctrl-C to stop")

    # connect() on its own thread, so that Ctrl-C stops it even while it is still connecting
    connecting = threading.Thread(target=connect, name="slack_socket_mode-listen-connect", daemon=True)
    try:
        with done:
            connecting.start()
            done.wait()
        client.close()  # joins the client's threads: every listener call has returned
        connecting.join(5.0)
    finally:
        client.logger.removeHandler(log_lines)
    if write_error:
        return 2  # run_listen says why, with what the recording keeps
    if fatal or failure:
        print(f"{name}: {(fatal or failure)[0]}", file=err)
        return 1
    return 1 if client.state is ClientState.FAILED else 0


class _LogLines(logging.Handler):
    """The client's log at WARNING and above, as ``#`` lines (redacted, no traceback).

    Records that carry a :class:`~slack_socket_mode.errors.FatalError` (the client logs one per
    connection and once as it stops) are left out: the command's last line says it, once.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._say = say

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if any(isinstance(arg, FatalError) for arg in args):
            return
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message}: {type(error).__name__}: {error}"
        self._say("# " + redact(message).replace("\n", " "))


def request_dict(request: SocketModeRequest) -> dict[str, Any]:
    """The envelope as a dict: type, envelope_id, accepts_response_payload, retry fields, payload."""
    return {
        "type": request.type,
        "envelope_id": request.envelope_id,
        "accepts_response_payload": request.accepts_response_payload,
        "retry_attempt": request.retry_attempt,
        "retry_reason": request.retry_reason,
        "payload": request.payload,
    }


def _recorder(writer: RecordingWriter, failed: Callable[[OSError], None]) -> Callable[[int, str], None]:
    """The client's ``message_tap`` for ``--record``: each text message, with its connection's number.

    The tap sees every text message before the client acts on it (a ``disconnect`` is recorded
    before the rotation it starts); the public ``on_message_listeners`` carry no connection. A
    write that fails (a full disk) ends the writer and is passed to ``failed``, once.
    """

    def record(connection_id: int, text: str) -> None:
        try:
            writer.write(connection_id, text)
        except OSError as e:
            failed(e)

    return record


def _recorder_name() -> str:
    from . import __version__  # noqa: PLC0415 - the package imports this module's siblings

    return f"slack-socket-mode listen {__version__}"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
