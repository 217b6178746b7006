"""Fingerprints: short content hashes that chain artifacts to what they were built from."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from semid.core.errors import FingerprintMismatch
from semid.core.layers import LAYERS, ROOMS
from semid.core.version import __version__

_CHUNK = 1 << 20


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint_of(obj: Any) -> str:
    """Hash of a JSON-serialisable value (configs, parameter dicts, lists of parent fingerprints)."""
    return hashlib.blake2b(canonical_json(obj).encode(), digest_size=10).hexdigest()


def fingerprint_file(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=10)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_bytes(*arrays: Any) -> str:
    """Hash of numpy arrays / bytes (dtype and shape included so a reinterpretation differs)."""
    h = hashlib.blake2b(digest_size=10)
    for a in arrays:
        if hasattr(a, "tobytes"):
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(bytes(a))
    return h.hexdigest()


def require_match(what: str, expected: str, found: str, fix: str) -> None:
    if expected != found:
        raise FingerprintMismatch(
            f"{what} was built from fingerprint {found}, but the inputs given have fingerprint {expected} ({fix})"
        )


# A stage's code is the source of the rooms it runs (semid/core is in every one): an artifact records the
# digest of that source, and a stage whose code changed is rerun instead of counting as up to date.
def _room_dir(room: str) -> Path:
    # where the room's package lives: the repository's folder in an editable install, site-packages/semid/...
    # in a wheel install; found without importing the room
    package = {r.name: r.package for r in LAYERS}[room]
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, package
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _room_files(room: str) -> list[Path]:
    top = _room_dir(room)
    # a room's folder may hold other rooms' folders (semid/ holds semid/core and semid/rqvae): those are theirs
    inner = [d for d in (_room_dir(r.name) for r in LAYERS if r.name != room) if d.is_relative_to(top)]
    return [f for f in sorted(top.rglob("*.py")) if not any(f.is_relative_to(d) for d in inner)]


_CODE: dict[tuple[str, ...], str] = {}


def code_fingerprint(*rooms: str) -> str:
    """Digest of semid's version and the source of ``rooms`` (plus semid/core), once per process."""
    key = tuple(sorted(set(rooms) | {"core"}))
    if key not in _CODE:
        unknown = set(key) - set(ROOMS)
        if unknown:
            raise ValueError(f"unknown rooms {sorted(unknown)} (valid: {', '.join(ROOMS)})")
        h = hashlib.blake2b(f"semid {__version__}".encode(), digest_size=10)
        for room in key:
            top = _room_dir(room)
            for f in _room_files(room):
                h.update(f"{room}/{f.relative_to(top).as_posix()}".encode())
                h.update(f.read_bytes())
        _CODE[key] = h.hexdigest()
    return _CODE[key]


def code_record(*rooms: str) -> dict[str, str]:
    """What an artifact stores about the code that made it."""
    return {"semid_version": __version__, "code_fingerprint": code_fingerprint(*rooms),
            "code_rooms": ",".join(sorted(set(rooms) | {"core"}))}
