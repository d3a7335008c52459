"""Real-shaped Socket Mode messages shipped with the package, for tests and the demo.

The files are what Slack sends over a Socket Mode WebSocket, one JSON object per file
(``hello``, ``disconnect`` with each reason, and envelopes of each type, one of them
about 67 KB). See https://api.slack.com/apis/socket-mode for their meaning.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["envelope_sample_names", "load_sample", "load_sample_text", "sample_names"]

_PACKAGE = "slack_socket_mode.testing.sample_data"


def sample_names() -> list[str]:
    """Return the names (file stems, sorted) of every shipped sample, e.g. ``"hello"``."""
    root = resources.files(_PACKAGE)
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def envelope_sample_names() -> list[str]:
    """Return the names of the samples that are envelopes (they carry an ``envelope_id``)."""
    return [name for name in sample_names() if "envelope_id" in load_sample(name)]


def load_sample_text(name: str) -> str:
    """Return sample ``name`` exactly as its text frame would carry it.

    Raises:
        FileNotFoundError: no sample has that name.
    """
    path = resources.files(_PACKAGE).joinpath(f"{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"no Socket Mode sample named {name!r}; known: {', '.join(sample_names())}")
    return path.read_text(encoding="utf-8").strip()


def load_sample(name: str) -> dict[str, Any]:
    """Return sample ``name`` parsed into a new dict (safe to modify).

    Raises:
        FileNotFoundError: no sample has that name.
    """
    value = json.loads(load_sample_text(name))
    assert isinstance(value, dict)
    return value
