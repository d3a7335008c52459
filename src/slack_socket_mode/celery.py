"""Hand envelopes to Celery workers: ack only once the broker has the task; run its effect once.

Needs the ``celery`` extra (``pip install "slack-socket-mode[celery]"``), and for
:func:`once_per_envelope` a shared store such as :class:`slack_socket_mode.redis.RedisLedger`.

**In the Socket Mode process**, :class:`CeleryHandoff` is a request listener::

    handoff = CeleryHandoff(celery_app, "bot.handle_envelope")
    client.socket_mode_request_listeners.append(handoff)

For each envelope it publishes one task whose only argument is a dict with the envelope's
``envelope_id``, ``type``, ``payload``, ``accepts_response_payload``, ``retry_attempt`` and
``retry_reason``, and acks **only after the broker confirmed the publish**: on RabbitMQ,
publisher confirms (``broker_transport_options={"confirm_publish": True}``, required here),
on Redis, the ``LPUSH`` returning (``broker_transport_options`` must set ``socket_timeout``
there). On RabbitMQ it publishes with ``mandatory``, so that a message no queue takes is
returned as a failure instead of being confirmed and dropped (see :class:`CeleryHandoff`). A
publish costs the listener at most ``publish_timeout`` (plus a hand-over to a publishing
thread, well under a millisecond), even against a broker that stopped answering. If the
publish fails or times out, it logs why and does not ack: Slack redelivers the envelope (up to
3 times) and the next delivery publishes again: the hand-off raises
:class:`~slack_socket_mode.errors.Redeliver`, so the client's ledger (or a shared
``RedisLedger``, on any replica) dispatches that redelivery again. A failure no retry can fix
(:mod:`slack_socket_mode.brokers`) is logged once at ERROR and makes the client's ``health()``
unhealthy until a publish succeeds.
So the task is delivered **at least once**; it may be published twice (a publish confirmed
after our timeout, a redelivery that reached another replica), which is why the worker side
runs the effect once per envelope.

Envelopes whose ack must carry the response (``slash_commands`` with
``accepts_response_payload``, ``block_suggestion`` and ``view_submission`` interactions):
with ``respond=`` they are answered in-process, the ack carrying what ``respond(request)``
returned (None: no payload), after the task was published; without it they are acked
empty, and the task answers through the payload's ``response_url`` (a slash command) or
``chat.postMessage``. A ``block_suggestion`` cannot be answered later: pass ``respond``.

The task's ``argsrepr`` (what the worker logs, task events and Flower show) is
``(<envelope <envelope_id> <type>>,)``, not the payload: users' messages stay out of them, and
Celery's saferepr of the payload would cost a quarter of a publish.

On Redis a publish is mostly Python under the GIL (about 0.22 ms on loopback, one ``LPUSH``
round trip included), so one process hands off one envelope at a time whatever the dispatch:
keep the client's default ``inline_dispatch=True``, with which the reader publishes in turn
(worker threads would only interleave, and their median ack comes later). On RabbitMQ a publish
takes about 0.7 ms, two thirds of it waiting for the confirm of the persistent message:
``inline_dispatch=False`` lets worker threads overlap those waits, which keeps the p99 lower when
envelopes arrive together. For more envelopes a second, run more replicas.
Figures: ``python -m benchmarks.scale_out --only handoff`` and ``python -m benchmarks.celery_floor``
(docs, "Scaling out").

**In the worker**, :func:`once_per_envelope` makes a task's effect happen once per envelope
across Celery retries, ``acks_late`` redeliveries (a worker that died mid-task) and Slack's
redeliveries: the task claims the envelope in the shared store (keys ``effect:envelope:<id>``
and, for ``events_api``, ``effect:event:<event_id>``) with a lease renewed while the effect
runs, records it done when the effect returns (never over a claim another worker took after
this one's lease lapsed), and releases the claim if it raises (so a Celery retry runs it
again). A task that finds the envelope done returns None without running; one that finds it
claimed by a live worker raises :class:`EnvelopeBusy` (retry it later: if that worker dies,
its lease expires). A task whose worker died is delivered again at once on
RabbitMQ; on Redis only once the transport's ``visibility_timeout`` has passed (kombu's
default: an hour; set it a little above your longest task). What is *not* covered: an effect that completed
outside the store (an API call made) by a worker that died before recording it done runs
again; make the effect idempotent, or keep the lease window in mind.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, NamedTuple, Optional, TypeVar

from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from .bounded import BoundedCalls, DeadlineExceeded, PoolExhausted
from .brokers import Broker, Failure, check_app, describe
from .errors import ConfigurationError, Redeliver, SocketModeError
from .records import record
from .shared import Claim, Finished, Lease, SharedStore, StoreUnavailableError

__all__ = [
    "CeleryHandoff",
    "EnvelopeBusy",
    "HandoffStats",
    "envelope_task_argument",
    "needs_response",
    "once_per_envelope",
]

T = TypeVar("T")

#: ``interactive`` payload types whose ack carries the answer.
_RESPONSE_INTERACTIONS = frozenset({"block_suggestion", "view_submission"})


class EnvelopeBusy(SocketModeError):
    """Another worker holds a live claim on this envelope's effect: retry the task later."""


