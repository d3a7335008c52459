"""A TCP relay that delays and "loses" traffic like ``tc netem``, in userspace (tests/test_netns.py, benchmarks).

``tc qdisc ... netem`` needs the kernel's ``sch_netem``, which the project's machines (and CI's)
lack, so the delay and the loss of the replicas' link to Slack come from this relay instead:

* **delay**: every chunk read from one side is written to the other ``delay`` seconds later
  (50 ms by default), in order;
* **loss**, the way TCP sees it: TCP retransmits a lost segment, so what the application
  sees of a loss is a chunk held back by a retransmission timeout. With probability ``loss``
  (1 %) a chunk is held ``loss_delay`` seconds more (200 ms, Linux's minimum RTO), and the
  chunks after it wait behind it (head-of-line blocking), as on a TCP stream;
* **rate** (optional): each direction reads at most ``rate`` bytes a second, in small reads, so a
  sender faster than that fills its socket's buffer and its writes block, yet go on: a peer that
  reads slowly, not one that stopped;
* **a stall** (:meth:`Relay.stall`): every relayed connection stays open but nothing more passes,
  in either direction, until :meth:`Relay.resume`: a peer that accepted a connection and then
  stopped answering on it (a broker or a Redis that hangs);
* **a dead peer is noticed**: both sockets of a relayed connection have ``TCP_USER_TIMEOUT``
  (``user_timeout`` seconds), so when the far side's link goes down (a partition: ``ip link set
  ... down``), data written to it and never acknowledged fails that socket, and the relay
  closes the other one. That is what Slack's side of a half-open connection does eventually;
  here the local server then stops delivering on it and redelivers elsewhere.

Each relayed connection has four threads (``netem-<n>-<direction>-read`` / ``-write``); the
relay's accept loop is one more. :meth:`Relay.close` aborts every connection and joins them all.
"""

from __future__ import annotations

import collections
import random
import socket
import threading
import time
from typing import Callable, Optional

__all__ = ["Relay"]

#: A chunk on its way: the monotonic time (seconds) it is due, and its bytes (b"" for the reader's EOF).
_Chunk = tuple[float, bytes]


