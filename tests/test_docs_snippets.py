"""Every Python snippet of README.md and docs/**/*.md runs as written, against the local server.

Each ```` ```python ```` block of a page is a script, run in a process of its own in an empty
directory, with ``SLACK_APP_TOKEN`` and ``SLACK_BOT_TOKEN`` set to test tokens, ``REDIS_URL`` to
the tests' Redis (for the snippets that read it), and slack_sdk's default Web API URL
(``https://slack.com/api/``, which a ``WebClient`` or a client built without ``base_url`` uses)
pointed at a local :class:`SocketModeServer`. It must exit with status 0. A script that defines
``test_`` functions is run by pytest instead (the ``socket_mode_server`` fixtures come from the
package's plugin), and its tests must pass. A script that waits for Ctrl-C (``Event().wait()``,
a ``StopWaiter``'s ``stop.wait()``, an asyncio app's ``await asyncio.Event().wait()`` or
``asyncio.run(….start_async())``, an RTM bot's ``rtm.start()``) is sent SIGINT once it has
connected, and must stop: with status 0, or with the ``KeyboardInterrupt`` a user sees when the
snippet does not catch it.

An HTML comment on the line before a block changes that, and is all that does:

* ``<!-- snippet: continues -->``: the block is run after the one before it on the page, as one
  script (it uses what that one imported and built);
* ``<!-- snippet: not run: REASON -->``: the block is not run (a fragment, or something that
  needs what only the reader has); the reason is required and shows in the skip.

A block that only includes a file (``--8<-- "examples/…"``) is not run here: the examples have
tests of their own (tests/test_examples.py, ``test_every_example_has_a_smoke_test``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slack_socket_mode.testing import SocketModeServer

from .conftest import APP_TOKEN, timeout
from .services import redis_url

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>\s*)```(?:python|py)\b.*$")
_MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<what>.*?)\s*-->\s*$")
_INCLUDE = re.compile(r'^\s*--8<--\s+"[^"]+"\s*$')
#: A script that waits for Ctrl-C.
_WAITS = re.compile(
    r"^\s*(Event\(\)\.wait\(\)|stop\.wait\(\)|await asyncio\.Event\(\)\.wait\(\)"
    r"|asyncio\.run\(.*\.start_async\(\)\)|rtm\.start\(\))\s*(#.*)?$",
    re.MULTILINE,
)
#: Run first in each script: slack_sdk's default Web API URL becomes the local server's.
_PRELUDE = """\
import os, runpy, sys
from slack_sdk.web import base_client

_url = os.environ["SNIPPET_SLACK_API_URL"]
_init = base_client.BaseClient.__init__
_init.__defaults__ = tuple(_url if d == base_client.BaseClient.BASE_URL else d for d in _init.__defaults__)
base_client.BaseClient.BASE_URL = _url
try:  # slack_sdk's AsyncWebClient too, where aiohttp is installed (the asyncio client's snippets)
    from slack_sdk.web import async_base_client
except ImportError:
    pass
else:
    _ainit = async_base_client.AsyncBaseClient.__init__
    _abase = async_base_client.AsyncBaseClient.BASE_URL
    _ainit.__defaults__ = tuple(_url if d == _abase else d for d in _ainit.__defaults__)
    async_base_client.AsyncBaseClient.BASE_URL = _url
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass(frozen=True)
class Snippet:
    """One block of a page, with the blocks it continues."""

    page: str  #: relative to the project root
    line: int  #: the line of its opening fence (1-based)
    code: str  #: the script: the blocks it continues, then its own
    skip: str | None  #: why it is not run, or None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def snippets(path: Path) -> Iterator[Snippet]:
    """The Python blocks of one Markdown page, in order (includes left out)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(ROOT))
    previous: Snippet | None = None
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        indent = fence.group("indent")
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].rstrip() != f"{indent}```":
            body.append(lines[index][len(indent) :])
            index += 1
        index += 1
        if all(_INCLUDE.match(line) or not line.strip() for line in body):
            continue
        marker = _MARKER.match(lines[start - 1]) if start > 0 else None
        what = marker.group("what") if marker else ""
        code = "\n".join(body) + "\n"
        skip: str | None = None
        if what == "continues":
            assert previous is not None, f"{page}:{start + 1}: 'continues' with no block before it"
            code = previous.code + "\n" + code
            if previous.skip is not None:  # the reason of the first block of the chain
                skip = (
                    previous.skip
                    if previous.skip.startswith("continues ")
                    else f"continues {previous}: {previous.skip}"
                )
        elif what.startswith("not run:") and what[len("not run:") :].strip():
            skip = what[len("not run:") :].strip()
        else:
            assert not what, f"{page}:{start + 1}: unknown marker {what!r} (a 'not run' needs a reason)"
        previous = Snippet(page, start + 1, code, skip)
        yield previous


SNIPPETS = [snippet for page in PAGES for snippet in snippets(page)]


def test_the_pages_have_snippets_and_few_are_not_run() -> None:
    """The collection itself: it finds the blocks, and markers stay the exception."""
    assert len(SNIPPETS) >= 25
    assert any(s.page == "README.md" for s in SNIPPETS)
    heads = [s for s in SNIPPETS if s.skip is not None and not s.skip.startswith("continues ")]
    assert len(heads) <= 8, [f"{s}: {s.skip}" for s in heads]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=str)
def test_the_snippet_runs_as_written(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.skip is not None:
        pytest.skip(snippet.skip)
    env = dict(os.environ, SLACK_APP_TOKEN=APP_TOKEN, SLACK_BOT_TOKEN="xoxb-111-222-snippet")
    env.pop("PYTEST_ADDOPTS", None)
    if "REDIS_URL" in snippet.code:
        env["REDIS_URL"] = redis_url()
    with SocketModeServer(redelivery_delay=None) as server:
        env["SNIPPET_SLACK_API_URL"] = server.api_url
        if re.search(r"^def test_", snippet.code, re.MULTILINE):
            (tmp_path / "test_snippet.py").write_text(snippet.code, encoding="utf-8")
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_snippet.py"]
        else:
            (tmp_path / "snippet.py").write_text(snippet.code, encoding="utf-8")
            command = [sys.executable, "-c", _PRELUDE, "snippet.py"]
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            if _WAITS.search(snippet.code):
                _stop_once_connected(proc, server)
            stdout, stderr = proc.communicate(timeout=timeout(60))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    output = f"{snippet}: exit status {proc.returncode}\n{stdout}\n{stderr}"
    if proc.returncode != 0 and _WAITS.search(snippet.code):  # stopped by SIGINT, not caught: as a user sees it
        assert stderr.rstrip().splitlines()[-1:] == ["KeyboardInterrupt"], output
    else:
        assert proc.returncode == 0, output


def _stop_once_connected(proc: subprocess.Popen[str], server: SocketModeServer) -> None:
    """Wait until the script has connected to ``server``, then press Ctrl-C (SIGINT) until it ends."""
    paced = threading.Event()  # never set: its wait paces the checks
    end = time.monotonic() + timeout(20)
    while proc.poll() is None and not server.connections and time.monotonic() < end:
        paced.wait(0.05)
    assert proc.poll() is None, "the script ended before it connected, though it waits for Ctrl-C"
    assert server.connections, "the script did not connect"
    end = time.monotonic() + timeout(20)
    while proc.poll() is None and time.monotonic() < end:
        proc.send_signal(signal.SIGINT)  # again if it was lost (one landing as Event().wait() begins can be)
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            continue
