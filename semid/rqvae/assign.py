"""``semid sids assign``: the frozen RQ-VAE writes ``sids.parquet`` for every item of a corpus.

With ``update=True`` only items missing from an existing table are encoded and added; existing SIDs
never change (``SidTable.extend`` refuses if they would), and a table made by another model is refused.

Items are encoded in chunks of ``chunk_items`` (in item-id order); each finished chunk is saved in
``<out>.partial/`` (see ``semid.rqvae.partial``) under a fingerprint of the model, the corpus, the chunk
size and the items to encode. After a crash or ``kill -9`` the same command reuses the finished chunks
and writes the same table as an uninterrupted run (an item's SID does not depend on its batch); chunks
saved for other inputs are discarded. The table is written under a temporary name and renamed into
place, then the work directory is removed.

Test hook: ``SEMID_TEST_KILL_AFTER_CHUNKS=N`` makes the process ``SIGKILL`` itself once it has encoded
and saved N chunks, so tests can interrupt an assignment at a known point without timing races.
"""
from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules import Corpus
from semid.core.artifacts import atomic_path, remove_stale_temps
from semid.core.errors import SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_of
from semid.core.ids import locate
from semid.rqvae.frozen import FrozenRqvae, load_frozen
from semid.rqvae.partial import claim_partial
from semid.rqvae.sid_table import SidTable, read_sid_table, write_sid_table

# existing items re-encoded on --update to prove the model is the one that made the table
_VERIFY_SAMPLE = 1000
# ~50 s of work per chunk for the paper's shapes (L=8, K=2048: ~5k items/s on one core), ~3 s for `small`
DEFAULT_CHUNK_ITEMS = 250_000


@dataclass
class AssignResult:
    path: Path
    table: SidTable
    added: int  # items that received a SID in this call
    chunks: int = 0  # chunks encoded or reused
    reused_chunks: int = 0  # chunks an interrupted run had finished


def assign_sids(model_path: str | Path, corpus_path: str | Path, out: str | Path, *, update: bool = False,
                overwrite: bool = False, batch_size: int = 1024,
                chunk_items: int = DEFAULT_CHUNK_ITEMS) -> AssignResult:
    if chunk_items < 1:
        raise SemidError(f"--chunk-items must be >= 1 (got {chunk_items})")
    model = load_frozen(model_path)
    corpus = Corpus(corpus_path)
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    out = Path(out)
    old: SidTable | None = None
    rows: np.ndarray | None = None  # item rows to encode; None = all
    if update:
        if not out.exists():
            raise SemidError(f"--update needs an existing SID table at {out} (leave out --update to create one)")
        old = read_sid_table(out, expect_rqvae=model.fingerprint)
        _, known = locate(old.item_id, items.item_id)
        new_rows = np.flatnonzero(~known)
        rng = np.random.default_rng(0)
        known_rows = np.flatnonzero(known)
        check_rows = rng.choice(known_rows, size=min(_VERIFY_SAMPLE, len(known_rows)), replace=False)
        rows = np.sort(np.concatenate([new_rows, check_rows]))
        added = len(new_rows)
    else:
        if out.exists() and not overwrite:
            done = _finished_table(out, model, corpus.fingerprint, items.item_id)
            if done is not None:  # the same command ran to completion (e.g. killed just after the rename)
                return AssignResult(out, done, 0)
            raise SemidError(f"{out} already exists (pass --update to add new items only, or --overwrite to "
                             "rewrite every SID)")
        added = len(items)
    ids = items.item_id if rows is None else items.item_id[rows]
    work = fingerprint_of(["sid-chunks", model.fingerprint, corpus.fingerprint, chunk_items, fingerprint_bytes(ids)])
    info = {"rqvae_fingerprint": model.fingerprint, "corpus_fingerprint": corpus.fingerprint,
            "chunk_items": chunk_items, "items": len(ids)}
    with claim_partial(out, work, info, keep=True, discard_other=True, command="semid sids assign") as part:
        remove_stale_temps(out)
        codes, chunks, reused = _encode_chunks(model, items.embedding, rows, part.path, chunk_items, batch_size,
                                               str(corpus.items_path))
        if old is not None:
            table = old.extend(ids, codes)  # raises if a re-encoded known item would change
        else:
            table = SidTable(items.item_id, codes, model.codebook_size, model.fingerprint, corpus.fingerprint)
        write_sid_table(table, out)
        shutil.rmtree(part.path)
    return AssignResult(out, table, added, chunks, reused)


def _finished_table(out: Path, model: FrozenRqvae, corpus_fingerprint: str,
                    item_ids: np.ndarray) -> SidTable | None:
    """The table at ``out`` if this model made it for exactly these items of this corpus, else None."""
    try:
        table = read_sid_table(out, expect_rqvae=model.fingerprint)
    except SemidError:
        return None
    same = table.corpus_fingerprint == corpus_fingerprint and np.array_equal(table.item_id, item_ids)
    return table if same else None


def _encode_chunks(model: FrozenRqvae, embedding: np.ndarray, rows: np.ndarray | None, work: Path,
                   chunk_items: int, batch_size: int, where: str) -> tuple[np.ndarray, int, int]:
    """SIDs [n, L] of ``embedding[rows]`` (all rows when None), chunk by chunk. A finished chunk is saved in
    ``work`` and read back from there by a rerun. Returns (codes, chunks, chunks reused)."""
    n = len(embedding) if rows is None else len(rows)
    kill_after = int(os.environ.get("SEMID_TEST_KILL_AFTER_CHUNKS") or 0)
    codes = np.empty((n, model.levels), dtype=np.int32)
    starts = range(0, n, chunk_items)
    reused = encoded = 0
    for i, s in enumerate(starts):
        e = min(s + chunk_items, n)
        path = work / f"codes-{i:06d}.npy"
        chunk = _saved_chunk(path, e - s, model)
        if chunk is not None:
            reused += 1
        else:
            x = embedding[s:e] if rows is None else embedding[rows[s:e]]
            chunk = model.encode(x, batch_size, where=where)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, chunk)
            encoded += 1
            if encoded == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        codes[s:e] = chunk
    return codes, len(starts), reused


def _saved_chunk(path: Path, n: int, model: FrozenRqvae) -> np.ndarray | None:
    """A chunk saved by an earlier run, or None if there is none (or it does not fit: then it is re-encoded)."""
    if not path.exists():
        return None
    try:
        chunk = np.load(path)
    except (OSError, ValueError):
        return None
    fits = chunk.shape == (n, model.levels) and chunk.dtype == np.int32 and \
        (n == 0 or (chunk.min() >= 0 and chunk.max() < model.codebook_size))
    return chunk if fits else None
