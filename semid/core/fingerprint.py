"""Fingerprints: short content hashes that chain artifacts to what they were built from."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from semid.core.errors import FingerprintMismatch

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
