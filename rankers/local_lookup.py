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
from typing import Any, Callable

import torch
from torch import Tensor
from torchrec.distributed.batched_embedding_kernel import BatchedFusedEmbeddingBag
from torchrec.distributed.embedding_lookup import GroupedPooledEmbeddingsLookup
from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection
from torchrec.distributed.mc_embeddingbag import ShardedManagedCollisionEmbeddingBagCollection
from torchrec.distributed.types import LazyAwaitable, ShardingType
from torchrec.modules.mc_embedding_modules import ManagedCollisionEmbeddingBagCollection
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


class LocalShardedManagedCollisionEBC(ShardedManagedCollisionEmbeddingBagCollection):
    """TorchRec's sharded managed-collision EBC (``kind: mch``) with two changes, each bit-for-bit the same
    on every path (tests/rankers/test_mch_fit.py):

    * eviction resets a row without FBGEMM's ``reset_weight_momentum``, which has no CPU kernel (TorchRec's
      own ``_evict`` fails there with NotImplementedError), and restarts it as ``init_tables`` began it
      (``initial_rows``: the seeded block init) rather than with ``init_fn`` on the global RNG, which a
      resumed run would not replay; its optimizer state is zeroed, as FBGEMM's reset does;
    * with one process (``local_lookup``) the forward remaps the ids with the collection's own managed-
      collision modules (``get_lookup_value``, what DMP's ``compute`` calls), evicts, and looks the rows up
      through the inner collection's :class:`LocalLookup`, without the row-wise input/output distribution.
      At world size 1 that distribution is an identity: one bucket, ids in their order, one shard of all rows.
    """

    def __init__(self, module: ManagedCollisionEmbeddingBagCollection, table_name_to_parameter_sharding: dict[str, Any],
                 ebc_sharder: Any, mc_sharder: Any, env: Any, device: torch.device,
                 initial_rows: Callable[[str, int, int, int, int], Tensor], local_lookup: bool) -> None:
        super().__init__(module, table_name_to_parameter_sharding, ebc_sharder, mc_sharder, env, device)
        self._initial_rows = initial_rows
        self._initial: dict[str, Tensor] = {}  # table -> this rank's rows as init_tables wrote them (not state)
        self.local_lookup: LocalLookup | None = None
        if local_lookup:
            self.local_lookup, reason = self._fast_path()
            if self.local_lookup is None:
                log.info("sharded managed-collision collection: DMP forward (no local fast path: %s)", reason)

    def _fast_path(self) -> tuple[LocalLookup | None, str]:
        mcc = self._managed_collision_collection
        inner = getattr(self._embedding_module, "local_lookup", None)
        if self._env.world_size != 1:
            return None, f"world size {self._env.world_size}"
        if inner is None:
            return None, "the inner collection has no local fast path"
        if len(mcc._sharding_tables) != 1 or mcc._use_index_dedup:
            return None, "several shardings or index dedup"
        if any(getattr(m, "_input_hash_func", None) is not None for m in mcc._managed_collision_modules.values()):
            return None, "an input hash function (DMP's input_dist applies it)"
        return inner, ""

    # -- eviction ------------------------------------------------------------------------------------------
    def _evict(self, evictions_per_table: dict[str, Tensor | None]) -> None:
        for table, rows in evictions_per_table.items():
            if rows is None or rows.numel() == 0:
                continue
            tbe, index = self._table_to_tbe_and_index[table]
            t = int(index.item())
            rows = rows.long()
            with torch.no_grad():
                tbe.split_embedding_weights()[t][rows] = self._initial_of(table, tbe.split_embedding_weights()[t])[rows]
                for state in tbe.split_optimizer_states()[t] if tbe.optimizer.name != "NONE" else []:
                    state[rows] = 0

    def _initial_of(self, table: str, weights: Tensor) -> Tensor:
        if table not in self._initial:
            cfg = self._embedding_module._table_name_to_config[table]
            r0 = self._managed_collision_collection._table_to_offset[table]  # this rank's first row
            self._initial[table] = self._initial_rows(table, cfg.num_embeddings, cfg.embedding_dim, r0,
                                                      r0 + weights.shape[0]).to(weights.device, weights.dtype)
        return self._initial[table]

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, *input: object,  # noqa: A002 - ShardedModule's signature
                **kwargs: object) -> Any:
        if self.local_lookup is not None and len(input) == 1 and not kwargs:
            remapped = self._remap(input[0])
            if remapped is not None:
                self._evict(self._managed_collision_collection.evict())
                pooled = self.local_lookup(remapped)
                assert pooled is not None, "the remapped KJT holds every feature of the tables, unweighted"
                return pooled, None  # as DMP's forward: (pooled embeddings, remapped ids if asked: not here)
        return super().forward(*input, **kwargs)

    def _remap(self, kjt: object) -> KeyedJaggedTensor | None:
        """The KJT of local rows DMP's ``compute`` would look up (profiling and remapping the ids on the way),
        or None, before touching any state, for an input the fast path does not take."""
        if self._return_remapped_features or not isinstance(kjt, KeyedJaggedTensor) \
                or kjt.weights_or_none() is not None or kjt.variable_stride_per_key() \
                or kjt.inverse_indices_or_none() is not None:
            return None
        mcc = self._managed_collision_collection
        keys = kjt.keys()
        if any(f not in keys for f in mcc._feature_names):
            return None
        order = [keys.index(f) for f in mcc._feature_names]
        features = kjt if order == list(range(len(keys))) else kjt.permute(order)
        values, lengths = [], []
        for table, part in zip(mcc._sharding_tables[0], features.split(mcc._table_feature_splits)):
            jt = mcc.get_lookup_value(table, part)[table]
            values.append(jt.values())
            lengths.append(jt.lengths())
        return KeyedJaggedTensor(keys=mcc._feature_names, values=torch.cat(values), lengths=torch.cat(lengths),
                                 stride=kjt.stride())
