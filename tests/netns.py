"""Hosts as Linux network namespaces joined by a bridge, with partitions (tests/test_netns.py; needs root).

The topology: a bridge in the root namespace with the gateway address ``10.213.<n>.1/24``,
and one namespace per host, each joined to the bridge by a veth pair and given
``10.213.<n>.<2 + i>``. Whatever the test serves on the gateway address (the local Slack
server, a relay, a Redis) is reachable from every host, and only from there: a host's
``127.0.0.1`` is its own. :meth:`Network.partition` sets both ends of a host's veth pair down,
which cuts the host off at the kernel level (its TCP connections become half-open, its new
ones fail with "Network is unreachable"); :meth:`Network.heal` sets them up again.

Names carry this process's id, so that parallel runs do not collide; :meth:`Network.close`
(also on ``with`` exit, even after a failure) deletes the namespaces, their veth pairs and the
bridge.
"""

from __future__ import annotations

import os
import subprocess
from types import TracebackType

__all__ = ["Network"]

_PREFIX = "10.213"


def ip(*args: str) -> str:
    """Run ``ip <args>``; returns its stdout. Raises RuntimeError with ip's message if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _free_subnet() -> int:
    """A third octet ``n`` such that no interface has an address in ``10.213.<n>.0/24``."""
    used = ip("-4", "-o", "addr", "show")
    start = os.getpid() % 250
    for step in range(250):
        n = (start + step) % 250 + 1
        if f" {_PREFIX}.{n}." not in used:
            return n
    raise RuntimeError(f"no free /24 in {_PREFIX}.0.0/16")


class Network:
    """A bridge and ``hosts`` network namespaces on it.

    Attributes:
        gateway: the bridge's address (root namespace), for servers the hosts reach.
        namespaces: each host's namespace name, for ``ip netns exec``.
        addresses: each host's address.

    Not thread-safe: one test drives it.

    Raises:
        RuntimeError: an ``ip`` command failed (whatever was made is deleted first).
    """

    def __init__(self, hosts: int) -> None:
        tag = str(os.getpid())
        self._bridge = f"ssm{tag}b"
        self._outer = [f"ssm{tag}h{i}" for i in range(hosts)]  # host ends, on the bridge
        self._inner = [f"ssm{tag}n{i}" for i in range(hosts)]  # ends inside the namespaces
        self.namespaces = [f"ssm-{tag}-{i}" for i in range(hosts)]
        self._made_bridge = False
        self._made: list[str] = []  # namespaces made so far
        try:
            n = _free_subnet()
            self.gateway = f"{_PREFIX}.{n}.1"
            self.addresses = [f"{_PREFIX}.{n}.{2 + i}" for i in range(hosts)]
            ip("link", "add", self._bridge, "type", "bridge")
            self._made_bridge = True
            ip("addr", "add", f"{self.gateway}/24", "dev", self._bridge)
            ip("link", "set", self._bridge, "up")
            for namespace, outer, inner, address in zip(self.namespaces, self._outer, self._inner, self.addresses):
                ip("netns", "add", namespace)
                self._made.append(namespace)
                ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                ip("link", "set", inner, "netns", namespace)
                ip("link", "set", outer, "master", self._bridge)
                ip("link", "set", outer, "up")
                ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inner)
                ip("-n", namespace, "link", "set", inner, "up")
                ip("-n", namespace, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def command(self, host: int, args: list[str]) -> list[str]:
        """``args`` run inside host ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[host], *args]

    def partition(self, host: int) -> None:
        """Cut host ``host`` off: both ends of its veth pair down."""
        ip("link", "set", self._outer[host], "down")
        ip("-n", self.namespaces[host], "link", "set", self._inner[host], "down")

    def heal(self, host: int) -> None:
        """Join host ``host`` again: both ends up (its address and route come back with the link)."""
        ip("-n", self.namespaces[host], "link", "set", self._inner[host], "up")
        ip("link", "set", self._outer[host], "up")

    def close(self) -> None:
        """Delete the namespaces (which deletes their veth pairs) and the bridge; idempotent."""
        errors = []
        for namespace in self._made:
            try:
                ip("netns", "delete", namespace)
            except RuntimeError as e:
                errors.append(str(e))
        self._made = []
        for outer in self._outer:  # gone with its peer, unless a failure left it behind
            subprocess.run(["ip", "link", "delete", outer], capture_output=True, timeout=10, check=False)
        if self._made_bridge:
            try:
                ip("link", "delete", self._bridge)
            except RuntimeError as e:
                errors.append(str(e))
            self._made_bridge = False
        if errors:
            raise RuntimeError("; ".join(errors))

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.close()
        except RuntimeError:
            if exc is None:
                raise  # else the test's own failure says more
