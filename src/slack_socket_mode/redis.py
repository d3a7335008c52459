"""A shared ledger on Redis, for replicas of one app: ``SocketModeClient(dedupe=RedisLedger(...))``.

Needs the ``redis`` extra (``pip install "slack-socket-mode[redis]"``, redis-py). See
:mod:`slack_socket_mode.shared` for what the client does with it.

Keys (strings, all with a TTL so Redis memory stays bounded):

* ``<prefix><namespace>:envelope:<envelope_id>`` and, for ``events_api``,
  ``<prefix><namespace>:event:<event_id>``;
* value ``c:<owner>`` while a replica holds a claim (TTL: the lease, renewed; ``<owner>`` is
  the claim's own owner value, so two claims never share one), then ``d:<record>`` once it is
  done (TTL: ``done_ttl``).

A claim of one key is ``SET key c:<owner> NX PX <lease_ms>`` in spirit; because an
``events_api`` envelope has two keys that must be claimed together, and because the
answer must say whether the key was done (and with what ack) or held, the claim is a short
Lua script (``EVALSHA``), one round trip and atomic. The lease thread's round (every
renewal due, every done record and release waiting) is one more script, in chunks of
:data:`CHUNK` claims sent in one pipeline: one round trip whatever the number of claims.

Each script looks at a key before it reads it (``STRLEN``, which fails on a key of another
type; a value longer than a done record can be is not read), so a foreign key (another
type, neither prefix, a claim longer than :data:`MAX_CLAIM` bytes or without a TTL) is
reported and written over, never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from .errors import ConfigurationError
from .redaction import redact
from .shared import (
    MAX_RECORD,
    Claim,
    ClaimResult,
    Finished,
    Held,
    Lease,
    RoundResult,
    StoreUnavailableError,
)

__all__ = ["CHUNK", "MAX_CLAIM", "RedisLedger"]

#: The longest claim value (bytes) taken for one; a longer ``c:…`` value is foreign.
MAX_CLAIM = 1024

#: Claims (renewals, done records, releases) per script call in a round; the calls of one round
#: go in one pipeline. About 2 µs of Redis time per key: a call holds Redis a few milliseconds.
CHUNK = 1000

# inspect(key, mine) -> kind, detail. kind: 'none' (no key), 'mine' (holds mine), 'claim' (another
# claim), 'done' (detail: the record), 'foreign' (detail: why). Never fails on a key of another type.
_INSPECT = """
local function inspect(k, mine)
  local n = redis.pcall('STRLEN', k)
  if type(n) == 'table' then return 'foreign', 'a ' .. redis.call('TYPE', k).ok .. ', not a string' end
  if n == 0 then
    if redis.call('EXISTS', k) == 0 then return 'none', '' end
    return 'foreign', 'an empty string'
  end
  if n > MAX_VALUE then return 'foreign', 'a value of ' .. n .. ' bytes' end
  local v = redis.call('GET', k)
  if v == mine then return 'mine', '' end
  local head = string.sub(v, 1, 2)
  if head == 'c:' then
    if n > MAX_CLAIM then return 'foreign', 'a claim of ' .. n .. ' bytes' end
    if redis.call('PTTL', k) < 0 then return 'foreign', 'a claim without a TTL' end
    return 'claim', ''
  end
  if head == 'd:' then return 'done', string.sub(v, 3) end
  return 'foreign', 'neither a claim nor a done record'
end
""".replace("MAX_VALUE", str(MAX_RECORD + 2)).replace("MAX_CLAIM", str(MAX_CLAIM))

# KEYS: the envelope's keys; ARGV: the claim value (c:<owner>), the lease in ms.
# Returns {outcome, record, foreign}: outcome 'done' (with its record), 'held' or 'claimed' ('mine'
# is redis-py's retry of this very call); foreign: the index of each foreign key and why.
_CLAIM = (
    _INSPECT
    + """
