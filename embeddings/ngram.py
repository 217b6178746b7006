"""N-gram and prefix-N-gram tokenizers over SIDs (c_1 .. c_L, each code in [0, K)).

* ``ngram`` with ``n``: non-overlapping groups (c_1..c_n), (c_{n+1}..c_{2n}), ...; an odd tail is a
  shorter group. n=1 is the paper's unigram-SID (L tables of K rows), n=2 its bigram-SID
  (L/2 tables of K^2 rows, row = c_{2i} * K + c_{2i+1}).
* ``prefix_ngram``: every prefix (c_1), (c_1, c_2), ..., (c_1..c_L), one table per prefix length.

A group whose exact index space K^n exceeds its row budget is hashed into the budget instead.
``layout: offset`` puts all groups into one table, group g's rows starting after groups 0..g-1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semid.embeddings._hash import chain_hash, seeded_hash
from semid.embeddings.tokenizer import Jagged, SidSpace, TableSpec, Tokenizer, check_levels, require
from semid.rqvae import SidTable

LAYOUTS = ("per_group", "offset")
_MAX_EXACT = 1 << 62  # exact indices are computed in int64


def group_index(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Exact row of an n-gram of codes [N, n]: base-K number, c_1 * K^(n-1) + ... + c_n.

    For a bigram (c_{2i}, c_{2i+1}) this is ``c_{2i} * K + c_{2i+1}`` -- the one place it is computed.
    """
    require(codebook_size ** codes.shape[1] <= _MAX_EXACT,
            f"K^n = {codebook_size}^{codes.shape[1]} does not fit an int64 index (set a row budget)")
    row = np.zeros(len(codes), dtype=np.int64)
    for j in range(codes.shape[1]):
        row = row * codebook_size + codes[:, j].astype(np.int64)
    return row


