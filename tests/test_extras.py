"""Each extra works from a fresh venv with only what it installs: ``pip install "slack-socket-mode[<extra>]"``.

The project's wheel is built once; each extra gets a venv of its own (``python -m venv``, then
a normal ``pip install "<wheel>[<extra>]"``, dependencies resolved by pip as a user's would be;
pip's cache makes it quick), made concurrently, and one small script then uses the extra for
real in that venv: the Celery extra publishes to real Redis and RabbitMQ brokers (with publisher
confirms) from a Socket Mode client and a ``celery worker`` of the venv runs the task. A venv
made from the test environment could not catch a missing dependency: the test environment has
every extra at once (the Celery extra once lacked ``packaging``, which kombu's Redis transport
imports and the ``test`` extra pulled in through another package).

When pip cannot reach the package registry the tests skip with the reason, unless
``SLACK_SOCKET_MODE_REQUIRE_SERVICES=1`` (CI), which makes that a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from .services import amqp_url, missing, redis_url, unique_namespace

ROOT = Path(__file__).resolve().parent.parent

# The first test waits for the wheel and the venvs, made 3 at a time (about a minute on 2 cores).
pytestmark = pytest.mark.timeout(600)

#: What each venv installs: the extra under test (with ``testing`` where the script needs the local server).
VENVS = {
    "testing": "testing",
    "socks": "socks,testing",
    "bolt": "bolt,testing",
    "async": "async,testing",
    "bolt-async": "bolt,async,testing",
    "redis": "redis",
    "celery": "celery,testing",
    "prometheus": "prometheus",
    "bench": "bench",
    "fast": "fast",
    "django": "django,testing",
}

#: pip's words for a registry it could not reach (no network, DNS, a proxy refusing).
_UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
    "Could not fetch URL",
)


class Venvs:
    """The project's wheel, built once, and one venv per entry of :data:`VENVS`, made concurrently."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="test-extras-venv")
        self._wheel = self._pool.submit(self._build_wheel)
        self._venvs: dict[str, Future[Path]] = {name: self._pool.submit(self._make, name) for name in VENVS}

    def _build_wheel(self) -> Path:
        out = self.base / "wheel"
        self._pip(sys.executable, "wheel", "--no-deps", "-w", str(out), str(ROOT))
        [wheel] = out.glob("slack_socket_mode-*.whl")
        return wheel

    def _make(self, name: str) -> Path:
        venv = self.base / name
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        python = venv / "bin" / "python"
        wheel = self._wheel.result()
        self._pip(str(python), "install", f"{wheel}[{VENVS[name]}]")
        return python

    @staticmethod
    def _pip(python: str, *args: str) -> None:
        command = [python, "-m", "pip", "-q", "--disable-pip-version-check", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            output = done.stdout + done.stderr
            if any(words in output for words in _UNREACHABLE):
                raise RegistryUnreachable(output.strip().splitlines()[-1])
            raise AssertionError(f"{' '.join(command)} failed ({done.returncode}):\n{output[-3000:]}")

    def python(self, name: str) -> Path:
        """The venv's interpreter (waits for it to be made); skips (or fails, in CI) without a registry."""
        try:
            return self._venvs[name].result()
        except RegistryUnreachable as e:
            missing(f"pip cannot reach the package registry: {e}")
            raise  # not reached: missing() skips or fails

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class RegistryUnreachable(Exception):
    """pip could not reach the package registry."""


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venvs]:
    made = Venvs(tmp_path_factory.mktemp("extras"))
    try:
        yield made
    finally:
        made.close()


def run(python: Path, script: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run ``script`` with the venv's interpreter, in a directory of its own (not the repository, whose
    ``src`` is not on its path); returns its stdout, and fails with its output if it exits non-zero."""
    where = cwd or python.parent.parent
    path = where / "extra_check.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [str(python), str(path), *args],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(where), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"the {python.parent.parent.name} check failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


# A client of the venv acks an envelope pushed by the local server (both from the installed wheel).
ACK_ONE = """
    import sys
    from slack_sdk.web import WebClient
    from slack_socket_mode import SocketModeClient
    from slack_socket_mode.testing import SocketModeServer

    with SocketModeServer() as server:
        client = SocketModeClient("xapp-1-A1-1-x", web_client=WebClient(base_url=server.api_url), PROXY)
        client.socket_mode_request_listeners.append(
            lambda c, r: c.send_socket_mode_response({"envelope_id": r.envelope_id})
        )
        client.connect(10)
        eid = server.push(server.make_envelope("events_api", {"event_id": "Ev1"}))
        server.wait_for_acks(envelope_ids=[eid], timeout=10)
        client.close()
    print("acked", eid)
