"""slack_socket_mode.django on a real Django project (tests/django_project) and a real PostgreSQL.

Each run creates a database of its own and drops it. What is checked in ``pg_stat_activity``:
listener threads leave no connection behind with ``CONN_MAX_AGE=0`` and keep one each with
``CONN_MAX_AGE=60``; a backend terminated between runs costs no envelope; Bolt's listener
threads release theirs too, without a second call on one thread; and ``manage.py socketmode``
runs a bot in a subprocess and closes with in-flight acks on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, ClientFactory, assert_acked_on_first_delivery, client_threads, timeout
from .services import own_postgres_database, postgres_url, require_module

require_module("django", "the django extra")
require_module("psycopg", "psycopg[binary], in the test extra")

import django  # noqa: E402 - after the checks above
import django.db  # noqa: E402
import psycopg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "tests" / "django_project" / "manage.py"


class Project:
    """The Django project, set up in this process on the test's own database."""

    def __init__(self, database: str) -> None:
        self.database = database

    def backends(self) -> list[int]:
        """The pids of the client backends connected to the test's database (not ours: we ask from another)."""
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchall()
        return sorted(row[0] for row in rows)

    def wait_backends(self, predicate: Callable[[list[int]], bool], what: str, seconds: float = 5.0) -> list[int]:
        """Look at ``pg_stat_activity`` until ``predicate`` holds (a server-side state: no event to wait on)."""
        end = time.monotonic() + timeout(seconds)
        while True:
            found = self.backends()
            if predicate(found):
                return found
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}; backends: {found}")
            time.sleep(0.02)

    def terminate_all(self) -> int:
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchall()
        return len(rows)

    def notes(self) -> dict[str, tuple[str, int]]:
        """``{envelope_id: (thread, backend_pid)}`` of every Note written (read without Django)."""
        with psycopg.connect(postgres_url(), autocommit=True, dbname=self.database) as conn:
            rows = conn.execute("SELECT envelope_id, thread, backend_pid FROM notes_note").fetchall()
        return {e: (t, p) for e, t, p in rows}

    @staticmethod
    def set_conn_max_age(seconds: int) -> None:
        """``CONN_MAX_AGE`` for the connections Django opens from now on (every thread's)."""
        django.db.connections.settings["default"]["CONN_MAX_AGE"] = seconds


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    from slack_socket_mode.django.connections import CLOSE_OLD_CONNECTIONS
    from slack_socket_mode.listeners import remove_default_hook

    with own_postgres_database() as database:
        os.environ["SLACK_SOCKET_MODE_DJANGO_DB"] = database
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_project.settings"
        try:
            django.setup()  # INSTALLED_APPS has slack_socket_mode.django: its hook goes to every new client
            from django.core.management import call_command

            call_command("migrate", run_syncdb=True, verbosity=0)
            django.db.connections.close_all()  # this thread's: only listener threads' connections are counted
            yield Project(database)
        finally:
            django.db.connections.close_all()
            remove_default_hook(CLOSE_OLD_CONNECTIONS)  # the other test modules' clients go without it
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
            os.environ.pop("SLACK_SOCKET_MODE_DJANGO_DB", None)


@pytest.fixture(autouse=True)
def no_notes(project: Project) -> None:
    """Each test starts with no Note and no connection of an earlier test's threads."""
    project.terminate_all()
    with psycopg.connect(postgres_url(), autocommit=True, dbname=project.database) as conn:
        conn.execute("TRUNCATE notes_note")


@pytest.fixture
def conn_max_age(project: Project) -> Iterator[Callable[[int], None]]:
    yield project.set_conn_max_age
    project.set_conn_max_age(0)


def burst(server: SocketModeServer, count: int) -> list[str]:
    ids = server.push_many([server.make_envelope() for _ in range(count)])
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(20))
    return ids


