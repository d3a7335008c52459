"""Keeping secrets out of logs, reprs and exceptions.

:class:`Secret` holds a token; its ``repr()`` and ``str()`` show only the token's kind.
:func:`redact` removes every known Slack token shape from a text before it is logged.
"""

from __future__ import annotations

import logging
import re
from typing import Final, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Hidden", "RedactingFilter", "Secret", "redact"]

# xapp- (app-level), xoxb- (bot), xoxp- (user), xoxe- (refresh/config), xoxc-/xoxd- (browser session
# and its cookie), xoxa/xoxr/xoxs, xwfp- (workflow). No \b before the prefix: a token may follow a word
# character ("token_xoxb-…", URL-encoded "%22xoxb-…"); redacting too much is the safe side. The value
# runs over URL-encoding (%2B) and base64 padding too. Either case: "XAPP-…" is redacted as well
# (spelled out in ASCII classes: re.IGNORECASE would load Unicode case tables, 0.3 MB of memory).
_TOKEN_RE: Final = re.compile(
    r"([xX][aA][pP][pP]|[xX][oO][xX][aAbBcCdDeEpPrRsS]|[xX][wW][fF][pP])-[A-Za-z0-9\-._~+/%=]*"
)
# user:password@ in URLs (proxies), the user possibly empty (redis://:password@host).
_USERINFO_RE: Final = re.compile(r"(?<=://)[^/@\s:]*(:[^/@\s]*)?@")
# HTTP credentials, as a peer may echo a request's headers (a proxy's 502 page, a Web API error):
# "Authorization: Basic dXNlcjpwYXNz", "Proxy-Authorization: Bearer …". Either case. The value must
# hold a digit or one of +/=% (base64 and tokens do; "Basic Information" in prose does not).
_CREDENTIALS_RE: Final = re.compile(
    r"\b([bB][aA][sS][iI][cC]|[bB][eE][aA][rR][eE][rR])(?:\s+|%20|\+)"
    r"(?=[A-Za-z\-._~]*[0-9+/=%*])[A-Za-z0-9\-._~+/%=*]+"
)


def redact(text: str) -> str:
    """Return ``text`` with secrets replaced: Slack tokens by ``<kind>-***``, URL credentials by
    ``***@``, ``Basic``/``Bearer`` credentials by ``Basic ***``.

    Thread-safe; pure.
    """
    if "x" in text or "X" in text:
        text = _TOKEN_RE.sub(lambda m: f"{m.group(1).lower()}-***", text)
    if "asic" in text or "earer" in text or "ASIC" in text or "EARER" in text:
        text = _CREDENTIALS_RE.sub(lambda m: f"{m.group(1)} ***", text)
    if "@" in text:
        text = _USERINFO_RE.sub("***@", text)
    return text


class Secret:
    """A string that must not leak: ``repr()``/``str()`` print ``Secret('xapp-***')``.

    Use :meth:`reveal` at the one place the value is needed (the ``Authorization`` header).
    Immutable and thread-safe.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Never log what this returns."""
        return self._value

    @property
    def kind(self) -> str:
        """The token's prefix (``"xapp"``), or ``"secret"`` if it has no known shape."""
        m = _TOKEN_RE.match(self._value)
        return m.group(1).lower() if m else "secret"

    def __repr__(self) -> str:
        return f"Secret('{self.kind}-***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:  # refuse pickling, which would write the token out
        raise TypeError("Secret cannot be pickled")


class Hidden(Generic[T]):
    """Any value that may hold credentials (proxy settings); ``repr()`` shows ``<hidden>``."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message (with its arguments) and its exception text.

    The client puts one on the logger it gives the ``WebClient`` it builds: slack_sdk logs
    requests and responses at DEBUG, and a peer's answer may echo the request's headers.
    Thread-safe.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template only
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
