"""The batch that crosses from datamodules to rankers: sparse features as one KeyedJaggedTensor."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchrec import KeyedJaggedTensor


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

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "RankingBatch":
        mv = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return RankingBatch(
            kjt=self.kjt.to(device, non_blocking=non_blocking) if self.kjt is not None else None,
            content={k: mv(v) for k, v in self.content.items()} if self.content is not None else None,
            context=mv(self.context), labels=mv(self.labels), is_new=mv(self.is_new),
            popularity=mv(self.popularity), history_items=mv(self.history_items), day=self.day)
