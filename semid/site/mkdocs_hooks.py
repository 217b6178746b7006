"""mkdocs hook (``hooks:`` in mkdocs.yml): show mkdocstrings the installed package layout.

griffe, which reads the source for mkdocstrings, finds a package by its folder, but ``semid.datamodules``,
``semid.embeddings`` and ``semid.rankers`` live in the top-level folders ``datamodules/``, ``embeddings/`` and
``rankers/`` that setup.cfg's ``package_dir`` installs under ``semid``; griffe looks for them in ``semid/``
and fails. Before the build this hook lays out the installed tree as symbolic links in a temporary folder
(``semid/``'s own entries plus each mapped room, from ``semid.core.layers``) and points mkdocstrings' Python
handler at it. The tree is a copy of the source, not symbolic links: griffe resolves a link to its target and
is back in the folder where the rooms are missing.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> tree = api_source_tree(Path(tempfile.mkdtemp()))
    >>> sorted(p.name for p in (tree / "semid").iterdir() if p.name in ("core", "datamodules", "rankers"))
    ['core', 'datamodules', 'rankers']
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

from semid.core.config import CONF_DIR
from semid.core.layers import LAYERS

REPO_ROOT = CONF_DIR.parent


def api_source_tree(out: Path, root: Path = REPO_ROOT) -> Path:
    """Under ``out``: ``semid/`` holding a copy of every entry of ``root/semid`` and to each room folder that the
    packaging maps under ``semid`` from elsewhere. Returns ``out``, the folder to search."""
    pkg = out / "semid"
    pkg.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "semid", pkg, ignore=skip, dirs_exist_ok=True)
    for room in LAYERS:
        parts = room.package.split(".")
        if parts[0] == "semid" and len(parts) == 2 and room.folder != "/".join(parts):
            shutil.copytree(root / room.folder, pkg / parts[1], ignore=skip, dirs_exist_ok=True)
    return out


_TREES: list[tempfile.TemporaryDirectory[str]] = []  # kept alive until the build process exits


@event_priority(100)  # before mkdocstrings' own on_config, which already makes the handler (for its inventories)
def on_config(config: Any) -> Any:
    """Point the mkdocstrings Python handler's ``paths`` at a fresh tree (mkdocs calls this before the build)."""
    tmp = tempfile.TemporaryDirectory(prefix="semid-api-src-")
    _TREES.append(tmp)
    tree = api_source_tree(Path(tmp.name))
    handlers = config["plugins"]["mkdocstrings"].config["handlers"]
    handlers.setdefault("python", {})["paths"] = [str(tree)]
    return config