def needs_response(request: SocketModeRequest) -> bool:
    """Whether the ack of ``request`` must carry the response (Slack waits for it in the ack)."""
    if request.type == "slash_commands":
        return bool(request.accepts_response_payload)
    if request.type == "interactive":
        return request.payload.get("type") in _RESPONSE_INTERACTIONS
    return False


def envelope_task_argument(
    request: SocketModeRequest, retry_attempt: int = 0, retry_reason: str = ""
) -> dict[str, Any]:
    """The task's argument: a JSON-serialisable dict of the envelope (its fields as Slack sent them)."""
    return {
        "envelope_id": request.envelope_id,
        "type": request.type,
        "payload": request.payload,
        "accepts_response_payload": bool(request.accepts_response_payload),
        "retry_attempt": retry_attempt,
        "retry_reason": retry_reason,
    }


@record
class HandoffStats(NamedTuple):
    """A snapshot of a :class:`CeleryHandoff`'s counters (see :meth:`CeleryHandoff.stats`).

    Attributes:
        published: envelopes published and acked.
        failed: publishes that failed, were refused, nacked or returned, or ran past
            ``publish_timeout`` (not acked), the permanent ones included.
        failed_permanently: of those, the ones that failed for a reason no retry can fix (see
            :mod:`slack_socket_mode.brokers`): a module missing, credentials refused, a bad URL.
        given_up_running: publishes given up at ``publish_timeout`` that still wait on the broker,
            each on a thread of the hand-off's.
        published_late: publishes given up at ``publish_timeout`` that went through later (their
            task is with the broker although the envelope was not acked: its redelivery publishes
            it again).
        problem: the permanent failure that stops every publish, or "" (see :meth:`CeleryHandoff.health_problem`).
    """

    published: int
    failed: int
    failed_permanently: int
    given_up_running: int
    published_late: int
    problem: str


