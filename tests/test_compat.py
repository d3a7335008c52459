"""Introspection: every public method, property, attribute and constructor parameter of slack_sdk's
and Bolt's Socket Mode clients, and of slack_sdk's ``rtm_v2.RTMClient``, exists on ours with a compatible
signature, or is in ALLOWED with a reason.

The asyncio ones too (slack_sdk's ``AsyncBaseSocketModeClient``, its aiohttp and websockets clients, and
Bolt's ``AsyncSocketModeHandler`` of both) against ``slack_socket_mode.aio.SocketModeClient`` and
``slack_socket_mode.bolt.AsyncSocketModeHandler``: there, a coroutine method of theirs must be one of
ours (a caller awaits it).

The classes are the ones installed, so a slack_sdk or slack_bolt release that adds API fails this
test instead of surprising a user. ALLOWED is the source of docs/how-to/migrate.md's table (the RTM
client's: docs/how-to/rtm.md): every entry must appear there (test_the_migration_guide_lists_every_allowed_difference).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest
from slack_sdk.rtm_v2 import RTMClient as SdkRTMClient
from slack_sdk.socket_mode import SocketModeClient as SdkBuiltinClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.websocket_client import SocketModeClient as SdkWebSocketClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.rtm import RTMClient
from slack_socket_mode.websocket_client import SocketModeClient as WebSocketClientFlavour

from .conftest import APP_TOKEN

MIGRATE = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "migrate.md"
#: The RTM client's migration table is on its own page.
RTM_GUIDE = MIGRATE.with_name("rtm.md")

_ENGINE = "slack_sdk's engine internals (one connection, polling threads); ours holds up to 10 connections: see "
#: (flavour, member, detail) -> why ours differs. detail is "" (the member), a parameter name, or "positional".
ALLOWED: dict[tuple[str, str, str], str] = {
    **{
        (flavour, name, ""): _ENGINE + "session_id(), state, stats(), lifecycle_listeners"
        for flavour in ("builtin", "websocket_client")
        for name in ("current_session", "current_session_runner", "current_app_monitor", "current_app_monitor_started")
    },
    ("builtin", "current_session_state", ""): _ENGINE + "state and lifecycle_listeners",
    ("rtm", "current_session_state", ""): _ENGINE + "state and lifecycle_listeners",
    ("rtm", "message_queue", ""): "no queue: an event is dispatched as it arrives (enqueue_message too)",
    ("rtm", "message_processor", ""): "no polling thread drains a queue: the reader and workers dispatch at once",
    **{
        (flavour, "message_queue", ""): "no queue: a message is dispatched as it arrives (enqueue_message too)"
        for flavour in ("base", "builtin", "websocket_client", "async base", "aiohttp", "websockets")
    },
    **{
        (flavour, "message_processor", ""): "no polling thread drains a queue: readers and workers dispatch at once"
        for flavour in ("base", "builtin", "websocket_client", "aiohttp", "websockets")
    },
    **{
        (flavour, name, ""): "slack_sdk's asyncio engine internals (tasks on one connection); ours runs the thread "
        "client's engine, up to 10 connections: see session_id(), state, stats(), lifecycle_listeners"
        for flavour in ("aiohttp", "websockets")
        for name in ("current_session_monitor", "monitor_current_session", "message_receiver", "receive_messages")
    },
    **{
        ("aiohttp", name, ""): "slack_sdk's ping-pong bookkeeping; ours: health(), stats() and the liveness "
        "options (ping_timeout, receive_timeout) replace a stale connection on their own"
        for name in ("is_ping_pong_failing", "last_ping_pong_time", "stale")
    },
    ("websockets", "__init__", "positional"): (
        "one client serves both asyncio clients, whose positional orders differ after web_client: "
        "ours follows the aiohttp client's (proxy fourth)"
    ),
    **{
        (flavour, "__init__", "positional"): (
            "one handler serves both of Bolt's, whose positional orders differ after web_client: "
            "those arguments are keyword-only (each is accepted by name and passed to the client)"
        )
        for flavour in ("bolt builtin", "bolt websocket_client", "bolt aiohttp", "bolt websockets")
    },
}


class Flavour(NamedTuple):
    name: str
    theirs: type
    ours: type
    make_ours: Callable[[], Any]  # an instance, for attributes set in __init__
    forwards_to: type | None = None  # ours passes **options on to this class's constructor


def _flavours() -> list[Flavour]:
    flavours = [
        Flavour("rtm", SdkRTMClient, RTMClient, lambda: RTMClient(token="xoxb-111-222-xyz")),
        Flavour("base", BaseSocketModeClient, SocketModeClient, lambda: SocketModeClient(APP_TOKEN)),
        Flavour("builtin", SdkBuiltinClient, SocketModeClient, lambda: SocketModeClient(APP_TOKEN)),
        Flavour(
            "websocket_client",
            SdkWebSocketClient,
            WebSocketClientFlavour,
            lambda: WebSocketClientFlavour(APP_TOKEN),
            SocketModeClient,
        ),
    ]
    try:
        from slack_bolt import App
        from slack_bolt.adapter.socket_mode import SocketModeHandler as BoltBuiltinHandler
        from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler as BoltWebSocketHandler

        from slack_socket_mode.bolt import SocketModeHandler
    except ImportError:  # the bolt extra is not installed
        return flavours

    def handler() -> SocketModeHandler:
        app = App(token="xoxb-111-222-xyz", signing_secret="not-used", token_verification_enabled=False)
        return SocketModeHandler(app, APP_TOKEN)

    flavours += [
        Flavour("bolt builtin", BoltBuiltinHandler, SocketModeHandler, handler, SocketModeClient),
        Flavour("bolt websocket_client", BoltWebSocketHandler, SocketModeHandler, handler, SocketModeClient),
    ]
    return flavours


def _async_flavours() -> list[Flavour]:
    """slack_sdk's asyncio clients and Bolt's asyncio handlers (they need aiohttp and websockets: the test extra)."""
    from slack_sdk.socket_mode.aiohttp import SocketModeClient as SdkAiohttpClient
    from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
    from slack_sdk.socket_mode.websockets import SocketModeClient as SdkWebsocketsClient

    from slack_socket_mode.aio import SocketModeClient as AsyncClient

    flavours = [
        Flavour("async base", AsyncBaseSocketModeClient, AsyncClient, lambda: AsyncClient(APP_TOKEN)),
        Flavour("aiohttp", SdkAiohttpClient, AsyncClient, lambda: AsyncClient(APP_TOKEN)),
        Flavour("websockets", SdkWebsocketsClient, AsyncClient, lambda: AsyncClient(APP_TOKEN)),
    ]
    try:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler as BoltAiohttpHandler
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler as BoltDefaultAsyncHandler
        from slack_bolt.adapter.socket_mode.websockets import AsyncSocketModeHandler as BoltWebsocketsHandler
        from slack_bolt.async_app import AsyncApp

        from slack_socket_mode.bolt import AsyncSocketModeHandler
    except ImportError:  # the bolt extra is not installed
        return flavours
    assert BoltDefaultAsyncHandler is BoltAiohttpHandler  # .async_handler re-exports the aiohttp one

    def handler() -> AsyncSocketModeHandler:
        app = AsyncApp(token="xoxb-111-222-xyz", signing_secret="not-used")
        return AsyncSocketModeHandler(app, APP_TOKEN)

    flavours += [
        Flavour("bolt aiohttp", BoltAiohttpHandler, AsyncSocketModeHandler, handler, AsyncClient),
        Flavour("bolt websockets", BoltWebsocketsHandler, AsyncSocketModeHandler, handler, AsyncClient),
    ]
    return flavours


FLAVOURS = _flavours() + _async_flavours()


def public_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public names of ``cls`` (methods, properties, annotated attributes), with their static values."""
    seen: set[str] = set()
    for name in dir(cls):
        if not name.startswith("_") and name not in dir(object):
            seen.add(name)
            yield name, inspect.getattr_static(cls, name)
    for klass in cls.__mro__:
        for name in getattr(klass, "__annotations__", {}):
            if not name.startswith("_") and name not in seen:
                seen.add(name)
                yield name, None  # an attribute set on instances


