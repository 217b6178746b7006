"""The batch that crosses from datamodules to rankers: sparse features as one KeyedJaggedTensor.

The item roles and the feature-key format are named here, once: embeddings builds its tables' feature
names with ``feature_key`` and rankers reads pooled embeddings back by the same keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torchrec import KeyedJaggedTensor

# the items a sample carries: the candidate, the context (watch) item, and the user's watch history
ROLES = ("candidate", "watch", "history")


def feature_key(role: str, table: str) -> str:
    """The KJT key of one role's bag on one table (every role shares the representation's tables)."""
    return f"{role}__{table}"


class SparseFeatures(Protocol):
    """How a batch's items become its KeyedJaggedTensor. embeddings implements it over a token cache
    (``semid.embeddings.CacheFeatures``); rankers passes it in, since datamodules sits below embeddings."""

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Rows [N] of the features' item table for corpus item ids [N]."""
        ...

    def kjt(self, rows: dict[str, np.ndarray], history: tuple[np.ndarray, np.ndarray] | None) -> KeyedJaggedTensor:
        """One bag per (role, table) from item rows per role [B] (-1: no item) and an optional history
        (offsets [B+1], item rows [nnz]) summed into one bag per table."""
        ...


@dataclass
class RankingBatch:
    kjt: KeyedJaggedTensor | None  # role__table features (None for the Dense Input representation)
    content: dict[str, Tensor] | None  # role -> [B, D] raw content embedding (Dense Input only)
    context: Tensor  # [B, C] float dense context features
    labels: Tensor  # [B, 2] float (click, engaged)
    is_new: Tensor  # [B] bool: candidate introduced on this batch's day
    popularity: Tensor  # [B] int8: 0 head, 1 torso, 2 tail (by training impressions)
    history_items: Tensor  # [B] float: number of items in the history bag (for mean pooling)
    day: int
    # [B] int64 each: the impression's row in its day (the day files' order) and the candidate's item id; they
    # key the evaluation predictions that paired comparisons of two runs join on
    row: Tensor | None = None
    item_id: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "RankingBatch":
        mv = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return RankingBatch(
            kjt=self.kjt.to(device, non_blocking=non_blocking) if self.kjt is not None else None,
            content={k: mv(v) for k, v in self.content.items()} if self.content is not None else None,
            context=mv(self.context), labels=mv(self.labels), is_new=mv(self.is_new),
            popularity=mv(self.popularity), history_items=mv(self.history_items), day=self.day,
            row=self.row, item_id=self.item_id)  # bookkeeping: stays on the CPU
