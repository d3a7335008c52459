"""The exceptions raised by slack_socket_mode.

Every exception of ours derives from one root, :class:`SocketModeError`::

    SocketModeError
    ├── ConfigurationError        bad options or a malformed app-level token (also a ValueError and
    │                             slack_sdk's SlackClientConfigurationError)
    ├── NotConnectedError         nothing to send on (also slack_sdk's SlackClientNotConnectedError)
    ├── Redeliver                 raised by a listener: not handled here, let Slack's redelivery run it again
    ├── ConnectTimeoutError       connect() saw no ``hello`` in time (also a TimeoutError)
    ├── ConnectionFailedError     one attempt to open a connection failed; reconnecting goes on
    │   └── RateLimitedError      apps.connections.open answered HTTP 429 / ``ratelimited``
    └── FatalError                reconnecting has ended; the client will not try again
        ├── AuthError             the app-level token was refused (``invalid_auth``, ``token_revoked``, …)
        ├── LinkDisabledError     Socket Mode was turned off for the app (``disconnect`` reason ``link_disabled``)
        ├── InsecureURLError      apps.connections.open returned a URL the client will not open
        └── ProxyAuthError        the proxy refused our credentials (HTTP 407)

:class:`Redeliver` is the one raised by the application, not by the client: a listener raises
it and the client catches it (see its docstring).

A :class:`FatalError` is raised from :meth:`SocketModeClient.connect` when it happens
there, and is always passed to the client's error listeners. :class:`ConnectionFailedError`
is only ever passed to error listeners: the client retries with backoff.

No exception of ours carries a token: messages name the Slack error code and the HTTP
status, never the request, and text a peer sent is redacted. Errors from slack_sdk or
websocket-client are not chained, neither as ``__cause__`` nor as ``__context__``, because
their objects hold the request's headers; and an error the client hands to the application
carries no traceback (:func:`detached`), whose frames would hold them too.
"""

from __future__ import annotations

from typing import Optional, TypeVar

from slack_sdk.errors import SlackClientConfigurationError, SlackClientNotConnectedError

__all__ = [
    "FATAL_API_ERRORS",
    "AuthError",
    "ConfigurationError",
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "FatalError",
    "InsecureURLError",
    "LinkDisabledError",
    "NotConnectedError",
    "ProxyAuthError",
    "RateLimitedError",
    "Redeliver",
    "SocketModeError",
    "detached",
]

#: Web API error codes from ``apps.connections.open`` after which retrying cannot help.
FATAL_API_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "forbidden_team",
        "access_denied",
        "invalid_token",
    }
)


class SocketModeError(Exception):
    """Root of every exception raised by slack_socket_mode."""


class ConfigurationError(SocketModeError, ValueError, SlackClientConfigurationError):
    """An option passed to the client is invalid (raised at construction).

    Also slack_sdk's ``SlackClientConfigurationError``, which slack_sdk's clients raise for the same
    mistakes (``receive_buffer_size`` below 16), so an ``except`` written for slack_sdk still catches it.
    """


class NotConnectedError(SocketModeError, SlackClientNotConnectedError):
    """A message was to be sent but the client holds no open connection."""


