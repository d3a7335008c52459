"""Check the built documentation site in headless Chromium, as a reader's browser shows it.

    python scripts/check_site.py SITE_DIR [--screenshots DIR]

Serves ``SITE_DIR`` (a ``mkdocs build``) from a local HTTP server on 127.0.0.1, under the path of
the site's ``site_url`` (as a host would serve it), and loads pages in Chromium
(``/usr/bin/chromium``, Debian's package ``chromium``), driven over the DevTools protocol. It
fails (exit status 1, each problem on a line of its own) when:

* a diagram does not render: a page's ```` ```mermaid ```` block (``<pre class="mermaid">`` in
  the built HTML) is still there unrendered after 20 s (or once Mermaid drew its error picture),
  or its SVG is empty or Mermaid's error picture ("Syntax error in text");
* a page asks for anything that is not on the local server (a CDN, a font service), or one of
  its requests fails or is answered 4xx/5xx, or a script on it throws;
* a table has an empty header row (``| | |``: the theme shows it as an empty bar);
* a page is wider than a 390 px phone screen (a table or a code block that does not scroll);
* the 404 page, served for a missing page deep under the site's path, loads a broken asset.

The pages with a diagram are loaded at 1280 px and 390 px, every other page at 390 px. Every
host name resolves to nothing in that Chromium (``--host-resolver-rules``); run as root with
``unshare`` and ``ip`` on ``PATH``, the whole check also runs in a network namespace of its own
that has only a loopback interface, so not even an address can be reached.

With ``--screenshots DIR`` it writes a PNG of each diagram (``<page>-<n>-<width>.png``) and of
the top of every page at 390 px, to look at.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import websocket  # websocket-client, a dependency of the package

CHROMIUM = "/usr/bin/chromium"
PHONE_WIDTH = 390
DESKTOP_WIDTH = 1280
#: How long a page may take to render its diagrams, in seconds.
RENDER_TIMEOUT = 20.0
#: How long one DevTools call may take, in seconds.
CALL_TIMEOUT = 30.0

#: Run in every page before its own scripts: mkdocs-material draws a diagram into a closed shadow
#: root; opened, the check can read the SVG in it. Nothing else changes.
_OPEN_SHADOW_ROOTS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: "open"}); };
"""
#: What the page shows of its diagrams and its width, as JSON.
_STATE = """
JSON.stringify({
  pending: document.querySelectorAll("pre.mermaid").length,
  diagrams: [...document.querySelectorAll("div.mermaid")].map((host) => {
    const svg = host.shadowRoot && host.shadowRoot.querySelector("svg");
    if (!svg) return null;
    const box = host.getBoundingClientRect();
    return {
      x: box.left + window.scrollX, y: box.top + window.scrollY, width: box.width, height: box.height,
      error: svg.getAttribute("aria-roledescription") === "error" || /Syntax error/i.test(svg.textContent),
      shapes: svg.querySelectorAll("path, rect, line, polygon, circle, ellipse, text").length,
    };
  }),
  stray_errors: [...document.querySelectorAll("body > div[id^='d'] svg[aria-roledescription='error']")].length,
  empty_headers: [...document.querySelectorAll("table thead tr")].filter(
    (tr) => ![...tr.cells].some((cell) => cell.textContent.trim())).length,
  wide_tables: [...document.querySelectorAll(".md-typeset__scrollwrap")].filter(
    (w) => w.scrollWidth > w.clientWidth + 1).length,
  scroll_width: document.documentElement.scrollWidth,
  inner_width: window.innerWidth,
  height: document.documentElement.scrollHeight,
  stylesheets: document.styleSheets.length,
})
"""


@dataclass
class PageResult:
    """What one page load showed."""

    url: str
    width: int
    problems: list[str] = field(default_factory=list)
    diagrams: int = 0
    #: Tables wider than the page, which scroll sideways in the theme's wrapper (not a problem).
    wide_tables: int = 0


