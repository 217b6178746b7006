"""TorchRec glue: tables as ``EmbeddingBagConfig``s shared by all roles, batches as ``KeyedJaggedTensor``s.

Feature key of role r on table t: ``semid.datamodules.batch.feature_key(r, t.name)``. An item's representation for a role is the SUM
of the pooled outputs of that role's features, read by key (``KeyedTensor.to_dict()``), never by
column position (the pooled column order follows the sharding plan).

Tables must train through FBGEMM's fused kernels (``fused_params`` below, given to the sharder that
``DistributedModelParallel`` uses in rankers/): an unsharded EBC with dense gradients is ~30x slower.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from fbgemm_gpu.tbe.config.optimizer_config import WeightDecayMode
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from semid.datamodules import feature_key
from semid.embeddings.token_cache import TokenCache
from semid.embeddings.tokenizer import gather_csr
from semid.core.config import require, require_positive
from semid.core.errors import SemidError

# keyword arguments of FBGEMM's TBE, given as ``EmbeddingBagCollectionSharder(fused_params=...)``
FusedParams = dict[str, Union[EmbOptimType, WeightDecayMode, float]]


def feature_keys(cache: TokenCache, role: str) -> list[str]:
    """The feature names of ``role``, one per table, in table order."""
    return [feature_key(role, t.name) for t in cache.tables]


def embedding_bag_configs(cache: TokenCache, dim: int, roles: Sequence[str]) -> list[EmbeddingBagConfig]:
    """One SUM-pooled table per cache table, shared by the features of every role."""
    if not roles:
        raise SemidError("embedding_bag_configs needs at least one role (e.g. candidate, watch, history)")
    if len(set(roles)) != len(roles):
        raise SemidError(f"roles must be distinct, got {list(roles)}")
    return [EmbeddingBagConfig(name=t.name, embedding_dim=dim, num_embeddings=t.num_rows,
                               feature_names=[feature_key(r, t.name) for r in roles], pooling=PoolingType.SUM)
            for t in cache.tables]


def build_kjt(cache: TokenCache, batch: dict[str, np.ndarray],
              history: tuple[np.ndarray, np.ndarray] | None = None, history_role: str = "history") -> KeyedJaggedTensor:
    """The sparse input of a batch of B samples.

    ``batch[role]``: cache rows [B] of one item per sample (``cache.rows_of``; -1 = no item, empty bag).
    ``history``: (offsets [B+1], item rows [nnz]) -- every token of a sample's history items goes into one
    SUM bag per table; the ranker's "mean" pooling divides that bag by the item count, which equals a
    weighted bag without FBGEMM's ~3x slower weighted kernels. Keys are ordered roles (batch order, then
    history) x tables.
    """
    if not cache.tables:
        raise SemidError(f"representation '{cache.name}' ({cache.kind}) has no embedding tables: feed the raw "
                         "content embedding to the ranker instead of a KJT")
    if not batch and history is None:
        raise SemidError("build_kjt needs at least one role in batch or a history")
    sizes = {role: len(np.asarray(rows)) for role, rows in batch.items()}
    if history is not None:
        sizes[history_role] = len(history[0]) - 1
    if history_role in batch and history is not None:
        raise SemidError(f"role {history_role!r} is given both as a single-item role and as the history")
    if len(set(sizes.values())) > 1:
        raise SemidError(f"every role needs the same batch size, got {sizes}")

    keys: list[str] = []
    values: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    n = len(cache)
    for role, rows in batch.items():
        rows = _rows(rows, n, role)
        for t, jag in zip(cache.tables, cache.jagged):
            v, ln = gather_csr(jag.offsets, jag.values, rows)
            keys.append(feature_key(role, t.name))
            values.append(v)
            lengths.append(ln)
    if history is not None:
        offsets = np.asarray(history[0], np.int64)
        items = _rows(history[1], n, history_role)
        if offsets[0] != 0 or offsets[-1] != len(items) or (np.diff(offsets) < 0).any():
            raise SemidError(f"history offsets must rise from 0 to the number of history items ({len(items)})")
        for t, jag in zip(cache.tables, cache.jagged):
            v, per_item = gather_csr(jag.offsets, jag.values, items)
            cum = np.concatenate([[0], np.cumsum(per_item)])
            keys.append(feature_key(history_role, t.name))
            values.append(v)
            lengths.append(cum[offsets[1:]] - cum[offsets[:-1]])
    return KeyedJaggedTensor(
        keys=keys,
        values=torch.from_numpy(np.concatenate(values).astype(np.int64)),
        lengths=torch.from_numpy(np.concatenate(lengths).astype(np.int32)),
    )


@dataclass(frozen=True)
class CacheFeatures:
    """A token cache as the ranking data module's ``SparseFeatures``: item ids -> cache rows -> KJTs.
    rankers hands it to datamodules, which sits below embeddings and cannot import it."""

    cache: TokenCache

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        return self.cache.rows_of(item_ids)

    def kjt(self, rows: dict[str, np.ndarray], history: tuple[np.ndarray, np.ndarray] | None) -> KeyedJaggedTensor:
        return build_kjt(self.cache, rows, history)


def _rows(rows: np.ndarray, n: int, role: str) -> np.ndarray:
    rows = np.asarray(rows, np.int64)
    if rows.ndim != 1:
        raise SemidError(f"rows of role {role!r} must be a 1-d array of cache rows, got shape {rows.shape}")
    if rows.size and (rows.max() >= n or rows.min() < -1):
        raise SemidError(f"rows of role {role!r} must be cache rows in [0, {n}) or -1 (map item ids with "
                         "cache.rows_of)")
    return rows


# --- fused optimizer for the tables ------------------------------------------------------------------

# name in configs -> FBGEMM optimizer. CPU kernels support the first three.
OPTIMIZERS: dict[str, EmbOptimType] = {
    "rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
    "adagrad": EmbOptimType.EXACT_ADAGRAD,
    "sgd": EmbOptimType.EXACT_SGD,
    "adam": EmbOptimType.ADAM,  # GPU only
}


@dataclass
class TableOptimizerConfig:
    """How the embedding tables are updated, inside FBGEMM's backward (no dense gradients)."""

    optimizer: str = "rowwise_adagrad"
    lr: float = 0.05
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        require(self.optimizer in OPTIMIZERS, "optimizer",
                f"must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        require_positive(self.lr, "lr")
        require_positive(self.eps, "eps")
        require_positive(self.weight_decay, "weight_decay", allow_zero=True)

    def fused_params(self) -> FusedParams:
        """Settings for ``EmbeddingBagCollectionSharder(fused_params=...)`` (FBGEMM TBE keyword arguments)."""
        out: FusedParams = {"optimizer": OPTIMIZERS[self.optimizer], "learning_rate": float(self.lr),
                            "eps": float(self.eps)}
        if self.weight_decay:  # FBGEMM ignores weight_decay unless a mode is named
            out["weight_decay"] = float(self.weight_decay)
            out["weight_decay_mode"] = WeightDecayMode.L2
        return out


def fused_params(optimizer: str = "rowwise_adagrad", lr: float = 0.05, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> FusedParams:
    """``TableOptimizerConfig(...).fused_params()``: for callers holding loose values (benchmarks, planner)."""
    return TableOptimizerConfig(optimizer, lr, eps, weight_decay).fused_params()
