"""Keeping secrets out of logs, reprs and exceptions.

:class:`Secret` holds a token; its ``repr()`` and ``str()`` show only the token's kind.
:func:`redact` removes every known Slack token shape from a text before it is logged.
"""

from __future__ import annotations

import re
from typing import Final, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Hidden", "Secret", "redact"]

# xapp- (app-level), xoxb- (bot), xoxp- (user), xoxe- (refresh/config), xoxc-/xoxd- (browser session
# and its cookie), xoxa/xoxr/xoxs, xwfp- (workflow). No \b before the prefix: a token may follow a word
# character ("token_xoxb-…", URL-encoded "%22xoxb-…"); redacting too much is the safe side. The value
# runs over URL-encoding (%2B) and base64 padding too. Either case: "XAPP-…" is redacted as well
# (spelled out in ASCII classes: re.IGNORECASE would load Unicode case tables, 0.3 MB of memory).
_TOKEN_RE: Final = re.compile(
    r"([xX][aA][pP][pP]|[xX][oO][xX][aAbBcCdDeEpPrRsS]|[xX][wW][fF][pP])-[A-Za-z0-9\-._~+/%=]*"
)
# user:password@ in URLs (proxies).
_USERINFO_RE: Final = re.compile(r"(?<=://)[^/@\s:]+(:[^/@\s]*)?@")


def redact(text: str) -> str:
    """Return ``text`` with Slack tokens replaced by ``<kind>-***`` and URL credentials by ``***@``.

    Thread-safe; pure.
    """
    if "x" in text or "X" in text:
        text = _TOKEN_RE.sub(lambda m: f"{m.group(1).lower()}-***", text)
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