class DevTools:
    """A DevTools protocol session with one Chromium page, over its WebSocket.

    Not thread-safe: one caller at a time.
    """

    def __init__(self, url: str) -> None:
        self._ws = websocket.create_connection(url, timeout=CALL_TIMEOUT, suppress_origin=True)
        self._next_id = 0
        #: Events received and not yet taken, oldest first.
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept.

        Raises:
            RuntimeError: Chromium answered with an error.
            websocket.WebSocketTimeoutException: no answer within :data:`CALL_TIMEOUT` seconds.
        """
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``event``; whether it came (kept in :attr:`events`)."""
        deadline = time.monotonic() + timeout
        while not any(e["method"] == event for e in self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._ws.settimeout(left)
            try:
                message = json.loads(self._ws.recv())
            except websocket.WebSocketTimeoutException:
                return False
            finally:
                self._ws.settimeout(CALL_TIMEOUT)
            if "method" in message:
                self.events.append(message)
        return True

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def close(self) -> None:
        """Close the session's WebSocket."""
        self._ws.close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site under ``prefix``; anything missing gets the site's 404 page, status 404."""

    prefix = "/"

    def translate_path(self, path: str) -> str:
        """The file for ``path``, which must start with :attr:`prefix` (else a name that is no file)."""
        clean = urllib.parse.urlsplit(path).path
        if not clean.startswith(self.prefix):
            return os.path.join(self.directory, "\0not under the site's path")
        return super().translate_path("/" + clean[len(self.prefix) :])

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """The site's own 404 page for a missing file, as a static host serves it."""
        page = Path(self.directory) / "404.html"
        if code != 404 or not page.is_file():
            super().send_error(code, message, explain)
            return
        body = page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: problems are reported by the check."""


@contextmanager
def serve(site: Path, prefix: str) -> Iterator[str]:
    """Serve ``site`` under ``prefix`` on 127.0.0.1 (a free port); yields the site's base URL."""
    handler = functools.partial(type("Handler", (_Handler,), {"prefix": prefix}), directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="check_site-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def chromium() -> Iterator[DevTools]:
    """A headless Chromium with one blank page; yields a DevTools session with that page.

    Raises:
        SystemExit: Chromium is not installed, or did not start within 30 s.
    """
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    profile = tempfile.mkdtemp(prefix="check_site-chromium-")
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--font-render-hinting=none",
            # No host name resolves: a page that needs a CDN cannot get it.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    session: Optional[DevTools] = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30.0
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Chromium did not start (exit status {process.poll()})")
            time.sleep(0.05)  # waiting for another process to write a file: no event to wait on
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=CALL_TIMEOUT) as answer:
            targets = json.load(answer)
        page = next(t for t in targets if t.get("type") == "page")
        session = DevTools(page["webSocketDebuggerUrl"])
        session.call("Page.enable")
        session.call("Network.enable")
        session.call("Runtime.enable")
        session.call("Page.addScriptToEvaluateOnNewDocument", source=_OPEN_SHADOW_ROOTS)
        yield session
    finally:
        if session is not None:
            session.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def _network_problems(events: list[dict[str, Any]], base: str, expect_404: str = "") -> list[str]:
    """Requests that left the local server, failed, or were answered with an error."""
    origin = urllib.parse.urlsplit(base)._replace(path="", query="", fragment="").geturl()
    problems: list[str] = []
    urls: dict[str, str] = {}
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params["requestId"]] = url
            if not url.startswith((origin + "/", "data:", "blob:", "about:")):
                problems.append(f"asks for {url}: not on the site")
        elif event["method"] == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"request failed: {urls.get(params['requestId'], '?')} ({params.get('errorText')})")
        elif event["method"] == "Network.responseReceived":
            status, url = params["response"]["status"], params["response"]["url"]
            if status >= 400 and url != expect_404:
                problems.append(f"{url} answered {status}")
        elif event["method"] == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"a script threw: {text}")
    return problems


def _name(url: str, base: str) -> str:
    """A file-name-safe name of a page, from its URL."""
    return re.sub(r"[^A-Za-z0-9]+", "-", url[len(base) :]).strip("-") or "index"