def test_listener_threads_leave_no_connection_behind_with_conn_max_age_0(
    project: Project, server: SocketModeServer, make_client: ClientFactory, conn_max_age: Callable[[int], None]
) -> None:
    from slack_socket_mode.django.connections import CLOSE_OLD_CONNECTIONS

    from .django_project import bots

    conn_max_age(0)
    client = make_client(concurrency=4)
    assert client.listener_hooks == [CLOSE_OLD_CONNECTIONS]  # from INSTALLED_APPS, nothing else to do
    client.socket_mode_request_listeners.append(bots.on_request)
    client.connect()
    ids = burst(server, 80)
    notes = project.notes()
    assert sorted(notes) == sorted(ids)
    project.wait_backends(lambda pids: pids == [], "no connection left by the listener threads")
    threads = {thread for thread, _ in notes.values()}
    alive = {t.name for t in client_threads()}
    assert threads & alive, (threads, alive)  # the threads that ran them still live: the hook closed them
    assert len({pid for _, pid in notes.values()}) == len(ids)  # a connection of its own for each run


def test_the_asyncio_clients_runs_release_the_connections_of_sync_to_async_with_conn_max_age_0(
    project: Project, server: SocketModeServer, conn_max_age: Callable[[int], None]
) -> None:
    """The asyncio client: listeners write through ``sync_to_async``, whose thread holds the connection;
    the hook closes it there (through ``sync_to_async`` too) once no run is under way. Without the
    hook, that thread keeps its connection (this failed with ``listener_hooks`` cleared)."""
    import asyncio

    from slack_sdk.web.async_client import AsyncWebClient

    from slack_socket_mode.aio import SocketModeClient as AsyncClient
    from slack_socket_mode.django.connections import CLOSE_OLD_CONNECTIONS

    from .django_project import bots

    conn_max_age(0)

    async def scenario() -> list[str]:
        client = AsyncClient(APP_TOKEN, web_client=AsyncWebClient(base_url=server.api_url))
        assert client.listener_hooks == [CLOSE_OLD_CONNECTIONS]
        client.socket_mode_request_listeners.append(bots.on_request_async)
        try:
            await client.connect()
            return await asyncio.to_thread(burst, server, 80)
        finally:
            await client.close()

    ids = asyncio.run(scenario())
    assert sorted(project.notes()) == sorted(ids)
    project.wait_backends(lambda pids: pids == [], "no connection left by sync_to_async's thread")


def test_without_the_hook_the_listener_threads_keep_their_connections(
    project: Project, server: SocketModeServer, make_client: ClientFactory, conn_max_age: Callable[[int], None]
) -> None:
    """The control: what the test above sees without the hook (it would fail)."""
    from .django_project import bots

    conn_max_age(0)
    client = make_client(concurrency=4)
    client.listener_hooks.clear()
    client.socket_mode_request_listeners.append(bots.on_request)
    client.connect()
    ids = burst(server, 40)
    assert sorted(project.notes()) == sorted(ids)
    left = project.backends()
    threads = {thread for thread, _ in project.notes().values()}
    assert 1 <= len(left) <= len(threads)  # one per listener thread, held for the thread's life
    client.close()
    project.terminate_all()


@pytest.mark.parametrize("max_age", [0, 60])
def test_conn_max_age_decides_whether_a_thread_reuses_its_connection(
    project: Project,
    server: SocketModeServer,
    make_client: ClientFactory,
    conn_max_age: Callable[[int], None],
    max_age: int,
) -> None:
    from .django_project import bots

    conn_max_age(max_age)
    client = make_client(concurrency=2, handoff_after=1.0)
    client.socket_mode_request_listeners.append(bots.on_request)
    client.connect()
    ids = []
    for _ in range(12):  # one at a time: each runs once its predecessor's hooks completed
        ids.append(server.push(server.make_envelope()))
        server.wait_for_acks(envelope_ids=ids[-1:])
    notes = project.notes()
    by_thread: dict[str, set[int]] = {}
    for envelope_id in ids:
        thread, pid = notes[envelope_id]
        by_thread.setdefault(thread, set()).add(pid)
    if max_age == 0:
        assert len({notes[e][1] for e in ids}) == len(ids)  # a fresh connection for each run
        project.wait_backends(lambda pids: pids == [], "no connection kept")
    else:
        assert all(len(pids) == 1 for pids in by_thread.values()), by_thread  # each thread reuses its own
        kept = project.backends()
        assert sorted(set().union(*by_thread.values())) == kept  # and keeps it open between runs
    client.close()
    project.terminate_all()