class _Direction:
    """One direction of a relayed connection: a reader thread queues chunks, a writer thread writes them when due."""

    def __init__(self, pipe: _Pipe, name: str, src: socket.socket, dst: socket.socket) -> None:
        self._pipe = pipe
        self._src = src
        self._dst = dst
        self._queue: collections.deque[_Chunk] = collections.deque()  # guarded by _cond
        self._cond = threading.Condition()  # a chunk was queued, or the pipe is aborted
        self._last_due = 0.0  # guarded by _cond: chunks stay in order
        self.threads = [
            threading.Thread(target=self._ended_after, args=(self._read,), name=f"{name}-read", daemon=True),
            threading.Thread(target=self._ended_after, args=(self._write,), name=f"{name}-write", daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _ended_after(self, run: Callable[[], None]) -> None:
        try:
            run()
        finally:
            self._pipe.ended()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _read(self) -> None:
        relay = self._pipe.relay
        size = 65536 if relay.rate is None else max(1, min(65536, int(relay.rate / 100)))  # ~100 reads a second
        paced_until = time.monotonic()
        while True:
            try:
                data = self._src.recv(size)
            except OSError:
                self._pipe.abort()  # a reset, or TCP_USER_TIMEOUT on a partitioned link
                return
            if relay.rate is not None and data:  # the next read waits its turn
                paced_until = max(paced_until, time.monotonic()) + len(data) / relay.rate
                with self._cond:
                    while not self._pipe.aborted and time.monotonic() < paced_until:
                        self._cond.wait(paced_until - time.monotonic())
            due = time.monotonic() + relay.delay
            if data and relay.lost():
                due += relay.loss_delay
            with self._cond:
                due = self._last_due = max(due, self._last_due)
                self._queue.append((due, data))
                self._cond.notify_all()
            if not data:
                return

    def _write(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._pipe.aborted:
                        return
                    if self._queue and not self._pipe.relay.stalled:
                        due, data = self._queue[0]
                        wait = due - time.monotonic()
                        if wait <= 0:
                            self._queue.popleft()
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
            try:
                if data:
                    self._dst.sendall(data)
                else:
                    self._dst.shutdown(socket.SHUT_WR)  # pass the EOF on: a half-close
                    return
            except OSError:
                self._pipe.abort()
                return


class _Pipe:
    """One relayed connection: a downstream socket (the client) and an upstream one (the server).

    The last of its four threads to end closes both sockets, so that no thread ever uses a
    file descriptor that was closed (and perhaps reused) under it; :meth:`abort` only shuts
    the sockets down, which wakes every thread blocked on them.
    """

    def __init__(self, relay: Relay, number: int, down: socket.socket, up: socket.socket) -> None:
        self.relay = relay
        self.down = down
        self.up = up
        self.aborted = False  # guarded by _lock
        self._running = 4  # guarded by _lock: threads not yet ended
        self._lock = threading.Lock()
        self.directions = [
            _Direction(self, f"netem-{number}-up", down, up),
            _Direction(self, f"netem-{number}-down", up, down),
        ]

    def start(self) -> None:
        for direction in self.directions:
            direction.start()

    def ended(self) -> None:
        """One of the four threads ends; the last one closes both sockets."""
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self.down.close()
            self.up.close()

    def abort(self) -> None:
        """Shut both sockets down at once (the other side then sees its connection end); idempotent."""
        with self._lock:
            if self.aborted:
                return
            self.aborted = True
        for direction in self.directions:
            direction.wake()
        for sock in (self.down, self.up):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv() or sendall()
            except OSError:
                pass

    def join(self, deadline: float) -> None:
        for direction in self.directions:
            for thread in direction.threads:
                thread.join(max(0.0, deadline - time.monotonic()))


class Relay:
    """Relay TCP connections from ``host`` (an ephemeral port) to a target, with delay and emulated loss.

    Args:
        host: the address to listen on.
        delay: seconds each chunk is held, in each direction.
        loss: the probability that a chunk is "lost" and held ``loss_delay`` seconds more.
        loss_delay: seconds a lost chunk waits for its retransmission.
        user_timeout: seconds of unacknowledged data after which a socket fails (``TCP_USER_TIMEOUT``).
        rate: bytes a second read from each side at most, or None (as fast as it comes).
        seed: the seed of the loss draws (``None``: unpredictable).

    Attributes:
        address: ``(host, port)`` it listens on, bound at construction (before :meth:`start`).
        chunks: chunks relayed so far (both directions).
        held: chunks of those held back as lost.

    Thread-safe. :meth:`close` aborts every relayed connection and joins every thread.
    """

    def __init__(
        self,
        host: str,
        *,
        delay: float = 0.05,
        loss: float = 0.01,
        loss_delay: float = 0.2,
        user_timeout: float = 3.0,
        rate: Optional[float] = None,
        seed: Optional[int] = None,
    ) -> None:
        self.delay = delay
        self.rate = rate
        self.loss = loss
        self.loss_delay = loss_delay
        self.user_timeout = user_timeout
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # guards everything below, and _random
        self.chunks = 0
        self.held = 0
        self._pipes: list[_Pipe] = []
        self._clients: dict[tuple[str, int], str] = {}  # upstream local address -> the client's host
        self._closed = False
        self.stalled = False  #: nothing passes while True (:meth:`stall`); read unlocked by the writers
        self._target: tuple[str, int] | None = None
        self._listener = socket.create_server((host, 0), backlog=64)
        self.address: tuple[str, int] = (host, int(self._listener.getsockname()[1]))
        self._accepter = threading.Thread(target=self._accept, name="netem-accept", daemon=True)

    def start(self, target: tuple[str, int]) -> Relay:
        """Relay every connection accepted from now on to ``target`` (``(host, port)``); returns ``self``."""
        self._target = target
        self._accepter.start()
        return self

    def lost(self) -> bool:
        """Draw whether the next chunk is lost (and count it)."""
        with self._lock:
            self.chunks += 1
            if self._random.random() < self.loss:
                self.held += 1
                return True
            return False

    def stall(self) -> None:
        """Stop passing anything on, in both directions, on every connection (open and future) until :meth:`resume`."""
        self.stalled = True

    def resume(self) -> None:
        """Pass on again what was held by :meth:`stall`, in order."""
        self.stalled = False
        with self._lock:
            pipes = list(self._pipes)
        for pipe in pipes:
            for direction in pipe.directions:
                direction.wake()

    def client_of(self, server_side_peer: tuple[str, int]) -> Optional[str]:
        """The host of the client whose connection reaches the server from ``server_side_peer``.

        The server sees the relay's address as every connection's peer; pass that peer (a
        :class:`~slack_socket_mode.testing.ServerConnection`'s ``peer``) to learn which client it is.
        """
        with self._lock:
            return self._clients.get((server_side_peer[0], int(server_side_peer[1])))

    def _accept(self) -> None:
        assert self._target is not None
        number = 0
        while True:
            try:
                down, peer = self._listener.accept()
            except OSError:
                return  # closed
            number += 1
            try:
                up = socket.create_connection(self._target, timeout=5.0)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            for sock in (down, up):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.user_timeout * 1000))
            pipe = _Pipe(self, number, down, up)
            local = up.getsockname()
            with self._lock:
                if self._closed:
                    down.close()
                    up.close()
                    return
                self._clients[(local[0], int(local[1]))] = str(peer[0])
                self._pipes.append(pipe)
                pipe.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, abort every relayed connection and join every thread (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            pipes = list(self._pipes)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self._listener.close()
        if self._accepter.is_alive():
            self._accepter.join(max(0.0, deadline - time.monotonic()))
        for pipe in pipes:
            pipe.abort()
        for pipe in pipes:
            pipe.join(deadline)