"""


def test_the_testing_extra_runs_a_client_against_the_local_server(venvs: Venvs) -> None:
    assert "acked" in run(venvs.python("testing"), ACK_ONE.replace(", PROXY", ""))


# A SOCKS5 proxy of a few lines (no authentication, CONNECT only), for the client's WebSocket.
SOCKS = """
    import socket, threading

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(conn):
        conn.recv(262)  # greeting
        conn.sendall(b"\\x05\\x00")  # no authentication
        head = conn.recv(4)
        if head[3] == 1:
            host = socket.inet_ntoa(conn.recv(4))
        else:
            host = conn.recv(conn.recv(1)[0]).decode()
        port = int.from_bytes(conn.recv(2), "big")
        up = socket.create_connection((host, port), timeout=5)
        up.settimeout(None)
        USED.append((host, port))
        conn.sendall(b"\\x05\\x00\\x00\\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        pipe(up, conn)

    USED = []
    listener = socket.create_server(("127.0.0.1", 0))
    PORT = listener.getsockname()[1]
    threading.Thread(
        target=lambda: [threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
                        for _ in iter(int, 1)],
        daemon=True,
    ).start()
"""


def test_the_socks_extra_connects_the_websocket_through_a_socks5_proxy(venvs: Venvs) -> None:
    script = SOCKS + ACK_ONE.replace("PROXY", 'proxy=f"socks5://127.0.0.1:{PORT}"') + "    assert USED, 'no CONNECT'\n"
    assert "acked" in run(venvs.python("socks"), script)


def test_the_bolt_extra_runs_a_bolt_app(venvs: Venvs) -> None:
    script = """
        from slack_bolt import App
        from slack_sdk.web import WebClient
        from slack_socket_mode.bolt import SocketModeHandler
        from slack_socket_mode.testing import SocketModeServer

        with SocketModeServer() as server:
            app = App(
                token="xoxb-1-2-x", signing_secret="unused",
                client=WebClient(token="xoxb-1-2-x", base_url=server.api_url), token_verification_enabled=False,
            )
            app.command("/hello")(lambda ack: ack("hi"))
            handler = SocketModeHandler(app, "xapp-1-A1-1-x", web_client=WebClient(base_url=server.api_url))
            handler.connect()
            eid = server.push(server.make_envelope("slash_commands", {"command": "/hello"}))
            [ack] = server.wait_for_acks(envelope_ids=[eid], timeout=10)
            handler.close()
        assert ack.payload == {"text": "hi"}, ack.payload
        print("acked", eid)
    """
    assert "acked" in run(venvs.python("bolt"), script)


def test_the_django_extra_releases_connections_and_has_the_command(venvs: Venvs) -> None:
    """Django from the extra alone (SQLite: the driver is the project's choice): the app's hook, the command."""
    script = """
        import threading
        import django
        from django.conf import settings

        settings.configure(
            INSTALLED_APPS=["slack_socket_mode.django"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "extra.sqlite3"}},
        )
        django.setup()
        from django.core.management import CommandError, call_command
        from django.db import connection
        from slack_sdk.web import WebClient
        from slack_socket_mode import SocketModeClient
        from slack_socket_mode.testing import SocketModeServer

        held = []

        def listener(client, request):
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            held.append(connection)  # this thread's wrapper, to look at once the run completed
            client.send_socket_mode_response({"envelope_id": request.envelope_id})

        done = threading.Event()
        with SocketModeServer() as server:
            client = SocketModeClient("xapp-1-A1-1-x", web_client=WebClient(base_url=server.api_url))
            client.listener_hooks.insert(0, type("Done", (), {"complete": lambda self, r, e: done.set()})())  # last
            client.socket_mode_request_listeners.append(listener)
            client.connect(10)
            eid = server.push(server.make_envelope("events_api", {"event_id": "Ev1"}))
            server.wait_for_acks(envelope_ids=[eid], timeout=10)
            assert done.wait(10)
            client.close()
        assert held and held[0].connection is None, "the listener thread's connection was not closed"
        try:
            call_command("socketmode", "no_colon")
        except CommandError as e:
            assert e.returncode == 2, e.returncode
        else:
            raise AssertionError("a bad APP was accepted")
        print("released", eid)
    """
    assert "released" in run(venvs.python("django"), script)


def test_the_async_extra_runs_the_asyncio_client(venvs: Venvs) -> None:
    script = """
        import asyncio
        from slack_socket_mode.aio import SocketModeClient
        from slack_socket_mode.testing import SocketModeServer

        async def main(server):
            # no web_client: the client builds slack_sdk's AsyncWebClient, which needs aiohttp
            client = SocketModeClient("xapp-1-A1-1-x")
            client.web_client.base_url = server.api_url
            client.wss_uri = server.new_connection_url()

            async def ack(client, request):
                await client.send_socket_mode_response({"envelope_id": request.envelope_id})

            client.socket_mode_request_listeners.append(ack)
            await client.connect(10)
            eid = server.push(server.make_envelope("events_api", {"event_id": "Ev1"}))
            await asyncio.to_thread(server.wait_for_acks, envelope_ids=[eid], timeout=10)
            await client.close()
            return eid

        with SocketModeServer() as server:
            print("acked", asyncio.run(main(server)))
    """
    assert "acked" in run(venvs.python("async"), script)


def test_the_bolt_and_async_extras_run_an_async_bolt_app(venvs: Venvs) -> None:
    script = """
        import asyncio
        from slack_bolt.async_app import AsyncApp
        from slack_sdk.web.async_client import AsyncWebClient
        from slack_socket_mode.bolt import AsyncSocketModeHandler
        from slack_socket_mode.testing import SocketModeServer

        async def main(server):
            app = AsyncApp(
                token="xoxb-1-2-x", signing_secret="unused",
                client=AsyncWebClient(token="xoxb-1-2-x", base_url=server.api_url),
            )

            @app.command("/hello")
            async def hello(ack):
                await ack("hi")

            handler = AsyncSocketModeHandler(app, "xapp-1-A1-1-x")
            await handler.connect_async()
            eid = server.push(server.make_envelope("slash_commands", {"command": "/hello"}))
            [ack] = await asyncio.to_thread(server.wait_for_acks, envelope_ids=[eid], timeout=10)
            await handler.close_async()
            assert ack.payload == {"text": "hi"}, ack.payload
            return eid

        with SocketModeServer() as server:
            print("acked", asyncio.run(main(server)))
    """
    assert "acked" in run(venvs.python("bolt-async"), script)


def test_the_redis_extra_claims_and_records_in_a_redis_ledger(venvs: Venvs) -> None:
    url = redis_url()
    namespace = unique_namespace("extras")
    script = """
        import sys
        from slack_socket_mode.redis import RedisLedger
        from slack_socket_mode.shared import Claim

        store = RedisLedger(sys.argv[1], namespace=sys.argv[2], lease=5.0, done_ttl=30.0)
        assert store.claim(["envelope:e1"], "me").outcome is Claim.CLAIMED
        assert store.claim(["envelope:e1"], "other").outcome is Claim.HELD
        store.done(["envelope:e1"], "ack", "me")
        assert store.claim(["envelope:e1"], "other").outcome is Claim.DONE
        store.redis.delete(*store.redis.keys(f"slack_socket_mode:{sys.argv[2]}:*"))
        print("ok")
    """
    assert "ok" in run(venvs.python("redis"), script, url, namespace)


# The hand-off's app, for both the client (publisher) and a `celery worker` of the venv.
CELERY_APP = """
    import os
    from pathlib import Path
    from celery import Celery
    from kombu import Queue

    BROKER, QUEUE, OUT = os.environ["EXTRAS_BROKER"], os.environ["EXTRAS_QUEUE"], Path(os.environ["EXTRAS_OUT"])
    app = Celery("tasks", broker=BROKER)
    app.conf.update(
        task_queues=[Queue(QUEUE, expires=60.0)] if BROKER.startswith("amqp") else [Queue(QUEUE)],
        task_default_queue=QUEUE,
        task_acks_late=True,
        broker_connection_timeout=2.0,
        broker_connection_retry_on_startup=True,
        broker_transport_options=(
            {"confirm_publish": True} if BROKER.startswith("amqp") else {"socket_timeout": 5.0}
        ),
    )

    @app.task(name="tasks.handle")
    def handle(envelope):
        OUT.write_text(envelope["envelope_id"])
"""

PUBLISH_AND_RUN = """
    import subprocess, sys, time
    from slack_sdk.web import WebClient
    from slack_socket_mode import SocketModeClient
    from slack_socket_mode.celery import CeleryHandoff
    from slack_socket_mode.testing import SocketModeServer
    from tasks import OUT, QUEUE, app

    handoff = CeleryHandoff(app, "tasks.handle")
    with SocketModeServer() as server:
        client = SocketModeClient("xapp-1-A1-1-x", web_client=WebClient(base_url=server.api_url))
        client.socket_mode_request_listeners.append(handoff)
        client.connect(10)
        eid = server.push(server.make_envelope("events_api", {"event_id": "Ev1"}))
        server.wait_for_acks(envelope_ids=[eid], timeout=10)  # acked: the broker has the task
        client.close()
        handoff.close()
    assert (handoff.published, handoff.failed) == (1, 0), (handoff.published, handoff.failed)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo", "-Q", QUEUE,
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"{QUEUE}@%h"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (OUT.exists() and OUT.read_text() == eid):  # the worker's process writes it
            assert worker.poll() is None, "the worker died: " + worker.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the worker never ran the task"
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(30)
    print("ran", eid)
"""


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_the_celery_extra_hands_off_to_a_worker_on_each_documented_broker(venvs: Venvs, broker: str) -> None:
    url = redis_url(db=14) if broker == "redis" else amqp_url()
    python = venvs.python("celery")
    where = python.parent.parent / broker
    where.mkdir(exist_ok=True)
    (where / "tasks.py").write_text(textwrap.dedent(CELERY_APP))
    queue = f"slack_socket_mode_test_{unique_namespace('extras')}"
    env = {"EXTRAS_BROKER": url, "EXTRAS_QUEUE": queue, "EXTRAS_OUT": str(where / "out")}
    assert "ran" in run(python, PUBLISH_AND_RUN, env=env, cwd=where)


def test_the_prometheus_extra_exports_the_clients_stats(venvs: Venvs) -> None:
    script = """
        from prometheus_client import CollectorRegistry, Gauge, generate_latest
        from slack_socket_mode import SocketModeClient

        client = SocketModeClient("xapp-1-A1-1-x")
        registry = CollectorRegistry()
        gauge = Gauge("slack_envelopes_received", "envelopes received", registry=registry)
        gauge.set(client.stats().envelopes_received)
        text = generate_latest(registry).decode()
        assert "slack_envelopes_received 0.0" in text, text
        client.close()
        print("ok")
    """
    assert "ok" in run(venvs.python("prometheus"), script)


def test_the_bench_extra_runs_slack_sdks_aiohttp_client_against_the_local_server(venvs: Venvs) -> None:
    script = """
        import asyncio
        from slack_sdk.socket_mode.aiohttp import SocketModeClient
        from slack_sdk.socket_mode.response import SocketModeResponse
        from slack_sdk.web.async_client import AsyncWebClient
        from slack_socket_mode.testing import SocketModeServer

        async def main(server):
            client = SocketModeClient("xapp-1-A1-1-x", web_client=AsyncWebClient(base_url=server.api_url))

            async def ack(client, request):
                await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

            client.socket_mode_request_listeners.append(ack)
            await client.connect()
            eid = server.push(server.make_envelope("events_api", {"event_id": "Ev1"}))
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: server.wait_for_acks(envelope_ids=[eid], timeout=10)
            )
            await client.close()
            return eid

        with SocketModeServer() as server:
            print("acked", asyncio.run(main(server)))
    """
    assert "acked" in run(venvs.python("bench"), script)


def test_the_fast_extra_decodes_with_orjson(venvs: Venvs) -> None:
    script = """
        from slack_socket_mode import messages

        assert messages.FAST_JSON, "orjson is not used"
        assert messages.decode_json('{"envelope_id": "e1", "n": [1, 2.5]}') == {"envelope_id": "e1", "n": [1, 2.5]}
        print("ok")
    """
    assert "ok" in run(venvs.python("fast"), script)
