"""Proxy settings for the WebSocket and the Web API call.

One ``proxy`` option, a URL: ``http://[user:password@]host:port`` (HTTP CONNECT) or
``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://`` (needs the ``socks`` extra,
python-socks). Without it, the environment applies: websocket-client reads ``https_proxy``
/ ``HTTPS_PROXY`` (for ``wss://``) and ``http_proxy`` / ``HTTP_PROXY`` (for ``ws://``);
slack_sdk's WebClient reads ``HTTPS_PROXY`` / ``HTTP_PROXY``; hosts listed in ``NO_PROXY``
are reached directly by the WebSocket. Credentials live in a :class:`Hidden` value and
never appear in logs, reprs or exceptions.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from .errors import ConfigurationError
from .redaction import Hidden
from .urls import safe_url

__all__ = ["ProxySettings"]

_SOCKS = frozenset({"socks4", "socks4a", "socks5", "socks5h"})


@dataclass(frozen=True)
class ProxySettings:
    """A parsed proxy. ``repr()`` shows the URL without credentials.

    Attributes:
        scheme: ``http`` or a SOCKS scheme.
        host: the proxy's host name or address.
        port: the proxy's TCP port.
    """

    scheme: str
    host: str
    port: int
    _url: Hidden[str] = field(repr=False)
    _auth: Hidden[Optional[tuple[str, str]]] = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> ProxySettings:
        """Parse a proxy URL.

        Raises:
            ConfigurationError: not a URL with a host and port, an unsupported scheme (an
                ``https://`` proxy is not supported by websocket-client), or a SOCKS proxy
                without python-socks installed. The message never includes credentials.
        """
        parts = urlsplit(url)
        scheme = (parts.scheme or "").lower()
        shown = safe_url(url) if parts.scheme else "a value that is not a URL"
        if scheme not in _SOCKS and scheme != "http":
            raise ConfigurationError(
                f"proxy must be http://host:port or socks5://host:port (got {shown}); "
                "https:// proxies are not supported by websocket-client"
            )
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            raise ConfigurationError(f"proxy needs a host and a port (got {shown})")
        if scheme in _SOCKS and importlib.util.find_spec("python_socks") is None:
            raise ConfigurationError(f"a {scheme} proxy needs python-socks: pip install 'slack-socket-mode[socks]'")
        auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        return cls(scheme, parts.hostname, port, Hidden(url), Hidden(auth))

    @classmethod
    def from_websocket_client_options(
        cls,
        host: str,
        port: Optional[int],
        auth: Optional[tuple[str, str]],
        proxy_type: Optional[str],
    ) -> ProxySettings:
        """Build settings from slack_sdk's websocket-client options (``http_proxy_host`` …)."""
        scheme = (proxy_type or "http").lower()
        if not port:
            raise ConfigurationError("http_proxy_port is required with http_proxy_host")
        netloc = f"{host}:{port}"
        return (
            cls.parse(f"{scheme}://{netloc}")
            if auth is None
            else cls(scheme, host, port, Hidden(f"{scheme}://{netloc}"), Hidden(auth))
        )

    @property
    def is_http(self) -> bool:
        """True for an HTTP CONNECT proxy (the WebClient can use it too)."""
        return self.scheme == "http"

    @property
    def url(self) -> str:
        """The proxy URL with its credentials. Never log it."""
        return self._url.value

    def websocket_options(self) -> dict[str, Any]:
        """Keyword arguments for ``websocket.WebSocket.connect``."""
        options: dict[str, Any] = {
            "http_proxy_host": self.host,
            "http_proxy_port": self.port,
            "proxy_type": self.scheme,
        }
        if self._auth.value is not None:
            options["http_proxy_auth"] = self._auth.value
        return options

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"
