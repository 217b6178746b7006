"""Hybrid representations: several tokenizers into one item representation, each with its own tables.

E.g. SPM pieces + a hashed item id: the item embedding is the sum over all parts' tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semid.embeddings.tokenizer import Jagged, SidSpace, TableSpec, Tokenizer, require
from semid.rqvae import SidTable


@dataclass
class HybridConfig:
    """Several representations side by side, each with its own tables (e.g. SPM pieces plus a hashed id).

    >>> from semid.embeddings import HashConfig, HybridConfig, SpmConfig
    >>> [p.name for p in HybridConfig(parts=[SpmConfig(name="spm", vocab_size=512),
    ...                                      HashConfig(name="id", rows=1024)]).parts]
    ['spm', 'id']
    """

    kind: str = "hybrid"
    name: str = "hybrid"
    parts: list[Any] = field(default_factory=list)  # representation configs (each with a distinct name)

    def __post_init__(self) -> None:
        require(len(self.parts) >= 1, "a hybrid needs at least one entry under parts")
        names = [getattr(p, "name", None) for p in self.parts]
        require(len(set(names)) == len(names), f"hybrid parts need distinct names, got {names}")


class HybridTokenizer(Tokenizer):
    def __init__(self, cfg: HybridConfig, parts: list[Tokenizer]) -> None:
        self.cfg = cfg
        self.parts = parts
        self.needs_sids = any(p.needs_sids for p in parts)

    def _names(self) -> list[str]:
        return [p.name for p in self.cfg.parts]

    def fit(self, space: SidSpace | None, sids: SidTable | None, item_ids: np.ndarray,
            impressions: np.ndarray | None) -> None:
        for p in self.parts:
            p.fit(space, sids, item_ids, impressions)
        names = [t.name for t in self.tables()]
        require(len(set(names)) == len(names), f"hybrid '{self.cfg.name}': parts produce clashing table names "
                f"{names}; give the parts different names")

    def restore(self, space: SidSpace | None, state: dict[str, bytes]) -> None:
        for name, p in zip(self._names(), self.parts):
            prefix = f"{name}/"
            p.restore(space, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def state(self) -> dict[str, bytes]:
        return {f"{name}/{k}": v for name, p in zip(self._names(), self.parts) for k, v in p.state().items()}

    def meta(self) -> dict[str, object]:
        return {name: p.meta() for name, p in zip(self._names(), self.parts) if p.meta()}

    def tables(self) -> list[TableSpec]:
        return [t for p in self.parts for t in p.tables()]

    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        return [j for p in self.parts for j in p.tokenize(item_ids, codes if p.needs_sids else None)]
