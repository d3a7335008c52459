"""Proxy settings for the WebSocket and the Web API call.

One ``proxy`` option, a URL: ``http://[user:password@]host:port`` (HTTP CONNECT) or
``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://`` (needs the ``socks`` extra,
python-socks). Without it, the environment applies: websocket-client reads ``https_proxy``
/ ``HTTPS_PROXY`` (for ``wss://``) and ``http_proxy`` / ``HTTP_PROXY`` (for ``ws://``);
slack_sdk's WebClient reads ``HTTPS_PROXY`` / ``HTTP_PROXY``; hosts listed in ``NO_PROXY``
are reached directly by the WebSocket. Credentials live in a :class:`Hidden` value and
never appear in logs, reprs or exceptions.

``proxy_headers`` (as slack_sdk takes them) are sent on the HTTP proxy's ``CONNECT``:
websocket-client cannot add headers there, so the tunnel is opened with the standard
library's ``http.client`` (``HTTPConnection.set_tunnel``) and handed to websocket-client
as an open socket (:meth:`ProxySettings.open_tunnel`).
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from .errors import ConfigurationError, ConnectionFailedError, ProxyAuthError
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
    _headers: Hidden[dict[str, str]] = field(repr=False, default_factory=lambda: Hidden({}))

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

    def with_headers(self, headers: dict[str, str]) -> ProxySettings:
        """These settings, with extra headers for the ``CONNECT`` request (HTTP proxies only).

        Raises:
            ConfigurationError: a header name or value is not a string, or holds a line break.
        """
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, str) or any(c in name + value for c in "\r\n"):
                raise ConfigurationError("proxy_headers must map header names to values (strings, no line breaks)")
        return replace(self, _headers=Hidden(dict(headers)))

    @property
    def has_headers(self) -> bool:
        """True when ``CONNECT`` carries extra headers (the tunnel is then :meth:`open_tunnel`'s)."""
        return bool(self._headers.value)

    def open_tunnel(self, host: str, port: int, timeout: float) -> socket.socket:
        """Open a ``CONNECT`` tunnel to ``host:port`` through this HTTP proxy, with the extra headers.

        The proxy's credentials, if any, go in ``Proxy-Authorization`` unless the headers set
        it. Uses ``http.client``'s tunnel; the returned socket is connected to ``host:port``
        (TLS, if any, is the caller's) and has ``timeout`` set.

        Raises:
            ProxyAuthError: the proxy answered HTTP 407.
            ConnectionFailedError: the proxy could not be reached or refused the tunnel.
        """
        headers = dict(self._headers.value)
        auth = self._auth.value
        if auth is not None and not any(name.lower() == "proxy-authorization" for name in headers):
            basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers["Proxy-Authorization"] = f"Basic {basic}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.set_tunnel(host, port, headers=headers)
        failure: Optional[Exception] = None
        try:
            conn.connect()
        except OSError as e:  # http.client reports a refused CONNECT as OSError("Tunnel connection failed: 407 …")
            conn.close()
            text = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            if " 407" in text:
                failure = ProxyAuthError(
                    "the proxy refused the connection: HTTP 407 proxy authentication required "
                    "(check proxy_headers, or the user and password in the proxy URL)",
                    error="proxy_auth_required",
                )
            else:
                failure = ConnectionFailedError(f"the proxy failed: {text}", error="proxy_error")
        if failure is not None:
            raise failure  # outside the except clause: no __context__ (the request held the headers)
        sock = conn.sock
        conn.sock = None  # the socket is the caller's now
        assert sock is not None
        return sock

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
