"""The ``slack-socket-mode`` command (also ``python -m slack_socket_mode``)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Optional

__all__ = ["main"]


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="slack-socket-mode",
        description="A Slack Socket Mode client that never loses an envelope.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a bot against a local Socket Mode server replaying real envelopes (no Slack needed)",
    )
    demo.add_argument("--quiet", action="store_true", help="print only the summary line")
    demo.add_argument("--verbose", action="store_true", help="log the client's lifecycle at INFO")
    listen = commands.add_parser(
        "listen",
        help="connect with SLACK_APP_TOKEN and print each envelope as it arrives",
    )
    listen.add_argument("--json", action="store_true", help="one JSON object per envelope per line")
    listen.add_argument("--ack", action="store_true", help="ack each envelope (default: print only)")
    listen.add_argument(
        "--debug-reconnects",
        action="store_true",
        help="ask Slack for short-lived connections (debug_reconnects=true) to watch rotations",
    )
    listen.add_argument("--api-url", help="another Web API base URL, e.g. a local server's (default: Slack's)")
    listen.add_argument("--count", type=int, help="exit after this many envelopes")
    args = parser.parse_args(argv)
    if args.command == "listen":
        from .listen import run_listen

        return run_listen(
            as_json=args.json,
            ack=args.ack,
            debug_reconnects=args.debug_reconnects,
            api_url=args.api_url or os.environ.get("SLACK_API_URL"),
            count=args.count,
        )
    if args.command == "demo":
        if importlib.util.find_spec("websockets") is None:
            print(
                "slack-socket-mode demo needs the local test server's extra: pip install 'slack-socket-mode[testing]'",
                file=sys.stderr,
            )
            return 2
        from .demo import run_demo

        return run_demo(quiet=args.quiet, verbose=args.verbose)
    parser.print_help(sys.stderr)
    return 2
