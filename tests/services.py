"""Real services for tests (Redis, RabbitMQ, a redis-server of our own): found, or skipped with a reason.

Each service is found through an environment variable with a default:
``SLACK_SOCKET_MODE_REDIS_URL`` (``redis://127.0.0.1:6379``), ``SLACK_SOCKET_MODE_AMQP_URL``
(``amqp://guest:guest@127.0.0.1:5672//``) and ``SLACK_SOCKET_MODE_POSTGRES_URL``
(``postgresql://postgres@127.0.0.1:5432/test``: the database the tests connect to in order to
create and drop one of their own). When one is missing the test is skipped with a
one-line reason, unless ``SLACK_SOCKET_MODE_REQUIRE_SERVICES=1`` (CI sets it), which makes
the same situation a failure. The same holds for network namespaces (:func:`require_netns`: root and
``ip netns``, for tests/test_netns.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import benchmarks.redis_server
import pytest

REDIS_URL = os.environ.get("SLACK_SOCKET_MODE_REDIS_URL", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("SLACK_SOCKET_MODE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_URL = os.environ.get("SLACK_SOCKET_MODE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: The Redis database number the tests use (not the default 0 an app on this machine may use).
REDIS_DB = 13


def missing(reason: str) -> None:
    """Skip the test, or fail it when CI requires the services."""
    if os.environ.get("SLACK_SOCKET_MODE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (SLACK_SOCKET_MODE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def require_module(name: str, extra: str) -> None:
    """Skip (or, in CI, fail) the whole test module when ``name`` cannot be imported."""
    try:
        __import__(name)
    except ImportError:
        if os.environ.get("SLACK_SOCKET_MODE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{name} is not installed ({extra}; SLACK_SOCKET_MODE_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(f"{name} is not installed ({extra})", allow_module_level=True)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1.0):
            return True
    except OSError:
        return False


def redis_url(db: int = REDIS_DB) -> str:
    """The tests' Redis URL (their own database number); skips if redis-py or Redis is missing."""
    if not _reachable(REDIS_URL, 6379):
        missing(f"no Redis at {REDIS_URL} (set SLACK_SOCKET_MODE_REDIS_URL)")
    return urlsplit(REDIS_URL)._replace(path=f"/{db}").geturl()


def amqp_url() -> str:
    """The tests' RabbitMQ URL; skips if RabbitMQ is missing."""
    if not _reachable(AMQP_URL, 5672):
        missing(f"no RabbitMQ at {AMQP_URL} (set SLACK_SOCKET_MODE_AMQP_URL)")
    return AMQP_URL


def postgres_url() -> str:
    """The tests' PostgreSQL URL (a database to connect to, not to write in); skips if PostgreSQL is missing."""
    if not _reachable(POSTGRES_URL, 5432):
        missing(f"no PostgreSQL at {POSTGRES_URL} (set SLACK_SOCKET_MODE_POSTGRES_URL)")
    return POSTGRES_URL


@contextlib.contextmanager
def own_postgres_database(prefix: str = "ssm_test_") -> Iterator[str]:
    """Create a PostgreSQL database of the test's own (psycopg 3); drop it, its connections too, afterwards."""
    import psycopg

    url = postgres_url()
    name = unique_namespace(prefix)
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        missing(f"cannot connect to PostgreSQL at {POSTGRES_URL}: {' '.join(str(e).split())}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def unique_namespace(prefix: str = "t") -> str:
    """A namespace no other test (or earlier run) uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def delete_keys(url: str, pattern: str) -> None:
    """Delete the keys a test left (by pattern) so runs do not fill the tests' database."""
    import redis

    client: Any = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def require_netns() -> None:
    """Skip (or, in CI, fail) unless this process can make network namespaces (root, ``ip netns``).

    It creates and deletes a probe namespace: being root is not enough in a container that
    lacks the capability.
    """
    ip = shutil.which("ip")
    if ip is None:
        missing("network namespaces: the ip command (iproute2) is not on PATH")
    if os.geteuid() != 0:
        missing("network namespaces need root (ip netns)")
    probe = f"ssm-probe-{os.getpid()}"
    made = subprocess.run([str(ip), "netns", "add", probe], capture_output=True, text=True, timeout=10, check=False)
    if made.returncode != 0:
        missing(f"ip netns add failed: {made.stderr.strip() or made.returncode}")
    subprocess.run([str(ip), "netns", "delete", probe], capture_output=True, timeout=10, check=False)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RedisServer(benchmarks.redis_server.RedisServer):
    """``benchmarks.redis_server.RedisServer``, skipped (or failed in CI) when there is no ``redis-server``."""

    def __init__(self, tmp: str, host: str = "127.0.0.1") -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server is not on PATH")
        super().__init__(tmp, host)


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[RedisServer]:
    server = RedisServer(str(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.stop()
