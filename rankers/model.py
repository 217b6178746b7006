"""The multitask ranker (paper Section 4.1): item representations -> MMoE or shared bottom -> task towers.

An item representation for a role (candidate, watch, history) is the SUM of that role's pooled
sub-piece embeddings, read from the ``KeyedTensor`` by feature key (sharding reorders its columns),
or, for the Dense Input baseline, the raw content embedding through a shared projection. With managed
collisions (``kind: mch``) the tables sit in TorchRec's ``ManagedCollisionEmbeddingBagCollection``, which
remaps the raw ids of the batch to rows before the lookup.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.modules.mc_embedding_modules import ManagedCollisionEmbeddingBagCollection

from semid.datamodules import RankingBatch
from semid.embeddings import MchConfig, managed_collision_collection
from semid.core.config import require, require_int, require_positive
from semid.core.errors import SemidError

TASKS = ("ctr", "engaged")


@dataclass
class RankerConfig:
    embedding_dim: int = 32
    architecture: str = "mmoe"  # or "shared_bottom"
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    n_experts: int = 4
    tower_hidden: list[int] = field(default_factory=lambda: [32])
    depth_multiplier: float = 1.0  # the Dense Input 1.5x / 2x baselines
    use_history: bool = False
    history_pooling: str = "mean"  # "mean" over history items, or "sum" of all their tokens

    def __post_init__(self) -> None:
        require(self.architecture in ("mmoe", "shared_bottom"), "architecture",
                f"must be 'mmoe' or 'shared_bottom' (got {self.architecture!r})")
        require(self.history_pooling in ("mean", "sum"), "history_pooling",
                f"must be 'mean' or 'sum' (got {self.history_pooling!r})")
        require_int(self.embedding_dim, "embedding_dim")
        require_int(self.n_experts, "n_experts")
        require(bool(self.hidden), "hidden", "must list at least one layer width")
        for name, widths in (("hidden", self.hidden), ("tower_hidden", self.tower_hidden)):
            for i, w in enumerate(widths):
                require_int(w, f"{name}[{i}]")
        require_positive(self.depth_multiplier, "depth_multiplier")
        require(self.depth_multiplier >= 1, "depth_multiplier", f"must be >= 1 (got {self.depth_multiplier})")

    def layer_widths(self) -> list[int]:
        """Hidden widths after the depth multiplier: extra layers repeat the last width."""
        n = max(len(self.hidden), round(len(self.hidden) * self.depth_multiplier))
        return list(self.hidden) + [self.hidden[-1]] * (n - len(self.hidden))


def _mlp(widths: list[int], in_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(in_dim, w), nn.ReLU()]
        in_dim = w
    return nn.Sequential(*layers)


class MultitaskRanker(nn.Module):
    """``forward(batch) -> logits [B, len(TASKS)]``.

    ``tables``: the representation's ``EmbeddingBagConfig``s (features ``role__table``); the
    collection is created on the ``meta`` device so that a sharding strategy materialises only
    its own shards. ``content_dim``: set for the Dense Input representation instead of tables.
    ``managed_collisions``: the tables are managed-collision tables with this config (``kind: mch``).
    """

    def __init__(self, cfg: RankerConfig, *, tables: list[EmbeddingBagConfig] | None = None,
                 content_dim: int | None = None, context_dim: int = 3, device: torch.device | str = "meta",
                 managed_collisions: MchConfig | None = None) -> None:
        super().__init__()
        if bool(tables) == bool(content_dim):
            raise SemidError("a ranker needs either embedding tables or a content (dense input) dimension")
        self.cfg = cfg
        self.roles = ["candidate", "watch"] + (["history"] if cfg.use_history else [])
        d = cfg.embedding_dim
        if tables:
            for t in tables:
                if t.embedding_dim != d:
                    raise SemidError(f"table {t.name} has dimension {t.embedding_dim}, ranker expects {d}")
            ebc = EmbeddingBagCollection(tables=tables, device=torch.device(device))
            self.ebc: nn.Module | None = ebc if managed_collisions is None else ManagedCollisionEmbeddingBagCollection(
                ebc, managed_collision_collection(managed_collisions, tables, device))
            self.role_keys = {r: [f for t in tables for f in t.feature_names if f.startswith(f"{r}__")]
                              for r in self.roles}
            for r, keys in self.role_keys.items():
                if not keys:
                    raise SemidError(f"the representation's tables have no feature for role '{r}'")
            self.content_proj: nn.Module | None = None
        else:
            self.ebc = None
            self.role_keys = {}
            self.content_proj = nn.Linear(int(content_dim), d)  # type: ignore[arg-type]
        n_roles = len(self.roles)
        in_dim = n_roles * d + (n_roles - 1) * d + context_dim  # role vectors + candidate x context products
        widths = cfg.layer_widths()
        if cfg.architecture == "mmoe":
            self.experts = nn.ModuleList([_mlp(widths, in_dim) for _ in range(cfg.n_experts)])
            self.gates = nn.ModuleList([nn.Linear(in_dim, cfg.n_experts) for _ in TASKS])
        else:
            self.bottom = _mlp(widths, in_dim)
        self.towers = nn.ModuleList([nn.Sequential(_mlp(cfg.tower_hidden, widths[-1]), nn.Linear(
            cfg.tower_hidden[-1] if cfg.tower_hidden else widths[-1], 1)) for _ in TASKS])

    def role_vectors(self, batch: RankingBatch) -> dict[str, Tensor]:
        if self.ebc is not None:
            if batch.kjt is None:
                raise SemidError("this ranker has embedding tables but the batch carries no sparse features")
            out = self.ebc(batch.kjt)
            if isinstance(out, tuple):  # a managed-collision collection: (pooled, remapped ids or None)
                out = out[0]
            pooled = out.to_dict()  # by key: column order follows the sharding plan
            v = {r: torch.stack([pooled[k] for k in keys]).sum(0) for r, keys in self.role_keys.items()}
            if "history" in v and self.cfg.history_pooling == "mean":
                v["history"] = v["history"] / batch.history_items.clamp(min=1).unsqueeze(1)
            return v
        assert self.content_proj is not None and batch.content is not None
        return {r: self.content_proj(batch.content[r]) for r in self.roles}

    def forward(self, batch: RankingBatch) -> Tensor:
        v = self.role_vectors(batch)
        cand = v["candidate"]
        parts = [v[r] for r in self.roles] + [cand * v[r] for r in self.roles[1:]] + [batch.context]
        x = torch.cat(parts, dim=1)
        if self.cfg.architecture == "mmoe":
            expert_out = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, H]
            task_in = [(torch.softmax(g(x), dim=1).unsqueeze(-1) * expert_out).sum(1) for g in self.gates]
        else:
            shared = self.bottom(x)
            task_in = [shared for _ in TASKS]
        return torch.cat([tower(h) for tower, h in zip(self.towers, task_in)], dim=1)

    def reset_dense_parameters(self, seed: int) -> None:
        """Deterministic dense init independent of how many tables were created before (meta or not)."""
        g = torch.Generator().manual_seed(seed)
        for name, p in sorted(self.named_parameters()):
            if name.startswith("ebc.") or p.is_meta:
                continue
            with torch.no_grad():
                if p.dim() >= 2:
                    bound = 1.0 / math.sqrt(p.shape[1])
                    p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=g))
                else:
                    p.zero_()
