"""The work directory of an unfinished artifact: ``<out>.partial/``, kept across a kill so a rerun resumes.

``semid sids train`` builds its run directory there (checkpoints included) and renames it to ``<out>``
when it is complete; ``semid sids assign`` keeps its encoded chunks there until ``<out>`` is written.
``partial.json`` names what the work is for (a fingerprint of config, model and corpus). While a command
uses the directory it holds an exclusive lock on it (``flock``, released by the kernel when the process
dies, ``kill -9`` included), so two commands never write the same work directory.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from semid.core.artifacts import write_json
from semid.core.errors import SemidError
from semid.core.records import JsonObject

MARKER = "partial.json"


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


@dataclass
class Partial:
    path: Path
    resumed: bool  # the directory holds earlier work for the same fingerprint

    def clear(self) -> None:
        """Drop the work done so far (everything but the marker)."""
        for p in self.path.iterdir():
            if p.name != MARKER:
                _remove(p)
        self.resumed = False


@contextlib.contextmanager
def claim_partial(out: str | Path, fingerprint: str, info: JsonObject, *, keep: bool, discard_other: bool,
                  command: str) -> Iterator[Partial]:
    """Lock ``<out>.partial/`` and return it, resumable if it holds work for ``fingerprint``.

    ``keep=False`` discards work for the same fingerprint too (start over). Work for another fingerprint is
    discarded when ``discard_other``, else refused with a one-line ``SemidError``. A non-empty directory
    without a marker was not made by semid and is always refused.
    """
    path = partial_path(out)
    path.mkdir(parents=True, exist_ok=True)
    with _locked(path, command):
        for p in [*path.glob(".*.tmp-*"), *path.glob("*/.*.tmp-*")]:  # what killed atomic writes left
            _remove(p)
        found = _read_marker(path)
        if found is None and any(p.name != MARKER for p in path.iterdir()):
            raise SemidError(f"{path} exists but was not made by `{command}` (remove it, or choose another --out)")
        part = Partial(path, resumed=found == fingerprint)
        if found is not None and found != fingerprint and not discard_other:
            raise SemidError(f"{path} holds an interrupted `{command}` of other inputs (config, model or corpus; "
                             f"fingerprint {found}, this run {fingerprint}); pass --overwrite to discard it, or "
                             "choose another --out")
        if not part.resumed or not keep:
            part.clear()
            write_json(path / MARKER, {"fingerprint": fingerprint, **info})
        yield part


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def _read_marker(path: Path) -> str | None:
    try:
        found = json.loads((path / MARKER).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


@contextlib.contextmanager
def _locked(path: Path, command: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SemidError(f"{path} is in use by another running `{command}` (wait for it to finish, or choose "
                             "another --out)") from None
        yield
    finally:
        os.close(fd)
