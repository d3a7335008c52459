"""The ``slack-socket-mode`` command (also ``python -m slack_socket_mode``)."""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
from typing import Callable, Optional

from .recording import MAX_LINE_SIZE

__all__ = ["main"]


def _speed(text: str) -> Optional[float]:
    """``--speed``: a positive number, or ``max`` (None: as fast as possible)."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'max': {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a positive number, or 'max'")
    return value


def _integer(least: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least} (got {value})")
        return value

    return parse


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
    listen.add_argument("--count", type=_integer(1), metavar="N", help="exit after N envelopes (N >= 1)")
    listen.add_argument(
        "--record",
        metavar="FILE",
        help="also write every message received (hello, envelopes, disconnects) to FILE, secrets redacted",
    )
    listen.add_argument(
        "--no-redact",
        action="store_true",
        help="with --record: keep tokens and response URL secrets in the recording (do not commit it)",
    )
    replay = commands.add_parser(
        "replay",
        help="run an app against a recording (listen --record) on a local server; report acks and ack times",
    )
    replay.add_argument("file", metavar="FILE", help="the recording")
    replay.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="a Bolt App, a listener function (client, request) or a SocketModeClient factory",
    )
    replay.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="1 (default): the recorded pace; 2: twice as fast; max: as fast as the socket takes them",
    )
    replay.add_argument("--json", action="store_true", help="print the report as one JSON object")
    replay.add_argument("--quiet", action="store_true", help="no progress line on standard error")
    replay.add_argument(
        "--skip-bad-lines", action="store_true", help="skip a bad line of the recording instead of stopping there"
    )
    replay.add_argument(
        "--slowest", type=_integer(0), default=5, metavar="N", help="list the N slowest envelopes (5; 0: none)"
    )
    replay.add_argument(
        "--max-line-size",
        type=_integer(1),
        default=MAX_LINE_SIZE,
        metavar="BYTES",
        help=f"a longer line of the recording is a bad line ({MAX_LINE_SIZE}: a 16 MiB message and its fields)",
    )
    args = parser.parse_args(argv)
    if args.command in ("demo", "replay") and importlib.util.find_spec("websockets") is None:
        print(
            f"slack-socket-mode {args.command} needs the local test server's extra: "
            "pip install 'slack-socket-mode[testing]'",
            file=sys.stderr,
        )
        return 2
    if args.command == "replay":
        from .replay import run_replay

        return run_replay(
            args.file,
            args.app,
            speed=args.speed,
            as_json=args.json,
            quiet=args.quiet,
            skip_bad_lines=args.skip_bad_lines,
            max_line_size=args.max_line_size,
            slowest=args.slowest,
        )
    if args.command == "listen":
        from .listen import run_listen

        return run_listen(
            as_json=args.json,
            ack=args.ack,
            debug_reconnects=args.debug_reconnects,
            api_url=args.api_url or os.environ.get("SLACK_API_URL"),
            count=args.count,
            record=args.record,
            redact_recording=not args.no_redact,
        )
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(quiet=args.quiet, verbose=args.verbose)
    parser.print_help(sys.stderr)
    return 2
