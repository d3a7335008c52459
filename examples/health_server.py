"""A bot with a health check for Kubernetes probes and Prometheus metrics.

It serves two endpoints with the standard library's ``http.server``, bounded (``ProbeServer``):

* ``GET /healthz``: 200 and ``{"status": "ok", ...}`` while ``client.health()`` is healthy (a
  connection has said ``hello`` and no envelope waits too long for a worker), else 503 and
  ``{"status": "unhealthy", "reason": ...}``;
* ``GET /metrics``: the counters of ``client.stats()`` in Prometheus' text format (with the
  ``prometheus-client`` library: ``pip install "slack-socket-mode[prometheus]"``), read when
  Prometheus scrapes, so the bot does no work for metrics between scrapes.

Run it:

    SLACK_APP_TOKEN=xapp-... python examples/health_server.py
    curl -i localhost:8080/healthz && curl localhost:8080/metrics

The HTTP server listens on 127.0.0.1 unless HEALTH_HOST says otherwise (on Kubernetes the
kubelet probes the pod's IP: set HEALTH_HOST to it, see docs/how-to/kubernetes.md). A client
gets HEALTH_READ_TIMEOUT seconds for each read and write of its request and answer, and at most
HEALTH_MAX_CONNECTIONS are served at once, each on a thread of its own; at the bound the oldest
connection still sending its request (a client that trickles it, or sends nothing) is dropped
to make room, so a probe is answered while slow clients wait.

Environment:

    SLACK_APP_TOKEN   the app-level token (xapp-..., scope connections:write); required
    SLACK_BOT_TOKEN   a bot token (xoxb-...) for Web API calls from listeners; optional
    SLACK_API_URL     another Web API base URL, e.g. a local SocketModeServer's api_url
    HEALTH_PORT       the port of /healthz and /metrics (default 8080; 0 picks a free one)
    HEALTH_HOST       the address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
    HEALTH_READ_TIMEOUT    seconds each read or write of a request may wait for the client (default 5)
    HEALTH_MAX_CONNECTIONS connections served at once (default 16)
    MAX_QUEUE_WAIT    seconds an envelope may wait for a worker before /healthz says 503 (default 2)
    CONNECT_TIMEOUT   seconds to wait for the first hello before giving up (default 60)

It prints ``serving on PORT`` once the HTTP server listens and ``connected`` once Slack said
``hello``; /healthz answers 503 until then. SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C)
stops it cleanly: running listeners finish and send their acks, the connections close, and the
process exits 0. A token Slack refuses, or no ``hello`` within CONNECT_TIMEOUT, exits 1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from slack_socket_mode import ClientState, SocketModeClient, SocketModeError
from slack_socket_mode.stopping import StopWaiter

logger = logging.getLogger("health_server")


class ClientCollector(Collector):
    """Prometheus metrics read from one ``client.stats()`` snapshot per scrape."""

    def __init__(self, client: SocketModeClient, max_queue_wait: float) -> None:
        self.client = client
        self.max_queue_wait = max_queue_wait

    def collect(self) -> Iterator[Metric]:
        stats = self.client.stats()
        health = self.client.health(self.max_queue_wait)
        prefix = "slack_socket_mode"

        yield GaugeMetricFamily(
            f"{prefix}_healthy", "1 while client.health() is healthy, else 0", float(health.healthy)
        )
        state = GaugeMetricFamily(f"{prefix}_state", "1 for the client's current state", labels=["state"])
        for each in ClientState:
            state.add_metric([each.value], float(each.value == stats.state))
        yield state
        yield GaugeMetricFamily(
            f"{prefix}_connections_open", "Connections that said hello and are open", stats.connections_open
        )
        if stats.num_connections is not None:
            yield GaugeMetricFamily(
                f"{prefix}_num_connections",
                "num_connections from Slack's latest hello (the app's connections, all processes)",
                stats.num_connections,
            )
        yield CounterMetricFamily(
            f"{prefix}_connections_opened", "WebSocket connections opened", stats.connections_opened
        )
        reconnects = CounterMetricFamily(
            f"{prefix}_reconnects", "Connections replaced or lost, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.reconnects.items()):
            reconnects.add_metric([reason], count)
        yield reconnects
        yield CounterMetricFamily(
            f"{prefix}_envelopes_received", "Envelopes received (first deliveries)", stats.envelopes_received
        )
        yield CounterMetricFamily(f"{prefix}_envelopes_acked", "Acks sent, re-acks included", stats.envelopes_acked)
        yield CounterMetricFamily(
            f"{prefix}_envelopes_deduplicated",
            "Redeliveries not dispatched to the listeners again",
            stats.envelopes_deduplicated,
        )
        yield CounterMetricFamily(
            f"{prefix}_acks_suppressed", "Second acks not sent for the same delivery", stats.acks_suppressed
        )
        yield CounterMetricFamily(
            f"{prefix}_redeliveries_asked",
            "Envelopes left unacked for Slack's redelivery because a listener raised Redeliver",
            stats.redeliveries_asked,
        )
        yield CounterMetricFamily(
            f"{prefix}_malformed_messages", "Messages skipped as malformed", stats.malformed_messages
        )
        yield GaugeMetricFamily(f"{prefix}_queue_depth", "Envelopes waiting for a free worker", stats.queue_depth)
        yield GaugeMetricFamily(
            f"{prefix}_queue_oldest_wait_seconds",
            "How long the oldest envelope waiting for a worker has waited",
            stats.oldest_wait,
        )
        latency = GaugeMetricFamily(
            f"{prefix}_ack_latency_seconds",
            "From an envelope's arrival to its ack, over the last 1,024 acks",
            labels=["quantile"],
        )
        for quantile, value in (
            ("0.5", stats.ack_latency_p50),
            ("0.9", stats.ack_latency_p90),
            ("0.99", stats.ack_latency_p99),
        ):
            if value is not None:
                latency.add_metric([quantile], value)
        yield latency


class ProbeServer(ThreadingHTTPServer):
    """``http.server``'s threaded server, bounded for a pod's probes and scrapes.

    Each connection is served on a thread of its own, at most ``max_connections`` at once; the
    handler's ``timeout`` bounds each read and write. At the bound, the oldest connection that has
    not yet sent its whole request (a client that trickles it, or sends nothing) is shut down to
    make room for the new one, whose request is most likely a probe, and the new one is served
    once that connection's thread has ended (at once: its socket reads nothing more). If every
    connection is being answered, the new one is closed unanswered. Thread-safe.
    """

    daemon_threads = True  # a connection still open at exit does not hold the process
    request_queue_size = 64  # connections the kernel holds until accept(): a burst of them is not refused

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self.max_connections = max_connections
        self._ended = threading.Condition()  # a connection's thread ended; guards the two below
        self._open: set[Any] = set()  # connections with a thread
        self._waiting: dict[Any, None] = {}  # those still sending their request, oldest first
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:  # the serve_forever thread
        with self._ended:
            if len(self._open) >= self.max_connections:
                oldest = next(iter(self._waiting), None)
                if oldest is not None:
                    del self._waiting[oldest]
                    try:
                        oldest.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self._ended.wait_for(lambda: len(self._open) < self.max_connections, timeout=1.0)
            admitted = len(self._open) < self.max_connections
            if admitted:
                self._open.add(request)
                self._waiting[request] = None
        if admitted:
            super().process_request(request, client_address)
        else:  # every connection is being answered
            super().shutdown_request(request)

    def request_read(self, request: Any) -> None:
        """The handler has read ``request``'s request line and headers: it is being answered."""
        with self._ended:
            self._waiting.pop(request, None)

    def shutdown_request(self, request: Any) -> None:  # the last step of every admitted connection
        super().shutdown_request(request)
        with self._ended:
            self._open.discard(request)
            self._waiting.pop(request, None)
            self._ended.notify_all()


