"""Run slack_sdk's and Bolt's own asyncio Socket Mode test suites against this package (issue 22, item 4).

Usage::

    python scripts/outside_suites.py --sdk PATH --bolt PATH [--out DIR]

``--sdk`` and ``--bolt`` are checkouts (or bare git directories) of
https://github.com/slackapi/python-slack-sdk and https://github.com/slackapi/bolt-python. Their
``tests/`` trees are copied to DIR (default: a temporary directory, outside this repository), twice:

* ``theirs``: unchanged, run against slack_sdk's own clients and Bolt's own handlers;
* ``ours``: with only the imports swapped (``slack_sdk.socket_mode.aiohttp.SocketModeClient`` and
  ``.websockets.SocketModeClient`` to ``slack_socket_mode.aio.SocketModeClient``; Bolt's
  ``AsyncSocketModeHandler`` of ``.aiohttp`` and ``.websockets`` to ``slack_socket_mode.bolt.AsyncSocketModeHandler``).

In both copies, the mock Socket Mode servers are changed in one way: they send ``hello`` when a
connection opens, as Slack does (slack_sdk's sends it only after the client's first message;
Bolt's never does, and this package's ``connect()`` waits for it). Then each suite
(``tests/slack_sdk_async/socket_mode`` and ``tests/adapter_tests_async/socket_mode``) is run with
pytest in its copy, one process per copy and repository, and a table says, for each test, whether
it passes with ours and with theirs. Exit status 1 when a test fails with ours but passes with
theirs, else 0.

Needs the ``test`` and ``async`` extras and pytest-asyncio (Bolt's tests are ``@pytest.mark.asyncio``):
``pip install -e ".[test]" pytest-asyncio``. Takes about 3 minutes (the tests sleep).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path

SUITES = {"sdk": "tests/slack_sdk_async/socket_mode", "bolt": "tests/adapter_tests_async/socket_mode"}

#: Import lines of the suites -> ours. Only imports change.
SWAPS = [
    (
        re.compile(r"^from slack_sdk\.socket_mode\.(aiohttp|websockets) import SocketModeClient$", re.M),
        "from slack_socket_mode.aio import SocketModeClient",
    ),
    (
        re.compile(
            r"^from slack_bolt\.adapter\.socket_mode\.(aiohttp|websockets) import AsyncSocketModeHandler$", re.M
        ),
        "from slack_socket_mode.bolt import AsyncSocketModeHandler",
    ),
]

HELLO = (
    '{"type":"hello","num_connections":1,"debug_info":{"host":"applink-111-xxx","build_number":10,'
    '"approximate_connection_time":18060},"connection_info":{"app_id":"A111"}}'
)

#: The mock servers: hello on open (the one change to them), as Slack does.
SERVERS = {
    "sdk": (
        "tests/slack_sdk/socket_mode/mock_socket_mode_server.py",
        "        await ws.prepare(request)\n",
        "        await ws.prepare(request)\n"
        "        state['hello_sent'] = True  # outside_suites.py: hello on open, as Slack does\n"
        "        await ws.send_str(socket_mode_hello_message)\n",
    ),
    "bolt": (
        "tests/adapter_tests/socket_mode/mock_socket_mode_server.py",
        "        await ws.prepare(request)\n",
        "        await ws.prepare(request)\n"
        f"        await ws.send_str({HELLO!r})  # outside_suites.py: hello on open, as Slack does\n",
    ),
}


def extract_tests(source: Path, into: Path) -> None:
    """Copy ``tests/`` of a checkout, or of a bare git directory's HEAD, to ``into/tests``."""
    into.mkdir(parents=True, exist_ok=True)
    if (source / "tests").is_dir():
        shutil.copytree(source / "tests", into / "tests")
        return
    archive = subprocess.run(
        ["git", f"--git-dir={source}", "archive", "HEAD", "tests"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.12, and backported to 3.9.17+, 3.10.12+, 3.11.4+
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)


def prepare(name: str, source: Path, into: Path, ours: bool) -> None:
    extract_tests(source, into)
    path, old, new = SERVERS[name]
    server = into / path
    text = server.read_text()
    assert old in text, f"{server}: the mock server changed; update outside_suites.py"
    server.write_text(text.replace(old, new, 1))
    if ours:
        for test in (into / SUITES[name]).glob("*.py"):
            text = test.read_text()
            for pattern, replacement in SWAPS:
                text = pattern.sub(replacement, text)
            test.write_text(text)


def run(into: Path, name: str) -> dict[str, str]:
    """Run one suite in its copy; {test id: "passed" | "failed" | "skipped"}."""
    report = into / "report.xml"
    env = {**os.environ, "PYTHONPATH": str(into), "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            SUITES[name],
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-o",
            "asyncio_mode=strict",
            "-o",
            "timeout=120",
            f"--junitxml={report}",
            "--rootdir",
            str(into),
        ],
        cwd=into,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        key = f"{case.get('classname', '').rsplit('.', 1)[0].split('.')[-1]}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            message = next(child.get("message", "") for child in case if child.tag in ("failure", "error"))
            outcomes[key] = "failed: " + " ".join(message.split())[:100]
        elif "skipped" in kinds:
            outcomes[key] = "skipped"
        else:
            outcomes[key] = "passed"
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdk", type=Path, required=True, help="python-slack-sdk checkout or git dir")
    parser.add_argument("--bolt", type=Path, required=True, help="bolt-python checkout or git dir")
    parser.add_argument("--out", type=Path, help="where to copy the tests (default: a temporary directory)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="outside-suites-"))
    sources = {"sdk": args.sdk, "bolt": args.bolt}
    results: dict[tuple[str, str], dict[str, str]] = {}
    for name, source in sources.items():
        for flavour in ("ours", "theirs"):
            into = out / flavour / name
            if into.exists():
                shutil.rmtree(into)
            prepare(name, source, into, ours=flavour == "ours")
            results[(name, flavour)] = run(into, name)
    regressions = 0
    print(f"{'suite':5} {'test':75} {'ours':40} theirs")
    for name in sources:
        ours, theirs = results[(name, "ours")], results[(name, "theirs")]
        for test in sorted(set(ours) | set(theirs)):
            mine, their = ours.get(test, "missing"), theirs.get(test, "missing")
            regressions += mine != "passed" and their == "passed"
            print(f"{name:5} {test:75} {mine:40} {their}")
    print(f"\n{regressions} test(s) fail with ours and pass with theirs; the copies are in {out}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
