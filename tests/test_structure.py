"""The package's structure, as rules a test can hold (docs/developing.md, "One job per module").

* No import circles in ``src/``: the graph of imports between the package's modules, those under
  ``if TYPE_CHECKING:`` and inside functions included, has no cycle. What a module needs of the
  one that uses it is a ``Protocol`` of its own (``session.Facade``, ``listeners.ListenerLists``).
* No module reaches into another's private names: no ``from .x import _y``, and no ``obj._name``
  but on ``self``/``cls`` or a name that the same module defines (namedtuple's ``_replace`` & co.
  are public API).
* One job per module: each module's docstring opens with a line that states it.

Size is not a rule: a module or class is split by cohesion, never to meet a line count.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from slack_socket_mode import SocketModeClient
from slack_socket_mode.options import OPTION_NAMES, check_options

SRC = Path(__file__).resolve().parent.parent / "src"
#: namedtuple's public methods and fields, whose names start with an underscore
_PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def _modules(root: Path) -> dict[str, Path]:
    """``{"pkg.module": path}`` for every module under ``root`` (``pkg`` for a package's ``__init__``)."""
    mods: dict[str, Path] = {}
    for file in sorted(root.rglob("*.py")):
        parts = list(file.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = file
    return mods


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: modules of the tree it imports}``, every import statement included (TYPE_CHECKING, local)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, file in mods.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # a submodule by that name, else the module that defines it
                    candidate = f"{target}.{alias.name}" if f"{target}.{alias.name}" in mods else target
                    if candidate in mods and candidate != name:
                        deps.add(candidate)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in mods and alias.name != name)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each a cycle of imports), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def private_reaches(root: Path) -> list[str]:
    """Each place a module uses another module's private name: ``"path:line: text"``."""
    found: list[str] = []
    for file in sorted(root.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        own: set[str] = set()  # private names this module defines: functions, classes, attributes
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
            elif isinstance(node, ast.ClassDef):
                own.update(
                    t.id for b in node.body if isinstance(b, ast.Assign) for t in b.targets if isinstance(t, ast.Name)
                )
        for node in ast.walk(tree):
            where = f"{file.relative_to(root).as_posix()}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{where}: from {'.' * node.level}{node.module or ''} import {alias.name}")
            elif isinstance(node, ast.Attribute):
                name = node.attr
                if not name.startswith("_") or name.startswith("__") or name in _PUBLIC_UNDERSCORED:
                    continue
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if name not in own:
                    found.append(f"{where}: {ast.unparse(node)}")
    return found


def test_the_import_graph_sees_type_checking_and_local_imports_and_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n", encoding="utf-8"
    )
    (pkg / "b.py").write_text("def f():\n    from . import c\n", encoding="utf-8")
    (pkg / "c.py").write_text("from .a import A\nfrom pkg import d\n", encoding="utf-8")
    (pkg / "d.py").write_text("import os\n", encoding="utf-8")
    graph = import_graph(tmp_path)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a", "pkg.d"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_there_are_no_import_cycles_in_src() -> None:
    graph = import_graph(SRC)
    assert "slack_socket_mode.connection" in graph["slack_socket_mode.opening"]  # the tree was read
    assert import_cycles(graph) == []


def test_a_reach_into_another_modules_private_name_is_found(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "from .x import _hidden\n"
        "class A:\n    def __init__(self):\n        self._mine = 1\n"
        "def f(a, conn, row):\n    a._mine\n    conn._aborted\n    row._replace(x=1)\n",
        encoding="utf-8",
    )
    assert private_reaches(tmp_path) == ["m.py:1: from .x import _hidden", "m.py:7: conn._aborted"]


def test_no_module_reaches_into_another_modules_private_names() -> None:
    assert private_reaches(SRC) == []


def test_every_module_states_its_one_job_in_the_first_line_of_its_docstring() -> None:
    missing = []
    for name, file in _modules(SRC).items():
        doc = ast.get_docstring(ast.parse(file.read_text(encoding="utf-8")))
        if not doc or len(doc.splitlines()[0].strip()) < 20:
            missing.append(name)
    assert missing == []


def test_the_constructor_passes_every_option_to_check_options_by_name_and_type() -> None:
    """``SocketModeClient.__init__`` hands its options to ``check_options`` by name (``OPTION_NAMES``).

    So the two signatures must agree: each option is a parameter of both, with the same annotation
    (``app_token`` excepted: ``check_options`` takes any object and says what is wrong with it), and the
    constructor takes nothing else but ``logger`` and the listener lists, which stay on the client.
    """
    ours = inspect.signature(SocketModeClient.__init__).parameters
    checked = inspect.signature(check_options).parameters
    listener_lists = {
        "on_message_listeners",
        "on_error_listeners",
        "on_close_listeners",
        "lifecycle_listeners",
        "listener_hooks",
    }
    assert set(ours) - OPTION_NAMES == {"self", "logger", *listener_lists}
    assert set(ours) >= OPTION_NAMES
    annotations = {name: (ours[name].annotation, checked[name].annotation) for name in OPTION_NAMES}
    assert {name: pair for name, pair in annotations.items() if pair[0] != pair[1]} == {"app_token": ("str", "object")}
