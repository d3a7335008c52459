"""How long an open attempt against a trickling peer lasts, and how long ``close()`` takes during one.

Run it from the project root (with the package installed, or ``PYTHONPATH=src``)::

    python -m benchmarks.trickle                       # connect_timeout 10 s (the default)
    python -m benchmarks.trickle --connect-timeout 3

Each peer (:mod:`benchmarks.peers`, on loopback) sends its answer a byte at a time, each byte
well within every per-read timeout: ``apps.connections.open`` (a byte every 2 s, to a
``WebClient`` with slack_sdk's own 30 s timeout), the WebSocket upgrade response, a TLS
handshake, and an HTTP proxy's answer to ``CONNECT`` (websocket-client's tunnel, and
``http.client``'s when ``proxy_headers`` are set). For each: the seconds from ``connect()`` to
the first error listener call (the attempt failing), then, in a second client, the seconds
``close(5)`` takes when called 1 s into the attempt, and whether a thread of the client's is
left after it.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any, Callable

from slack_sdk.web import WebClient

from slack_socket_mode import Backoff, SocketModeClient

from .peers import Handler, RawPeer, trickling, trickling_proxy, trickling_tls, trickling_web_api, web_api

_TOKEN = "xapp-1-A0BENCH-1-trickle"
_SLOW = Backoff(base=60.0, cap=60.0)  # one attempt per client is what is measured


def _cases() -> dict[str, tuple[Callable[[], Handler], Callable[[RawPeer], str], dict[str, Any]]]:
    """name -> (the trickling peer, the URL apps.connections.open answers with, extra client options)."""
    return {
        "web api (1 byte / 2 s)": (lambda: trickling_web_api("ws://127.0.0.1:9/link/", 2.0), lambda p: "", {}),
        "websocket upgrade (1 byte / 0.5 s)": (lambda: trickling(0.5), lambda p: p.url(), {}),
        "tls handshake (1 byte / 0.5 s)": (lambda: trickling_tls(0.5), lambda p: p.url("wss"), {}),
        "proxy CONNECT (1 byte / 0.5 s)": (
            lambda: trickling_proxy(0.5),
            lambda p: "ws://127.0.0.2:9/link/",
            {"proxy": "{proxy}"},
        ),
        "proxy CONNECT, proxy_headers (1 byte / 0.5 s)": (
            lambda: trickling_proxy(0.5),
            lambda p: "ws://127.0.0.2:9/link/",
            {"proxy": "{proxy}", "proxy_headers": {"X-Trace": "1"}},
        ),
    }


def _client(
    name: str, peer: RawPeer, api_port: int, options: dict[str, Any], connect_timeout: float
) -> SocketModeClient:
    opts = dict(options)
    if "proxy" in opts:
        opts["proxy"] = f"http://127.0.0.1:{peer.port}"
    base_url = f"http://127.0.0.1:{peer.port if name.startswith('web api') else api_port}/api/"
    return SocketModeClient(
        _TOKEN,
        web_client=WebClient(base_url=base_url),
        connect_timeout=connect_timeout,
        reconnect_policy=_SLOW,
        **opts,
    )


def _measure(name: str, connect_timeout: float) -> tuple[float, float, list[str]]:
    make_peer, ws_url, options = _cases()[name]
    with RawPeer(make_peer()) as peer, RawPeer(web_api(ws_url(peer))) as api:
        failed = threading.Event()
        client = _client(name, peer, api.port, options, connect_timeout)
        client.on_error_listeners.append(lambda e: failed.set())
        started = time.monotonic()
        threading.Thread(target=_connect_quietly, args=(client,), daemon=True).start()
        failed.wait(connect_timeout * 10)
        to_fail = time.monotonic() - started if failed.is_set() else float("inf")
        client.close(5.0)

        client = _client(name, peer, api.port, options, connect_timeout)
        threading.Thread(target=_connect_quietly, args=(client,), daemon=True).start()
        time.sleep(1.0)  # into the attempt
        started = time.monotonic()
        client.close(5.0)
        to_close = time.monotonic() - started
        left = [t.name for t in threading.enumerate() if t.name.startswith(client._prefix + "-")]
    return to_fail, to_close, left


def _connect_quietly(client: SocketModeClient) -> None:
    try:
        client.connect(timeout=None)
    except Exception:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    args = parser.parse_args()
    print(f"connect_timeout {args.connect_timeout:g} s")
    for name in _cases():
        to_fail, to_close, left = _measure(name, args.connect_timeout)
        print(f"{name:48} attempt failed after {to_fail:6.2f} s; close() took {to_close:5.2f} s; threads left: {left}")


if __name__ == "__main__":
    main()