def test_terminated_backends_cost_no_envelope(
    project: Project,
    server: SocketModeServer,
    make_client: ClientFactory,
    conn_max_age: Callable[[int], None],
    caplog: Any,
) -> None:
    """Every connection is terminated between two bursts (``CONN_MAX_AGE=60``, ``CONN_HEALTH_CHECKS``):
    each thread's next run notices at its first query and reconnects; all acked, all written."""
    from .django_project import bots

    caplog.set_level(logging.WARNING, logger="slack_socket_mode")
    conn_max_age(60)
    client = make_client(concurrency=4)
    client.socket_mode_request_listeners.append(bots.on_request)
    client.connect()
    first = burst(server, 40)
    held = project.backends()
    assert held  # the listener threads keep their connections (CONN_MAX_AGE=60)
    assert project.terminate_all() == len(held)
    project.wait_backends(lambda pids: pids == [], "the terminated backends gone")
    second = burst(server, 40)
    notes = project.notes()
    assert sorted(notes) == sorted(first + second)  # every effect written, every envelope acked once
    assert not {notes[e][1] for e in second} & set(held)  # on fresh connections
    assert server.unacked() == [] and server.duplicate_acks() == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    client.close()
    project.terminate_all()


def bolt_app(server: SocketModeServer, **options: Any) -> Any:
    from slack_bolt import App

    return App(
        token="xoxb-1",
        signing_secret="not-used-in-socket-mode",
        client=WebClient(token="xoxb-1", base_url=server.api_url),
        token_verification_enabled=False,
        **options,
    )


def push_commands(server: SocketModeServer, count: int) -> list[str]:
    ids = [server.push_sample("slash_commands", envelope_id=str(uuid.uuid4())) for _ in range(count)]
    server.wait_for_acks(envelope_ids=ids, timeout=timeout(20))
    return ids


def test_a_bolt_apps_listener_threads_leave_no_connection_behind(
    project: Project, server: SocketModeServer, conn_max_age: Callable[[int], None]
) -> None:
    pytest.importorskip("slack_bolt")
    from slack_bolt.adapter.django.handler import DjangoThreadLazyListenerRunner

    from slack_socket_mode.bolt import SocketModeHandler
    from slack_socket_mode.django.bolt_listeners import ReleasingCompletionHandler, ReleasingStartHandler

    from .django_project import bots

    conn_max_age(0)
    app = bolt_app(server)
    ran_on: list[str] = []

    @app.command("/hello-socket-mode")
    def hello(ack: Any, body: dict[str, Any]) -> None:
        ran_on.append(threading.current_thread().name)
        bots.write_note(body["trigger_id"] + threading.current_thread().name + str(uuid.uuid4())[:8])
        ack()

    handler = SocketModeHandler(app, APP_TOKEN, web_client=WebClient(base_url=server.api_url))
    try:
        runner = app.listener_runner
        assert isinstance(runner.listener_start_handler, ReleasingStartHandler)
        assert isinstance(runner.listener_completion_handler, ReleasingCompletionHandler)
        assert isinstance(runner.lazy_listener_runner, DjangoThreadLazyListenerRunner)
        handler.connect()
        ids = push_commands(server, 30)
        assert len(project.notes()) == len(ids)
        assert not any(name.startswith("slack_socket_mode-") for name in ran_on)  # Bolt's executor ran them
        project.wait_backends(lambda pids: pids == [], "no connection left by Bolt's listener threads")
    finally:
        handler.close()