def signature_problems(
    theirs: Callable[..., Any], ours: Callable[..., Any], forwards_to: type | None = None
) -> dict[str, str]:
    """Why a call written for ``theirs`` may fail on ``ours``: {detail: problem}; empty if none."""
    their_params = [p for p in inspect.signature(theirs).parameters.values() if p.name != "self"]
    our_sig = inspect.signature(ours)
    our_params = [p for p in our_sig.parameters.values() if p.name != "self"]
    ours_by_name = {p.name: p for p in our_params}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in our_params)
    forwarded = set(inspect.signature(forwards_to).parameters) if forwards_to is not None else set()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    problems: dict[str, str] = {}
    for index, param in enumerate(their_params):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        mine = ours_by_name.get(param.name)
        forwardable = takes_kwargs and param.kind is not param.POSITIONAL_ONLY and param.name in forwarded
        if mine is None and not forwardable:
            problems[param.name] = "missing"
            continue
        if param.kind in positional and (
            mine is None or mine.kind not in positional or our_params.index(mine) != index
        ):
            problems.setdefault("positional", f"{param.name} is argument #{index + 1} in theirs, not in ours")
        if mine is not None and mine.default is mine.empty and param.default is not param.empty:
            problems[param.name] = "optional in theirs, required in ours"
    their_names = {p.name for p in their_params}
    for param in our_params:
        variadic = param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        if param.name not in their_names and param.default is param.empty and not variadic:
            problems[param.name] = "required by ours, absent from theirs"
    return problems


