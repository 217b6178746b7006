"""The checked reader: every command opens its corpus with ``open_corpus``, which runs ``semid data validate``'s
checks.

The cheap checks (listings and Parquet footers: files present and readable, columns and types, partitions, no
empty file or day, consecutive days) run on every open. The O(data) checks (every value: labels, nulls, unknown
ids, impressions before first_day, copied day files, id collisions, degenerate embeddings, NaN/inf) run once per
state of the files and are remembered in a validation stamp, so a second command on an unchanged corpus does not
pay for them again (the small corpus, 2M impressions: 5-8 s on 2 shared cores, 0.02 s with the stamp) and an
edited file is noticed without ``--deep``.

The stamp is keyed by the corpus fingerprint, the digest of the checking code (``code_fingerprint('datamodules')``)
and the relative path, size and mtime (ns) of every file the checks read (corpus.json, items.parquet, each day
file); any difference, a file added or removed included, means a new scan. It is written

* inside the corpus as ``<corpus>/.semid-validated.json`` when the directory is writable: it travels with the
  corpus when it is moved (paths in it are relative, and a move keeps mtimes), goes with it when it is deleted
  or regenerated (a corpus is replaced as a whole directory), and needs no per-user state. The name is hidden
  and outside ``impressions/``, so neither the day listing nor ``compute_fingerprint`` (items.parquet and
  ``impressions/day=*/*.parquet`` only) sees it: writing it does not change the corpus fingerprint;
* else (a read-only or shared corpus) in the user's cache: ``$SEMID_CACHE_DIR``, else ``$XDG_CACHE_HOME/semid``,
  else ``~/.cache/semid``, as ``validated/<digest of the corpus's absolute path>.json``;
* and if neither can be written, nowhere: the next open scans again (correct, only slower).

Writes are atomic (``write_json``: a temporary sibling renamed into place), so a reader sees the old stamp or the
new one. Only a corpus that passed is stamped; a refusal raises one ``DataError`` naming the file (the day file for
an impression) and the field, with the fix, before the calling command has written anything.

What the stamp cannot see: an edit that keeps a file's size and restores its mtime (``touch -r``); ``--deep``
(``deep=True``) ignores the stamp and also re-hashes the files against corpus.json's fingerprint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from semid.datamodules.corpus import META_FILE, PRIOR_HISTORY_FILE, Corpus, compute_fingerprint
from semid.datamodules.validate import ValidationReport, check_content, check_fingerprint, check_layout
from semid.core.artifacts import read_json, write_json
from semid.core.errors import SemidError
from semid.core.fingerprint import code_fingerprint

STAMP_FILE = ".semid-validated.json"
STAMP_VERSION = 1


def open_corpus(path: str | Path, deep: bool = False) -> Corpus:
    """The corpus at ``path``, checked as ``semid data validate`` checks it (``deep``: as ``--deep`` does).

    Raises ``DataError`` for data ``semid data validate`` refuses. Warnings (e.g. items sharing an embedding) are
    printed to stderr when the data are scanned, i.e. once per state of the files.
    """
    corpus, report = check_corpus(path, deep=deep)
    if not report.from_stamp:
        for w in report.warnings:
            print(f"semid: warning: {w}", file=sys.stderr)
    return corpus


def check_corpus(path: str | Path, *, deep: bool = False, rescan: bool = False) -> tuple[Corpus, ValidationReport]:
    """``open_corpus`` and its report. ``rescan``: run the O(data) checks even if a stamp says they passed
    (``semid data validate``); ``deep``: rescan and also verify the content fingerprint."""
    corpus = Corpus(path)
    days = check_layout(corpus)
    files = file_states(corpus)  # before the scan: a file edited while it runs gets a new scan next time
    if not (deep or rescan):
        found = _read_stamp(corpus, files)
        if found is not None:
            return corpus, found
    report = check_content(corpus, days)
    if deep:
        check_fingerprint(corpus)
    _write_stamp(corpus, files, report)
    return corpus, report


def file_states(corpus: Corpus) -> dict[str, list[int]]:
    """Relative path -> [size, mtime_ns] of every file the checks read (listings from ``check_layout``)."""
    paths = [corpus.path / META_FILE, corpus.items_path, corpus.path / PRIOR_HISTORY_FILE] + \
        [f for fs in corpus.day_files().values() for f in fs]
    out: dict[str, list[int]] = {}
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:  # corpus.json is optional; a day file deleted since the listing: rescan
            continue
        out[p.relative_to(corpus.path).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def stamp_paths(corpus: Corpus) -> list[Path]:
    """Where the stamp may be, in the order it is looked for and written."""
    inside = corpus.path / STAMP_FILE
    try:
        base = Path(os.environ.get("SEMID_CACHE_DIR") or
                    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "semid")
    except RuntimeError:  # no home directory to find (HOME unset, no passwd entry): the corpus dir only
        return [inside]
    key = hashlib.blake2b(str(corpus.path.resolve()).encode(), digest_size=10).hexdigest()
    return [inside, base / "validated" / f"{key}.json"]


def _key(corpus: Corpus, files: dict[str, list[int]]) -> dict[str, Any]:
    return {"version": STAMP_VERSION, "checks": code_fingerprint("datamodules"),
            "fingerprint": corpus.meta.get("fingerprint"), "files": files}


def _read_stamp(corpus: Corpus, files: dict[str, list[int]]) -> ValidationReport | None:
    key = _key(corpus, files)
    for p in stamp_paths(corpus):
        try:
            stamp = read_json(p) if p.is_file() else None
        except (SemidError, OSError):  # unreadable or damaged: as if absent (it is rewritten after the scan)
            continue
        if not isinstance(stamp, dict) or {k: stamp.get(k) for k in key} != key:
            continue
        try:
            report = dataclasses.replace(ValidationReport(**stamp["report"]), from_stamp=True)
        except (KeyError, TypeError):
            continue
        if not corpus.meta.get("fingerprint") and stamp.get("content_fingerprint"):
            # a corpus without corpus.json: its fingerprint hashes every file; the stamp's is as current as its checks
            corpus.__dict__["fingerprint"] = stamp["content_fingerprint"]
        return report
    return None


def _write_stamp(corpus: Corpus, files: dict[str, list[int]], report: ValidationReport) -> None:
    found = {k: v for k, v in dataclasses.asdict(report).items() if k != "from_stamp"}
    stamp = {**_key(corpus, files), "corpus": str(corpus.path.resolve()), "report": found}
    if not corpus.meta.get("fingerprint"):
        stamp["content_fingerprint"] = corpus.__dict__.get("fingerprint") or compute_fingerprint(corpus.path)
    for p in stamp_paths(corpus):
        try:
            write_json(p, stamp)
            return
        except (SemidError, OSError):  # read-only corpus (EROFS/EACCES), full disk: try the next place
            continue