def test_bolts_own_django_handlers_are_not_doubled_on_one_thread(
    project: Project, server: SocketModeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app set Bolt's DjangoListenerStartHandler/CompletionHandler, and runs listeners on the client's thread
    (``process_before_response=True``): close_old_connections() runs twice per envelope there, not four times."""
    pytest.importorskip("slack_bolt")
    from slack_bolt.adapter.django.handler import DjangoListenerCompletionHandler, DjangoListenerStartHandler

    from slack_socket_mode.bolt import SocketModeHandler

    calls: Counter[str] = Counter()
    real = django.db.close_old_connections

    def counting() -> None:
        calls[threading.current_thread().name] += 1
        real()

    monkeypatch.setattr(django.db, "close_old_connections", counting)
    app = bolt_app(server, process_before_response=True)
    app.listener_runner.listener_start_handler = DjangoListenerStartHandler()
    app.listener_runner.listener_completion_handler = DjangoListenerCompletionHandler()
    ran_on: list[str] = []
    done = threading.Event()

    @app.command("/hello-socket-mode")
    def hello(ack: Any) -> None:
        ran_on.append(threading.current_thread().name)
        ack()

    handler = SocketModeHandler(app, APP_TOKEN, web_client=WebClient(base_url=server.api_url))
    # first in the list: its complete runs last, after the Django hook's
    handler.client.listener_hooks.insert(0, type("Done", (), {"complete": lambda self, r, e: done.set()})())
    try:
        handler.connect()
        push_commands(server, 1)
        assert done.wait(timeout(5))  # every hook completed
    finally:
        handler.close()
    (thread,) = ran_on
    assert thread.startswith("slack_socket_mode-")  # the client's thread ran the listener
    assert calls == {thread: 2}, calls  # the hook's start and complete; Bolt's handlers did nothing more


class Output:
    """A subprocess's stdout and stderr lines, gathered by two threads; wait for a line with a condition."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read, args=(stream,), name=f"test-output-{i}", daemon=True)
            for i, stream in enumerate((process.stdout, process.stderr))
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, needle: str, seconds: float = 10.0) -> str:
        with self.cond:
            found = self.cond.wait_for(lambda: any(needle in line for line in self.lines), timeout(seconds))
            assert found, f"no line with {needle!r} in {self.lines}"
            return next(line for line in self.lines if needle in line)

    def join(self) -> str:
        for reader in self.readers:
            reader.join(timeout(5))
        return "\n".join(self.lines)


def manage(*args: str, project: Project | None = None, api_url: str = "http://127.0.0.1:9") -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_SOCKET_MODE_TEST_API_URL": api_url,
        "PYTHONUNBUFFERED": "1",
        "SLACK_SOCKET_MODE_DJANGO_LOG": "1",
    }
    if project is not None:
        env["SLACK_SOCKET_MODE_DJANGO_DB"] = project.database
    return subprocess.Popen(
        [sys.executable, str(MANAGE), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_management_command_runs_a_bolt_app(project: Project, server: SocketModeServer) -> None:
    process = manage("socketmode", "tests.django_project.bots:bolt_app", project=project, api_url=server.api_url)
    output = Output(process)
    try:
        output.wait_for("socketmode: tests.django_project.bots:bolt_app connected", seconds=20)
        ids = push_commands(server, 5)
        assert [ack.payload for ack in server.acks if ack.envelope_id in ids] == [{"text": "hi"}] * 5
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout(15)) == 0, output.join()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout(5))
    assert "SIGINT received; closing" in output.join()
    assert len(project.notes()) == 5
    project.wait_backends(lambda pids: pids == [], "the Bolt app's connections closed")


