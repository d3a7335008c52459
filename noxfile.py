"""Every supported Python, as CI runs them (``.ci/run`` runs ``nox`` after its own steps).

    pip install -e ".[dev]"          # nox and uv
    nox                              # every session below, as CI does
    nox -s tests-3.9                 # the whole suite on 3.9
    nox -s socket_free               # the socket-free tests on 3.9 to 3.13
    nox -s mypy                      # mypy --strict for Python 3.9, on 3.9
    nox -l                           # the sessions

* ``tests-3.9``, ``tests-3.11``, ``tests-3.13``: the whole suite, as ``pytest`` runs it (the oldest,
  a middle and the newest supported Python). Tests that need Redis, RabbitMQ or root skip or fail
  as in ``pytest``: ``SLACK_SOCKET_MODE_REQUIRE_SERVICES=1`` (CI sets it) makes a skip a failure.
* ``socket_free-3.9`` to ``socket_free-3.13``: the tests that open no socket (the session rules,
  the ledgers' rules, parsing, fuzzing, the package's structure, slack_sdk compatibility,
  recordings), on every supported Python, in seconds. ``SLACK_SOCKET_MODE_NO_SOCKETS=1`` makes a
  test of them that opens a socket fail (``tests/conftest.py``), so this list stays honest.

* ``mypy``: ``mypy`` (strict, ``[tool.mypy]``) checking for the oldest supported Python, on a 3.9
  interpreter with the dependencies pip resolves for 3.9, using the last mypy that runs there
  (mypy 2 no longer checks code for 3.9; CI's own ``mypy`` step checks for the Python it runs on).

Each session installs the package with the ``test`` extra into a virtualenv of its own, with uv
when it is installed (much faster), else with venv and pip. The interpreters are found on
``PATH`` as ``python3.X``; pyenv's (``~/.pyenv/versions/3.X.*``) are found too, without
``pyenv global``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

SUPPORTED = ["3.9", "3.10", "3.11", "3.12", "3.13"]
#: The whole suite runs on the oldest, a middle and the newest supported Python.
FULL = ["3.9", "3.11", "3.13"]
#: The test files that open no socket (checked: see the module's docstring).
SOCKET_FREE = [
    "tests/test_lifecycle.py",
    "tests/test_ledger.py",
    "tests/test_liveness.py",
    "tests/test_policy.py",
    "tests/test_messages.py",
    "tests/test_redaction.py",
    "tests/test_shared_pure.py",
    "tests/test_structure.py",
    "tests/test_fuzz.py",
    "tests/test_compat.py",
    "tests/test_recording.py",
    "tests/test_rtm_protocol.py",
    "tests/test_interval_runner.py",
]
#: The tests of those files that do open sockets (a client against the local server).
SOCKET_FREE_DESELECT = [
    "tests/test_fuzz.py::test_junk_between_envelopes_costs_no_connection_and_no_envelope",
    "tests/test_fuzz.py::test_the_session_lost_nothing_overall",
]

nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True


def _add_pyenv_to_path() -> None:
    """Put pyenv's Pythons on ``PATH`` first: ``python3.X`` is then the interpreter, not a shim
    that fails unless ``pyenv global`` names that version."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for version in SUPPORTED:
        on_path = shutil.which(f"python{version}")
        if on_path and "/shims/" not in on_path:
            continue
        builds = [p for p in root.glob(f"{version}.*/bin") if p.parent.name.split(".")[-1].isdigit()]
        if builds:
            found.append(str(max(builds, key=lambda p: int(p.parent.name.split(".")[-1]))))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_to_path()
# uv uses only the interpreters it finds, never one it downloads.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


def _install(session: nox.Session) -> None:
    """The package, editable, with the ``test`` extra."""
    session.install("-e", ".[test]")


@nox.session(python=FULL)
def tests(session: nox.Session) -> None:
    """The whole suite, as ``pytest`` runs it."""
    _install(session)
    # tests/test_extras.py builds with pip, which uv's virtualenvs lack; the README's step runs it
    session.run("pytest", "--ignore=tests/test_extras.py", *session.posargs)


@nox.session(python=SUPPORTED)
def socket_free(session: nox.Session) -> None:
    """The tests that open no socket, which fail here if one does."""
    _install(session)
    deselect = [arg for test in SOCKET_FREE_DESELECT for arg in ("--deselect", test)]
    session.run("pytest", "-q", *SOCKET_FREE, *deselect, *session.posargs, env={"SLACK_SOCKET_MODE_NO_SOCKETS": "1"})


@nox.session(python=SUPPORTED[0])
def mypy(session: nox.Session) -> None:
    """mypy for the oldest supported Python, with that Python's dependencies."""
    _install(session)
    session.run("mypy", "--python-version", SUPPORTED[0], *session.posargs)