def load(
    tools: DevTools, url: str, base: str, width: int, expected: int, shots: Optional[Path], expect_404: bool = False
) -> PageResult:
    """Load ``url`` at ``width`` px and check it; ``expected`` is its number of diagrams."""
    result = PageResult(url, width)
    tools.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=width < 600)
    tools.events.clear()
    tools.call("Page.navigate", url=url)
    if not tools.wait_for("Page.loadEventFired", timeout=RENDER_TIMEOUT):
        result.problems.append("did not load")
        return result
    deadline = time.monotonic() + RENDER_TIMEOUT
    state = json.loads(tools.evaluate(_STATE))
    while state["pending"] and not state["stray_errors"] and time.monotonic() < deadline:
        time.sleep(0.1)  # Mermaid renders asynchronously; poll the page, bounded by the deadline
        state = json.loads(tools.evaluate(_STATE))
    # Whatever the page asked for while it rendered, and its exceptions.
    tools.wait_for("Network.neverHappens", timeout=0.3)
    result.problems += _network_problems(tools.events, base, url if expect_404 else "")
    diagrams = state["diagrams"]
    result.diagrams = sum(1 for d in diagrams if d)
    result.wide_tables = state["wide_tables"]
    if state["pending"]:
        result.problems.append(f"{state['pending']} diagram(s) not rendered")
    if len(diagrams) != expected:
        result.problems.append(f"{len(diagrams)} diagram(s) drawn, {expected} in the page's HTML")
    for n, diagram in enumerate(diagrams, 1):
        if diagram is None:
            result.problems.append(f"diagram {n}: no SVG")
        elif diagram["error"]:
            result.problems.append(f"diagram {n}: Mermaid's syntax error picture")
        elif diagram["shapes"] < 3 or diagram["width"] < 50 or diagram["height"] < 30:
            result.problems.append(f"diagram {n}: empty ({diagram['width']:.0f} x {diagram['height']:.0f} px)")
    if state["stray_errors"]:
        result.problems.append("Mermaid drew an error picture into the page")
    if state["scroll_width"] > state["inner_width"]:
        result.problems.append(
            f"{state['scroll_width']} px wide at a {state['inner_width']} px screen: something does not scroll"
        )
    if state["empty_headers"]:
        result.problems.append(f"{state['empty_headers']} table(s) with an empty header row")
    if not state["stylesheets"]:
        result.problems.append("no stylesheet")
    if shots is not None:
        name = _name(url, base)
        for n, diagram in enumerate(diagrams, 1):
            if diagram:
                clip = {k: diagram[k] for k in ("x", "y", "width", "height")} | {"scale": 1}
                shot = tools.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
                (shots / f"{name}-{n}-{width}.png").write_bytes(base64.b64decode(shot["data"]))
        if width == PHONE_WIDTH:
            shot = tools.call("Page.captureScreenshot", format="png")
            (shots / f"{name}-page-{width}.png").write_bytes(base64.b64decode(shot["data"]))
    return result


def _site_path() -> str:
    """The path of the site's ``site_url`` (mkdocs.yml), ending in ``/``."""
    from mkdocs.config import load_config

    root = Path(__file__).resolve().parent.parent
    url = load_config(str(root / "mkdocs.yml"))["site_url"] or "/"
    path = urllib.parse.urlsplit(url).path or "/"
    return path if path.endswith("/") else path + "/"


def check(site: Path, shots: Optional[Path]) -> list[str]:
    """Every problem found in ``site``, as lines."""
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    prefix = _site_path()
    problems: list[str] = []
    loads = 0
    with serve(site, prefix) as base, chromium() as tools:
        for page in pages:
            relative = page.relative_to(site).as_posix()
            url = base + (relative[: -len("index.html")] if relative.endswith("index.html") else relative)
            expected = page.read_text(encoding="utf-8").count('<pre class="mermaid">')
            for width in (DESKTOP_WIDTH, PHONE_WIDTH) if expected else (PHONE_WIDTH,):
                result = load(tools, url, base, width, expected, shots)
                loads += 1
                problems += [f"{url} at {width} px: {p}" for p in result.problems]
                if expected:
                    print(
                        f"{relative} at {width} px: {result.diagrams} of {expected} diagram(s) drawn", file=sys.stderr
                    )
                if result.wide_tables:
                    print(f"{relative} at {width} px: {result.wide_tables} table(s) scroll sideways", file=sys.stderr)
        missing = base + "no/such/page/deep/down/"
        result = load(tools, missing, base, PHONE_WIDTH, 0, shots, expect_404=True)
        loads += 1
        problems += [f"the 404 page ({missing}): {p}" for p in result.problems]
    print(f"check_site: {len(pages)} pages and the 404 page, {loads} loads, under {prefix}", file=sys.stderr)
    return problems


def _in_own_network_namespace(argv: list[str]) -> Optional[int]:
    """Run this script again in a network namespace with only loopback; its exit status, or None if not possible."""
    if os.environ.get("CHECK_SITE_NETNS") or os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        return None
    command = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, *argv]
    try:
        probe = subprocess.run(["unshare", "--net", "--", "true"], check=False, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if probe.returncode != 0:
        return None
    print("check_site: in a network namespace of its own (loopback only)", file=sys.stderr)
    return subprocess.run(command, env={**os.environ, "CHECK_SITE_NETNS": "1"}, check=False).returncode


def main(argv: Optional[list[str]] = None) -> int:
    """Check a built site; 0 if every page passed, 1 otherwise."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="scripts/check_site.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build --site-dir)")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="write PNG screenshots here")
    parser.add_argument("--no-netns", action="store_true", help="do not run in a network namespace of its own")
    args = parser.parse_args(argv)
    if not args.no_netns:
        status = _in_own_network_namespace([str(Path(__file__).resolve()), *argv])
        if status is not None:
            return status
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    problems = check(args.site.resolve(), args.screenshots)
    for problem in problems:
        print(problem)
    print(f"check_site: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
