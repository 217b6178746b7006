"""``semid sids assign``: the frozen RQ-VAE writes ``sids.parquet`` for every item of a corpus.

With ``update=True`` only items missing from an existing table are encoded and added; existing SIDs
never change (``SidTable.extend`` refuses if they would), and a table made by another model is refused.

``collision_suffix=True`` adds a level that numbers the items sharing a full SID (see
``semid.rqvae.sid_table``): 0, 1, 2, ... by distance of the item's embedding to its reconstruction
(the sum of its codewords for residual k-means, the decoder's output for the RQ-VAE), ties by item id.
On ``--update`` existing items keep their suffix and a new item takes the next free number of its SID
(new items of one SID in distance order), so suffixes never move. The suffix has K values like every
level: a SID shared by more than K items is refused with a one-line error. The rule is
``semid.rqvae.assign_arrays``'s, which ``Quantizer.assign`` applies to items in memory: the corpus path only
adds the chunked, resumable encoding.

Items are encoded in chunks of ``chunk_items`` in the order items.parquet holds them, each chunk's embeddings
read from the file when it is encoded (the row groups that hold it), so memory holds one chunk of embeddings,
never the corpus's (10M items of dim 256 are 10 GB); codes are put in item-id order at the end. Each finished
chunk is saved in ``<out>.partial/`` (see ``semid.rqvae.partial``) under a fingerprint of the model, the
corpus, the chunk size and the items to encode, in that order. After a crash or ``kill -9`` the same command reuses the finished chunks
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

from semid.datamodules import Corpus, open_corpus
from semid.core.artifacts import atomic_path, remove_stale_temps
from semid.core.errors import SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_of
from semid.core.ids import locate
from semid.core.progress import bar
from semid.rqvae.assign_arrays import finish_table, reconstruction_distance
from semid.rqvae.assign_arrays import number_collisions  # noqa: F401  (its old home: callers import it from here)
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
    largest_collision_group: int | None = None  # with a collision suffix: most items that shared one SID


def assign_sids(model_path: str | Path, corpus_path: str | Path, out: str | Path, *, update: bool = False,
                overwrite: bool = False, batch_size: int = 1024, chunk_items: int = DEFAULT_CHUNK_ITEMS,
                collision_suffix: bool | None = None) -> AssignResult:
    """``collision_suffix``: add the suffix level (True) or not (False); None = not for a new table, and as
    the existing table has it on ``update``."""
    if chunk_items < 1:
        raise SemidError(f"--chunk-items must be >= 1 (got {chunk_items})")
    model = load_frozen(model_path)
    corpus = open_corpus(corpus_path)  # the data gate, before <out>.partial/ exists
    order = corpus.item_order  # sorted ids and where each is in items.parquet; no embeddings yet
    item_ids = order.item_id
    out = Path(out)
    old: SidTable | None = None
    rows = np.arange(len(item_ids), dtype=np.int64)  # item rows to encode (sorted ascending)
    if update:
        if not out.exists():
            raise SemidError(f"--update needs an existing SID table at {out} (leave out --update to create one)")
        old = read_sid_table(out, expect_rqvae=model.fingerprint)
        if collision_suffix is not None and collision_suffix != old.collision_suffix:
            has = "has a collision suffix" if old.collision_suffix else "has no collision suffix"
            raise SemidError(f"{out} {has}; --update keeps the table's levels (drop --collision-suffix, or "
                             "rewrite the table with --overwrite)")
        collision_suffix = old.collision_suffix
        _, known = locate(old.item_id, item_ids)
        new_rows = np.flatnonzero(~known)
        rng = np.random.default_rng(0)
        known_rows = np.flatnonzero(known)
        check_rows = rng.choice(known_rows, size=min(_VERIFY_SAMPLE, len(known_rows)), replace=False)
        rows = np.sort(np.concatenate([new_rows, check_rows]))
        added = len(new_rows)
    else:
        collision_suffix = bool(collision_suffix)
        if out.exists() and not overwrite:
            done = _finished_table(out, model, corpus.fingerprint, item_ids, collision_suffix)
            if done is not None:  # the same command ran to completion (e.g. killed just after the rename)
                return AssignResult(out, done, 0)
            raise SemidError(f"{out} already exists (pass --update to add new items only, or --overwrite to "
                             "rewrite every SID)")
        added = len(item_ids)
    ids = item_ids[rows]
    # encoded in file order (a chunk is a run of items.parquet rows); ``back`` puts the codes in ``rows`` order
    file_rows = np.sort(order.file_row[rows])
    enc_rows = order.rows_of_file_rows(file_rows)
    # by a table, not a search: 10M unsorted queries into 10M rows miss the cache at every bisection step (~35 s)
    position = np.empty(len(item_ids), np.int64)
    position[rows] = np.arange(len(rows))
    back = position[enc_rows]
    work = fingerprint_of(["sid-chunks", "file-order", model.fingerprint, corpus.fingerprint, chunk_items,
                           fingerprint_bytes(item_ids[enc_rows])])
    info = {"rqvae_fingerprint": model.fingerprint, "corpus_fingerprint": corpus.fingerprint,
            "chunk_items": chunk_items, "items": len(ids)}
    with claim_partial(out, work, info, keep=True, discard_other=True, command="semid sids assign") as part:
        remove_stale_temps(out)
        enc_codes, enc_dist, chunks, reused = _encode_chunks(model, corpus, file_rows, part.path, chunk_items,
                                                             batch_size, distance=collision_suffix)
        codes = np.empty_like(enc_codes)
        codes[back] = enc_codes
        dist = None
        if enc_dist is not None:
            dist = np.empty_like(enc_dist)
            dist[back] = enc_dist
        # the in-memory rule (Quantizer.assign) from here on: suffix, then a new table or the old one extended
        table, largest = finish_table(model, ids, codes, dist, corpus.fingerprint, collision_suffix, old)
        write_sid_table(table, out)
        shutil.rmtree(part.path)
    return AssignResult(out, table, added, chunks, reused, largest)


def _finished_table(out: Path, model: FrozenRqvae, corpus_fingerprint: str, item_ids: np.ndarray,
                    collision_suffix: bool) -> SidTable | None:
    """The table at ``out`` if this model made it for exactly these items of this corpus, else None."""
    try:
        table = read_sid_table(out, expect_rqvae=model.fingerprint)
    except SemidError:
        return None
    same = table.corpus_fingerprint == corpus_fingerprint and np.array_equal(table.item_id, item_ids) and \
        table.collision_suffix == collision_suffix
    return table if same else None


def _encode_chunks(model: FrozenRqvae, corpus: Corpus, file_rows: np.ndarray, work: Path, chunk_items: int,
                   batch_size: int, *, distance: bool) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """SIDs [n, L] of the items at items.parquet rows ``file_rows`` (ascending), chunk by chunk, each chunk's
    embeddings read when it is encoded. A finished chunk is saved in ``work`` and read back from there by a
    rerun. ``distance``: also each item's ||x - x̂||² (the collision suffix orders by it). Returns (codes,
    distances or None, chunks, chunks reused)."""
    n = len(file_rows)
    kill_after = int(os.environ.get("SEMID_TEST_KILL_AFTER_CHUNKS") or 0)
    codes = np.empty((n, model.levels), dtype=np.int32)
    dist = np.empty(n, np.float64) if distance else None
    starts = range(0, n, chunk_items)
    reused = encoded = 0
    with bar("sids assign", total=n, unit="item") as pb:
        for i, s in enumerate(starts):
            e = min(s + chunk_items, n)
            path = work / f"codes-{i:06d}.npy"
            chunk = _saved_chunk(path, e - s, model)
            x = None if chunk is not None and not distance else \
                corpus.read_embeddings(file_rows[s:e], file_rows=True)
            if chunk is not None:
                reused += 1
            else:
                assert x is not None
                chunk = model.encode(x, batch_size, where=str(corpus.items_path))
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, chunk)
                encoded += 1
                if encoded == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            codes[s:e] = chunk
            if dist is not None:
                assert x is not None
                dist[s:e] = reconstruction_distance(model, x, np.arange(e - s), chunk, batch_size)
            pb.update(e - s)
    return codes, dist, len(starts), reused


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
