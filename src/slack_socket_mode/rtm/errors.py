"""The RTM client's own exception: a refused token, both ours and slack_sdk's.

:class:`RTMAuthError` is what ``rtm.connect`` (or the ``auth.test`` that :meth:`RTMClient.connect`
makes first) raises when Slack refuses the token: ``invalid_auth``, ``not_allowed_token_type``,
``account_inactive``, ``token_revoked``, … (:data:`~slack_socket_mode.errors.FATAL_API_ERRORS`).
It is an :class:`~slack_socket_mode.errors.AuthError` (so a
:class:`~slack_socket_mode.errors.FatalError`: reconnecting ends) and slack_sdk's
``SlackApiError``, which slack_sdk's ``RTMClient`` raises there, so an ``except SlackApiError``
written for slack_sdk still catches it. Its ``response`` is a plain dict of what Slack answered
(``{"ok": False, "error": "invalid_auth"}``), never the request, so it holds no token.
"""

from __future__ import annotations

from typing import Any, Optional

from slack_sdk.errors import SlackApiError

from ..errors import AuthError

__all__ = ["RTMAuthError"]


class RTMAuthError(AuthError, SlackApiError):
    """Slack refused the RTM client's token (``invalid_auth``, ``not_allowed_token_type``, ``account_inactive``, …).

    Args:
        message: what happened (no token in it).
        error: the Slack error code.
        response: what Slack answered, as a dict (default ``{"ok": False, "error": error}``).

    Attributes:
        error: the Slack error code.
        response: the answer, a dict (slack_sdk's ``SlackApiError.response``; ``response["error"]`` works).
    """

    def __init__(self, message: str, *, error: str, response: Optional[dict[str, Any]] = None) -> None:
        Exception.__init__(self, message)  # both bases' constructors take other arguments: set their fields here
        self.error = error
        self.response = response if response is not None else {"ok": False, "error": error}

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