local done, held, foreign = nil, false, {}
for i, k in ipairs(KEYS) do
  local kind, detail = inspect(k, ARGV[1])
  if kind == 'done' then done = done or detail
  elseif kind == 'claim' then held = true
  elseif kind == 'foreign' then foreign[#foreign + 1] = i; foreign[#foreign + 1] = detail end
end
if done then return {'done', done, foreign} end
if held then return {'held', '', foreign} end
for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
return {'claimed', '', foreign}
"""
)

# KEYS: the keys of every item, in order. ARGV[1]: the lease in ms; ARGV[2]: done_ttl in ms; then
# per item: <op><key count><claim value> (op 'r' renew, 'd' done, 'x' release), and after a 'd'
# item its record. Returns {index, kind, detail} for each key that did not hold the item's claim.
_SYNC = (
    _INSPECT
    + """
local out, k, a = {}, 0, 3
while a <= #ARGV do
  local item = ARGV[a]
  local op, count, mine = string.sub(item, 1, 1), tonumber(string.sub(item, 2, 2)), string.sub(item, 3)
  local rec = nil
  if op == 'd' then rec = 'd:' .. ARGV[a + 1]; a = a + 2 else a = a + 1 end
  for _ = 1, count do
    k = k + 1
    local key = KEYS[k]
    local kind, detail = inspect(key, mine)
    if op == 'r' then
      if kind == 'mine' then redis.call('PEXPIRE', key, ARGV[1])
      elseif kind == 'none' or kind == 'foreign' then redis.call('SET', key, mine, 'PX', ARGV[1]) end
    elseif op == 'd' then
      if kind ~= 'claim' and kind ~= 'done' then redis.call('SET', key, rec, 'PX', ARGV[2]) end
    elseif kind == 'mine' then redis.call('DEL', key) end
    if kind ~= 'mine' then
      out[#out + 1] = k
      out[#out + 1] = kind
      if kind == 'foreign' then out[#out + 1] = detail else out[#out + 1] = '' end
    end
  end
end
return out
"""
)


class RedisLedger:
    """A :class:`~slack_socket_mode.shared.SharedStore` on Redis.

    Args:
        redis_url: ``redis://host:port/db`` (or ``rediss://``) for the client we build, or
            an existing ``redis.Redis`` with ``decode_responses=False`` and a
            ``socket_timeout`` (else :class:`~slack_socket_mode.errors.ConfigurationError`:
            a Redis that hangs would block a reader for as long as the socket stays open).
            Its retry policy must not retry a call that timed out (redis-py 6 and later do, 3
            to 10 times, by default: each retry would cost one more ``socket_timeout`` of a
            reader's time), else ConfigurationError; build it with
            ``retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))``, what the
            client built from a URL does.
        namespace: the app's name in the keys (one per Slack app: replicas of one app share it).
        prefix: put before every key (default ``"slack_socket_mode:"``).
        lease: seconds a claim lives unless renewed (renewed every third of it, all claims
            in one round trip). The trade-off: a replica paused (a VM pause, a long GC,
            SIGSTOP) or cut off from Redis for about two thirds of it, or more, loses its
            claims, and a redelivery may run their envelopes on another replica too; a
            replica that dies holds its claims for up to the lease, and a redelivery that
            finds a claim still live is neither run nor acked. Slack redelivers 3, 6 and 9 s
            after the first delivery: an envelope whose replica died ``t`` seconds into its
            listeners, unacked, runs elsewhere if ``t + lease`` is under 9 s, else it is lost
            at Slack's end (docs/topics/scaling-out.md, "The lease, and what it costs").
        done_ttl: seconds a done record is kept (Slack's Events API retries for up to an hour).
        on_unavailable: ``"local"`` (dispatch with the local ledger alone) or ``"skip"``
            (neither run nor ack; Slack redelivers) while Redis cannot be reached.
        retry_after: seconds between probes (``PING``, on the lease thread) while Redis cannot
            be reached; the first answer ends the outage.
        socket_timeout: seconds for one Redis call (connect, and each read or write) when
            we build the client. A call that times out is not retried (the outage policy
            decides what next); one whose connection turns out dead (after a Redis restart) is
            retried once, at once, on a new connection.

    Raises:
        ConfigurationError: invalid options, a malformed URL, or a client without timeouts or that retries them.

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
        retry_after: float = 0.5,
        socket_timeout: float = 1.0,
    ) -> None:
        if not namespace or ":" in namespace:
            raise ConfigurationError("namespace must be a non-empty name without ':' (one per Slack app)")
        if not lease > 0 or not done_ttl >= lease or not retry_after >= 0 or not socket_timeout > 0:
            raise ConfigurationError("lease and socket_timeout must be > 0, done_ttl >= lease, retry_after >= 0")
        if on_unavailable not in ("local", "skip"):
            raise ConfigurationError("on_unavailable must be 'local' or 'skip'")
        if isinstance(redis_url, str):
            try:
                self.redis: redis.Redis = redis.Redis.from_url(
                    redis_url,
                    socket_timeout=socket_timeout,
                    socket_connect_timeout=socket_timeout,
                    # one retry, at once, on a new connection when the pooled one is dead (after a Redis
                    # restart); never after a timeout: a Redis that hangs costs one socket_timeout
                    retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                )
            except ValueError as e:  # redis-py's word for a malformed URL
                raise ConfigurationError(f"invalid Redis URL {redact(redis_url)!r}: {redact(str(e))}") from None
        else:
            _check_client(redis_url)
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
        self._sync = self.redis.register_script(_SYNC)

    def __repr__(self) -> str:
        return f"<RedisLedger namespace={self.namespace!r} lease={self.lease:g}s>"

    def claim(self, keys: Sequence[str], owner: str) -> ClaimResult:
        """See :meth:`SharedStore.claim <slack_socket_mode.shared.SharedStore.claim>`."""
        try:
            answer = self._claim(keys=[self._base + k for k in keys], args=[b"c:" + owner.encode(), self._lease_ms])
        except redis.RedisError as e:  # unreachable, timed out, or refused (READONLY, auth, OOM)
            raise _unavailable(e) from None
        outcome, raw, found = answer[0], answer[1], answer[2]
        record: Optional[str] = ""
        if outcome == b"done":
            try:
                record = raw.decode()
            except UnicodeDecodeError:
                record = None  # not ours: the client takes it for a plain ack
        foreign = tuple(f"{keys[int(found[i]) - 1]} ({found[i + 1].decode()})" for i in range(0, len(found), 2))
        return ClaimResult(Claim(outcome.decode()), record, foreign)

    def sync(self, renew: Sequence[Held], done: Sequence[Finished], release: Sequence[Held]) -> RoundResult:
        """See :meth:`SharedStore.sync <slack_socket_mode.shared.SharedStore.sync>`: one pipeline of script calls."""
        items: list[tuple[bytes, tuple[str, ...], str, Optional[str]]] = [
            *((b"r", h.keys, h.owner, None) for h in renew),
            *((b"d", f.keys, f.owner, f.record) for f in done),
            *((b"x", h.keys, h.owner, None) for h in release),
        ]
        calls: list[tuple[list[str], list[Any]]] = []
        for start in range(0, len(items), CHUNK):
            keys: list[str] = []
            args: list[Any] = [self._lease_ms, self._done_ms]
            for op, logical, owner, done_record in items[start : start + CHUNK]:
                if not 0 < len(logical) < 10:
                    raise ValueError("a claim has 1 to 9 keys")
                args.append(op + str(len(logical)).encode() + b"c:" + owner.encode())
                if done_record is not None:
                    args.append(done_record.encode())
                keys += [self._base + k for k in logical]
            calls.append((keys, args))
        kinds: dict[int, str] = {}  # a key's index in the round -> what it held, if not the item's claim
        foreign: list[str] = []
        offset = 0
        for (keys, _), answer in zip(calls, self._run(calls)):
            for i in range(0, len(answer), 3):
                index = int(answer[i]) - 1
                kinds[offset + index] = kind = answer[i + 1].decode()
                if kind == "foreign":
                    foreign.append(f"{keys[index][len(self._base) :]} ({answer[i + 2].decode()})")
            offset += len(keys)
        leases: list[Lease] = []
        first = 0
        for _, logical, _, _ in items:
            leases.append(_lease([kinds.get(k) for k in range(first, first + len(logical))]))
            first += len(logical)
        n = len(renew)
        return RoundResult(tuple(leases[:n]), tuple(leases[n : n + len(done)]), tuple(foreign))

    def ping(self) -> None:
        """See :meth:`SharedStore.ping <slack_socket_mode.shared.SharedStore.ping>`."""
        try:
            self.redis.ping()
        except redis.RedisError as e:
            raise _unavailable(e) from None

    def renew(self, keys: Sequence[str], owner: str) -> bool:
        """See :meth:`SharedStore.renew <slack_socket_mode.shared.SharedStore.renew>` (one :meth:`sync`)."""
        return self.sync([Held(tuple(keys), owner)], [], []).renewed[0] is not Lease.TAKEN

    def release(self, keys: Sequence[str], owner: str) -> None:
        """See :meth:`SharedStore.release <slack_socket_mode.shared.SharedStore.release>` (one :meth:`sync`)."""
        self.sync([], [], [Held(tuple(keys), owner)])

    def done(self, keys: Sequence[str], record: str, owner: Optional[str] = None) -> None:
        """See :meth:`SharedStore.done <slack_socket_mode.shared.SharedStore.done>`.

        Without ``owner`` the record is written over whatever the keys hold.
        """
        if owner is not None:
            self.sync([], [Finished(tuple(keys), owner, record)], [])
            return
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
        except redis.RedisError as e:  # unreachable, timed out, refused, or a key of another type
            raise _unavailable(e) from None
        return None if value is None else value.decode(errors="replace")

    def close(self) -> None:
        """Close the connection pool of the client we built (a client passed in is left open)."""
        if self._owned:
            self.redis.close()

    def _run(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """The script calls of one round, in one round trip (a pipeline when there are several)."""
        try:
            if len(calls) == 1:
                keys, args = calls[0]
                return [self._sync(keys=keys, args=args)]
            for attempt in (1, 2):
                with self.redis.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.evalsha(self._sync.sha, len(keys), *keys, *args)
                    answers = pipe.execute(raise_on_error=False)
                if attempt == 1 and any(isinstance(a, NoScriptError) for a in answers):
                    self.redis.script_load(_SYNC)  # Redis restarted since: load it, send the round again
                    continue
                for answer in answers:
                    if isinstance(answer, Exception):
                        raise answer
                return list(answers)
            raise AssertionError("unreachable")  # pragma: no cover
        except redis.RedisError as e:  # unreachable, timed out, or refused (READONLY, auth, OOM)
            raise _unavailable(e) from None


def _lease(found: list[Optional[str]]) -> Lease:
    """What a renewal or a done record found of its claim, from what its keys held (None: the claim itself)."""
    if "claim" in found:
        return Lease.TAKEN
    if "done" in found:
        return Lease.DONE
    return Lease.LAPSED if "none" in found else Lease.KEPT


def _check_client(client: Any) -> None:
    """Refuse a redis.Redis we cannot use: one decoding responses, or one with no socket timeout.

    Raises:
        ConfigurationError: what to change.
    """
    if not isinstance(client, redis.Redis):
        raise ConfigurationError(f"redis_url must be a URL or a redis.Redis, not {type(client).__name__}")
    options = client.connection_pool.connection_kwargs
    if options.get("decode_responses"):
        raise ConfigurationError("the redis.Redis passed to RedisLedger must have decode_responses=False")
    if options.get("socket_timeout") is None:
        raise ConfigurationError(
            "the redis.Redis passed to RedisLedger has no socket_timeout: a Redis that hangs would block a reader "
            "without a bound; build it with socket_timeout=1.0 and socket_connect_timeout=1.0, or pass a URL"
        )
    retry = _connection_retry(client)
    if retry is not None and retry.get_retries() != 0 and _retries_timeouts(retry):  # below 0: for ever
        raise ConfigurationError(
            f"the redis.Redis passed to RedisLedger retries a call that timed out ({retry.get_retries()} times, "
            "redis-py's default since 6.0): a Redis that hangs would stall a reader for that many socket timeouts "
            "per envelope; build it with retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)), "
            "or pass a URL"
        )


def _connection_retry(client: redis.Redis) -> Any:
    """The retry policy the client's connections get (redis-py's per-version default when none was set), or None.

    Read off a connection made from the pool's own settings and never connected; a pool whose
    connection class takes other arguments (Sentinel's) is not checked.
    """
    pool = client.connection_pool
    try:
        connection = pool.connection_class(**pool.connection_kwargs)
    except TypeError:
        return None
    return getattr(connection, "retry", None)


def _retries_timeouts(retry: Any) -> bool:
    """Whether redis-py's ``retry`` policy retries a call that timed out.

    redis-py has no public accessor for a policy's error types: ``_supported_errors`` is the
    field its ``Retry`` classes declare; the optional ``is_retryable`` checker (redis-py 8)
    narrows them further.
    """
    supported = getattr(retry, "_supported_errors", (redis.TimeoutError,))
    if not any(issubclass(redis.TimeoutError, error) for error in supported):
        return False
    check = getattr(retry, "is_retryable", None)
    return check is None or bool(check(redis.TimeoutError()))


def _unavailable(error: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(f"redis: {type(error).__name__}: {redact(str(error))[:160]}")
