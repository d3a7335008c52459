"""The Celery app of the hand-off tests: the worker process runs it (``celery -A tests.celery_app worker``).

Configured from the environment the test sets: ``TEST_CELERY_BROKER``, ``TEST_CELERY_QUEUE``,
``TEST_REDIS_URL`` (effects, and the once-per-envelope store) and ``TEST_NAMESPACE``. The task
counts each effect in the Redis hash ``<namespace>:effects``; a payload with ``fail_times`` N
fails its first N attempts (Celery retries it); one with ``stall_first`` stalls its first run
(the test kills that worker).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery
from kombu import Queue

from slack_socket_mode.celery import EnvelopeBusy, once_per_envelope
from slack_socket_mode.redis import RedisLedger


class Flaky(Exception):
    """An attempt that fails on purpose (the payload's fail_times)."""


def make_app(broker: str, queue: str, *, visibility_timeout: float = 60.0, **queue_options: Any) -> Celery:
    """The Celery app, the same in the test (publisher) and the worker.

    On Redis, ``visibility_timeout`` is how long a task taken by a worker that died waits before
    kombu gives it to another (its default is an hour), and the sweep that gives it back runs
    every second; a publish waits at most 2 s on its socket. ``queue_options`` go to the queue's
    declaration (``queue_arguments``, for one RabbitMQ nacks into).
    """
    app = Celery("tests.celery_app", broker=broker)
    redis_options = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        task_queues=[Queue(queue, expires=120.0, **queue_options)],  # RabbitMQ drops it once the tests are done
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_timeout=1.0,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"confirm_publish": True} if broker.startswith("amqp") else redis_options,
        worker_hijack_root_logger=False,
    )
    return app


if "TEST_CELERY_BROKER" in os.environ:
    app = make_app(
        os.environ["TEST_CELERY_BROKER"],
        os.environ["TEST_CELERY_QUEUE"],
        visibility_timeout=float(os.environ.get("TEST_VISIBILITY_TIMEOUT", "60")),
    )
    namespace = os.environ["TEST_NAMESPACE"]
    effects: Any = redis.Redis.from_url(os.environ["TEST_REDIS_URL"], socket_timeout=5)
    store = RedisLedger(os.environ["TEST_REDIS_URL"], namespace=namespace, lease=1.0)

    @once_per_envelope(store)
    def effect(envelope: dict[str, Any]) -> str:
        eid = envelope["envelope_id"]
        stalls = f"slack_socket_mode:{namespace}:stalls"
        if envelope["payload"].get("stall_first") and effects.hincrby(stalls, eid, 1) == 1:
            time.sleep(60)  # the first worker to run it stalls here until the test kills it
        fail = envelope["payload"].get("fail_times", 0)
        if fail and effects.hincrby(f"slack_socket_mode:{namespace}:attempts", eid, 1) <= fail:
            raise Flaky(f"attempt failed on purpose ({fail} to fail)")
        effects.hincrby(f"slack_socket_mode:{namespace}:effects", eid, 1)
        return eid

    @app.task(
        name="tests.handle",
        autoretry_for=(EnvelopeBusy, Flaky),
        default_retry_delay=0.1,
        max_retries=30,
    )
    def handle(envelope: dict[str, Any]) -> Any:
        return effect(envelope)
