"""A mkdocs hook: the site serves its own copy of Mermaid, so diagrams render with no network.

mkdocs-material draws every ```` ```mermaid ```` block with Mermaid in the reader's browser,
and loads Mermaid from a CDN unless the page already has it. This hook gives each page with a
diagram a ``<script defer>`` of ``assets/javascripts/mermaid.min.js`` (in ``<head>``, so it runs
before the theme looks for Mermaid once the document is parsed) and writes that file, with
Mermaid's licence, into the built site. Pages without a diagram do not load it (3.5 MB).

The file comes from one pinned release of the ``mermaid`` package on the npm registry, fetched
once with ``npm pack`` (the ordinary npm client, with the registry it is configured for) into
``build/mermaid-<version>/`` and checked against the release's published sha512 integrity; a
later build reuses it. A build without ``npm`` or without network fails with a message saying
so, unless that directory is already there.

To move to another release: ``npm view mermaid@<version> dist.integrity``, and change
:data:`VERSION` and :data:`INTEGRITY` below together. mkdocs-material styles Mermaid 11.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.utils import get_relative_url

#: The release of Mermaid the site ships.
VERSION = "11.17.2"
#: Its tarball's integrity, as the registry publishes it (``npm view mermaid@VERSION dist.integrity``).
INTEGRITY = "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/qt5gHO73aCleBBg=="
#: Where the script goes in the site.
SITE_PATH = "assets/javascripts/mermaid.min.js"
#: The members of the tarball the site needs, and their names in the cache.
_MEMBERS = {"package/dist/mermaid.min.js": "mermaid.min.js", "package/LICENSE": "LICENSE"}
#: What marks a page with a diagram, as pymdownx.superfences writes a ```mermaid block.
_MARK = '<pre class="mermaid">'

_ROOT = Path(__file__).resolve().parents[2]
_CACHE = _ROOT / "build" / f"mermaid-{VERSION}"


def _integrity(path: Path) -> str:
    """``sha512-<base64>`` of the file at ``path``, as npm writes an integrity."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def _fetch() -> Path:
    """The cache directory, with ``mermaid.min.js`` and ``LICENSE``, fetched first if missing.

    Raises:
        PluginError: ``npm`` is missing, ``npm pack`` failed, or the tarball's integrity is not
            the pinned one.
    """
    if all((_CACHE / name).is_file() for name in _MEMBERS.values()):
        return _CACHE
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            f"the docs need Mermaid {VERSION} from the npm registry, and npm is not installed "
            "(Debian: apt-get install npm)"
        )
    with tempfile.TemporaryDirectory(prefix="mermaid-") as tmp:
        try:
            subprocess.run(
                [npm, "pack", f"mermaid@{VERSION}", "--pack-destination", tmp, "--silent"],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=tmp,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", None) or ""
            raise PluginError(f"npm pack mermaid@{VERSION} failed: {exc}\n{detail}".rstrip()) from exc
        tarball = Path(tmp) / f"mermaid-{VERSION}.tgz"
        found = _integrity(tarball)
        if found != INTEGRITY:
            raise PluginError(f"mermaid-{VERSION}.tgz has integrity {found}, not the pinned {INTEGRITY}")
        _CACHE.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".mermaid-{VERSION}-", dir=_CACHE.parent))
        with tarfile.open(tarball, "r:gz") as archive:
            for member, name in _MEMBERS.items():
                source = archive.extractfile(member)
                if source is None:
                    raise PluginError(f"mermaid-{VERSION}.tgz has no file {member}")
                with source, (staging / name).open("wb") as target:
                    shutil.copyfileobj(source, target)
    shutil.rmtree(_CACHE, ignore_errors=True)
    os.replace(staging, _CACHE)  # whole or not at all: a build stopped midway fetches again
    return _CACHE


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Fetch Mermaid before the pages are built, so a missing npm fails the build early."""
    _fetch()


def on_post_page(output: str, page: Any, config: Any, **kwargs: Any) -> str:
    """Load the site's Mermaid on a page that has a diagram (before the theme's script runs)."""
    if _MARK not in output:
        return output
    src = get_relative_url(SITE_PATH, page.url)
    return output.replace("</head>", f'<script defer src="{src}"></script>\n</head>', 1)


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Write Mermaid and its licence into the site."""
    cache = _fetch()
    target = Path(config["site_dir"]) / SITE_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cache / "mermaid.min.js", target)
    shutil.copyfile(cache / "LICENSE", target.with_name("mermaid.LICENSE.txt"))
