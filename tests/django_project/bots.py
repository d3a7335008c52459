"""The test project's bots: a SocketModeClient factory and a Bolt app whose listeners write Notes, then ack.

Both reach the local server through ``SLACK_SOCKET_MODE_TEST_API_URL`` (the Bolt app, ``bolt_app``,
for its Web API client too); the app-level token is ``SLACK_APP_TOKEN``. An envelope whose payload
has ``"sleep": seconds`` prints ``started <id>`` on stdout and sleeps that long before writing its
Note and acking (an in-flight ack at SIGTERM).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from typing import Any

from django.db import connection
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient

from .notes.models import Note


def write_note(envelope_id: str) -> Note:
    """Write the envelope's Note through the ORM, with this thread's connection's backend pid."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return Note.objects.create(envelope_id=envelope_id, thread=threading.current_thread().name, backend_pid=pid)


def on_request(client: SocketModeClient, request: Any) -> None:
    """Write a Note, then ack (sleeping first if the payload asks)."""
    seconds = float((request.payload or {}).get("sleep", 0))
    if seconds:
        sys.stdout.write(f"started {request.envelope_id}\n")
        sys.stdout.flush()
        time.sleep(seconds)
    write_note(request.envelope_id)
    client.send_socket_mode_response({"envelope_id": request.envelope_id})


def make_client() -> SocketModeClient:
    """The factory ``manage.py socketmode tests.django_project.bots:make_client`` calls."""
    client = SocketModeClient(
        os.environ["SLACK_APP_TOKEN"],
        web_client=WebClient(base_url=os.environ["SLACK_SOCKET_MODE_TEST_API_URL"]),
    )
    client.socket_mode_request_listeners.append(on_request)
    return client


async def on_request_async(client: Any, request: Any) -> None:
    """The asyncio client's listener: write the Note through ``sync_to_async`` (Django's async rule), then ack
    (sleeping first, on the loop, if the payload asks)."""
    import asyncio

    from asgiref.sync import sync_to_async

    seconds = float((request.payload or {}).get("sleep", 0))
    if seconds:
        sys.stdout.write(f"started {request.envelope_id}\n")
        sys.stdout.flush()
        await asyncio.sleep(seconds)
    await sync_to_async(write_note)(request.envelope_id)
    await client.send_socket_mode_response({"envelope_id": request.envelope_id})


def make_async_client() -> Any:
    """The factory ``manage.py socketmode tests.django_project.bots:make_async_client`` calls (the asyncio client)."""
    from slack_sdk.web.async_client import AsyncWebClient

    from slack_socket_mode.aio import SocketModeClient as AsyncClient

    client = AsyncClient(
        os.environ["SLACK_APP_TOKEN"],
        web_client=AsyncWebClient(base_url=os.environ["SLACK_SOCKET_MODE_TEST_API_URL"]),
    )
    client.socket_mode_request_listeners.append(on_request_async)
    return client


not_a_bot = 42  # APP naming something else: the command refuses it (exit code 2)


def broken_factory() -> SocketModeClient:
    """A factory that fails (exit code 2, one line)."""
    raise RuntimeError("no bot today\nsecond line")


def _bolt_app() -> Any:
    """A Bolt app whose /hello-socket-mode command writes a Note and acks (``bots:bolt_app``)."""
    from slack_bolt import App

    app = App(
        signing_secret="not-used-in-socket-mode",
        client=WebClient(
            token="xoxb-1", base_url=os.environ.get("SLACK_SOCKET_MODE_TEST_API_URL", "http://127.0.0.1:9")
        ),
        token_verification_enabled=False,
    )

    @app.command("/hello-socket-mode")
    def hello(ack: Any) -> None:
        write_note(f"bolt-{uuid.uuid4()}")
        ack("hi")

    return app


bolt_app = _bolt_app()
