"""``slack-socket-mode replay FILE --app MODULE:ATTR``: run an app against a recording, offline.

Starts the local Socket Mode server (:class:`~slack_socket_mode.testing.SocketModeServer`,
which redelivers an envelope not acked within Slack's 3 s), connects the app to it exactly as to
Slack, replays the recording (:mod:`slack_socket_mode.testing.replay`) and prints a summary and
the slowest envelopes: acked, not acked within 3 s (what Slack would have retried), the errors
and warnings the app logged (a listener that raised; Bolt's "didn't call ack()"), ack time
p50/p99. ``--json`` prints the whole report as one JSON object.

What ``--app`` may name (``MODULE`` is imported with the current directory on ``sys.path``):

* a Bolt ``App``: run with :class:`slack_socket_mode.bolt.SocketModeHandler`; its WebClient is
  pointed at the local server, so its Web API calls never reach Slack;
* a listener function ``(client, request)``: run by a
  :class:`~slack_socket_mode.SocketModeClient` as a ``socket_mode_request_listener``;
* a factory, any other callable: called with the keyword arguments it takes among ``app_token``
  (an ``xapp-`` token the local server accepts) and ``web_client`` (or ``client``: a
  ``WebClient`` pointed at the local server); it returns a ``SocketModeClient`` (not yet
  connected, listeners attached) or a Bolt ``App``.

Exit status: 0 if every envelope was acked within 3 s; 1 if any would have been retried; 2 for
a bad recording (the line is named; nothing after it was pushed, unless ``--skip-bad-lines``),
an ``--app`` that cannot be loaded or run (its module raised, even ``SystemExit``), or an app
that never connected; 130 on Ctrl-C. Each of these is said in one line on standard error.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
import stat
import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Optional, TextIO

from slack_sdk.web import WebClient

from .recording import MAX_LINE_SIZE, RecordingError
from .redaction import redact

if TYPE_CHECKING:
    from .testing.replay import ReplayProgress, ReplayReport

__all__ = ["AppError", "ReplayApp", "load_app", "run_replay"]

#: The app-level token the replayed app connects with (the local server accepts any ``xapp-``).
REPLAY_TOKEN = "xapp-1-A111-replay-local"
#: The bot token of the WebClient given to a factory.
REPLAY_BOT_TOKEN = "xoxb-replay-local"

_SLOWEST = 5
_SERVER_LOGGER = "slack_socket_mode.testing"
_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{7,}")

# The envelope a request listener is running for, on that listener's thread: an error or a
# warning logged there (Bolt logs its listeners' exceptions, and "didn't call ack()") is counted
# against it.
_handling = threading.local()


def _attribute_errors(client: Any) -> None:
    """Wrap the client's request listeners so that errors logged while they run name the envelope."""
    listeners = getattr(client, "socket_mode_request_listeners", None)
    if not isinstance(listeners, list):
        return

    def attributed(listener: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def run(client: Any, request: Any) -> None:
            _handling.envelope_id = getattr(request, "envelope_id", None)
            try:
                listener(client, request)
            finally:
                _handling.envelope_id = None

        return run

    listeners[:] = [attributed(listener) for listener in listeners]


class AppError(Exception):
    """``--app`` names nothing this command can run (the message says why)."""


class ReplayApp:
    """An app connected to the local server: :meth:`close` stops it (and its client's threads)."""

    def __init__(self, description: str, close: Callable[[], None]) -> None:
        self.description = description
        self._close = close

    def close(self) -> None:
        """Close the app's client (threads joined)."""
        self._close()


def _resolve(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppError(f"--app must be MODULE:ATTR, e.g. my_bot:app (got {spec!r})")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise AppError(f"cannot import {module_name}: {e}") from e
    except (Exception, SystemExit) as e:  # the module's own code failed (sys.exit("set SLACK_BOT_TOKEN") too)
        raise AppError(f"importing {module_name} raised {_describe(e)}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"{module_name} has no attribute {attr}") from None
    return obj


def _describe(error: BaseException) -> str:
    """``Type: message`` of an exception the app raised (redacted where it is printed)."""
    if isinstance(error, SystemExit):
        return f"SystemExit({error.code!r})"
    return f"{type(error).__name__}: {error}"


def _bolt_app_class() -> Optional[type]:
    if "slack_bolt" not in sys.modules:  # the app module did not import Bolt: it is not a Bolt app
        return None
    from slack_bolt import App  # noqa: PLC0415

    return App


def _is_listener(obj: Callable[..., Any]) -> bool:
    """A function taking ``(client, request)`` and nothing else required."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    names = {p.name for p in signature.parameters.values()}
    return len(required) == 2 and not names & {"app_token", "web_client"}


def _factory_arguments(obj: Callable[..., Any], web_client: WebClient) -> dict[str, Any]:
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    arguments: dict[str, Any] = {}
    if takes_any or "app_token" in parameters:
        arguments["app_token"] = REPLAY_TOKEN
    if takes_any or "web_client" in parameters:
        arguments["web_client"] = web_client
    elif "client" in parameters:
        arguments["client"] = web_client
    return arguments


def _run_bolt(app: Any, api_url: str) -> ReplayApp:
    from .bolt import SocketModeHandler  # noqa: PLC0415 - needs the 'bolt' extra

    app.client.base_url = api_url  # the app's own Web API calls go to the local server, never to Slack
    handler = SocketModeHandler(app, app_token=REPLAY_TOKEN, web_client=WebClient(base_url=api_url))
    _attribute_errors(handler.client)
    handler.connect()
    return ReplayApp(f"Bolt app {app.name!r}", handler.close)


def load_app(spec: str, api_url: str) -> ReplayApp:
    """Import ``MODULE:ATTR``, build what it names and connect it to the server at ``api_url``.

    Returns once the app's client has connected (``hello`` received).

    Raises:
        AppError: it cannot be imported (its module raised, ``SystemExit`` included), is not
            something this command runs, or a factory returned something else or raised.
        SocketModeError: the client could not connect.
    """
    obj = _resolve(spec)
    bolt_app = _bolt_app_class()
    if bolt_app is not None and isinstance(obj, bolt_app):
        return _run_bolt(obj, api_url)
    if not callable(obj):
        raise AppError(f"{spec} is a {type(obj).__name__}: expected a Bolt App, a listener or a factory")
    from .client import SocketModeClient  # noqa: PLC0415

    web_client = WebClient(base_url=api_url, token=REPLAY_BOT_TOKEN)
    if _is_listener(obj):
        client = SocketModeClient(app_token=REPLAY_TOKEN, web_client=web_client)
        client.socket_mode_request_listeners.append(obj)
        _attribute_errors(client)
        client.connect()
        return ReplayApp(f"listener {spec}", client.close)
    try:
        built = obj(**_factory_arguments(obj, web_client))
    except (Exception, SystemExit) as e:
        raise AppError(f"the factory {spec} raised {_describe(e)}") from e
    bolt_app = _bolt_app_class()
    if bolt_app is not None and isinstance(built, bolt_app):
        return _run_bolt(built, api_url)
    if not (callable(getattr(built, "connect", None)) and callable(getattr(built, "close", None))):
        raise AppError(f"the factory {spec} returned a {type(built).__name__}, not a SocketModeClient or a Bolt App")
    _attribute_errors(built)
    built.connect()
    return ReplayApp(f"client from {spec}", built.close)


class _Tally:
    """Log records of one kind (errors, or warnings): by message, and by envelope where known."""

    def __init__(self) -> None:
        self.messages: Counter[str] = Counter()
        self.by_envelope: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.messages.values())


class _AppLog(logging.Handler):
    """Counts the errors and the warnings logged while the replay runs, by envelope where known.

    Errors: a listener that raised (logged by the client, and by Bolt). Warnings: Bolt's
    "didn't call ack()", the client's slow queue, and whatever else the app warns of. The local
    server's own log (``slack_socket_mode.testing``) is not the app's and is not counted. Each
    is known by the first line of its message. The envelope is the one a request listener runs
    for on the logging thread, else an id the message names. Tallies are read once the replay
    is over.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lock_ = threading.Lock()
        self.errors = _Tally()
        self.warnings = _Tally()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == _SERVER_LOGGER or record.name.startswith(_SERVER_LOGGER + "."):
            return
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        message = message.partition("\n")[0]  # Bolt's suggestions follow on more lines
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message}: {type(error).__name__}: {str(error).partition(chr(10))[0]}"
        message = redact(message)
        tally = self.errors if record.levelno >= logging.ERROR else self.warnings
        current = getattr(_handling, "envelope_id", None)
        with self.lock_:
            tally.messages[message[:300]] += 1
            if isinstance(current, str):
                tally.by_envelope[current] += 1
                return
            for candidate in _ID_RE.findall(message):  # our client's log line names the envelope
                tally.by_envelope[candidate] += 1


def _progress_printer(err: TextIO, total: Optional[int]) -> Callable[[ReplayProgress], None]:
    """A progress line about every second: rewritten in place on a terminal, else one line each time."""
    terminal = err.isatty()
    of = f"/{total}" if total is not None else ""

    def show(progress: ReplayProgress) -> None:
        line = (
            f"# replay: line {progress.lines}{of}, {progress.pushed} envelopes pushed, "
            f"{progress.acked} acked, {progress.elapsed:.1f} s"
        )
        if terminal:
            err.write("\r" + line + ("\n" if progress.done else ""))
        else:
            err.write(line + "\n")
        err.flush()

    return show


def _count_lines(path: str) -> Optional[int]:
    """The lines of a regular file, read in chunks (a line is never held whole); ``None`` for
    anything else (a pipe is read once, by the replay)."""
    with open(path, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        count = 0
        last = b"\n"
        while chunk := file.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _summary(report: ReplayReport, app: str, log: _AppLog, out: TextIO, slowest: int) -> None:
    envelopes = report.envelopes
    retried = report.retried
    speed = "as fast as possible" if report.speed is None else f"speed {report.speed:g}"
    print(f"replayed {report.path} ({speed}) to {app} in {report.duration:.2f} s", file=out)
    print(
        f"{len(envelopes)} envelopes: {len(envelopes) - len(retried)} acked within 3 s, "
        f"{len(retried)} not acked within 3 s (Slack would have retried), {len(report.not_acked)} never acked",
        file=out,
    )
    print(
        f"ack time p50 {_ms(report.ack_time_percentile(0.5))}, p99 {_ms(report.ack_time_percentile(0.99))}; "
        f"{sum(e.redeliveries for e in envelopes)} redeliveries; "
        f"{report.disconnects} disconnects; {log.errors.total} errors and {log.warnings.total} warnings "
        "logged by the app",
        file=out,
    )
    if report.recorded_redeliveries:
        print(f"{report.recorded_redeliveries} redeliveries in the recording were not pushed", file=out)
    for kind, tally in (("error", log.errors), ("warning", log.warnings)):
        for message, count in tally.messages.most_common(5):
            print(f"  {kind} x{count}: {message}", file=out)
    if slowest and envelopes:
        print("slowest:", file=out)
        for e in report.slowest(slowest):
            state = "never acked" if not e.acked else ("acked" if not e.retried else "acked late")
            extra = f", {e.redeliveries} redeliveries" if e.redeliveries else ""
            for kind, tally in (("errors", log.errors), ("warnings", log.warnings)):
                count = tally.by_envelope.get(e.envelope_id, 0)
                extra += f", {count} {kind}" if count else ""
            print(f"  {_ms(e.ack_time):>10}  {e.type:<15} {e.envelope_id} (line {e.line}) {state}{extra}", file=out)


def run_replay(
    path: str,
    app: str,
    *,
    speed: Optional[float] = 1.0,
    as_json: bool = False,
    quiet: bool = False,
    skip_bad_lines: bool = False,
    max_line_size: int = MAX_LINE_SIZE,
    slowest: int = _SLOWEST,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Replay the recording at ``path`` to the app ``app`` (``MODULE:ATTR``); returns the exit status.

    See the module's docstring for what ``app`` may name and the exit statuses; ``max_line_size``
    is the reader's (:func:`~slack_socket_mode.recording.read_recording`).
    """
    from .recording import read_header  # noqa: PLC0415
    from .testing import SocketModeServer  # noqa: PLC0415 - the local server needs the 'testing' extra
    from .testing.replay import replay_recording  # noqa: PLC0415

    name = "slack-socket-mode replay"
    try:
        read_header(path, max_line_size=max_line_size)
        total = _count_lines(path)
    except (RecordingError, OSError) as e:
        print(f"{name}: {e}", file=err)
        return 2
    log = _AppLog()
    root = logging.getLogger()
    root.addHandler(log)
    try:
        with SocketModeServer(redelivery_delay=3.0, max_retries=3) as server:
            try:
                running = load_app(app, server.api_url)
            except AppError as e:
                print(redact(f"{name}: cannot run {app}: {e}"), file=err)
                return 2
            except (Exception, SystemExit) as e:  # an app that cannot start: say why, in one line
                print(redact(f"{name}: cannot run {app}: {_describe(e)}"), file=err)
                return 2
            try:
                report = replay_recording(
                    server,
                    path,
                    speed=speed,
                    skip_bad_lines=skip_bad_lines,
                    max_line_size=max_line_size,
                    progress=None if quiet else _progress_printer(err, total),
                )
            except (TimeoutError, RecordingError) as e:
                print(f"{name}: {e}", file=err)
                return 2
            finally:
                running.close()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=err)
        return 130
    finally:
        root.removeHandler(log)
    if as_json:
        data = report.to_dict()
        data["app"] = running.description
        data["errors"] = log.errors.total
        data["error_messages"] = dict(log.errors.messages)
        data["warnings"] = log.warnings.total
        data["warning_messages"] = dict(log.warnings.messages)
        for entry in data["per_envelope"]:
            entry["errors"] = log.errors.by_envelope.get(entry["envelope_id"], 0)
            entry["warnings"] = log.warnings.by_envelope.get(entry["envelope_id"], 0)
        out.write(json.dumps(data) + "\n")
    else:
        _summary(report, running.description, log, out, slowest)
    for skipped in report.skipped_lines:
        print(f"{name}: skipped {skipped}", file=err)
    if report.error is not None:
        print(f"{name}: {report.error}; nothing after it was replayed (--skip-bad-lines skips bad lines)", file=err)
        return 2
    return 1 if report.retried else 0