def handler_class(client: SocketModeClient, max_queue_wait: float, read_timeout: float) -> type[BaseHTTPRequestHandler]:
    """The request handler for /healthz and /metrics (each read and write waits at most ``read_timeout`` s)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = read_timeout  # socketserver sets it on the connection: every read and write is bounded

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            if isinstance(self.server, ProbeServer):
                self.server.request_read(self.connection)
            return parsed

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                health = client.health(max_queue_wait)
                body: dict[str, object] = {
                    "status": "ok" if health.healthy else "unhealthy",
                    "state": health.state,
                    "oldest_wait": round(health.oldest_wait, 3),
                }
                if not health.healthy:
                    body["reason"] = health.reason
                self._send(200 if health.healthy else 503, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept"))
                self._send(200, content_type, encoder(REGISTRY))
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: keep them quiet
            logger.debug("%s " + format, self.address_string(), *args)

    return Handler


def handle(client: SocketModeClient, request: SocketModeRequest) -> None:
    """The bot: ack first, then do the work (Slack redelivers envelopes not acked within 3 s)."""
    client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
    if request.type == "events_api":
        logger.info("event: %s", request.payload.get("event", {}).get("type"))
    else:
        logger.info("envelope: %s", request.type)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    token = os.environ.get("SLACK_APP_TOKEN")
    if not token:
        print("health_server: set SLACK_APP_TOKEN to an app-level token (xapp-...)", file=sys.stderr)
        return 2
    port = int(os.environ.get("HEALTH_PORT", "8080"))
    host = os.environ.get("HEALTH_HOST", "127.0.0.1")
    read_timeout = float(os.environ.get("HEALTH_READ_TIMEOUT", "5"))
    max_connections = int(os.environ.get("HEALTH_MAX_CONNECTIONS", "16"))
    max_queue_wait = float(os.environ.get("MAX_QUEUE_WAIT", "2"))
    connect_timeout = float(os.environ.get("CONNECT_TIMEOUT", "60"))

    client = SocketModeClient(
        app_token=token,
        web_client=WebClient(
            token=os.environ.get("SLACK_BOT_TOKEN"),
            base_url=os.environ.get("SLACK_API_URL") or WebClient.BASE_URL,
        ),
    )
    client.socket_mode_request_listeners.append(handle)
    REGISTRY.register(ClientCollector(client, max_queue_wait))

    httpd = ProbeServer((host, port), handler_class(client, max_queue_wait, read_timeout), max_connections)
    threading.Thread(target=httpd.serve_forever, name="health-http", daemon=True).start()
    print(f"serving on {httpd.server_address[1]}", flush=True)

    failures: list[SocketModeError] = []
    # SIGTERM (Kubernetes) or SIGINT (Ctrl-C) ends the wait below; so does a failed connect().
    # A StopWaiter rather than an Event set by a signal handler: a signal that lands as an Event's
    # wait begins can be lost, and the process would then never stop.
    with StopWaiter([signal.SIGTERM, signal.SIGINT]) as stop:

        def connect() -> None:
            try:
                client.connect(timeout=connect_timeout)
            except SocketModeError as e:
                if not client.closed:  # close() during connect() is a stop, not a failure
                    failures.append(e)
                stop.stop()
                return
            print("connected", flush=True)

        # connect() in a thread, so that SIGTERM stops the bot even while it is still connecting
        threading.Thread(target=connect, name="connect", daemon=True).start()
        stop.wait()
    client.close()
    httpd.shutdown()
    httpd.server_close()
    if failures:
        print(f"health_server: {failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
