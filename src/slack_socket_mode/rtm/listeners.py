"""The RTM client's listeners: ``@rtm.on(type)`` and how each event reaches ``message_listeners``.

slack_sdk's ``RTMClient`` keeps one list, ``message_listeners``, of callables taking
``(client, event: dict)``; ``rtm.on("message")`` appends one that calls the app's function only
for events of that ``type`` (``"*"``: every event), and not for the events the bot itself caused
(their ``bot_id`` is the client's, from ``auth.test``). This module keeps that shape:

* :func:`typed_listener` checks the app's function (a callable taking two positional arguments)
  and wraps it so;
* :class:`RTMListeners` is the engine's :class:`~slack_socket_mode.listeners.Listeners` for the RTM
  client: for each event the dispatcher runs, it calls every ``message_listeners`` entry with
  ``(client, event)``, on the reader that read it or a worker, as the engine chose; one that
  raises is logged with its traceback and the others still run.

The other lists (``on_message_listeners``, ``on_error_listeners``, ``on_close_listeners``,
``lifecycle_listeners``) are called by the base class, as for the Socket Mode client.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from ..errors import ConfigurationError
from ..listeners import ListenerLists, Listeners, Redelivery, contained, refuse_coroutine

if TYPE_CHECKING:
    from ..messages import Envelope

__all__ = ["EventListeners", "RTMListeners", "typed_listener"]


class EventListeners(Protocol):
    """What :class:`RTMListeners` reads of the RTM client: its ``message_listeners`` and ``bot_id``."""

    message_listeners: list[Any]
    bot_id: Optional[str]


def _name(func: Any) -> str:
    return str(getattr(func, "__name__", None) or f"{type(func).__module__}.{type(func).__name__}")


def typed_listener(client: EventListeners, event_type: str, func: Any) -> Callable[[Any, dict[str, Any]], None]:
    """The ``message_listeners`` entry of ``rtm.on(event_type)(func)``.

    It calls ``func(client, event)`` for the events whose ``type`` is ``event_type`` (any event
    for ``"*"``), except those whose ``bot_id`` is ``client.bot_id`` (the bot's own; with no
    ``bot_id`` known, as for a user token, none is skipped).

    Raises:
        ConfigurationError: ``func`` is not callable, or cannot be called with two positional
            arguments (``client, event``); also slack_sdk's ``SlackClientError``, with its message.
        TypeError: ``func`` is a coroutine function (this client calls listeners on threads).
    """
    if not callable(func):
        raise ConfigurationError(f"The listener '{func}' is not a Callable (actual: {type(func).__name__})")
    refuse_coroutine(func, f"rtm.on({event_type!r})")
    try:
        signature: Optional[inspect.Signature] = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature: taken as it is
        signature = None
    if signature is not None:
        try:
            signature.bind(None, None)
        except TypeError:
            actual = ", ".join(signature.parameters)
            raise ConfigurationError(
                f"The listener '{_name(func)}' must accept two args: client, event (actual: {actual})"
            ) from None

    def listener(rtm: Any, event: dict[str, Any]) -> None:
        bot_id = client.bot_id
        if bot_id is not None and event.get("bot_id") == bot_id:
            return  # an event the bot itself caused
        if event_type == "*" or event.get("type") == event_type:
            func(rtm, event)

    listener.__name__ = f"on_{event_type}:{_name(func)}"
    listener.__qualname__ = listener.__name__
    return listener


class RTMListeners(Listeners):
    """The engine's listeners for the RTM client (see the module's docstring).

    Args:
        rtm: the RTM client: the first argument of each listener, and its ``message_listeners``.
        side: the engine side of the client (the other listener lists).
        logger: where a failing listener is logged.

    Thread-safety: as the base class: any thread, no lock of the client held.
    """

    def __init__(self, rtm: EventListeners, side: ListenerLists, logger: logging.Logger) -> None:
        super().__init__(side, logger)
        self._rtm = rtm
        self._events_logger = logger

    def envelope(self, envelope: Envelope, text: str) -> Optional[Redelivery]:
        """Call each of ``message_listeners`` with ``(client, event)``; nothing is acked, nothing redelivered."""
        rtm = self._rtm
        event = envelope.body
        for listener in list(rtm.message_listeners):
            try:
                listener(rtm, event)
            except (Exception, SystemExit) as e:
                if not contained(e):
                    raise
                self._events_logger.exception(
                    "message listener %r failed on an event of type %s", listener, envelope.type
                )
        return None