def hashed_index(codes: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Row in [0, rows) for an n-gram of any length, by a seeded hash of the code sequence."""
    state = seeded_hash(np.full(len(codes), codes.shape[1], np.int64), seed)
    for j in range(codes.shape[1]):
        state = chain_hash(state, codes[:, j])
    return (state % np.uint64(rows)).astype(np.int64)


def _fit_group(codes: np.ndarray, k: int, budget: int | None, seed: int) -> tuple[np.ndarray, int]:
    """(rows, table size) of one group: exact when K^n fits the budget, else hashed into it."""
    exact = k ** codes.shape[1]
    if budget is None or exact <= budget:
        return group_index(codes, k), exact
    return hashed_index(codes, budget, seed), budget


def _layout(name: str, layout: str, group_names: list[str], group_rows: list[int],
            rows: list[np.ndarray]) -> tuple[list[TableSpec], list[Jagged]]:
    if layout == "per_group":
        return ([TableSpec(f"{name}_{g}", r) for g, r in zip(group_names, group_rows)],
                [Jagged.from_dense(x[:, None]) for x in rows])
    starts = np.concatenate([[0], np.cumsum(group_rows)[:-1]]).astype(np.int64)
    dense = np.stack(rows, axis=1) + starts[None, :] if rows else np.zeros((0, 0), np.int64)
    return [TableSpec(name, int(sum(group_rows)))], [Jagged.from_dense(dense)]


def _check_common(layout: str, budget: int | None) -> None:
    require(layout in LAYOUTS, f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    require(budget is None or budget >= 1, f"row budget must be >= 1, got {budget}")


class _SidTokenizer(Tokenizer):
    """Shared plumbing: the SID space is learned in ``fit`` and the table list follows from it."""

    space: SidSpace | None = None

    def fit(self, space: SidSpace | None, sids: SidTable | None, item_ids: np.ndarray,
            impressions: np.ndarray | None) -> None:
        require(space is not None, f"{type(self).__name__} needs a SID table")
        self.space = space
        self._check_space()

    def _check_space(self) -> None:
        pass

    def tables(self) -> list[TableSpec]:
        assert self.space is not None, "fit() first"
        dummy = np.zeros((0, self.space.levels), np.int64)
        return self._tokens(dummy)[0]

    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        assert self.space is not None and codes is not None
        check_levels(codes, self.space.codebook_size)
        require(codes.shape[1] == self.space.levels,
                f"SIDs have {codes.shape[1]} levels but the tokenizer was fitted on {self.space.levels}")
        return self._tokens(codes)[1]

    def _tokens(self, codes: np.ndarray) -> tuple[list[TableSpec], list[Jagged]]:
        raise NotImplementedError


@dataclass
class NgramConfig:
    """N-gram SIDs: an item's L codes in non-overlapping groups of ``n`` (n=1 unigram-SID: L tables of K rows;
    n=2 bigram-SID: L/2 tables of K^2 rows), an item's embedding the sum of its groups' rows.

    >>> from semid.embeddings import NgramConfig
    >>> NgramConfig(n=2).n
    2
    """

    kind: str = "ngram"
    name: str = "ngram"  # table name (per_group: name_0, name_1, ...)
    n: int = 1  # group size: 1 = unigram-SID, 2 = bigram-SID
    layout: str = "per_group"  # per_group: one table per group | offset: one table, groups offset
    rows_per_group: int | None = None  # budget; a group with K^n > budget is hashed into it
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n >= 1, f"n must be >= 1, got {self.n}")
        _check_common(self.layout, self.rows_per_group)


class NgramTokenizer(_SidTokenizer):
    def __init__(self, cfg: NgramConfig) -> None:
        self.cfg = cfg

    def groups(self, levels: int) -> list[tuple[int, int]]:
        """[start, stop) level ranges of the non-overlapping groups; the last may be shorter."""
        n = self.cfg.n
        return [(s, min(s + n, levels)) for s in range(0, levels, n)]

    def _tokens(self, codes: np.ndarray) -> tuple[list[TableSpec], list[Jagged]]:
        assert self.space is not None
        k, rows, sizes = self.space.codebook_size, [], []
        for g, (a, b) in enumerate(self.groups(self.space.levels)):
            r, size = _fit_group(codes[:, a:b], k, self.cfg.rows_per_group, self.cfg.seed + g)
            rows.append(r)
            sizes.append(size)
        names = [str(g) for g in range(len(sizes))]
        return _layout(self.cfg.name, self.cfg.layout, names, sizes, rows)


@dataclass
class PrefixNgramConfig:
    """Prefix-n-gram SIDs: one piece per SID prefix (lengths ``min_length``..``max_length``), each prefix length
    with a table of at most ``rows_per_level`` rows (longer prefixes are hashed into it).

    >>> from semid.embeddings import PrefixNgramConfig
    >>> PrefixNgramConfig(rows_per_level=1 << 16).rows_per_level
    65536
    """

    kind: str = "prefix_ngram"
    name: str = "prefix"  # table name (per_group: name_1 .. name_L, by prefix length)
    rows_per_level: int | None = 1 << 20  # budget per prefix length; longer prefixes are hashed into it
    min_length: int = 1
    max_length: int | None = None  # default L
    layout: str = "per_group"
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.min_length >= 1, f"min_length must be >= 1, got {self.min_length}")
        require(self.max_length is None or self.max_length >= self.min_length,
                f"max_length ({self.max_length}) must be >= min_length ({self.min_length})")
        _check_common(self.layout, self.rows_per_level)


class PrefixNgramTokenizer(_SidTokenizer):
    def __init__(self, cfg: PrefixNgramConfig) -> None:
        self.cfg = cfg

    def lengths(self, levels: int) -> list[int]:
        top = levels if self.cfg.max_length is None else self.cfg.max_length
        return list(range(self.cfg.min_length, top + 1))

    def _check_space(self) -> None:
        assert self.space is not None
        lengths = self.lengths(self.space.levels)
        require(bool(lengths) and lengths[-1] <= self.space.levels,
                f"prefix lengths {self.cfg.min_length}..{self.cfg.max_length or 'L'} do not fit SIDs of length "
                f"L={self.space.levels}")

    def _tokens(self, codes: np.ndarray) -> tuple[list[TableSpec], list[Jagged]]:
        assert self.space is not None
        k, rows, sizes = self.space.codebook_size, [], []
        for n in self.lengths(self.space.levels):
            r, size = _fit_group(codes[:, :n], k, self.cfg.rows_per_level, self.cfg.seed + n)
            rows.append(r)
            sizes.append(size)
        names = [str(n) for n in self.lengths(self.space.levels)]
        return _layout(self.cfg.name, self.cfg.layout, names, sizes, rows)
