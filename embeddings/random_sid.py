"""Random-SID control: SIDs of the same structure as the real ones, without their meaning.

Every item gets a random SID: at each level l its code is drawn from that level's empirical code
distribution in the real SID table (all items, new ones included), independently per level and per item,
by hashing (seed, level, item id) into the inverse CDF. Per-level code frequencies therefore match the real
table's (in expectation), the number of levels, the codebook and the tokenizer (``base``: unigram, bigram,
prefix-n-gram, SPM) are the same, and an item keeps its random SID wherever it is tokenised (new items
included); what is gone is that items with similar content share codes. A real-vs-random gap is what
SIDs gain from their meaning, beyond spreading an item over several table rows (multiple hashing).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from semid.embeddings._hash import seeded_hash
from semid.embeddings.ngram import NgramConfig, PrefixNgramConfig
from semid.embeddings.spm import SpmConfig
from semid.embeddings.tokenizer import ConfigError, Jagged, SidSpace, TableSpec, Tokenizer, require
from semid.rqvae import SidTable

BaseConfig = NgramConfig | PrefixNgramConfig | SpmConfig


@dataclass
class RandomSidConfig:
    """The random-SID control: each item gets random codes with the real SIDs' per-level code frequencies, then goes
    through ``base`` (an n-gram or SPM config), so a gain over it is a gain from the SIDs' semantics.

    >>> from semid.embeddings import NgramConfig, RandomSidConfig
    >>> RandomSidConfig(base=NgramConfig(n=2)).base.n
    2
    """

    kind: str = "random_sid"
    name: str = "random_sid"
    base: BaseConfig | None = None  # the tokenizer the random SIDs go through (its tables take this name)
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.base is not None and self.base.kind in ("ngram", "prefix_ngram", "spm"),
                "random_sid needs a base tokenizer of kind ngram, prefix_ngram or spm")


class RandomSidTokenizer(Tokenizer):
    def __init__(self, cfg: RandomSidConfig, base: Tokenizer) -> None:
        self.cfg, self.base = cfg, base
        self.cdf: np.ndarray | None = None  # [L, K] cumulative code frequencies of the real table per level

    def random_codes(self, item_ids: np.ndarray) -> np.ndarray:
        """[N, L] random SIDs of ``item_ids`` (the same for an item whatever else is tokenised with it)."""
        assert self.cdf is not None, "fit() first"
        levels, k = self.cdf.shape
        ids = np.asarray(item_ids, np.int64)
        out = np.empty((len(ids), levels), np.int32)
        for level in range(levels):
            u = (seeded_hash(ids, self.cfg.seed * 1009 + level) >> np.uint64(11)).astype(np.float64) / 2.0 ** 53
            out[:, level] = np.minimum(np.searchsorted(self.cdf[level], u, side="right"), k - 1)
        return out

    def fit(self, space: SidSpace | None, sids: SidTable | None, item_ids: np.ndarray,
            impressions: np.ndarray | None) -> None:
        if space is None or sids is None:
            raise ConfigError(f"random SIDs '{self.cfg.name}' need the real SID table (their code frequencies)")
        k = sids.codebook_size
        counts = np.stack([np.bincount(sids.codes[:, level], minlength=k) for level in range(sids.levels)])
        self.cdf = np.cumsum(counts, 1) / counts.sum(1, keepdims=True)
        shuffled = SidTable(sids.item_id, self.random_codes(sids.item_id), k, sids.rqvae_fingerprint,
                            sids.corpus_fingerprint)
        self.base.fit(space, shuffled, item_ids, impressions)

    def restore(self, space: SidSpace | None, state: dict[str, bytes]) -> None:
        if "cdf" not in state:
            raise ConfigError(f"random SIDs '{self.cfg.name}': the cache holds no code frequencies; rebuild it")
        self.cdf = np.load(io.BytesIO(state["cdf"]))
        self.base.restore(space, {k[5:]: v for k, v in state.items() if k.startswith("base/")})

    def state(self) -> dict[str, bytes]:
        assert self.cdf is not None
        buf = io.BytesIO()
        np.save(buf, self.cdf)
        return {"cdf": buf.getvalue(), **{f"base/{k}": v for k, v in self.base.state().items()}}

    def meta(self) -> dict[str, object]:
        return {"control": "random SIDs with the real per-level code frequencies", "seed": self.cfg.seed,
                **self.base.meta()}

    def tables(self) -> list[TableSpec]:
        return self.base.tables()

    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        return self.base.tokenize(item_ids, self.random_codes(item_ids))
