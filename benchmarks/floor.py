"""The one-thread floor: the least any Socket Mode client can do per envelope in Python.

One thread on websocket-client's low-level ``websocket.WebSocket`` does nothing but
``recv``, ``json.loads`` and send the ack (with :data:`SLASH_COMMAND_REPLY` as the payload
for a slash command, as every client in the suite acks one). No listeners, no hand-off to a worker, no
reconnects, no pings of its own (websocket-client answers the server's pings inside
``recv``). Every client in the suite is compared with it.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any, Callable, Optional

import websocket

__all__ = ["SLASH_COMMAND_REPLY", "FloorClient"]

#: The ack payload every client in the suite sends for a slash command (the mixed workload).
SLASH_COMMAND_REPLY: dict[str, Any] = {"response_type": "ephemeral", "text": "Done: your request was queued."}


class FloorClient:
    """The floor client.

    Args:
        app_token: sent to ``apps.connections.open``.
        api_url: the Web API base URL (``…/api/``).
        on_envelope: called with each envelope id after its ack was sent (the suite counts runs).
    """

    def __init__(self, app_token: str, api_url: str, on_envelope: Callable[[str], None]) -> None:
        self._app_token = app_token
        self._api_url = api_url
        self._on_envelope = on_envelope
        self._ws = websocket.WebSocket(skip_utf8_validation=True)
        self._thread: Optional[threading.Thread] = None

    def connect(self) -> None:
        """Get a URL from ``apps.connections.open``, do the handshake and start the thread."""
        request = urllib.request.Request(
            self._api_url + "apps.connections.open",
            data=b"",
            headers={"Authorization": f"Bearer {self._app_token}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            url = json.loads(response.read())["url"]
        self._ws.connect(url, timeout=10, suppress_origin=True)  # type: ignore[no-untyped-call]
        self._ws.settimeout(None)
        self._thread = threading.Thread(target=self._run, name="floor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """recv, json.loads, ack; until the connection ends."""
        recv = self._ws.recv
        send = self._ws.send
        loads = json.loads
        dumps = json.dumps
        on_envelope = self._on_envelope
        while True:
            try:
                text = recv()
            except Exception:
                return
            if not text:  # a close frame (or an empty message): stop
                return
            envelope = loads(text)
            envelope_id = envelope.get("envelope_id")
            if envelope_id is not None:
                ack: dict[str, Any] = {"envelope_id": envelope_id}
                if envelope.get("type") == "slash_commands":
                    ack["payload"] = SLASH_COMMAND_REPLY
                try:
                    send(dumps(ack))
                except Exception:
                    return
                on_envelope(envelope_id)

    def close(self) -> None:
        """Send a close frame, wait up to 1 s for the thread to see the answer, shut the socket."""
        try:
            self._ws.send_close()
        except Exception:
            pass
        if self._thread is not None:
            self._thread.join(1.0)
        self._ws.shutdown()  # type: ignore[no-untyped-call]
