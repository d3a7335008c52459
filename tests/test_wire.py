"""slack_socket_mode.wire: what an engine speaks: the URL method, the keepalive and the router its Wire gives it."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
from typing import Any, Callable, Optional

import pytest
from slack_sdk.web import WebClient

from slack_socket_mode import SocketModeClient
from slack_socket_mode.connection import Connection
from slack_socket_mode.engine import Engine
from slack_socket_mode.errors import AuthError
from slack_socket_mode.listeners import Listeners
from slack_socket_mode.messages import Hello, parse_message
from slack_socket_mode.opening import SOCKET_MODE_URLS, UrlMethod
from slack_socket_mode.options import OPTION_NAMES, ClientOptions, check_options
from slack_socket_mode.redaction import Secret
from slack_socket_mode.testing import SocketModeServer
from slack_socket_mode.wire import SOCKET_MODE, EngineParts, Wire

from .conftest import APP_TOKEN, client_threads, timeout

LOGGER = logging.getLogger("slack_socket_mode.tests")


def test_socket_modes_wire_is_apps_connections_open_websocket_pings_and_the_engines_own_routing() -> None:
    assert SOCKET_MODE.name == "Socket Mode"
    assert SOCKET_MODE.urls is SOCKET_MODE_URLS
    assert (SOCKET_MODE_URLS.name, SOCKET_MODE_URLS.token_kind) == ("apps.connections.open", "the app-level token")
    assert SOCKET_MODE_URLS.auth_error is AuthError
    assert SOCKET_MODE.ping is Connection.ping  # a WebSocket ping frame, sent only if that cannot block
    assert SOCKET_MODE.route is None  # envelopes, hello and disconnect: Engine.on_text
    other = Wire("Other", SOCKET_MODE_URLS)
    assert (other.ping, other.route) == (Connection.ping, None)  # the defaults are Socket Mode's
    with pytest.raises(dataclasses.FrozenInstanceError):
        SOCKET_MODE.name = "Changed"  # type: ignore[misc]


def checked(**given: Any) -> ClientOptions:
    """The options a :class:`SocketModeClient` would check for ``given``, its defaults for the rest."""
    parameters = inspect.signature(SocketModeClient.__init__).parameters
    defaults = {n: p.default for n, p in parameters.items() if n in OPTION_NAMES and p.default is not p.empty}
    return check_options(logger=LOGGER, **{**defaults, **given})


class Facade:
    """What an engine needs of the facade over it (``engine.Facade``), as the RTM client's own side gives it."""

    def __init__(self, web_client: WebClient) -> None:
        self.web_client = web_client
        self.hello: Optional[Hello] = None
        self.message_tap: Optional[Callable[[int, str], None]] = None
        self.message_listeners: list[Any] = []
        self.socket_mode_request_listeners: list[Any] = []
        self.on_message_listeners: list[Any] = []
        self.on_error_listeners: list[Any] = []
        self.on_close_listeners: list[Any] = []
        self.lifecycle_listeners: list[Any] = []
        self.engine: Optional[Engine] = None

    def issue_new_wss_url(self) -> str:
        assert self.engine is not None
        return self.engine.issue_url(self.web_client, Secret(APP_TOKEN))


class Recorded:
    """What the engine did with a wire: URL calls (the tokens), keepalives (connection ids), texts routed."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.keepalives: list[int] = []
        self.texts: list[str] = []
        self.parts: list[EngineParts] = []
        self.cond = threading.Condition()

    def add(self, where: list[Any], item: Any) -> None:
        with self.cond:
            where.append(item)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout(5)), f"timed out waiting for {what}"

    def wire(self) -> Wire:
        def call(web_client: WebClient, token: str) -> Any:
            self.add(self.tokens, token)
            return web_client.apps_connections_open(app_token=token)

        def keepalive(conn: Connection) -> bool:
            self.add(self.keepalives, conn.id)
            return conn.ping()

        def route(parts: EngineParts, logger: logging.Logger) -> Callable[[Connection, str], None]:
            self.add(self.parts, parts)

            def on_text(conn: Connection, text: str) -> None:
                self.add(self.texts, text)
                message = parse_message(text)
                if isinstance(message, Hello):
                    parts.session.on_hello(conn, message)  # the connection is ready: a router's one duty

            return on_text

        return Wire("Test protocol", UrlMethod("test.connections.open", call, "the test token"), keepalive, route)


def test_an_engine_gets_its_urls_pings_and_routes_as_its_wire_says(server: SocketModeServer) -> None:
    recorded = Recorded()
    facade = Facade(WebClient(base_url=server.api_url))
    engine = Engine(
        facade,
        checked(app_token=APP_TOKEN, ping_interval=0.1, ping_timeout=1.0),
        listeners=Listeners(facade, LOGGER),
        prefix="slack_socket_mode-wire",
        logger=LOGGER,
        wire=recorded.wire(),
    )
    facade.engine = engine
    try:
        assert recorded.parts == [engine]  # the router is made once, over the engine's parts
        engine.connect(timeout(5), auto_reconnect=True)
        assert recorded.tokens == [APP_TOKEN] and server.open_calls == 1  # the wire's method issued the URL
        (conn,) = server.wait_for_connections(1)
        envelope_id = server.push(server.make_envelope())
        recorded.wait(lambda: any(envelope_id in text for text in recorded.texts), "the envelope to be routed")
        assert '"hello"' in recorded.texts[0]
        assert envelope_id in server.unacked()  # the wire's router had it: Socket Mode's dispatch and ack never ran
        recorded.wait(lambda: len(recorded.keepalives) >= 2, "two keepalives")  # the next one at the pong's deadline
        assert set(recorded.keepalives) == {1} and conn.is_open
    finally:
        engine.close(timeout(5))
    assert [t.name for t in client_threads() if t.name.startswith("slack_socket_mode-wire-")] == []
