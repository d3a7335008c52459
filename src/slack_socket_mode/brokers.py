"""What the Celery hand-off knows about its brokers: their settings, and what a failed publish means.

One job: the knowledge of RabbitMQ (kombu's py-amqp transport) and Redis (kombu's Redis
transport) that :class:`~slack_socket_mode.celery.CeleryHandoff` needs, kept out of the
hand-off itself:

* :func:`check_app`: which broker a Celery app names, and the settings the hand-off relies on
  (publisher confirms on RabbitMQ; a socket timeout on Redis, so that a publish stuck on a
  Redis that stopped answering ends);
* :func:`describe`: what a publish's exception means, told apart by its type and its chain,
  never by parsing its text. A **permanent** failure is one the next envelope would meet
  again, whatever the broker does meanwhile: a module missing (kombu's Redis transport
  without ``packaging``), credentials or a virtual host the broker refused, a URL that names
  no transport or does not parse. Everything else is **transient** (the broker down,
  restarting, stalled, a connection reset, a nack, a message no queue took): the next
  delivery may get through.

No threads, no I/O, no locks; it imports neither kombu nor redis-py (exceptions are told by
their class names and AMQP reply codes, so it works with either transport missing).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any, NamedTuple

from .errors import ConfigurationError
from .records import record
from .redaction import redact

__all__ = ["Broker", "Failure", "check_app", "describe"]

#: AMQP reply codes of a connection the broker refused for good: 403 ACCESS_REFUSED (credentials),
#: 530 NOT_ALLOWED (a virtual host that does not exist, or that the user may not use).
_REFUSED_CODES = frozenset({403, 530})
#: AMQP's reply code of a mandatory message that no queue took (RabbitMQ's basic.return).
_NO_ROUTE = 312
#: redis-py's exceptions for credentials Redis refused (matched by class name, through the MRO).
_REDIS_AUTH = frozenset({"AuthenticationError", "AuthenticationWrongNumberOfArgsError"})


class Broker(enum.Enum):
    """The kind of broker a Celery app's ``broker_url`` names."""

    RABBITMQ = "rabbitmq"  #: ``amqp://``, ``amqps://``, ``pyamqp://``
    REDIS = "redis"  #: ``redis://``, ``rediss://``
    OTHER = "other"  #: anything else (kombu's other transports): no checks, no promises


@record
class Failure(NamedTuple):
    """What a failed publish means.

    Attributes:
        permanent: True when no retry can help until the setup changes (see the module docstring).
        reason: what happened, for a log line (tokens and passwords redacted, at most 300 characters).
    """

    permanent: bool
    reason: str


def broker_of(app: Any) -> Broker:
    """The kind of broker ``app`` (a ``celery.Celery``) publishes to."""
    scheme = str(app.conf.broker_url or "").split(":", 1)[0].lower()
    if scheme in ("amqp", "amqps", "pyamqp"):
        return Broker.RABBITMQ
    if scheme in ("redis", "rediss"):
        return Broker.REDIS
    return Broker.OTHER


def check_app(app: Any) -> Broker:
    """Check that ``app`` is set up for the hand-off; return its kind of broker.

    Raises:
        ConfigurationError: RabbitMQ without publisher confirms (``confirm_publish``), or Redis
            without a ``socket_timeout`` in ``broker_transport_options`` (kombu's default is none:
            a publish to a Redis that stopped answering would then never end).
    """
    broker = broker_of(app)
    options = app.conf.broker_transport_options or {}
    if broker is Broker.RABBITMQ and not options.get("confirm_publish"):
        raise ConfigurationError(
            "CeleryHandoff acks only after the broker confirmed the publish: on RabbitMQ set "
            "broker_transport_options={'confirm_publish': True} on the Celery app"
        )
    if broker is Broker.REDIS and not _positive(options.get("socket_timeout")):
        raise ConfigurationError(
            "CeleryHandoff needs a bounded publish: on Redis set broker_transport_options="
            "{'socket_timeout': SECONDS, ...} on the Celery app (kombu waits forever without it)"
        )
    return broker


def describe(error: BaseException) -> Failure:
    """What the exception a publish raised means: permanent or transient, and why, in words."""
    chain = list(_chain(error))
    head = f"{type(error).__name__}: {redact(str(error))}" if str(error) else type(error).__name__
    for link in chain:
        name = type(link).__name__
        text = redact(str(link))
        if isinstance(link, ImportError):
            return Failure(True, _cut(f"a module the broker's transport needs is missing ({name}: {text})"))
        if getattr(link, "reply_code", None) in _REFUSED_CODES:
            return Failure(True, _cut(f"the broker refused the connection ({name}: {text})"))
        if _REDIS_AUTH & {cls.__name__ for cls in type(link).__mro__}:
            return Failure(True, _cut(f"Redis refused the credentials ({name}: {text})"))
        if name == "MessageNacked":
            return Failure(
                False,
                "the broker nacked the publish: it did not take the message (a queue at its length limit "
                "with overflow reject-publish, a resource alarm, an internal error)",
            )
        if getattr(link, "reply_code", None) == _NO_ROUTE:
            return Failure(
                False, _cut(f"{head}: the broker routed it to no queue (deleted, expired or never declared?)")
            )
    if isinstance(error, (ValueError, KeyError, TypeError)):  # kombu parsing the URL, or no such transport
        return Failure(True, _cut(f"the broker URL or its settings are wrong ({head})"))
    return Failure(False, _cut(head))


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _cut(text: str) -> str:
    return text if len(text) <= 300 else text[:297] + "..."
