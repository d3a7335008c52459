"""A shared ledger on Redis, for replicas of one app: ``SocketModeClient(dedupe=RedisLedger(...))``.

Needs the ``redis`` extra (``pip install "slack-socket-mode[redis]"``, redis-py). See
:mod:`slack_socket_mode.shared` for what the client does with it.

Keys (strings, all with a TTL so Redis memory stays bounded):

* ``<prefix><namespace>:envelope:<envelope_id>`` and, for ``events_api``,
  ``<prefix><namespace>:event:<event_id>``;
* value ``c:<owner>`` while a replica holds a claim (TTL: the lease, renewed), then
  ``d:<record>`` once it is done (TTL: ``done_ttl``).

A claim of one key is ``SET key c:<owner> NX PX <lease_ms>`` in spirit; because an
``events_api`` envelope has two keys that must be claimed together, and because the
answer must say whether the key was done (and with what ack) or held, the claim, the
renewal and the release are short Lua scripts (``EVALSHA``), each one round trip and
atomic. Recording done is a ``MULTI`` of plain ``SET … PX``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConfigurationError
from .redaction import redact
from .shared import Claim, ClaimResult, StoreUnavailableError

__all__ = ["RedisLedger"]

# KEYS: the envelope's keys; ARGV: the claim value (c:<owner>), the lease in ms.
# Returns {"done", record} | {"held", ""} | {"claimed", ""}.
_CLAIM = """
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then
    if string.sub(v, 1, 2) == 'd:' then return {'done', string.sub(v, 3)} end
    if v ~= ARGV[1] then return {'held', ''} end
  end
end
for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
return {'claimed', ''}
"""

# KEYS: the envelope's keys; ARGV: the claim value, the lease in ms. Returns 1 if every key was ours.
_RENEW = """
local kept = 1
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('PEXPIRE', k, ARGV[2]) else kept = 0 end
end
return kept
"""

# KEYS: the envelope's keys; ARGV: the claim value. Deletes the keys that are still ours.
_RELEASE = """
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 0
"""


class RedisLedger:
    """A :class:`~slack_socket_mode.shared.SharedStore` on Redis.

    Args:
        redis_url: ``redis://host:port/db`` (or ``rediss://``) for the client we build, or
            an existing ``redis.Redis`` with ``decode_responses=False`` (its timeouts then
            apply: set ``socket_timeout`` and ``socket_connect_timeout``, or one call may
            block for its defaults, 5 s).
        namespace: the app's name in the keys (one per Slack app: replicas of one app share it).
        prefix: put before every key (default ``"slack_socket_mode:"``).
        lease: seconds a claim lives unless renewed (renewed every third of it). Shorter
            than Slack's 3 s redelivery delay, so that the redelivery of an envelope whose
            replica died finds the lease expired.
        done_ttl: seconds a done record is kept (Slack's Events API retries for up to an hour).
        on_unavailable: ``"local"`` (dispatch with the local ledger alone) or ``"skip"``
            (neither run nor ack; Slack redelivers) while Redis cannot be reached.
        retry_after: seconds not to ask Redis again after it was found unreachable.
        socket_timeout: seconds for one Redis call (connect, and each read or write) when
            we build the client.

    Raises:
        ConfigurationError: invalid options.

    Thread-safe: redis-py's connection pool is.
    """

    def __init__(
        self,
        redis_url: Union[str, redis.Redis] = "redis://127.0.0.1:6379/0",
        *,
        namespace: str,
        prefix: str = "slack_socket_mode:",
        lease: float = 2.0,
        done_ttl: float = 3600.0,
        on_unavailable: str = "local",
        retry_after: float = 5.0,
        socket_timeout: float = 1.0,
    ) -> None:
        if not namespace or ":" in namespace:
            raise ConfigurationError("namespace must be a non-empty name without ':' (one per Slack app)")
        if not lease > 0 or not done_ttl >= lease or not retry_after >= 0 or not socket_timeout > 0:
            raise ConfigurationError("lease and socket_timeout must be > 0, done_ttl >= lease, retry_after >= 0")
        if on_unavailable not in ("local", "skip"):
            raise ConfigurationError("on_unavailable must be 'local' or 'skip'")
        if isinstance(redis_url, str):
            self.redis: redis.Redis = redis.Redis.from_url(
                redis_url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                # one retry, at once, on a new connection (after a Redis restart the pooled one is dead);
                # then the caller's policy decides what next
                retry=Retry(NoBackoff(), 1),
            )
        else:
            self.redis = redis_url
        self._owned = isinstance(redis_url, str)
        self.namespace = namespace
        self.lease = lease
        self.done_ttl = done_ttl
        self.on_unavailable = on_unavailable
        self.retry_after = retry_after
        self._base = f"{prefix}{namespace}:"
        self._lease_ms = max(1, round(lease * 1000))
        self._done_ms = max(1, round(done_ttl * 1000))
        self._claim = self.redis.register_script(_CLAIM)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"<RedisLedger namespace={self.namespace!r} lease={self.lease:g}s>"

    def claim(self, keys: Sequence[str], owner: str) -> ClaimResult:
        """See :meth:`SharedStore.claim <slack_socket_mode.shared.SharedStore.claim>`."""
        answer = self._call(self._claim, keys, [b"c:" + owner.encode(), self._lease_ms])
        outcome, record = answer[0], answer[1]
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        record = record.decode() if isinstance(record, bytes) else str(record)
        return ClaimResult(Claim(outcome), record)

    def renew(self, keys: Sequence[str], owner: str) -> bool:
        """See :meth:`SharedStore.renew <slack_socket_mode.shared.SharedStore.renew>`."""
        return bool(self._call(self._renew, keys, [b"c:" + owner.encode(), self._lease_ms]))

    def release(self, keys: Sequence[str], owner: str) -> None:
        """See :meth:`SharedStore.release <slack_socket_mode.shared.SharedStore.release>`."""
        self._call(self._release, keys, [b"c:" + owner.encode()])

    def done(self, keys: Sequence[str], record: str) -> None:
        """See :meth:`SharedStore.done <slack_socket_mode.shared.SharedStore.done>`."""
        value = b"d:" + record.encode()
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.set(self._base + key, value, px=self._done_ms)
                pipe.execute()
        except redis.RedisError as e:  # unreachable, timed out, or refused (READONLY, auth)
            raise _unavailable(e) from None

    def state(self, key: str) -> Optional[str]:
        """The raw value of a logical key (``envelope:<id>``), or None: for tests and debugging."""
        try:
            value: Optional[bytes] = self.redis.get(self._base + key)  # type: ignore[assignment]
        except redis.RedisError as e:  # unreachable, timed out, or refused (READONLY, auth)
            raise _unavailable(e) from None
        return None if value is None else value.decode()

    def close(self) -> None:
        """Close the connection pool of the client we built (a client passed in is left open)."""
        if self._owned:
            self.redis.close()

    def _call(self, script: Any, keys: Sequence[str], args: list[Any]) -> Any:
        try:
            return script(keys=[self._base + k for k in keys], args=args)
        except redis.RedisError as e:  # unreachable, timed out, or refused (READONLY, auth)
            raise _unavailable(e) from None


def _unavailable(error: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(f"redis: {type(error).__name__}: {redact(str(error))[:160]}")
