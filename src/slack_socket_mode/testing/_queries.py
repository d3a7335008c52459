"""The read side of :class:`~.server.SocketModeServer`: what it recorded, and waiting for it.

:class:`ServerQueries` is a base class of the server holding its public queries
(connections, Web API calls, acks, messages, envelope records) and its waiting helpers, which
sleep on the server's condition (no polling), raise :class:`TimeoutError` when their timeout
(seconds) passes and :class:`RuntimeError` if the server is stopped while they wait. It
reads the server's :class:`~._envelopes.EnvelopeBook`, :class:`~._routing.ConnectionTable`
and :class:`~._api_fake.WebApiFake` under the server lock and returns copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Callable, TypeVar

from ._api_fake import WebApiFake
from ._connection import ServerConnection
from ._envelopes import EnvelopeBook
from ._routing import ConnectionTable
from ._webapi import ApiCall
from .records import Ack, EnvelopeRecord, Forgotten, ReceivedMessage

__all__ = ["ServerQueries"]

_T = TypeVar("_T")


class ServerQueries:
    """Queries and waits of :class:`~.server.SocketModeServer` (a base class; see there)."""

    # Set by SocketModeServer.__init__; _lock is _cond's lock and guards the three below.
    _lock: threading.RLock
    _cond: threading.Condition
    _stopping: bool
    _book: EnvelopeBook
    _table: ConnectionTable
    _web_api: WebApiFake

    @property
    def connections(self) -> list[ServerConnection]:
        """The open connections (handshake done, not closed), oldest first (a copy)."""
        with self._lock:
            return list(self._table.open)

    @property
    def all_connections(self) -> list[ServerConnection]:
        """Every connection ever accepted (handshake done), in order (a copy)."""
        with self._lock:
            return list(self._table.all)

    def wait_for_connections(self, count: int = 1, timeout: float = 5.0) -> list[ServerConnection]:
        """Wait until at least ``count`` connections are open and were sent their ``hello``.

        Args:
            count: how many open connections to wait for.
            timeout: the longest wait, in seconds.

        Returns:
            The open connections, oldest first.

        Raises:
            TimeoutError: fewer were open when ``timeout`` passed.
            RuntimeError: the server was stopped.
        """

        def ready() -> list[ServerConnection] | None:
            return list(self._table.open) if len(self._table.open) >= count else None

        return self._wait(
            ready,
            timeout,
            lambda: (
                f"{count} open connection(s); {len(self._table.open)} open, {len(self._table.all)} ever accepted, "
                f"{self._web_api.open_calls} apps.connections.open call(s)"
            ),
        )

    def wait_for_new_connection(self, after: int, timeout: float = 5.0) -> ServerConnection:
        """Wait for the connection accepted after the first ``after`` ones.

        Typically ``before = len(server.all_connections)``, then some action, then
        ``server.wait_for_new_connection(before)``.

        Args:
            after: how many connections had been accepted before.
            timeout: the longest wait, in seconds.

        Returns:
            ``all_connections[after]``, once its ``hello`` was sent.

        Raises:
            TimeoutError: no such connection within ``timeout``.
            RuntimeError: the server was stopped.
        """

        def ready() -> ServerConnection | None:
            return self._table.all[after] if len(self._table.all) > after else None

        return self._wait(
            ready,
            timeout,
            lambda: (
                f"connection #{after + 1}; {len(self._table.all)} ever accepted, "
                f"{self._web_api.open_calls} apps.connections.open call(s)"
            ),
        )

    @property
    def api_calls(self) -> list[ApiCall]:
        """Every Web API call received, oldest first (a copy)."""
        with self._lock:
            return list(self._web_api.calls)

    @property
    def open_calls(self) -> int:
        """How many ``apps.connections.open`` calls were received, answered ok or not."""
        return self._web_api.open_calls

    def wait_for_api_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[ApiCall]:
        """Wait until at least ``count`` calls of Web API ``method`` were received.

        Args:
            method: a method name such as ``"chat.postMessage"``.
            count: how many calls to wait for.
            timeout: the longest wait, in seconds.

        Returns:
            Every call of ``method`` so far, oldest first.

        Raises:
            TimeoutError: fewer calls arrived within ``timeout``.
            RuntimeError: the server was stopped.
        """

        def calls() -> list[ApiCall]:
            return [call for call in self._web_api.calls if call.method == method]

        def ready() -> list[ApiCall] | None:
            so_far = calls()
            return so_far if len(so_far) >= count else None

        return self._wait(ready, timeout, lambda: f"{count} {method} call(s); got {len(calls())}")

    @property
    def acks(self) -> list[Ack]:
        """Every ack received, in arrival order (a copy)."""
        with self._lock:
            return list(self._book.acks)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every text message received from clients, acks included, in arrival order (a copy).

        Binary messages are not recorded (they are ignored, logged at DEBUG).
        """
        with self._lock:
            return list(self._book.messages)

    def wait_for_acks(
        self, count: int | None = None, *, envelope_ids: Iterable[str] | None = None, timeout: float = 5.0
    ) -> list[Ack]:
        """Wait for acks: at least ``count`` in all, and/or one for each of ``envelope_ids``.

        With neither argument, waits for one ack.

        Args:
            count: how many acks (any envelope) to wait for.
            envelope_ids: ids that must each have at least one ack.
            timeout: the longest wait, in seconds.

        Returns:
            With ``envelope_ids``: the first ack of each listed id, in the listed order.
            Otherwise: every ack received so far.

        Raises:
            TimeoutError: not all arrived within ``timeout``; the message lists what is missing.
            RuntimeError: the server was stopped.
        """
        if count is None and envelope_ids is None:
            count = 1
        ids = list(envelope_ids) if envelope_ids is not None else None
        missing = set(ids or ())
        scanned = 0

        def ready() -> list[Ack] | None:
            nonlocal scanned
            acks = self._book.acks
            if missing:
                for index in range(scanned, len(acks)):
                    missing.discard(acks[index].envelope_id)
                scanned = len(acks)
                if missing:
                    return None
            if count is not None and len(acks) < count:
                return None
            if ids is not None:
                return [self._book.first_ack[envelope_id] for envelope_id in ids]
            return list(acks)

        def describe() -> str:
            parts = []
            if count is not None:
                parts.append(f"{count} ack(s), got {len(self._book.acks)}")
            if missing:
                shown = sorted(missing)[:10]
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                parts.append(f"acks for {len(missing)} envelope(s) still missing: {', '.join(shown)}{more}")
            return "; ".join(parts) + f" ({len(self._table.open)} open connection(s))"

        return self._wait(ready, timeout, describe)

    def envelope(self, envelope_id: str) -> EnvelopeRecord:
        """A snapshot of the deliveries and acks of ``envelope_id``.

        Raises:
            KeyError: that id was never pushed.
        """
        with self._lock:
            return self._book.snapshot(envelope_id)

    def unacked(self) -> list[str]:
        """Ids of the envelopes pushed and never acked, in push order."""
        with self._lock:
            return self._book.unacked()

    def duplicate_acks(self) -> list[Ack]:
        """Acks that arrived when no delivery of their envelope was waiting for an ack.

        An ack settles every pending delivery of its id, so an envelope redelivered before
        its first ack arrived and then acked twice gives one duplicate. Acks for ids that
        were never pushed are duplicates too.
        """
        with self._lock:
            return list(self._book.duplicates)

    def forget(self) -> Forgotten:
        """Drop what the server recorded of settled envelopes, so that a long run does not grow it.

        Every record is kept until this is called: each delivery and ack of each envelope,
        and the lists :attr:`acks`, :attr:`messages` and :meth:`duplicate_acks` (a few KB per
        envelope with the message texts). This drops the records of the envelopes acked with
        no delivery waiting for an ack, and empties the three lists; unacked envelopes (and
        their redeliveries) are kept, and an ack that comes later for a forgotten envelope
        counts as a duplicate (:meth:`duplicate_acks`). Counts in :meth:`wait_for_acks` start
        again from zero: do not call it while a thread waits there. Connections
        (:attr:`all_connections`) and Web API calls are kept (a few per connection).

        Returns:
            how much was dropped (the benchmarks sum it up).
        """
        with self._lock:
            return self._book.forget()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` is true, re-checking whenever the server records something.

        The server records something when a connection opens or closes, a message, ping,
        pong or close frame arrives, or a Web API call is made. ``predicate`` runs with the
        server's lock held (reentrant: it may call the server's queries, such as
        :meth:`envelope`); it must be quick.

        Raises:
            TimeoutError: still false after ``timeout`` seconds (the message names ``what``).
            RuntimeError: the server was stopped.
        """
        self._wait(lambda: True if predicate() else None, timeout, lambda: what)

    def _wait(self, ready: Callable[[], _T | None], timeout: float, describe: Callable[[], str]) -> _T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = ready()
                if result is not None:
                    return result
                if self._stopping:
                    raise RuntimeError(f"the server was stopped while waiting for {describe()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:g} s waiting for {describe()}")
                self._cond.wait(remaining)
