"""Which WebSocket URLs the client agrees to open."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import InsecureURLError

__all__ = ["check_socket_url", "is_loopback_host", "safe_url"]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8, ``::1``, and the unspecified addresses ``0.0.0.0`` and ``::``.

    As a destination, an unspecified address is this host: Linux and macOS connect it to
    loopback (``ws://0.0.0.0:3011`` is what slack_sdk's own tests use).
    """
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def check_socket_url(url: str, *, allow_insecure: bool = False) -> str:
    """Return ``url`` if the client may open it, else raise :class:`InsecureURLError`.

    ``wss://`` is always allowed; ``ws://`` only for loopback hosts (local servers such as
    :class:`slack_socket_mode.testing.SocketModeServer`) unless ``allow_insecure`` is True.
    The error message never includes the URL's query (it carries a connection ticket).

    Raises:
        InsecureURLError: another scheme, ``ws://`` to a host that is not loopback, or a URL
            that does not parse (a bad port, broken brackets).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise InsecureURLError(
            f"refusing to open {safe_url(url)}: the URL does not parse", error="insecure_url"
        ) from None  # urllib's error holds no secret; the URL is not in our message
    if parts.scheme == "wss":  # urlsplit lower-cases the scheme
        return url
    if parts.scheme == "ws" and (allow_insecure or is_loopback_host(parts.hostname or "")):
        return url
    raise InsecureURLError(
        f"refusing to open {safe_url(url)}: only wss:// URLs (or ws:// on loopback) are allowed; "
        "pass allow_insecure_urls=True to override",
        error="insecure_url",
    )


def safe_url(url: str) -> str:
    """``url`` without its query, fragment and credentials, for logs. Never raises."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a URL that does not parse: show only its scheme
        scheme = url.split(":", 1)[0] if ":" in url else ""
        return f"{scheme}://<unparsable URL>" if scheme.isalpha() else "<unparsable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
