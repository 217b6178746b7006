"""Managed collisions: TorchRec's answer to new items, the baseline a TorchRec user would pick.

Random hashing gives a new item whatever row its hash lands on, shared with the items already there.
TorchRec's managed-collision hash (``MCHManagedCollisionModule`` inside a
``ManagedCollisionEmbeddingBagCollection``) keeps a map raw id -> row instead: an id seen in training gets
a row of its own while there is room, and when the table is full an eviction policy decides which id
loses its row (``lfu``: the least often seen; ``lru``: the least recently seen). Ids without a row share
the table's last row (TorchRec's miss row), so ``rows`` = ``rows - 1`` managed rows + 1 shared row.

Only training steps insert ids (``MCHManagedCollisionModule.profile`` does nothing in eval mode): an
item introduced on the evaluation day has never been seen and is scored through the shared miss row.

Tokens are not rows: each item's one token is its id hashed into MCH's input space [0, 2^62) (the raw id
the module remaps at lookup time). Hashing spreads ids evenly over that space, which TorchRec's row-wise
input distribution cuts into one block per rank; 2^62 keeps the sentinel of an empty slot (int64 max)
out of reach, and two of a million items collide in it with probability ~1e-7.

Eviction runs every step (``eviction_interval=1``): between steps the module then holds no state outside
its checkpointed buffers (sorted raw ids, their rows, counts or last-access step, the step counter), so a
run resumed from a checkpoint continues exactly. It re-sorts the whole table each step: measured 4.7 ms
(LFU) / 6.5 ms (LRU) per 2048-sample step at 8K rows, 45 / 47 ms at 2^18 rows, one CPU thread.

TorchRec is imported only by ``managed_collision_collection`` (the registry must stay import-light).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from semid.embeddings._hash import seeded_hash
from semid.embeddings.tokenizer import Jagged, TableSpec, Tokenizer
from semid.core.config import require, require_int

if TYPE_CHECKING:
    import torch
    from torchrec import EmbeddingBagConfig
    from torchrec.modules.mc_modules import ManagedCollisionCollection

INPUT_HASH_SIZE = 2**62  # MCH's raw-id space: tokens lie in [0, INPUT_HASH_SIZE)
EVICTIONS = ("lfu", "lru")


@dataclass
class MchConfig:
    kind: str = "mch"
    name: str = "mch"  # table name
    rows: int = 8192  # rows of the table: rows - 1 managed rows + TorchRec's shared miss row
    eviction: str = "lfu"  # lfu (least frequently seen id loses its row) | lru (least recently seen)
    seed: int = 0  # the hash of item ids into MCH's input space

    def __post_init__(self) -> None:
        require_int(self.rows, "rows", minimum=2)  # one managed row and the shared miss row at least
        require(self.eviction in EVICTIONS, "eviction",
                f"must be one of {', '.join(EVICTIONS)} (got {self.eviction!r}; lfu evicts the least often seen "
                "id, lru the least recently seen)")
        require_int(self.seed, "seed", minimum=0)


def mch_ids(item_ids: np.ndarray, seed: int) -> np.ndarray:
    """Each item's raw id in MCH's input space [0, 2^62), int64 (a seeded hash: ids spread evenly)."""
    return (seeded_hash(item_ids, seed) >> np.uint64(2)).astype(np.int64)


class MchTokenizer(Tokenizer):
    """One token per item: its raw MCH id (remapped to a row by the ranker's managed-collision module)."""

    needs_sids = False

    def __init__(self, cfg: MchConfig) -> None:
        self.cfg = cfg

    def tables(self) -> list[TableSpec]:
        return [TableSpec(self.cfg.name, self.cfg.rows)]

    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        return [Jagged.from_dense(mch_ids(item_ids, self.cfg.seed)[:, None])]


def managed_collision_collection(cfg: MchConfig, tables: Sequence[EmbeddingBagConfig],
                                 device: torch.device | str = "meta") -> ManagedCollisionCollection:
    """TorchRec's ``ManagedCollisionCollection`` for ``tables`` (every one managed, with ``cfg``'s eviction).

    Built on ``meta`` by the ranker: sharding rebuilds each module on its device for its row range.
    """
    import torch
    from torchrec.modules.mc_modules import LFU_EvictionPolicy, LRU_EvictionPolicy, ManagedCollisionCollection

    policy = {"lfu": LFU_EvictionPolicy, "lru": LRU_EvictionPolicy}[cfg.eviction]
    mch = _growing_mch_class()
    modules = {t.name: mch(zch_size=t.num_embeddings, device=torch.device(device), eviction_policy=policy(),
                           eviction_interval=1, input_hash_size=INPUT_HASH_SIZE, name=t.name) for t in tables}
    return ManagedCollisionCollection(modules, embedding_configs=list(tables))


@functools.cache
def _growing_mch_class() -> type:
    """``MCHManagedCollisionModule`` whose id history grows to the step's ids instead of dropping them.

    TorchRec sizes the history buffer from the first training batch (1.25x its ids) and silently drops
    the ids beyond it later. The first day has no user history, so with history features later batches
    hold many more ids: their counts were lost, and a resumed run (whose first batch differs) lost
    others. With one eviction per step the buffer is empty at the start of each step, so growing it
    there loses nothing. Subclassed inside a function so importing this module does not import TorchRec;
    ``rebuild_with_output_id_range`` (sharding) keeps the subclass (it builds ``type(self)``).
    """
    from torchrec.modules.mc_modules import MCHManagedCollisionModule

    class GrowingMCHManagedCollisionModule(MCHManagedCollisionModule):
        def profile(self, features: dict[str, Any]) -> dict[str, Any]:
            if self.training:
                n = sum(int(f.values().numel()) for f in features.values())
                if n > self._input_history_buffer_size - self._current_history_buffer_offset:
                    assert self._current_history_buffer_offset == 0, "the history is coalesced every step"
                    self._init_history_buffers(features)
            return super().profile(features)

    return GrowingMCHManagedCollisionModule
