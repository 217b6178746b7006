"""Atomic artifact writes: build under a temporary sibling path, then rename into place.

A crash, a full disk or a kill leaves either the old artifact or the new one, never half of one. A kill
(``kill -9``) can leave the temporary sibling ``.<name>.tmp-<hex>`` behind; ``remove_stale_temps`` clears
them for a writer that knows no other process is writing the same path.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator

from semid.core.errors import SemidError, out_of_room


def check_writable(path: str | Path, what: str = "--out") -> None:
    """Refuse, before any work, an output path that cannot be created: an ancestor that is a file, or a
    directory without write permission. An existing output is left to the command (overwrite, resume)."""
    path = Path(path)
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SemidError(f"{path}: cannot write ({probe} is a file, not a directory) (choose another {what})")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SemidError(f"{path}: cannot write (no write permission in {probe}) (choose another {what})")


def _tmp_sibling(path: Path) -> Path:
    # the writer's host and pid in the name: a later writer can tell a dead writer's leftover from a live one
    return path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


_HOST = socket.gethostname().replace("-", "_")[:32]


def _writer_alive(tmp: Path) -> bool:
    """Whether the process that made temporary sibling ``tmp`` may still be writing it."""
    parts = tmp.name.rsplit(".tmp-", 1)[-1].split("-")
    if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
        return True  # another host's (shared filesystem) or an older name: not ours to judge
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that is renamed to ``path`` on success."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SemidError(f"{path} already exists (pass --overwrite to replace it, or choose another --out)")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written to {tmp}")
        _replace(tmp, path)
    except BaseException as e:
        _remove(tmp)
        no_room = out_of_room(e, path) if isinstance(e, (OSError, RuntimeError)) else None
        if no_room is not None:
            raise no_room from e
        raise


def _replace(tmp: Path, path: Path) -> None:
    if tmp.is_dir() and path.exists():
        old = _tmp_sibling(path)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def publish(src: str | Path, path: str | Path) -> None:
    """Rename ``src``, a finished file or directory built next to ``path``, into place (replacing ``path``)."""
    _replace(Path(src), Path(path))


def remove_stale_temps(path: str | Path) -> None:
    """Remove the temporary siblings of ``path`` that killed ``atomic_path`` writers left behind.

    Only for a caller that holds the right to write ``path`` (a lock): a live writer's temporary goes too.
    """
    path = Path(path)
    for p in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        _remove(p)


def _remove_dead_temps(path: Path) -> None:
    """Temporary siblings of ``path`` whose writer died (a kill -9 mid-write): every atomic writer clears them."""
    for p in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        if not _writer_alive(p):
            _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise SemidError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SemidError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); rebuild it or restore a copy") from None
