"""The Django app's configuration: installs the connection-releasing listener hook when Django loads it."""

from __future__ import annotations

from django.apps import AppConfig

from ..listeners import add_default_hook
from .connections import CLOSE_OLD_CONNECTIONS

__all__ = ["SlackSocketModeConfig"]


class SlackSocketModeConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    """``slack_socket_mode.django`` in ``INSTALLED_APPS``: its :meth:`ready` adds the hook to every new client."""

    name = "slack_socket_mode.django"
    label = "slack_socket_mode"
    verbose_name = "Slack Socket Mode"

    def ready(self) -> None:
        """Give each client made from now on :data:`~.connections.CLOSE_OLD_CONNECTIONS` (once, if called again)."""
        add_default_hook(CLOSE_OLD_CONNECTIONS)