@pytest.mark.parametrize("factory", ["make_client", "make_async_client"])
def test_the_management_command_runs_a_bot_and_closes_with_in_flight_acks_on_sigterm(
    project: Project, server: SocketModeServer, factory: str
) -> None:
    process = manage("socketmode", f"tests.django_project.bots:{factory}", project=project, api_url=server.api_url)
    output = Output(process)
    try:
        line = output.wait_for("running until SIGINT or SIGTERM", seconds=20)
        assert f"socketmode: tests.django_project.bots:{factory} connected" in line
        (conn,) = server.wait_for_connections(1)
        fast = burst(server, 10)
        slow = server.push(server.make_envelope(payload={"sleep": 1.0}))
        output.wait_for(f"started {slow}")
        process.send_signal(signal.SIGTERM)  # while the slow listener runs
        assert process.wait(timeout(15)) == 0, output.join()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout(5))
    text = output.join()
    assert "SIGTERM received; closing" in text and "Traceback" not in text
    server.wait_for_acks(envelope_ids=[slow], timeout=timeout(1))
    assert_acked_on_first_delivery(server, [*fast, slow])  # on the connection, before it closed
    assert conn.close_code_received == 1000
    assert {*fast, slow} <= set(project.notes())
    project.wait_backends(lambda pids: pids == [], "the command's connections closed")


@pytest.mark.parametrize(
    ("app", "said"),
    [
        ("no_colon_here", "APP must be module:attr"),
        ("tests.django_project.no_such_module:bot", "cannot import 'tests.django_project.no_such_module'"),
        ("tests.django_project.bots:missing", "has no attribute 'missing'"),
        ("tests.django_project.bots:not_a_bot", "is a int, not a Bolt App, a SocketModeClient or a factory"),
        ("tests.django_project.bots:broken_factory", "raised RuntimeError: no bot today second line"),
    ],
)
def test_a_bad_app_is_one_line_and_exit_code_2(project: Project, app: str, said: str) -> None:
    process = manage("socketmode", app, project=project)
    output = Output(process)
    assert process.wait(timeout(30)) == 2
    lines = output.join().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: ") and said in lines[0], lines


def test_a_refused_token_exits_1_in_one_line(project: Project, server: SocketModeServer) -> None:
    server.fail_next_opens("invalid_auth")
    process = manage("socketmode", "tests.django_project.bots:make_client", project=project, api_url=server.api_url)
    output = Output(process)
    assert process.wait(timeout(30)) == 1
    text = output.join()
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if line.startswith("CommandError")]
    assert "could not connect" in line and "invalid_auth" in line, text


def test_resolve_takes_each_kind_of_app_and_refuses_the_others(
    project: Project, server: SocketModeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: what APP may name (the subprocess tests above run two of them)."""
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    monkeypatch.setenv("SLACK_SOCKET_MODE_TEST_API_URL", server.api_url)
    from django.core.management import CommandError
    from slack_sdk.socket_mode import SocketModeClient as SdkClient

    from slack_socket_mode import SocketModeClient
    from slack_socket_mode.bolt import SocketModeHandler
    from slack_socket_mode.django.management.commands.socketmode import BAD_APP, resolve

    from .django_project import bots

    kind, app = resolve("tests.django_project.bots:bolt_app")
    assert (kind, app) == ("app", bots.bolt_app)
    made: list[Any] = []
    try:
        kind, client = resolve("tests.django_project.bots:make_client")  # a factory, called
        made.append(client)
        assert kind == "client" and isinstance(client, SocketModeClient)
        handler = SocketModeHandler(bots.bolt_app, APP_TOKEN)
        made.append(handler)
        bots.a_handler = handler  # type: ignore[attr-defined]
        assert resolve("tests.django_project.bots:a_handler") == ("handler", handler)
        bots.sdk_client = SdkClient(APP_TOKEN, auto_reconnect_enabled=False)  # type: ignore[attr-defined]
        with pytest.raises(CommandError, match="slack_sdk's SocketModeClient: use slack_socket_mode") as refused:
            resolve("tests.django_project.bots:sdk_client")
        assert refused.value.returncode == BAD_APP
    finally:
        for obj in made:
            obj.close()
        for name in ("a_handler", "sdk_client"):
            if hasattr(bots, name):
                delattr(bots, name)