class Redeliver(SocketModeError):
    """Raised by an envelope listener: "I did not handle this envelope; let Slack's redelivery run it again".

    Raise it when the listener could not do its work and has not acked, and a later attempt
    may succeed: a task queue's broker refused or timed out the publish
    (:class:`~slack_socket_mode.celery.CeleryHandoff` raises it then), a dependency is down.
    The client catches it (it is never raised to the caller) and:

    * logs one WARNING line with the envelope id and ``reason`` (no traceback; at DEBUG with ``logged=True``);
    * does not ack the envelope, so Slack redelivers it (3 s later, up to 3 times, on any of
      the app's connections: possibly another replica's);
    * when the envelope's listeners have all returned, forgets that they ran: the local ledger
      (``dedupe=True``) marks it not handled, so its next delivery is dispatched (the entry
      stays under the ledger's bounds); a shared ledger (``dedupe=RedisLedger(...)``) drops the
      replica's claim without recording the envelope done, so the redelivery is claimed and
      run by whichever replica it reaches.

    On that redelivery **all** of the envelope's listeners run again, not only the one that
    raised; the listeners after the one that raised still run on this delivery too (as after
    any exception). Make them idempotent, or keep the hand-off the envelope's only listener.

    What stays as it was: an envelope acked (by any of its listeners, before or after the
    raise) is never run again, its ack stands; a redelivery that arrives while the listeners
    still run is not dispatched a second time (it is answered by this run's outcome: if the
    run asks for a redelivery, Slack's next one runs it); listeners that return without acking
    and without raising are not run again on a redelivery (a WARNING says so). After Slack's
    last redelivery (``retry_attempt`` 3) there is no other: the envelope is then lost, as
    Slack drops it. With ``dedupe=False`` every redelivery is dispatched anyway.

    Args:
        reason: why, in a few words, for the log (do not put secrets in it).
        logged: the listener has logged why already (as :class:`~slack_socket_mode.celery.CeleryHandoff`
            does): the client's line about the redelivery is then at DEBUG, not WARNING, so that one
            failure makes one WARNING (or, for a failure it reports once, none).

    Thread-safety: raise it from any listener thread (reader or worker); it holds only ``reason`` and ``logged``.
    """

    def __init__(self, reason: str = "", *, logged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.logged = logged


class ConnectTimeoutError(SocketModeError, TimeoutError):
    """:meth:`SocketModeClient.connect` did not receive a ``hello`` within its timeout (seconds)."""


class ConnectionFailedError(SocketModeError):
    """One attempt to open a connection failed; the client retries with backoff.

    Attributes:
        error: the Slack error code (``"internal_error"``) or a short description of the
            transport failure (``"ConnectionRefusedError"``).
        status: the HTTP status of the failed request or handshake, when there was one.
    """

    def __init__(self, message: str, *, error: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.error = error
        self.status = status


class RateLimitedError(ConnectionFailedError):
    """``apps.connections.open`` answered HTTP 429 (``ratelimited``).

    Attributes:
        retry_after: seconds Slack asked the client to wait (its ``Retry-After`` header).
    """

    def __init__(self, message: str, *, retry_after: float, status: Optional[int] = 429) -> None:
        super().__init__(message, error="ratelimited", status=status)
        self.retry_after = retry_after


class FatalError(SocketModeError):
    """Reconnecting has ended for good: the client is in state ``FAILED``.

    Attributes:
        error: the Slack error code or ``disconnect`` reason that ended it.
    """

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


class AuthError(FatalError):
    """Slack refused the app-level token (``invalid_auth``, ``token_revoked``, ``missing_scope``, …).

    See https://api.slack.com/methods/apps.connections.open for the error codes.
    """


class LinkDisabledError(FatalError):
    """Slack sent ``disconnect`` with reason ``link_disabled``: Socket Mode is off for this app.

    Turn Socket Mode back on in the app's settings, then call ``connect()`` again.
    """


class InsecureURLError(FatalError):
    """``apps.connections.open`` returned a URL that is not ``wss://`` (``ws://`` is allowed on loopback only)."""


class ProxyAuthError(FatalError):
    """The proxy answered HTTP 407: its user or password in the ``proxy`` URL is wrong."""


_E = TypeVar("_E", bound=BaseException)


def detached(error: _E) -> _E:
    """``error`` with no traceback and nothing chained, as it crosses the client's one error boundary.

    A traceback's frames hold the locals of every call it passed through: slack_sdk's response,
    with the request's ``Authorization`` header, among them. Errors handed to the application
    (raised from ``connect()``, passed to error listeners) are detached first. Returns ``error``.
    """
    error.__traceback__ = None
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error
