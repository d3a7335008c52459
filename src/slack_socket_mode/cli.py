"""The ``slack-socket-mode`` command (also ``python -m slack_socket_mode``)."""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(quiet=args.quiet, verbose=args.verbose)
    parser.print_help(sys.stderr)
    return 2
