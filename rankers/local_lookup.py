"""World-size-1 fast path for a sharded ``EmbeddingBagCollection``: call DMP's own FBGEMM kernels directly.

On one process, ``ShardedEmbeddingBagCollection.forward`` still runs the whole distributed pipeline:
the KJT is permuted and split by sharding type, sent through a 1-rank all-to-all (lengths, then
values), wrapped in awaitables, looked up, sent back through the output distribution and permuted
into a ``KeyedTensor``. That is a fixed ~0.4-0.5 ms per call on CPU (BENCHMARKS.md, "Where the time
goes") around ~0.5 ms of FBGEMM work for a 4096-sample batch.

With one rank every table shard lives on this process and every table's rows are all local
(row offset 0), so the distribution is an identity: each fused TBE that DMP created
(``_lookups[i]._emb_modules[g].emb_module``) can be fed directly with the KJT's values and offsets
arranged in that TBE's feature order (one ``permute_2D_sparse_data``), and its pooled output columns
placed where DMP's output distribution would place them. The tables, fused optimizer state, DCP
state_dict and plan are DMP's own objects, untouched; forward outputs and fused updates are
bit-identical to the DMP path (tests/rankers/test_local_lookup.py).

Anything this path does not handle falls back to DMP's forward, per module (weighted or
mean-callback tables, data-parallel or non-fused kernels, row-split shards, several ranks) or per
call (weighted or variable-batch KJTs, a KJT that lacks a table's feature).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchrec.distributed.batched_embedding_kernel import BatchedFusedEmbeddingBag
from torchrec.distributed.embedding_lookup import GroupedPooledEmbeddingsLookup
from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection
from torchrec.distributed.types import LazyAwaitable, ShardingType
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

log = logging.getLogger(__name__)

# at world size 1 each of these keeps every row of a table in one shard on this rank (checked per shard)
SUPPORTED_SHARDING_TYPES = frozenset(t.value for t in (
    ShardingType.TABLE_WISE, ShardingType.COLUMN_WISE, ShardingType.TABLE_COLUMN_WISE,
    ShardingType.ROW_WISE, ShardingType.TABLE_ROW_WISE, ShardingType.GRID_SHARD))


@dataclass
class _Group:
    """One fused TBE: the KJT features it reads, in its order, and its kernel."""

    kernel: BatchedFusedEmbeddingBag
    features: list[str]  # KJT keys in TBE feature order (a column-split table repeats its features)


class LocalLookup:
    """``lookup(kjt) -> KeyedTensor | None``: the pooled embeddings DMP would return, or None to fall back.

    Build with :meth:`for_module`, which returns None (and says why) where the fast path does not apply.
    """

    def __init__(self, module: ShardedEmbeddingBagCollection, groups: list[_Group],
                 pieces: list[tuple[int, int, int]], names: list[str], dims: list[int]) -> None:
        self.module = module
        self.lookups = list(module._lookups)  # identity check: a reshard replaces them
        self.groups = groups
        self.pieces = pieces  # output columns in KeyedTensor order: (group, first column, width)
        self.names, self.dims = names, dims
        # per KJT key order: each group's permute tensor (None: already in order), or None if a feature is missing
        self._permutes: dict[tuple[str, ...], list[Tensor | None] | None] = {}

    # -- building ----------------------------------------------------------------------------------------
    @classmethod
    def for_module(cls, module: ShardedEmbeddingBagCollection) -> "LocalLookup | None":
        lookup, reason = cls.build(module)
        if lookup is None:
            log.info("sharded EmbeddingBagCollection: DMP forward (no local fast path: %s)", reason)
        return lookup

    @classmethod
    def build(cls, module: ShardedEmbeddingBagCollection) -> tuple["LocalLookup | None", str]:
        """(lookup, "") or (None, why not)."""
        env = module._env
        if env.world_size != 1:
            return None, f"world size {env.world_size}"
        if module._is_weighted:
            return None, "weighted features"
        if module._has_mean_pooling_callback:
            return None, "mean pooling applied after a row-wise output distribution"
        bad = [t for t in module._sharding_types if t not in SUPPORTED_SHARDING_TYPES]
        if bad:
            return None, f"sharding type(s) {bad}"
        groups: list[_Group] = []
        columns: dict[str, list[tuple[int, int, int, int]]] = {}  # name -> (column offset, group, start, width)
        for lookup in module._lookups:
            if type(lookup) is not GroupedPooledEmbeddingsLookup:
                return None, f"lookup module {type(lookup).__name__}"
            if lookup._feature_processor is not None or lookup.optim_state_tracker_fn is not None:
                return None, "feature processor or optimizer-state tracker on a lookup"
            for kernel in lookup._emb_modules:
                if type(kernel) is not BatchedFusedEmbeddingBag:
                    return None, f"compute kernel {type(kernel).__name__} (only the fused kernel)"
                if getattr(kernel, "_raw_id_tracker_wrapper", None) is not None:
                    return None, "raw-id tracking on a kernel"
                features, start, g = [], 0, len(groups)
                for table in kernel.config.embedding_tables:
                    meta = table.local_metadata
                    row0, col0 = (meta.shard_offsets[0], meta.shard_offsets[1]) if meta is not None else (0, 0)
                    if row0 != 0 or table.local_rows != table.num_embeddings:
                        return None, f"table {table.name} has rows on other shards"
                    for feature, name in zip(table.feature_names, table.embedding_names):
                        features.append(feature)
                        columns.setdefault(name, []).append((col0, g, start, table.local_cols))
                        start += table.local_cols
                groups.append(_Group(kernel, features))
        names, dims = list(module._embedding_names), list(module._embedding_dims)
        if sorted(columns) != sorted(names) or len(set(names)) != len(names):
            return None, "embedding names do not match the kernels' features"
        pieces: list[tuple[int, int, int]] = []
        for name, dim in zip(names, dims):
            at = 0
            for col0, g, start, width in sorted(columns[name]):
                if col0 != at:
                    return None, f"the column shards of {name} do not tile its dimension"
                if pieces and pieces[-1][0] == g and pieces[-1][1] + pieces[-1][2] == start:
                    pieces[-1] = (g, pieces[-1][1], pieces[-1][2] + width)  # contiguous: one slice
                else:
                    pieces.append((g, start, width))
                at += width
            if at != dim:
                return None, f"the column shards of {name} cover {at} of {dim} columns"
        return cls(module, groups, pieces, names, dims), ""

    # -- forward -----------------------------------------------------------------------------------------
    def is_current(self) -> bool:
        """False once the module's lookups were replaced (a reshard): build a new one."""
        return len(self.lookups) == len(self.module._lookups) and all(
            a is b for a, b in zip(self.lookups, self.module._lookups))

    def __call__(self, kjt: object) -> KeyedTensor | None:
        if not isinstance(kjt, KeyedJaggedTensor) or kjt.weights_or_none() is not None \
                or kjt.variable_stride_per_key() or kjt.inverse_indices_or_none() is not None:
            return None
        keys = tuple(kjt.keys())
        if keys not in self._permutes:
            self._permutes[keys] = self._plan_permutes(keys, kjt.device())
        permutes = self._permutes[keys]
        if permutes is None:
            return None  # a table's feature is missing: DMP's forward reports it
        outs = [self._run(group, kjt, perm) for group, perm in zip(self.groups, permutes)]
        if len(self.pieces) == 1 and self.pieces[0][1] == 0 and self.pieces[0][2] == outs[self.pieces[0][0]].size(1):
            values = outs[self.pieces[0][0]]
        else:
            values = torch.cat([outs[g].narrow(1, start, width) for g, start, width in self.pieces], dim=1)
        return KeyedTensor(keys=self.names, length_per_key=self.dims, values=values, key_dim=1)

    def _plan_permutes(self, keys: tuple[str, ...], device: torch.device) -> list[Tensor | None] | None:
        index = {k: i for i, k in enumerate(keys)}
        permutes: list[Tensor | None] = []
        for group in self.groups:
            if any(f not in index for f in group.features):
                return None
            order = [index[f] for f in group.features]
            permutes.append(None if order == list(range(len(keys))) else
                            torch.tensor(order, dtype=torch.int32, device=device))
        return permutes

    @staticmethod
    def _run(group: _Group, kjt: KeyedJaggedTensor, perm: Tensor | None) -> Tensor:
        """The kernel's forward exactly as ``BaseBatchedEmbeddingBag.forward`` calls it after input dist."""
        if perm is None:
            values, offsets = kjt.values(), kjt.offsets()
        else:
            lengths, values, _ = torch.ops.fbgemm.permute_2D_sparse_data(
                perm, kjt.lengths().view(len(kjt.keys()), -1), kjt.values(), None)
            offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(lengths.view(-1))
        k = group.kernel
        return k.emb_module(indices=values.to(k._embedding_table_index_type),
                            offsets=offsets.to(k._embedding_table_offset_type), per_sample_weights=None)


class LocalShardedEmbeddingBagCollection(ShardedEmbeddingBagCollection):
    """DMP's sharded EBC, unchanged (state, plan, fused optimizer, checkpoints), whose forward takes the
    :class:`LocalLookup` fast path when it applies and DMP's own forward otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # ShardedEmbeddingBagCollection's, passed through
        super().__init__(*args, **kwargs)
        self.local_lookup: LocalLookup | None = LocalLookup.for_module(self)

    def forward(self, *input: object,  # noqa: A002 - ShardedModule's signature
                **kwargs: object) -> KeyedTensor | LazyAwaitable[KeyedTensor]:
        local = self.local_lookup
        if local is not None and len(input) == 1 and not kwargs:
            if not local.is_current():
                local = self.local_lookup = LocalLookup.for_module(self)
            out = local(input[0]) if local is not None else None
            if out is not None:
                return out
        return super().forward(*input, **kwargs)
