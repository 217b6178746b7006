"""``semid sids assign``: the frozen RQ-VAE writes ``sids.parquet`` for every item of a corpus.

With ``update=True`` only items missing from an existing table are encoded and added; existing SIDs
never change (``SidTable.extend`` refuses if they would), and a table made by another model is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.corpus import Corpus
from semid.errors import SemidError
from semid.ids import locate
from semid.rqvae.frozen import load_frozen
from semid.sid_table import SidTable, read_sid_table, write_sid_table

# existing items re-encoded on --update to prove the model is the one that made the table
_VERIFY_SAMPLE = 1000


@dataclass
class AssignResult:
    path: Path
    table: SidTable
    added: int  # items that received a SID in this call


def assign_sids(model_path: str | Path, corpus_path: str | Path, out: str | Path, *, update: bool = False,
                overwrite: bool = False, batch_size: int = 1024) -> AssignResult:
    model = load_frozen(model_path)
    corpus = Corpus(corpus_path)
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    out = Path(out)
    where = str(corpus.items_path)
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
        codes = model.encode(items.embedding[rows], batch_size, where=where)
        table = old.extend(items.item_id[rows], codes)  # raises if a re-encoded known item would change
        added = len(new_rows)
    else:
        if out.exists() and not overwrite:
            raise SemidError(f"{out} already exists (pass --update to add new items only, or --overwrite to "
                             "rewrite every SID)")
        codes = model.encode(items.embedding, batch_size, where=where)
        table = SidTable(items.item_id, codes, model.codebook_size, model.fingerprint, corpus.fingerprint)
        added = len(items)
    write_sid_table(table, out)
    return AssignResult(out, table, added)
