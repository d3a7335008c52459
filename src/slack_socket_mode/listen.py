"""``slack-socket-mode listen``: print every envelope an app receives, as it arrives.

Like a payments CLI's ``listen``: the first thing to run to see what Slack sends your app.
Connects with the app-level token in ``SLACK_APP_TOKEN``; acks only with ``--ack`` (without
it, Slack redelivers each envelope up to three times, and each redelivery is printed too).
With ``--record FILE`` it also writes every message of the session (``hello``, envelopes,
``disconnect``) to a recording (:mod:`slack_socket_mode.recording`), secrets redacted, for
``slack-socket-mode replay`` and :meth:`SocketModeServer.replay
<slack_socket_mode.testing.SocketModeServer.replay>`.
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
from .errors import SocketModeError
from .lifecycle import ClientState, Transition
from .recording import RecordingWriter
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

    Exit status: 0 on Ctrl-C or after ``count`` envelopes, 1 on a fatal error
    (bad token, Socket Mode disabled), 2 when ``SLACK_APP_TOKEN`` is missing or the
    recording cannot be created.
    """
    token = os.environ.get("SLACK_APP_TOKEN")
    if not token:
        print("slack-socket-mode listen: set SLACK_APP_TOKEN to an app-level token (xapp-...)", file=err)
        return 2
    recording: Optional[TextIO] = None
    writer: Optional[RecordingWriter] = None
    if record is not None:
        try:
            recording = open(record, "w", encoding="utf-8")  # noqa: SIM115 - closed after the client
        except OSError as e:
            print(f"slack-socket-mode listen: cannot write the recording {record}: {e.strerror}", file=err)
            return 2
        writer = RecordingWriter(recording, redact_secrets=redact_recording, recorder=_recorder_name())
    try:
        return _listen(token, writer, as_json, ack, debug_reconnects, api_url, count, out, err)
    finally:
        if writer is not None and recording is not None:
            writer.close()
            recording.close()
            print(f"# recorded {writer.count} message(s) to {record}", file=err)


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
        if writer is not None:
            client.message_tap = _recorder(writer, client.logger)
    except SocketModeError as e:
        done.close()
        print(f"slack-socket-mode listen: {e}", file=err)
        return 2
    client.socket_mode_request_listeners.append(on_request)
    client.on_error_listeners.append(lambda e: say(err, f"# error: {e}"))

    def connect() -> None:
        try:
            client.connect(timeout=30)
        except SocketModeError as e:
            if not client.closed:  # close() on Ctrl-C interrupts connect(): that is not a failure
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
    with done:
        connecting.start()
        done.wait()
    client.close()
    connecting.join(5.0)
    if failure:
        print(f"slack-socket-mode listen: {failure[0]}", file=err)
        return 1
    return 1 if client.state is ClientState.FAILED else 0


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


def _recorder(writer: RecordingWriter, logger: logging.Logger) -> Callable[[int, str], None]:
    """The client's ``message_tap`` for ``--record``: each text message, with its connection's number.

    The tap sees every text message before the client acts on it (a ``disconnect`` is recorded
    before the rotation it starts); the public ``on_message_listeners`` carry no connection.
    """

    def record(connection_id: int, text: str) -> None:
        try:
            writer.write(connection_id, text)
        except OSError as e:  # a full disk: say so, keep listening
            logger.error("could not record a message: %s", e)

    return record


def _recorder_name() -> str:
    from . import __version__  # noqa: PLC0415 - the package imports this module's siblings

    return f"slack-socket-mode listen {__version__}"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
