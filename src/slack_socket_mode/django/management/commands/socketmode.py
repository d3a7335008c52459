"""``python manage.py socketmode APP``: run a Socket Mode app in a Django project until SIGINT or SIGTERM.

``APP`` is ``module:attr`` (``attr`` may be dotted) naming one of:

* a Bolt ``App``: run on :class:`slack_socket_mode.bolt.SocketModeHandler` (the app-level token
  from ``SLACK_APP_TOKEN``);
* a :class:`slack_socket_mode.SocketModeClient` (or its websocket_client flavour), or a
  :class:`slack_socket_mode.bolt.SocketModeHandler`;
* a :class:`slack_socket_mode.aio.SocketModeClient` (the asyncio client): run with ``asyncio.run``,
  its listeners on that loop;
* a factory: any other callable, called with no arguments, returning one of those.

The command connects, says that it runs (a line the ``slack_socket_mode.django`` logger logs at
INFO, or writes on stdout when that logger does not log INFO), and blocks until SIGINT (Ctrl-C)
or SIGTERM; it then closes the client, which finishes the running listeners and sends their
acks (up to ``--close-timeout`` seconds), and exits 0. There is no autoreloader: restart the
command to load changed code.

Exit codes: 0 after a signal; 1 when the client could not connect (``ConnectTimeoutError``,
a network failure) or stopped for good (``FatalError``: the token was refused, Socket Mode is off);
2 for a bad ``APP`` (not ``module:attr``, the module does not import, the attribute is missing,
the factory raised, the object is of another kind, no app-level token). Each failure is one
line on stderr (Django's ``CommandError``), never a traceback (unless ``--traceback``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading
from typing import Any, Optional

from django.core.management.base import BaseCommand, CommandError

from ....aio import SocketModeClient as AsyncClient
from ....client import SocketModeClient
from ....errors import FatalError, SocketModeError
from ....stopping import StopWaiter, default_stop_signals

__all__ = ["BAD_APP", "FAILED", "Command", "resolve"]

#: The exit code for a bad APP (or its configuration).
BAD_APP = 2
#: The exit code when the client could not connect or stopped for good.
FAILED = 1

_logger = logging.getLogger("slack_socket_mode.django")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _bad(message: str) -> CommandError:
    return CommandError(message, returncode=BAD_APP)


def _load(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _bad(f"APP must be module:attr, naming a Bolt App, a SocketModeClient or a factory (got {spec!r})")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # anything the module raises as it imports, said in one line
        raise _bad(f"cannot import {module_name!r} (APP {spec!r}): {_one_line(e)}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _bad(f"{module_name!r} has no attribute {attr!r} (APP {spec!r})") from None
    return obj


def _kind(obj: Any) -> Optional[str]:
    """``"client"``, ``"aio"``, ``"handler"``, ``"app"``, ``"async"`` (refused), or None for anything else."""
    if isinstance(obj, SocketModeClient):
        return "client"
    if isinstance(obj, AsyncClient):
        return "aio"
    if type(obj).__name__ == "AsyncApp" or type(obj).__module__.startswith("slack_sdk.socket_mode."):
        return "async" if type(obj).__name__ == "AsyncApp" else "sdk"
    try:
        from slack_bolt import App  # noqa: PLC0415 - the 'bolt' extra, optional
    except ImportError:  # no slack_bolt: nothing can be a Bolt App
        return None
    from ....bolt import SocketModeHandler  # noqa: PLC0415 - needs slack_bolt, found just above

    if isinstance(obj, SocketModeHandler):
        return "handler"
    if isinstance(obj, App):
        return "app"
    return None


def resolve(spec: str) -> tuple[str, Any]:
    """What ``APP`` names: ``("client" | "aio" | "handler" | "app", object)``, a factory called first.

    Raises:
        CommandError: a bad ``APP`` (``returncode`` :data:`BAD_APP`), with a one-line message.
    """
    obj = _load(spec)
    kind = _kind(obj)
    if kind is None and callable(obj):
        try:
            obj = obj()
        except Exception as e:
            raise _bad(f"the factory {spec!r} raised {_one_line(e)}") from e
        kind = _kind(obj)
        spec = f"{spec}()"
    if kind == "async":
        raise _bad(f"{spec} is a slack_bolt AsyncApp: this command runs thread-based apps (App, SocketModeClient)")
    if kind == "sdk":
        raise _bad(
            f"{spec} is slack_sdk's {type(obj).__name__}: use slack_socket_mode.SocketModeClient (the same interface)"
        )
    if kind is None:
        raise _bad(f"{spec} is a {type(obj).__name__}, not a Bolt App, a SocketModeClient or a factory of one")
    return kind, obj


def _announce(command: BaseCommand, message: str) -> None:
    if _logger.isEnabledFor(logging.INFO):
        _logger.info(message)
    else:
        command.stdout.write(message)
        command.stdout.flush()


def _serve_client(command: BaseCommand, client: SocketModeClient, spec: str, close_timeout: float) -> None:
    """Connect, say so, wait for SIGINT/SIGTERM (or a fatal error), close."""
    fatal: list[FatalError] = []
    on_main = threading.current_thread() is threading.main_thread()
    with StopWaiter(default_stop_signals() if on_main else ()) as waiter:

        def on_error(error: Exception) -> None:
            if isinstance(error, FatalError):
                fatal.append(error)
                waiter.stop()

        client.on_error_listeners.append(on_error)
        try:
            client.connect()
        except SocketModeError as e:
            client.close(close_timeout)
            raise CommandError(f"{spec}: could not connect: {_one_line(e)}", returncode=FAILED) from e
        _announce(command, f"socketmode: {spec} connected ({client.session_id()}); running until SIGINT or SIGTERM")
        signum = waiter.wait()
    if signum is not None:
        _logger.info("%s received; closing (running listeners finish and send their acks)", signal.Signals(signum).name)
    client.close(close_timeout)
    if fatal:
        raise CommandError(f"{spec}: stopped: {_one_line(fatal[0])}", returncode=FAILED)


def _serve_async_client(command: BaseCommand, client: AsyncClient, spec: str, close_timeout: float) -> None:
    """:func:`_serve_client` for the asyncio client: on a loop of its own, SIGINT/SIGTERM caught by the loop."""

    async def serve() -> Optional[int]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        caught: list[int] = []
        fatal: list[FatalError] = []

        def on_signal(signum: int) -> None:
            caught.append(signum)
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for signum in default_stop_signals():
                loop.add_signal_handler(signum, on_signal, signum)

        def on_error(error: Exception) -> None:
            if isinstance(error, FatalError):
                fatal.append(error)
                stop.set()

        client.on_error_listeners.append(on_error)
        try:
            await client.connect()
        except SocketModeError as e:
            await client.close(close_timeout)
            raise CommandError(f"{spec}: could not connect: {_one_line(e)}", returncode=FAILED) from e
        session = await client.session_id()
        _announce(command, f"socketmode: {spec} connected ({session}); running until SIGINT or SIGTERM")
        await stop.wait()
        if caught:
            _logger.info(
                "%s received; closing (running listeners finish and send their acks)", signal.Signals(caught[0]).name
            )
        await client.close(close_timeout)
        if fatal:
            raise CommandError(f"{spec}: stopped: {_one_line(fatal[0])}", returncode=FAILED)
        return caught[0] if caught else None

    asyncio.run(serve())


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type information
    """``socketmode APP [--close-timeout SECONDS]`` (see the module's docstring)."""

    help = (
        "Run a Slack Socket Mode app until SIGINT or SIGTERM. APP is module:attr naming a Bolt App, a "
        "slack_socket_mode SocketModeClient, or a factory returning one. Exit codes: 0 after a signal, 1 when it "
        "could not connect or stopped for good, 2 for a bad APP."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("app", metavar="APP", help="module:attr: a Bolt App, a SocketModeClient, or a factory")
        parser.add_argument(
            "--close-timeout",
            type=float,
            default=5.0,
            help="seconds close() may take on a signal, running listeners included (default 5)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        spec: str = options["app"]
        close_timeout: float = options["close_timeout"]
        kind, obj = resolve(spec)
        if kind == "app":
            from ....bolt import SocketModeHandler  # noqa: PLC0415 - needs the 'bolt' extra

            try:
                obj = SocketModeHandler(obj)
            except (SocketModeError, TypeError) as e:  # ConfigurationError: no SLACK_APP_TOKEN, or not xapp-…
                raise _bad(f"{spec}: {_one_line(e)}") from e
            kind = "handler"
        if kind == "aio":
            _serve_async_client(self, obj, spec, close_timeout)
            return
        client: SocketModeClient = obj.client if kind == "handler" else obj
        _serve_client(self, client, spec, close_timeout)
