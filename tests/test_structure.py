"""The package's structure: one job per class, so no class in src/ is over MAX_CLASS_LINES lines.

A class is measured with :mod:`ast` from its ``class`` line (decorators excluded) to its last
line, docstrings and comments inside it included. A class that grows past the bound should lose
a job to a module of its own (docs/developing.md, "One job per class").
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from slack_socket_mode import SocketModeClient
from slack_socket_mode.options import OPTION_NAMES, check_options

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_CLASS_LINES = 400

_SAMPLE = '''import os


class A:
    """Doc."""

    class B:
        x = 1

    def f(self):
        return 1
'''


def class_sizes(root: Path) -> dict[str, int]:
    """``{"path/to/module.py:Outer.Inner": lines}`` for every class under ``root``, nested ones included."""
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                sizes[f"{path}:{name}"] = child.end_lineno - child.lineno + 1
                visit(child, path, f"{name}.")
            else:
                visit(child, path, prefix)

    for file in sorted(root.rglob("*.py")):
        visit(ast.parse(file.read_text(encoding="utf-8")), file.relative_to(root).as_posix(), "")
    return sizes


def test_class_sizes_are_measured_from_the_class_line_to_its_last_line(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(_SAMPLE, encoding="utf-8")
    assert class_sizes(tmp_path) == {"m.py:A": 8, "m.py:A.B": 2}


def test_no_class_in_src_is_over_the_bound() -> None:
    sizes = class_sizes(SRC)
    assert "slack_socket_mode/client.py:SocketModeClient" in sizes  # the tree was found and read
    over = {name: lines for name, lines in sizes.items() if lines > MAX_CLASS_LINES}
    assert not over, f"classes over {MAX_CLASS_LINES} lines (move a job out, see docs/developing.md): {over}"


def test_the_constructor_passes_every_option_to_check_options_by_name_and_type() -> None:
    """``SocketModeClient.__init__`` hands its options to ``check_options`` by name (``OPTION_NAMES``).

    So the two signatures must agree: each option is a parameter of both, with the same annotation
    (``app_token`` excepted: ``check_options`` takes any object and says what is wrong with it), and the
    constructor takes nothing else but ``logger`` and the listener lists, which stay on the client.
    """
    ours = inspect.signature(SocketModeClient.__init__).parameters
    checked = inspect.signature(check_options).parameters
    listener_lists = {"on_message_listeners", "on_error_listeners", "on_close_listeners", "lifecycle_listeners"}
    assert set(ours) - OPTION_NAMES == {"self", "logger", *listener_lists}
    assert set(ours) >= OPTION_NAMES
    annotations = {name: (ours[name].annotation, checked[name].annotation) for name in OPTION_NAMES}
    assert {name: pair for name, pair in annotations.items() if pair[0] != pair[1]} == {"app_token": ("str", "object")}
