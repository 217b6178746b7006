"""Checking a ranker checkpoint before a resume or an evaluation touches anything.

A sharded run's ``last.ckpt`` is a ``torch.distributed.checkpoint`` directory: ``.metadata`` (a pickle naming
every stored tensor's file, offset and length), the shard files ``__<rank>_<n>.distcp``, and the loop state
``lightning_state.pt`` that ``TorchRecStrategy.save_checkpoint`` adds; a Dense Input run's is one Lightning
file. A copy cut short, a full disk on another machine or an editor leaves one of them truncated or garbled,
and torch then fails deep inside the load with a long traceback, after the fit has set its loggers up (moving
the W&B run aside). ``read_checkpoint`` reads the metadata and the loop state and checks that every stored
item lies inside its file: a few stats and two small reads, whatever the tables' size. Bytes garbled inside a
shard of the right length are found when DCP deserialises them; the strategy turns that into the same line.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from semid.core.errors import SemidError

LOOP_STATE = "lightning_state.pt"
METADATA = ".metadata"
# what `rank fit` needs from the loop state to resume (Lightning's own keys and the run's fingerprint)
_LOOP_KEYS = ("global_step", "loops", "semid_run_fingerprint")


def resume_fix(checkpoint: Path) -> str:
    """What to do about a damaged checkpoint that a fit would resume from.

    >>> resume_fix(Path("run/checkpoints/last.ckpt"))
    'rerun with --no-resume to start over, or delete run/checkpoints/last.ckpt'
    """
    return f"rerun with --no-resume to start over, or delete {checkpoint}"


def damaged(file: Path, problem: str, fix: str) -> SemidError:
    """The one-line error for a damaged checkpoint ``file``: what is wrong with it, then ``fix``.

    >>> str(damaged(Path("last.ckpt/.metadata"), "truncated", resume_fix(Path("last.ckpt"))))
    'last.ckpt/.metadata: the checkpoint is damaged (truncated); rerun with --no-resume to start over, or delete last.ckpt'
    """
    return SemidError(f"{file}: the checkpoint is damaged ({problem}); {fix}")


def _reason(e: BaseException) -> str:
    """The first sentence of a library's message (torch's zip reader appends a paragraph of advice)."""
    text = str(e).strip()
    first = text.splitlines()[0].split(". ")[0] if text else type(e).__name__
    return first[:160]


def _load_loop_state(file: Path, fix: str) -> dict[str, object]:
    try:
        state = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as e:  # any unreadable byte stream: zip, pickle, EOF, unknown class
        raise damaged(file, f"not a readable torch file: {_reason(e)}", fix) from None
    if not isinstance(state, dict):
        raise damaged(file, f"holds a {type(state).__name__}, not a checkpoint's state", fix)
    missing = [k for k in _LOOP_KEYS if k not in state]
    if missing:
        raise damaged(file, f"lacks {', '.join(missing)}", fix)
    return state


def _check_shards(directory: Path, fix: str) -> None:
    from torch.distributed.checkpoint import FileSystemReader

    meta_file = directory / METADATA
    if not meta_file.is_file():
        raise damaged(meta_file, "missing", fix)
    try:
        storage = FileSystemReader(str(directory)).read_metadata().storage_data
        items = [(info.relative_path, int(info.offset), int(info.length)) for info in storage.values()]
    except Exception as e:  # a truncated or garbled pickle fails in many ways (EOF, bad opcode, bad class)
        raise damaged(meta_file, f"not readable checkpoint metadata: {_reason(e)}", fix) from None
    ends: dict[str, int] = {}
    for rel, offset, length in items:
        ends[rel] = max(ends.get(rel, 0), offset + length)
    for rel, end in sorted(ends.items()):
        shard = directory / rel
        if not shard.is_file():
            raise damaged(shard, f"missing, though {METADATA} lists it", fix)
        size = os.path.getsize(shard)
        if size < end:
            raise damaged(shard, f"truncated: {size:,} bytes, {METADATA} needs {end:,}", fix)


def read_checkpoint(checkpoint: Path, fix: str | None = None) -> dict[str, object]:
    """The Lightning loop state of ``checkpoint`` (a DCP directory or a Lightning file), after checking that its
    files are complete; a damaged one is a ``SemidError`` naming the file, then ``fix`` (default: the resume fix).
    Reads no tensors of a sharded checkpoint.

    >>> read_checkpoint(Path("no/such/last.ckpt"))
    Traceback (most recent call last):
    ...
    semid.core.errors.SemidError: no/such/last.ckpt: the checkpoint is damaged (missing); rerun with --no-resume to start over, or delete no/such/last.ckpt
    """
    checkpoint = Path(checkpoint)
    fix = fix or resume_fix(checkpoint)
    if checkpoint.is_dir():
        loop = checkpoint / LOOP_STATE
        if not loop.is_file():
            raise damaged(loop, "missing", fix)
        _check_shards(checkpoint, fix)
        return _load_loop_state(loop, fix)
    if not checkpoint.is_file():
        raise damaged(checkpoint, "missing", fix)
    return _load_loop_state(checkpoint, fix)


def load_failed(e: BaseException, checkpoint: Path, fix: str | None = None) -> SemidError:
    """The one-line error for a load that failed after ``read_checkpoint`` passed (bytes garbled inside a shard):
    DCP wraps each rank's failure, so the first leaf names the problem.

    >>> str(load_failed(EOFError("Ran out of input"), Path("last.ckpt")))
    'last.ckpt: the checkpoint is damaged (loading it failed: Ran out of input); rerun with --no-resume to start over, or delete last.ckpt'
    """
    fix = fix or resume_fix(checkpoint)
    leaf: BaseException = e
    failures = getattr(e, "failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        if isinstance(first, tuple) and isinstance(first[0], BaseException):
            leaf = first[0]
    if isinstance(leaf, pickle.UnpicklingError) and "Weights only load failed" in str(leaf):
        return damaged(checkpoint, "a shard's bytes do not deserialise", fix)
    return damaged(checkpoint, f"loading it failed: {_reason(leaf)}", fix)