class CeleryHandoff:
    """A request listener that publishes each envelope as a Celery task and acks once it is published.

    Args:
        app: the ``celery.Celery`` app (its broker receives the tasks).
        task_name: the registered name of the worker's task.
        respond: called in-process with the request for envelopes whose ack carries the
            response (see :func:`needs_response`); returns the ack's payload, or None.
        publish_timeout: seconds a publish may take, everything included (taking a pooled
            connection or opening one, the write, and on RabbitMQ the confirm): the listener
            returns within it, plus the hand-over to the publishing thread (well under a
            millisecond). Keep it well under Slack's 3 s.
        queue: the queue to publish to (default: the app's routing).
        logger: where to log (default ``logging.getLogger("slack_socket_mode.celery")``).
        max_publish_threads: threads that publish, at most (made on demand): publishes at once,
            those given up at their deadline and still waiting on the broker included.

    Each publish runs on a thread of the hand-off's (``slack_socket_mode-celery-publish-<n>``)
    and the listener waits for it at most ``publish_timeout``: kombu retries a publish on a new
    connection, so a broker that accepts connections and stops answering would cost a publish
    several of its timeouts (3 to 6 of them, measured). A publish still running at the
    deadline is given up (not acked, counted in ``failed``) and goes on until kombu's own
    timeouts end it (the ``timeout`` and ``confirm_timeout`` of the publish, both
    ``publish_timeout``, and on Redis the transport's ``socket_timeout``); if it goes through
    after all, that is logged at INFO and counted (``published_late``), and Slack's redelivery
    publishes the task again (the worker's :func:`once_per_envelope` runs its effect once).
    With every thread busy, a publish fails at once (a broker that stalled holds them all).

    A publish counts as failed (not acked, logged with the reason, counted in ``failed``)
    when it raises, times out, is nacked, or, on RabbitMQ, when the broker routed it to no
    queue. A failure no retry can fix (:mod:`slack_socket_mode.brokers`: a module missing,
    credentials refused, a bad URL) is logged once at ERROR, not at WARNING for every envelope,
    counted in ``failed_permanently``, and makes :meth:`health_problem`, and so the client's
    ``health()``, say so until a publish succeeds.

    RabbitMQ confirms a message no queue took and drops it unless it was published with
    ``mandatory``, which the hand-off sets: the queue deleted or expired after kombu cached its
    declaration on the producer's connection (kombu declares a queue once per connection), or a
    routing key bound to nothing. The broker then sends ``basic.return`` (312 ``NO_ROUTE``)
    before the confirm, and py-amqp, with no return handler on the channel, raises it from the
    confirm wait; kombu replaces the pooled connection on that error, so the next publish
    declares the queue again and goes through. Redis has no such case with Celery's default
    routing (a queue on a direct exchange): the publish is an ``LPUSH`` to the list named after
    the queue, created if missing. Through a topic or fanout exchange, kombu's Redis transport
    looks the exchange's bindings up in Redis on every publish and, if they are gone (Redis
    flushed, or restarted without persistence), drops the message without an error: route the
    hand-off's tasks to a plain queue.

    Raises:
        ConfigurationError: a RabbitMQ broker without ``confirm_publish``, a Redis broker without a
            ``socket_timeout`` (both in ``broker_transport_options``; see
            :func:`slack_socket_mode.brokers.check_app`).

    Thread-safe: the client calls it from several threads. Call :meth:`close` after the client's
    ``close()``.
    """

    def __init__(
        self,
        app: Any,
        task_name: str,
        *,
        respond: Optional[Callable[[SocketModeRequest], Optional[dict[str, Any]]]] = None,
        publish_timeout: float = 2.0,
        queue: Optional[str] = None,
        logger: Optional[logging.Logger] = None,
        max_publish_threads: int = 32,
    ) -> None:
        self._broker = check_app(app)
        if not publish_timeout > 0:
            raise ConfigurationError("publish_timeout must be a positive number of seconds")
        if max_publish_threads < 1:
            raise ConfigurationError("max_publish_threads must be at least 1")
        self.app = app
        self.task_name = task_name
        self.respond = respond
        self.publish_timeout = publish_timeout
        self.queue = queue
        self.logger = logger or logging.getLogger("slack_socket_mode.celery")
        self._calls = BoundedCalls(
            "slack_socket_mode-celery-publish", max_threads=max_publish_threads, on_late=self._late
        )
        self._lock = threading.Lock()  # guards the counters and _problem
        self.published = 0  #: envelopes published and acked
        self.failed = 0  #: publishes that failed or timed out (not acked)
        self._failed_permanently = 0
        self._published_late = 0
        self._problem = ""  # the permanent failure in force, or ""

    def __repr__(self) -> str:
        return f"<CeleryHandoff task={self.task_name!r}>"

    def __call__(self, client: Any, request: SocketModeRequest) -> None:
        """Publish, then ack (with the in-process response, if any); on failure log and do not ack.

        Returns within ``publish_timeout`` seconds (plus the hand-over to the publishing thread).

        Raises:
            Redeliver: the publish failed or timed out (after the log line); the client then lets
                Slack's redelivery run it again, on any replica.
        """
        options = self._options(request)
        started = time.monotonic()
        try:
            self._calls.call(
                functools.partial(self.app.send_task, self.task_name, **options),
                self.publish_timeout,
                context=(request.envelope_id, request.type),
            )
        except DeadlineExceeded:
            failure = Failure(
                False,
                f"no answer from the broker within publish_timeout ({self.publish_timeout:g} s): it is slow or "
                "stalled; the publish goes on on its thread",
            )
        except PoolExhausted as e:
            failure = Failure(False, f"not tried: {e}: the broker stalls every publish?")
        except Exception as e:  # the broker's errors (kombu, amqp, redis, socket): do not ack
            failure = describe(e)
        else:
            self._published()
            payload = None
            if self.respond is not None and needs_response(request):
                payload = self.respond(request)
            client.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload))
            return
        self._log_failure(request, failure, time.monotonic() - started)
        raise Redeliver(f"publishing task {self.task_name} failed ({failure.reason[:80]})", logged=True)

    def health_problem(self) -> str:
        """Why no publish can succeed (a permanent failure, until a publish succeeds), or "".

        :meth:`SocketModeClient.health() <slack_socket_mode.SocketModeClient.health>` is unhealthy
        while a request listener's ``health_problem()`` returns a reason. Thread-safe.
        """
        with self._lock:
            return f"the Celery hand-off cannot publish: {self._problem}" if self._problem else ""

    def stats(self) -> HandoffStats:
        """A snapshot of the counters. Thread-safe."""
        with self._lock:
            return HandoffStats(
                published=self.published,
                failed=self.failed,
                failed_permanently=self._failed_permanently,
                given_up_running=self._calls.given_up_running,
                published_late=self._published_late,
                problem=self._problem,
            )

    def close(self, timeout: float = 1.0) -> None:
        """Stop the publishing threads and join them within ``timeout`` seconds (after the client's ``close()``).

        A thread still waiting on a broker past its deadline is named in a WARNING and left to end
        with its timeouts (it is a daemon thread).
        """
        stuck = self._calls.close(timeout)
        if stuck:
            self.logger.warning("CeleryHandoff.close(): %s still waiting on the broker", ", ".join(stuck))

    def _options(self, request: SocketModeRequest) -> dict[str, Any]:
        argument = envelope_task_argument(request, int(request.retry_attempt or 0), str(request.retry_reason or ""))
        options: dict[str, Any] = {
            "args": [argument],
            # Celery's own repr of the arguments for logs and events (saferepr of the whole
            # payload) costs about a quarter of a Redis publish; this one also keeps the payload (users'
            # messages) out of the worker's logs, Flower and task events.
            "argsrepr": f"(<envelope {request.envelope_id} {request.type}>,)",
            "kwargsrepr": "{}",
            "retry": True,  # once more on a stale connection (a broker restarted), within publish_timeout
            "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1},
            "timeout": self.publish_timeout,
            "confirm_timeout": self.publish_timeout,
        }
        if self._broker is Broker.RABBITMQ:
            # Without it RabbitMQ confirms a message that no queue took (the queue deleted or
            # expired after kombu cached its declaration) and drops it. With it, the broker's
            # basic.return reaches py-amqp before the confirm: with no return handler on the
            # channel it raises from the confirm wait, and kombu replaces the pooled connection
            # (the next publish declares the queue again).
            options["mandatory"] = True
        if self.queue is not None:
            options["queue"] = self.queue
        return options

    def _published(self) -> None:
        with self._lock:
            self.published += 1
            problem, self._problem = self._problem, ""
        if problem:
            self.logger.warning("publishing task %s works again (it failed: %s)", self.task_name, problem)

    def _log_failure(self, request: SocketModeRequest, failure: Failure, seconds: float) -> None:
        with self._lock:
            self.failed += 1
            first = False
            if failure.permanent:
                self._failed_permanently += 1
                first, self._problem = failure.reason != self._problem, failure.reason
        if first:
            self.logger.error(
                "publishing task %s cannot succeed until the setup changes: %s. No envelope is acked "
                "meanwhile (Slack redelivers each up to 3 times, then drops it); health() says so; each "
                "envelope's failure is logged at DEBUG from now on",
                self.task_name,
                failure.reason,
            )
        elif failure.permanent:
            self.logger.debug("envelope %s (%s): not published (%s)", request.envelope_id, request.type, failure.reason)
        else:
            self.logger.warning(
                "envelope %s (%s): publishing task %s failed after %.2f s (%s); not acking it, so Slack redelivers it",
                request.envelope_id,
                request.type,
                self.task_name,
                seconds,
                failure.reason,
            )

    def _late(self, context: Any, result: Any, error: Optional[BaseException], seconds: float) -> None:
        """A publish given up at its deadline has ended (on its thread)."""
        envelope_id, kind = context
        if error is None:
            with self._lock:
                self._published_late += 1
            self.logger.info(
                "envelope %s (%s): the publish given up at publish_timeout went through %.2f s after it started: "
                "the task is with the broker, the envelope not acked; Slack's redelivery publishes it again",
                envelope_id,
                kind,
                seconds,
            )
        else:
            self.logger.debug(
                "envelope %s (%s): the publish given up at publish_timeout ended after %.2f s (%s)",
                envelope_id,
                kind,
                seconds,
                describe(error).reason,
            )