def compatibility_problems(flavour: Flavour) -> dict[tuple[str, str, str], str]:
    """Every difference between ``flavour.theirs`` and ``flavour.ours`` (allowed or not)."""
    problems: dict[tuple[str, str, str], str] = {}
    instance = flavour.make_ours()
    try:
        if flavour.theirs.__init__ is not object.__init__:  # BaseSocketModeClient has no constructor of its own
            init_problems = signature_problems(flavour.theirs.__init__, flavour.ours.__init__, flavour.forwards_to)
            for detail, problem in init_problems.items():
                problems[(flavour.name, "__init__", detail)] = problem
        for name, theirs in public_members(flavour.theirs):
            ours = inspect.getattr_static(flavour.ours, name, None)
            if ours is None and not hasattr(instance, name):
                problems[(flavour.name, name, "")] = "missing"
                continue
            if inspect.isfunction(theirs):
                if not callable(getattr(instance, name)):
                    problems[(flavour.name, name, "")] = "a method in theirs, not callable in ours"
                    continue
                if inspect.iscoroutinefunction(theirs) and not inspect.iscoroutinefunction(getattr(flavour.ours, name)):
                    problems[(flavour.name, name, "")] = "a coroutine in theirs, not in ours"
                    continue
                for detail, problem in signature_problems(theirs, getattr(flavour.ours, name)).items():
                    problems[(flavour.name, name, detail)] = problem
            elif callable(ours) and not isinstance(ours, type) and inspect.isfunction(ours):
                problems[(flavour.name, name, "")] = "an attribute in theirs, a method in ours"
    finally:
        close = getattr(instance, "close", None) or getattr(instance, "close_async", None)
        if close is not None:
            closed = close()
            if inspect.isawaitable(closed):
                asyncio.run(_awaited(closed))
    return problems


async def _awaited(awaitable: Any) -> None:
    await awaitable


@pytest.mark.parametrize("flavour", FLAVOURS, ids=[f.name for f in FLAVOURS])
def test_every_public_member_and_parameter_is_there_or_allowed(flavour: Flavour) -> None:
    problems = compatibility_problems(flavour)
    unexplained = {key: problem for key, problem in problems.items() if key not in ALLOWED}
    assert unexplained == {}, "add the API to ours, or an entry with a reason to ALLOWED and docs/how-to/migrate.md"
    stale = [key for key in ALLOWED if key[0] == flavour.name and key not in problems]
    assert stale == [], "these ALLOWED entries are no longer needed: remove them (and their rows in migrate.md)"


def test_the_bolt_flavours_are_checked_when_the_extra_is_installed() -> None:
    pytest.importorskip("slack_bolt")
    assert {"bolt builtin", "bolt websocket_client", "bolt aiohttp", "bolt websockets"} <= {f.name for f in FLAVOURS}


def test_the_checker_catches_a_method_that_is_not_a_coroutine() -> None:
    class Theirs:
        async def close(self) -> None: ...

    class Ours:
        def close(self) -> None: ...

    flavour = Flavour("test", Theirs, Ours, Ours)
    assert compatibility_problems(flavour) == {("test", "close", ""): "a coroutine in theirs, not in ours"}


def guide(flavour: str) -> Path:
    """The page whose migration table covers ``flavour``: the RTM client's own, or migrate.md."""
    return RTM_GUIDE if flavour == "rtm" else MIGRATE


@pytest.mark.parametrize("page", [MIGRATE, RTM_GUIDE], ids=lambda page: page.name)
def test_the_migration_guide_lists_every_allowed_difference(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = sorted({member for flavour, member, _ in ALLOWED if guide(flavour) == page and f"`{member}`" not in text})
    assert missing == [], f"{page.name} must say why each of these differs"


@pytest.mark.parametrize("page", [MIGRATE, RTM_GUIDE], ids=lambda page: page.name)
def test_the_migration_guide_names_every_member_and_argument(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    names: set[str] = set()
    for flavour in FLAVOURS:
        if guide(flavour.name) != page:
            continue
        names |= {name for name, _ in public_members(flavour.theirs)}
        if flavour.theirs.__init__ is not object.__init__:
            names |= {p for p in inspect.signature(flavour.theirs.__init__).parameters if p != "self"}
    missing = sorted(name for name in names if f"`{name}" not in text)
    assert missing == [], f"{page.name}'s tables must have a row for each of these"


def test_the_checker_catches_a_missing_parameter_and_a_moved_one() -> None:
    def theirs(self: Any, a: int, b: int = 0, c: int = 0) -> None: ...

    def ours_missing(self: Any, a: int, b: int = 0) -> None: ...

    def ours_moved(self: Any, a: int, c: int = 0, b: int = 0) -> None: ...

    def ours_required(self: Any, a: int, b: int = 0, c: int = 0, *, d: int) -> None: ...

    def ours_extended(self: Any, a: int, b: int = 0, c: int = 0, *, d: int = 0) -> None: ...

    assert signature_problems(theirs, ours_missing) == {"c": "missing"}
    assert set(signature_problems(theirs, ours_moved)) == {"positional"}
    assert signature_problems(theirs, ours_required) == {"d": "required by ours, absent from theirs"}
    assert signature_problems(theirs, ours_extended) == {}

    def ours_stricter(self: Any, a: int, b: int, c: int = 0) -> None: ...

    assert signature_problems(theirs, ours_stricter) == {"b": "optional in theirs, required in ours"}
