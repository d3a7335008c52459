"""A griffe extension for the docs site: reST markup in docstrings, rendered as Markdown.

The docstrings in src/ use Google-style sections with Sphinx roles (``:class:`Backoff```,
``:meth:`~SocketModeServer.stop```) and ``#:`` comments on attributes. mkdocstrings renders
Markdown, so without this the roles show up literally. This extension, run by mkdocstrings
while it loads the package, rewrites each role into an optional cross-reference (a link when
the target is on the site, plain code otherwise), turns ``Example::`` into ``Example:`` (the
indented block after it is already a code block in Markdown), and uses a ``#:`` comment as the docstring of
an attribute that has none. It changes nothing in the source files.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj):`(?P<tilde>~?)(?P<target>[^`<>]+)`")
_COMMENT = re.compile(r"#:\s*(?P<text>.+?)\s*$")
_LITERAL = re.compile(r"(?m)(?<=\S)::$")  # "Example::" introduces an indented literal block


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full dotted path ``target`` names from where ``obj`` is documented (best effort)."""
    if target.startswith("."):  # relative to the module's package, as in an import
        package = obj.module.path.rsplit(".", 1)[0]
        return f"{package}.{target.lstrip('.')}"
    head, _, rest = target.partition(".")
    scope = obj if isinstance(obj, (griffe.Class, griffe.Module)) else obj.parent
    while scope is not None:
        if head in scope.members:
            member = scope.members[head]
            path = member.target_path if member.is_alias else member.path  # an import names its target
            return f"{path}.{rest}" if rest else path
        scope = scope.parent
    try:
        resolved = obj.resolve(head)
    except (griffe.NameResolutionError, AttributeError):
        return target
    return f"{resolved}.{rest}" if rest else resolved


def _markdown(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        target = match["target"].strip()
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        return f'<autoref identifier="{_resolve(obj, target)}" optional><code>{shown}</code></autoref>'

    return _LITERAL.sub(":", _ROLE.sub(link, text))


class RstRoles(griffe.Extension):
    """Rewrite Sphinx roles into cross-references; read ``#:`` comments on attributes."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._visit(pkg)

    def _visit(self, obj: griffe.Object) -> None:
        if obj.docstring is None and isinstance(obj, griffe.Attribute):
            comment = self._comment(obj)
            if comment:
                obj.docstring = griffe.Docstring(comment, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member)  # type: ignore[arg-type]

    @staticmethod
    def _comment(obj: griffe.Attribute) -> str:
        """The text of a ``#:`` comment after the attribute or on the lines just above it."""
        try:
            lines = obj.lines_collection[obj.filepath]  # type: ignore[index]
        except (KeyError, TypeError):
            return ""
        if obj.lineno is None or obj.lineno > len(lines):
            return ""
        same_line = _COMMENT.search(lines[obj.lineno - 1])
        if same_line:
            return same_line["text"]
        above: list[str] = []
        for line in reversed(lines[: obj.lineno - 1]):
            match = _COMMENT.match(line.strip())
            if match is None:
                break
            above.insert(0, match["text"])
        return " ".join(above)
