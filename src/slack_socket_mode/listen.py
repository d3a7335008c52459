"""``slack-socket-mode listen``: print every envelope an app receives, as it arrives.

Like a payments CLI's ``listen``: the first thing to run to see what Slack sends your app.
Connects with the app-level token in ``SLACK_APP_TOKEN``; acks only with ``--ack`` (without
it, Slack redelivers each envelope up to three times, and each redelivery is printed too).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any, Optional, TextIO

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from .client import SocketModeClient
from .errors import SocketModeError
from .lifecycle import ClientState, Transition
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
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Listen until interrupted (or ``count`` envelopes); returns the exit status.

    Exit status: 0 on Ctrl-C or after ``count`` envelopes, 1 on a fatal error
    (bad token, Socket Mode disabled), 2 when ``SLACK_APP_TOKEN`` is missing.
    """
    token = os.environ.get("SLACK_APP_TOKEN")
    if not token:
        print("slack-socket-mode listen: set SLACK_APP_TOKEN to an app-level token (xapp-...)", file=err)
        return 2
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

    def on_transition(t: Transition) -> None:
        if t.connection_id is None and t.new in (ClientState.CONNECTED, ClientState.RECONNECTING):
            say(err, f"# {t.new.value} ({t.reason})")
        if t.connection_id is None and t.new is ClientState.FAILED:
            done.stop()

    try:
        client = SocketModeClient(
            app_token=token,
            web_client=web_client,
            dedupe=False,  # show Slack's redeliveries as they come
            debug_reconnects=debug_reconnects,
            lifecycle_listeners=[on_transition],
        )
    except SocketModeError as e:
        done.close()
        print(f"slack-socket-mode listen: {e}", file=err)
        return 2
    client.socket_mode_request_listeners.append(on_request)
    client.on_error_listeners.append(lambda e: say(err, f"# error: {e}"))
    failure: list[str] = []  # why connect() failed, if it did

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


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
