"""``python -m benchmarks.celery_floor``: what one Celery publish costs, with no Socket Mode at all.

The floor under :class:`~slack_socket_mode.celery.CeleryHandoff`: one thread calls
``app.send_task`` in a loop with the hand-off's options (one retry on a stale connection,
``timeout`` and ``confirm_timeout`` of 2 s) and an envelope-sized argument, and reports the
wall-clock cost per call (median and range of 3 loops). Variants:

- ``celery``: Celery's defaults, its ``argsrepr`` the saferepr of the argument (the hand-off
  before it passed its own);
- ``handoff``: the hand-off's options as they are (``argsrepr`` naming the envelope; on RabbitMQ
  ``mandatory``);
- ``handoff-mandatory`` (RabbitMQ): the same without ``mandatory`` (what it costs: the flag is
  one bit of the publish frame);
- ``handoff+expires`` (Redis): the same to a queue declared with ``expires``, which kombu's
  Redis transport turns into a MULTI/EXEC with a PEXPIRE per priority step on every publish.

With ``--layers``, nested wall-clock timers around Celery's ``send_task`` and message build,
kombu's ``Producer.publish`` and ``maybe_declare``, and the transport's write (redis-py's
command or pipeline; py-amqp's publish frames and its wait for the confirm) say where a ``handoff`` publish goes
(the timers add a few microseconds each). Needs the broker (``SLACK_SOCKET_MODE_REDIS_URL``,
``SLACK_SOCKET_MODE_AMQP_URL``); the queue is deleted afterwards (RabbitMQ: expires).

Usage::

    python -m benchmarks.celery_floor [--broker redis|rabbitmq] [--calls N] [--layers]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlsplit

REDIS_URL = os.environ.get("SLACK_SOCKET_MODE_REDIS_URL", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("SLACK_SOCKET_MODE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

#: An envelope of the size the hand-off publishes (an Events API message).
ENVELOPE: dict[str, Any] = {
    "envelope_id": "1d2a3f1e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    "type": "events_api",
    "payload": {
        "event_id": "Ev0123456789",
        "team_id": "T0123456",
        "event": {"type": "message", "user": "U0123456", "text": "hello " * 20, "channel": "C0123456"},
    },
    "accepts_response_payload": False,
    "retry_attempt": 0,
    "retry_reason": "",
}


def _app(broker: str, queue: str, expires: bool) -> Any:
    from celery import Celery
    from kombu import Queue

    app = Celery("floor", broker=broker)
    app.conf.update(
        task_queues=[Queue(queue, expires=60.0 if expires or broker.startswith("amqp") else None)],
        task_default_queue=queue,
        broker_connection_timeout=1.0,
        broker_transport_options={"confirm_publish": True} if broker.startswith("amqp") else {},
    )
    return app


def _options(variant: str, broker: str) -> dict[str, Any]:
    """send_task's options as CeleryHandoff passes them (``celery``: without its argsrepr and ``mandatory``)."""
    options: dict[str, Any] = {
        "retry": True,
        "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1},
        "timeout": 2.0,
        "confirm_timeout": 2.0,
    }
    if variant != "celery":
        options.update(argsrepr=f"(<envelope {ENVELOPE['envelope_id']} events_api>,)", kwargsrepr="{}")
        if broker.startswith("amqp") and variant != "handoff-mandatory":
            options["mandatory"] = True  # a message no queue takes is returned, not confirmed and dropped
    return options


def measure(broker: str, variant: str, calls: int) -> list[float]:
    """Seconds per ``send_task`` call, for each of 3 loops of ``calls`` (after one warm-up publish)."""
    queue = f"slack_socket_mode_floor_{uuid.uuid4().hex[:10]}"
    app = _app(broker, queue, expires=variant.endswith("+expires"))
    options = _options(variant, broker)
    try:
        app.send_task("floor.handle", args=[ENVELOPE], **options)  # connect the producer pool
        per_call = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(calls):
                app.send_task("floor.handle", args=[ENVELOPE], **options)
            per_call.append((time.perf_counter() - start) / calls)
        return per_call
    finally:
        _cleanup(broker, queue)


def layers(broker: str, calls: int) -> dict[str, float]:
    """Microseconds per ``handoff`` publish spent inside each layer (nested: outer layers include inner)."""
    import amqp.abstract_channel
    import amqp.channel
    import kombu.messaging
    import redis.client
    from celery import Celery
    from celery.app.amqp import AMQP

    spent: dict[str, int] = {}
    patched: list[tuple[Any, str, Callable[..., Any]]] = []

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0) + time.perf_counter_ns() - start

        patched.append((owner, name, original))
        setattr(owner, name, wrapper)

    timed(Celery, "send_task", "celery send_task (all of it)")
    timed(AMQP, "as_task_v2", "celery: the task message (headers, argsrepr)")
    timed(kombu.messaging.Producer, "publish", "kombu Producer.publish")
    timed(kombu.messaging.Producer, "maybe_declare", "kombu: maybe_declare (cached, binds a copy of the queue)")
    if broker.startswith("amqp"):
        timed(amqp.channel.Channel, "_basic_publish", "py-amqp: the publish's frames written")
        timed(amqp.abstract_channel.AbstractChannel, "wait", "py-amqp: waiting for the confirm, reading it")
    else:
        timed(redis.client.Redis, "execute_command", "redis-py: LPUSH (one round trip)")
        timed(redis.client.Pipeline, "execute", "redis-py: MULTI..EXEC pipeline (one round trip)")
    queue = f"slack_socket_mode_floor_{uuid.uuid4().hex[:10]}"
    app = _app(broker, queue, expires=False)
    options = _options("handoff", broker)
    try:
        app.send_task("floor.handle", args=[ENVELOPE], **options)
        spent.clear()
        for _ in range(calls):
            app.send_task("floor.handle", args=[ENVELOPE], **options)
        return {label: total / calls / 1000 for label, total in spent.items()}
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
        _cleanup(broker, queue)


def _cleanup(broker: str, queue: str) -> None:
    if broker.startswith("redis"):
        import redis

        r: Any = redis.Redis.from_url(broker)
        r.delete(queue, f"_kombu.binding.{queue}")
        r.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.celery_floor")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--layers", action="store_true", help="also time the layers of one publish")
    args = parser.parse_args(argv)
    if args.broker == "redis":
        broker = urlsplit(REDIS_URL)._replace(path="/14").geturl()
        variants = ["celery", "handoff", "handoff+expires"]
    else:
        broker = AMQP_URL
        variants = ["celery", "handoff", "handoff-mandatory"]
    print(f"| {args.broker}: app.send_task, {args.calls} calls x 3 | per call (median, range) | calls/s |")
    print("|---|---|---|")
    for variant in variants:
        per_call = measure(broker, variant, args.calls)
        median = statistics.median(per_call)
        print(
            f"| {variant} | {median * 1e6:.0f} us ({min(per_call) * 1e6:.0f}-{max(per_call) * 1e6:.0f}) "
            f"| {1 / median:,.0f} |"
        )
    if args.layers:
        print(f"\n| {args.broker}: inside one `handoff` publish | us |")
        print("|---|---|")
        for label, micros in layers(broker, args.calls).items():
            print(f"| {label} | {micros:.1f} |")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
