"""Bolt's listener threads under slack_socket_mode.django: start and completion handlers that release connections.

A Bolt app runs a listener on its own executor's threads (unless ``process_before_response=True``),
with ``app.listener_runner.listener_start_handler`` and ``listener_completion_handler`` around it;
:func:`install` puts handlers there that call the ``release`` it is given (see
:mod:`slack_socket_mode.django.connections`). Imported only with a Bolt app (``slack_bolt``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from slack_bolt.adapter.django.handler import (
    DjangoListenerCompletionHandler,
    DjangoListenerStartHandler,
    DjangoThreadLazyListenerRunner,
)
from slack_bolt.lazy_listener import ThreadLazyListenerRunner
from slack_bolt.listener.listener_completion_handler import (
    DefaultListenerCompletionHandler,
    ListenerCompletionHandler,
)
from slack_bolt.listener.listener_start_handler import DefaultListenerStartHandler, ListenerStartHandler
from slack_bolt.listener.thread_runner import ThreadListenerRunner
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

__all__ = ["ReleasingCompletionHandler", "ReleasingStartHandler", "install"]


class ReleasingStartHandler(ListenerStartHandler):
    """Bolt's ``listener_start_handler``: ``release("bolt-listener-start")`` before each Bolt listener runs."""

    def __init__(self, release: Callable[[str], None]) -> None:
        self._release = release

    def handle(self, request: BoltRequest, response: Optional[BoltResponse]) -> None:
        self._release("bolt-listener-start")


class ReleasingCompletionHandler(ListenerCompletionHandler):
    """Bolt's ``listener_completion_handler``: ``release("bolt-listener-completion")`` after each Bolt listener."""

    def __init__(self, release: Callable[[str], None]) -> None:
        self._release = release

    def handle(self, request: BoltRequest, response: Optional[BoltResponse]) -> None:
        self._release("bolt-listener-completion")


def install(app: Any, release: Callable[[str], None], logger: logging.Logger) -> None:
    """Put the releasing handlers on ``app.listener_runner`` (see :func:`.connections.prepare_bolt_app`)."""
    runner = getattr(app, "listener_runner", None)
    if not isinstance(runner, ThreadListenerRunner):
        logger.warning(
            "the Bolt app's listener runner is %s, not Bolt's ThreadListenerRunner: its listeners' threads do not "
            "release Django's database connections (only the Socket Mode client's do)",
            type(runner).__name__,
        )
        return
    start = runner.listener_start_handler
    if start is None or type(start) in (DefaultListenerStartHandler, DjangoListenerStartHandler):
        runner.listener_start_handler = ReleasingStartHandler(release)
    elif not isinstance(start, ReleasingStartHandler):
        logger.info(
            "the Bolt app has a listener_start_handler of its own (%s): left as it is; it should call "
            "django.db.close_old_connections()",
            type(start).__name__,
        )
    completion = runner.listener_completion_handler
    if completion is None or type(completion) in (DefaultListenerCompletionHandler, DjangoListenerCompletionHandler):
        runner.listener_completion_handler = ReleasingCompletionHandler(release)
    elif not isinstance(completion, ReleasingCompletionHandler):
        logger.info(
            "the Bolt app has a listener_completion_handler of its own (%s): left as it is; it should call "
            "django.db.close_old_connections()",
            type(completion).__name__,
        )
    if type(runner.lazy_listener_runner) is ThreadLazyListenerRunner:
        runner.lazy_listener_runner = DjangoThreadLazyListenerRunner(
            logger=runner.logger, executor=runner.listener_executor
        )