def once_per_envelope(
    store: SharedStore, *, on_busy: Optional[Callable[[], Any]] = None
) -> Callable[[Callable[..., T]], Callable[..., Optional[T]]]:
    """Decorate a task function whose first argument is the envelope dict: its effect runs once per envelope.

    ``store`` is typically ``RedisLedger(url, namespace=..., lease=...)``: a lease longer
    than the effect usually runs (it is renewed every third of it meanwhile). ``on_busy``
    (for example ``lambda: task.retry(countdown=5)``) is called when another worker holds
    a live claim; by default :class:`EnvelopeBusy` is raised (use Celery's
    ``autoretry_for=(EnvelopeBusy,)``).

    The wrapped function returns the effect's result, or None when the envelope was already done.

    Raises:
        EnvelopeBusy: another worker holds a live claim (without ``on_busy``).
        StoreUnavailableError: the store cannot be reached (Celery retries, if told to).
    """

    def decorate(effect: Callable[..., T]) -> Callable[..., Optional[T]]:
        @functools.wraps(effect)
        def wrapper(envelope: dict[str, Any], *args: Any, **kwargs: Any) -> Optional[T]:
            keys = _effect_keys(envelope)
            owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
            outcome = store.claim(keys, owner).outcome
            if outcome is Claim.DONE:
                return None
            if outcome is Claim.HELD:
                if on_busy is not None:
                    return on_busy()  # type: ignore[no-any-return]
                raise EnvelopeBusy(f"envelope {envelope.get('envelope_id')}: another worker is running its effect")
            renewer = _Renewer(store, keys, owner)
            try:
                result = effect(envelope, *args, **kwargs)
            except BaseException:
                renewer.stop()
                try:
                    store.release(keys, owner)  # let a retry run it
                except StoreUnavailableError:
                    pass  # the claim expires with its lease
                raise
            renewer.stop()
            # Owner-checked, as the client's done records are: if the lease lapsed meanwhile (a pause,
            # a slow store) and another worker claimed the envelope, its claim stays (it records it
            # done itself); this one's record is not written over it.
            [recorded] = store.sync([], [Finished(keys, owner, '{"ack":true}')], []).recorded
            if recorded is Lease.TAKEN:
                logging.getLogger("slack_socket_mode.celery").warning(
                    "envelope %s: its effect ran, but its claim lapsed while it ran and another worker holds "
                    "it now: not recorded done over that claim (the effect may run twice; raise the lease)",
                    envelope.get("envelope_id"),
                )
            return result

        return wrapper

    return decorate


def _effect_keys(envelope: dict[str, Any]) -> tuple[str, ...]:
    envelope_id = envelope.get("envelope_id")
    if not isinstance(envelope_id, str) or not envelope_id:
        raise ValueError("the task's first argument must be an envelope dict with an envelope_id")
    keys = [f"effect:envelope:{envelope_id}"]
    payload = envelope.get("payload")
    event_id = payload.get("event_id") if isinstance(payload, dict) else None
    if envelope.get("type") == "events_api" and isinstance(event_id, str) and event_id:
        keys.append(f"effect:event:{event_id}")
    return tuple(keys)


class _Renewer:
    """Renews one claim every third of a lease on its own thread until stopped."""

    def __init__(self, store: SharedStore, keys: tuple[str, ...], owner: str) -> None:
        self._store, self._keys, self._owner = store, keys, owner
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slack_socket_mode-effect-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._store.lease / 3):
            try:
                self._store.renew(self._keys, self._owner)
            except StoreUnavailableError:
                continue  # try again next period; the lease may lapse meanwhile

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(self._store.lease)
