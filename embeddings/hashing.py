"""Random hashing of item ids into S rows: the paper's baseline (one lookup per item, no SIDs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semid.embeddings._hash import hash_to_rows
from semid.embeddings.tokenizer import Jagged, TableSpec, Tokenizer, require


@dataclass
class HashConfig:
    """Random hashing of item ids into ``rows`` rows: the paper's baseline (8K rows is its reference).

    >>> from semid.embeddings import HashConfig
    >>> HashConfig(rows=4096).rows
    4096
    """

    kind: str = "hash"
    name: str = "hash"  # table name
    rows: int = 8192  # S: the table size (the paper's reference baseline is 8K rows)
    seed: int = 0  # picks the hash function; different seeds collide differently

    def __post_init__(self) -> None:
        require(self.rows >= 1, f"rows must be >= 1, got {self.rows}")


class HashTokenizer(Tokenizer):
    needs_sids = False

    def __init__(self, cfg: HashConfig) -> None:
        self.cfg = cfg

    def tables(self) -> list[TableSpec]:
        return [TableSpec(self.cfg.name, self.cfg.rows)]

    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        return [Jagged.from_dense(hash_to_rows(item_ids, self.cfg.seed, self.cfg.rows)[:, None])]
