"""A bot with a health check for Kubernetes probes and Prometheus metrics.

It serves two endpoints with the standard library's ``http.server``:

* ``GET /healthz``: 200 and ``{"status": "ok", ...}`` while ``client.health()`` is healthy (a
  connection has said ``hello`` and no envelope waits too long for a worker), else 503 and
  ``{"status": "unhealthy", "reason": ...}``;
* ``GET /metrics``: the counters of ``client.stats()`` in Prometheus' text format (with the
  ``prometheus-client`` library: ``pip install "slack-socket-mode[prometheus]"``), read when
  Prometheus scrapes, so the bot does no work for metrics between scrapes.

Run it:

    SLACK_APP_TOKEN=xapp-... python examples/health_server.py
    curl -i localhost:8080/healthz && curl localhost:8080/metrics

Environment:

    SLACK_APP_TOKEN   the app-level token (xapp-..., scope connections:write); required
    SLACK_BOT_TOKEN   a bot token (xoxb-...) for Web API calls from listeners; optional
    SLACK_API_URL     another Web API base URL, e.g. a local SocketModeServer's api_url
    HEALTH_PORT       the port of /healthz and /metrics (default 8080; 0 picks a free one)
    HEALTH_HOST       the address to listen on (default 0.0.0.0)
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
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def handler_class(client: SocketModeClient, max_queue_wait: float) -> type[BaseHTTPRequestHandler]:
    """The request handler for /healthz and /metrics."""

    class Handler(BaseHTTPRequestHandler):
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
    host = os.environ.get("HEALTH_HOST", "0.0.0.0")
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

    httpd = ThreadingHTTPServer((host, port), handler_class(client, max_queue_wait))
    httpd.daemon_threads = True
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
