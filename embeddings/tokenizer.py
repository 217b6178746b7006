"""The one tokenizer interface: item ids (+ their SIDs) -> jagged token ids per embedding table.

A tokenizer owns one or more tables (``TableSpec``); ``tokenize`` returns, for each of its tables,
a CSR ``Jagged`` (offsets int64 [N+1], values int64) whose values are row indices into that table.
An item's representation is the SUM of the embeddings of all its tokens over all tables.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from semid.core.errors import SemidError
from semid.rqvae import SidTable


class TokenizerWarning(UserWarning):
    """A tokenizer had to degrade (e.g. rare SID symbols mapped to the unknown row)."""


@dataclass(frozen=True)
class SidSpace:
    """The SID space a tokenizer was fitted on: L levels of K codes, named by the frozen RQ-VAE."""

    levels: int
    codebook_size: int
    fingerprint: str

    @staticmethod
    def of(sids: SidTable) -> "SidSpace":
        return SidSpace(sids.levels, sids.codebook_size, sids.space_fingerprint)


@dataclass(frozen=True)
class TableSpec:
    name: str
    num_rows: int


@dataclass(frozen=True)
class Jagged:
    """CSR: item i's tokens are ``values[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # int64 [N+1], offsets[0] == 0
    values: np.ndarray  # int64 [offsets[-1]]

    @staticmethod
    def from_dense(rows: np.ndarray) -> "Jagged":
        """Every item has the same number of tokens: ``rows`` is [N, T]."""
        n, t = rows.shape
        return Jagged(np.arange(n + 1, dtype=np.int64) * t, np.ascontiguousarray(rows, dtype=np.int64).reshape(-1))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, rows: np.ndarray) -> "Jagged":
        """The CSR of items ``rows`` (in that order); a row of -1 gives an empty list."""
        values, lengths = gather_csr(self.offsets, self.values, rows)
        return Jagged(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), values)

    @staticmethod
    def concat(parts: list["Jagged"]) -> "Jagged":
        lengths = np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, np.int64)
        values = np.concatenate([p.values for p in parts]) if parts else np.zeros(0, np.int64)
        return Jagged(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), values.astype(np.int64))


def gather_csr(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated values of CSR rows ``rows`` and their lengths, vectorised (rows < 0 are empty)."""
    rows = np.asarray(rows, dtype=np.int64)
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    starts = offsets[safe]
    lengths = np.where(valid, offsets[safe + 1] - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64), lengths
    # position j of the output belongs to row r: values[starts[r] + (j - out_start[r])]
    out_start = np.cumsum(lengths) - lengths
    idx = np.repeat(starts - out_start, lengths) + np.arange(total, dtype=np.int64)
    return values[idx], lengths


class Tokenizer(ABC):
    """Maps items to rows of its tables. Subclasses are built from a config dataclass by the registry."""

    #: whether ``tokenize`` reads SIDs (hashing of item ids does not)
    needs_sids: bool = True

    @abstractmethod
    def tables(self) -> list[TableSpec]:
        """The tables this tokenizer indexes (known after ``fit``)."""

    @abstractmethod
    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        """One CSR per table for items ``item_ids`` with SIDs ``codes`` [N, L] (None if not needed)."""

    def fit(self, space: SidSpace | None, sids: SidTable | None, item_ids: np.ndarray,
            impressions: np.ndarray | None) -> None:
        """Learn what the tokenizer needs: the SID space (L, K) and, for SPM, a vocabulary."""

    def restore(self, space: SidSpace | None, state: dict[str, bytes]) -> None:
        """Rebuild a fitted tokenizer from its SID space and what ``state`` returned (cache load)."""
        self.fit(space, None, np.zeros(0, np.int64), None)

    def state(self) -> dict[str, bytes]:
        """Learned state to save with a token cache (name -> bytes)."""
        return {}

    def meta(self) -> dict[str, object]:
        """JSON-able facts about the learned state (fingerprints, actual vocab size)."""
        return {}


def check_levels(codes: np.ndarray, codebook_size: int) -> None:
    if codes.ndim != 2:
        raise SemidError(f"SIDs must be a [N, L] array, got shape {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise SemidError(f"SID codes outside [0, {codebook_size}) (found {int(codes.min())}..{int(codes.max())})")


class ConfigError(SemidError, ValueError):
    """A bad representation setting. A ValueError too, so ``semid.core.config.from_dict`` names the file."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
