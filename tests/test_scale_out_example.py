"""examples/scale_out end to end: two bot replicas (or Bolt bots), a Celery worker, Redis, the local server.

The server applies Slack's model for one app shared by processes (random connection per
envelope); the worker posts replies through the server's Web API, where the test counts them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.testing.app_model import AppModel

from .conftest import APP_TOKEN, timeout
from .processes import OutputProcess
from .services import delete_keys, redis_url, require_module, unique_namespace

require_module("celery", "the celery extra")

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "examples" / "scale_out"


class Process(OutputProcess):
    """A process of the example; its output lines (stdout and stderr) read by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        super().__init__(args, cwd=PROJECT, env=env, read="both", name="test-example-output")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def posted(server: SocketModeServer) -> list[str]:
    return [call.params.get("text", "") for call in server.api_calls if call.method == "chat.postMessage"]


def wait_posted(server: SocketModeServer, count: int, seconds: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout(seconds)
    while len(posted(server)) < count:  # the worker calls the Web API from its own process
        assert time.monotonic() < deadline, f"{len(posted(server))} messages posted, expected {count}"
        time.sleep(0.05)
    return posted(server)


def wait_done(url: str, key: str, seconds: float = 10.0) -> None:
    import redis

    r: Any = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout(seconds)
        while not (r.get(key) or b"").startswith(b"d:"):  # written by the replica just after its ack
            assert time.monotonic() < deadline, f"{key} never recorded done"
            time.sleep(0.02)
    finally:
        r.close()


def example_env(namespace: str) -> dict[str, str]:
    """The environment of the example's processes, with a Redis namespace and a Celery queue of their own."""
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_BOT_TOKEN": "xoxb-111-222-example",
        "REDIS_URL": redis_url(),
        "CELERY_BROKER_URL": redis_url(db=14),
        "CELERY_QUEUE": f"slack_socket_mode_test_{namespace}",
        "APP_NAMESPACE": namespace,
    }


@pytest.mark.parametrize("bot", ["bot.py", "bolt_bot.py"])
def test_the_example_hands_envelopes_to_the_worker_and_replies_once(
    bot: str, processes: list[Process], tmp_path: Any
) -> None:
    store = redis_url()
    namespace = unique_namespace("example")
    env = example_env(namespace)
    with SocketModeServer(app=AppModel(), redelivery_delay=None) as server:
        env["SLACK_API_URL"] = server.api_url
        worker = Process([sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo", "-l", "INFO"], env)
        processes.append(worker)
        for _ in range(2):
            replica = Process([sys.executable, bot], env)
            processes.append(replica)
            replica.wait_for("connected")
        worker.wait_for(" ready.")
        try:
            mentions = [
                server.make_envelope(
                    "events_api",
                    {
                        "event_id": f"Ev{namespace}{n}",
                        "type": "event_callback",
                        "event": {"type": "app_mention", "user": f"U{n}", "channel": "C1", "text": "hi"},
                    },
                )
                for n in range(6)
            ]
            ids = [server.push(m) for m in mentions]
            command = server.make_envelope(
                "slash_commands",
                {"command": "/deploy", "text": "v2", "channel_id": "C1", "user_id": "U1", "trigger_id": "T1.2"},
                accepts_response_payload=True,
            )
            ids.append(server.push(command))
            acks = server.wait_for_acks(envelope_ids=ids, timeout=timeout(10))
            assert acks[-1].payload == {"text": "Deploying v2…"}
            # Slack's Events API retries one event in a new envelope (seconds or minutes later, once the
            # first delivery is recorded done in the shared ledger): no second reply.
            wait_done(store, f"slack_socket_mode:{namespace}:event:Ev{namespace}0")
            retry = server.make_envelope("events_api", mentions[0]["payload"])
            server.push(retry)
            server.wait_for_acks(envelope_ids=[retry["envelope_id"]], timeout=timeout(10))
            texts = wait_posted(server, 7)
            # A last mention: once its reply is posted, the worker has been through the retry too (one queue).
            last = server.make_envelope(
                "events_api",
                {
                    "event_id": f"Ev{namespace}last",
                    "type": "event_callback",
                    "event": {**mentions[0]["payload"]["event"], "user": "ULAST"},
                },
            )
            server.push(last)
            texts = wait_posted(server, 8)
            assert sorted(texts) == sorted([f"Hi <@U{n}>!" for n in range(6)] + ["Deployed v2", "Hi <@ULAST>!"])
            # A rolling restart: SIGTERM closes a replica cleanly.
            processes[1].process.send_signal(signal.SIGTERM)
            processes[1].wait_for("closed")
            assert processes[1].process.wait(10) == 0
        finally:
            delete_keys(store, f"slack_socket_mode:{namespace}:*")


@pytest.mark.parametrize("bot", ["bot.py", "bolt_bot.py"])
def test_a_replica_started_without_a_slot_says_so_once_and_takes_the_slot_another_one_frees(
    bot: str, processes: list[Process]
) -> None:
    """The 11th connection (issue 20, item 7), with the app's limit at one connection here: the
    replica started without a slot logs one WARNING naming Slack's limit, keeps waiting (no
    ``connect()`` timeout to end it), and connects within a retry period of the first replica's stop."""
    env = example_env(unique_namespace("example-slot"))
    model = AppModel(max_connections=1)
    with SocketModeServer(app=model, redelivery_delay=None) as server:
        env["SLACK_API_URL"] = server.api_url
        first = Process([sys.executable, bot], env)
        processes.append(first)
        first.wait_for("connected")
        second = Process([sys.executable, bot], env)
        processes.append(second)
        second.wait_for("too_many_websockets")  # its log shows WARNING and above only
        server.wait_until(lambda: model.refused >= 3, timeout(20), "three refusals of the second replica")
        first.process.send_signal(signal.SIGTERM)
        first.wait_for("closed")
        second.wait_for("connected")
        second.process.send_signal(signal.SIGTERM)
        second.wait_for("closed")
        assert second.process.wait(10) == 0
    warnings = [line for line in second.log if "too_many_websockets" in line]
    assert len(warnings) == 1 and "Slack's limit of 10 Socket Mode connections" in warnings[0], warnings
