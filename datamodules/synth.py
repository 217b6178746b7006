"""Synthetic corpus: the two signals the paper's argument rests on, planted and measured.

* **Content hierarchy** — items sit in the leaves of a topic tree (``hierarchy`` = branching per
  level). An item's embedding is the sum of its ancestors' random centre offsets (shrinking with
  depth) plus item noise, L2-normalised, so a good residual quantizer can recover coarse -> fine.
* **Click model** (hidden)::

      logit = bias + content_weight * content(u, w, i) + memorization_weight * q_i

  ``content`` generalises to new items: a hierarchical topic bias, the user's interest in the
  item's coarse topic, how related the candidate is to the watch item (shared topic-path depth)
  and a hidden "style" direction of the embedding. ``q_i ~ N(0, 1)`` is drawn independently of
  everything content-related, so only memorising the item can learn it.
* **Dynamics** — Zipf item popularity decaying with item age (half-life, with an evergreen floor),
  new items every day, users with sparse topic interests whose watch item is the last item they
  clicked, candidates drawn from the watch item's topic, the user's interests or global popularity.
* **Regime knobs** (issue 21) — the corpus properties the paper explains its findings with, each
  recorded as set and as measured in ``corpus.json``'s ``ground_truth["regime"]``: topic skew
  (``topic_zipf`` over coarse topics, ``subtopic_zipf`` within them, ``interest_zipf`` for the users'
  interest in the populous topics, so that impressions follow), catalogue size relative to the
  8K reference table (``items_per_row``), the memorisation/content balance (``memorization_share``),
  the daily share of new items (``new_item_share``) and a user-taste term that only the click history
  reveals (``history_weight``). Each defaults to today's behaviour: a preset without them gives the
  same bytes as before they existed.
* **Co-engagement clusters** (issue 33, ``coengage_clusters``) — behaviour that content does not show: every
  item falls in one of C hidden clusters drawn independently of its topic (so clusters cut across topics); a
  user's taste for a cluster enters the click logit (``coengage_weight``) and a share of candidates
  (``coengage_fraction``) comes from the watch item's cluster, so items of a cluster get clicked together.
  ``coengage_content`` (0 by default) adds a faint cluster direction to the embeddings. The clusters are written
  as ``items.gt_coengage_cluster`` and the knobs, with the realised co-click share, in the regime record.

Generation is chunked (items and impressions) with per-chunk seeded streams; memory is bounded by
per-item metadata (no embedding matrix is held for more than one chunk).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
import numpy as np
import pyarrow as pa

from semid.datamodules.corpus import CorpusWriter
from semid.core.config import (ConfigFieldError, blame_overrides, from_dict, load_yaml, require, require_int,
                               require_positive, resolve_conf)
from semid.core.errors import SemidError
from semid.core.progress import bar
from semid.core.records import JsonObject


@dataclass
class SynthConfig:
    seed: int = 0
    dim: int = 256
    hierarchy: list[int] = field(default_factory=lambda: [16, 8, 8])
    level_scales: list[float] = field(default_factory=lambda: [1.0, 0.6, 0.35])
    item_noise: float = 0.3
    n_initial_items: int = 30000
    n_new_items_per_day: int = 1000
    n_days: int = 20
    n_users: int = 20000
    impressions_per_day: int = 100000
    item_zipf: float = 1.05
    topic_zipf: float = 0.8
    user_zipf: float = 0.7
    user_interest_concentration: float = 0.3
    half_life_days: float = 4.0
    evergreen_floor: float = 0.1
    initial_max_age_days: float = 30.0
    related_fraction: float = 0.5
    interest_fraction: float = 0.3
    rewatch_fraction: float = 0.7
    content_weight: float = 1.0
    memorization_weight: float = 1.0
    target_ctr: float = 0.2
    engaged_given_click: float = 0.5
    chunk_impressions: int = 500000
    chunk_items: int = 200000
    # -- regime knobs; None (0 for history_weight) keeps the fields above in charge, bit for bit --------
    # Zipf exponent over the leaves of each coarse topic (content skew below the coarse level); None:
    # Dirichlet(2) leaf shares
    subtopic_zipf: float | None = None
    # Zipf exponent of the users' prior interest over coarse topics, in the order of their item shares (the
    # most populous topic is the most wanted): None gives every topic the same prior, so impressions spread
    # over coarse topics far more evenly than items do (measured on small: Zipf 0.27 for topic_zipf 0.8)
    interest_zipf: float | None = None
    # catalogue size N = items_per_row x reference_table_rows (the paper's 8K hash table), split between
    # the initial catalogue and the daily arrivals by new_item_share (or by the preset's own split)
    items_per_row: float | None = None
    reference_table_rows: int = 8192
    # items introduced per day as a share of the whole catalogue N (the preset's split when None)
    new_item_share: float | None = None
    # share of the click model's signal variance that only memorising the item can learn,
    # w_m^2 / (w_m^2 + w_c^2); it re-splits content_weight^2 + memorization_weight^2 between the two
    memorization_share: float | None = None
    # weight of a user-taste term over level-1 topics: logit += history_weight * t(u, topic_1(i)); the user
    # is never a feature, so only the click history (not the one watch item) can reveal the taste
    history_weight: float = 0.0
    # hidden co-engagement clusters (0: none, the corpus before the knob); see the module docstring
    coengage_clusters: int = 0
    coengage_weight: float = 1.0  # logit weight of the user's taste for the candidate's cluster (unit variance)
    coengage_fraction: float = 0.2  # share of candidates drawn from the watch item's cluster (of the global draws)
    coengage_content: float = 0.0  # norm of a cluster direction added to each embedding (before L2 norm)

    def __post_init__(self) -> None:
        if len(self.hierarchy) != len(self.level_scales):
            raise SemidError("synth config: hierarchy and level_scales need one entry per level "
                             f"(got {len(self.hierarchy)} and {len(self.level_scales)})")
        if any(b < 1 for b in self.hierarchy):
            raise SemidError("synth config: every hierarchy branching factor must be >= 1")
        for name in ("dim", "n_days", "n_users", "impressions_per_day", "chunk_impressions", "chunk_items"):
            if getattr(self, name) < 1:
                raise SemidError(f"synth config: {name} must be >= 1")
        if self.n_initial_items < 1:
            raise SemidError("synth config: n_initial_items must be >= 1")
        if not 0 <= self.related_fraction + self.interest_fraction <= 1:
            raise SemidError("synth config: related_fraction + interest_fraction must be within [0, 1]")
        if not 0 < self.target_ctr < 1:
            raise SemidError("synth config: target_ctr must be within (0, 1)")
        if self.subtopic_zipf is not None:
            require_positive(self.subtopic_zipf, "subtopic_zipf", allow_zero=True)
        if self.interest_zipf is not None:
            require_positive(self.interest_zipf, "interest_zipf", allow_zero=True)
        if self.items_per_row is not None:
            require_positive(self.items_per_row, "items_per_row")
        require_int(self.reference_table_rows, "reference_table_rows")
        if self.new_item_share is not None:
            require_positive(self.new_item_share, "new_item_share", allow_zero=True, maximum=1.0)
        if self.memorization_share is not None:
            require_positive(self.memorization_share, "memorization_share", allow_zero=True, maximum=1.0)
            require(self.content_weight ** 2 + self.memorization_weight ** 2 > 0, "memorization_share",
                    "needs content_weight or memorization_weight != 0 (it splits their total)")
        require_positive(self.history_weight, "history_weight", allow_zero=True)
        require_int(self.coengage_clusters, "coengage_clusters", minimum=0)
        require_positive(self.coengage_weight, "coengage_weight", allow_zero=True)
        require_positive(self.coengage_fraction, "coengage_fraction", allow_zero=True,
                         # rounded: 1 - 0.3 - 0.3 is 0.39999999999999997 in binary, and 0.4 must pass
                         maximum=round(1.0 - self.related_fraction - self.interest_fraction, 12))
        require_positive(self.coengage_content, "coengage_content", allow_zero=True)
        require(self.initial_items >= 1, "new_item_share" if self.new_item_share is not None else "items_per_row",
                f"leaves {self.initial_items} initial items ({self.catalogue_size} items, "
                f"{self.new_items_per_day} a day for {self.n_days - 1} days): lower new_item_share or raise "
                "items_per_row")

    @property
    def catalogue_size(self) -> int:
        """N, every item the corpus will hold."""
        if self.items_per_row is not None:
            return max(1, round(self.items_per_row * self.reference_table_rows))
        return self.n_initial_items + self.n_new_items_per_day * (self.n_days - 1)

    @property
    def new_items_per_day(self) -> int:
        if self.new_item_share is None and self.items_per_row is None:
            return self.n_new_items_per_day
        share = self.new_item_share
        if share is None:  # items_per_row alone scales the preset's catalogue, daily share kept
            share = self.n_new_items_per_day / (self.n_initial_items + self.n_new_items_per_day * (self.n_days - 1))
        return round(share * self.catalogue_size)

    @property
    def initial_items(self) -> int:
        if self.new_item_share is None and self.items_per_row is None:
            return self.n_initial_items
        return self.catalogue_size - self.new_items_per_day * (self.n_days - 1)

    @property
    def n_items(self) -> int:
        return self.initial_items + self.new_items_per_day * (self.n_days - 1)

    @property
    def weights(self) -> tuple[float, float]:
        """(w_c, w_m): the click model's content and memorisation weights."""
        if self.memorization_share is None:
            return self.content_weight, self.memorization_weight
        total = self.content_weight ** 2 + self.memorization_weight ** 2  # 2 for the presets: s = 0.5 -> (1, 1)
        return math.sqrt((1 - self.memorization_share) * total), math.sqrt(self.memorization_share * total)

    @property
    def n_leaves(self) -> int:
        return math.prod(self.hierarchy)


def load_synth_config(preset_or_path: str, overrides: list[str] | None = None) -> SynthConfig:
    from semid.core.config import apply_overrides

    path = resolve_conf(preset_or_path, "data")
    try:
        return from_dict(SynthConfig, apply_overrides(load_yaml(path), overrides or []), where=str(path))
    except ConfigFieldError as e:
        raise blame_overrides(e, overrides or []) from None


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


# streams of the seed sequence: one per concern, so changing one size leaves the others alone
_TOPICS, _ITEMS, _USERS, _EMB, _DAY, _CLICK, _TASTE, _COENGAGE = range(8)
TASTE_RANK = 8  # t(u, n) = a_u . b_n / sqrt(r): a rank-8 taste has unit variance and is cheap for 1M users


@dataclass
class _World:
    """Everything hidden that drives the corpus; per-item arrays are indexed by item row."""

    cfg: SynthConfig
    node_centres: list[np.ndarray]  # per level: [n_nodes_l, D]
    node_bias: list[np.ndarray]  # per level: [n_nodes_l]
    style: np.ndarray  # [D] hidden direction
    leaf: np.ndarray  # int32 [N]
    item_id: np.ndarray  # int64 [N]
    first_day: np.ndarray  # int32 [N]
    birth: np.ndarray  # float32 [N] (virtual age for the initial catalogue)
    base_pop: np.ndarray  # float64 [N]
    quality: np.ndarray  # float32 [N] q_i
    quality_engaged: np.ndarray  # float32 [N]
    style_score: np.ndarray  # float32 [N]
    topic_bias: np.ndarray  # float32 [N]
    user_id: np.ndarray  # int64 [U]
    user_activity: np.ndarray  # float64 [U], sums to 1
    user_interest: np.ndarray  # float32 [U, C0], rows sum to 1
    user_taste: np.ndarray  # float32 [U, r] a_u of the history term
    topic_taste: np.ndarray  # float32 [n_nodes_1, r] b_n of the history term
    # co-engagement clusters (coengage_clusters > 0), else None
    cluster: np.ndarray | None = None  # int32 [N] hidden cluster of each item
    user_cluster_taste: np.ndarray | None = None  # float32 [U, r]
    cluster_taste: np.ndarray | None = None  # float32 [C, r]
    cluster_dirs: np.ndarray | None = None  # float32 [C, D] unit directions (coengage_content)
    interest_z_mean: float = 0.0
    interest_z_std: float = 1.0
    content_mean: float = 0.0
    content_std: float = 1.0
    bias: float = 0.0
    engaged_bias: float = 0.0

    def node_of(self, leaf: np.ndarray, level: int) -> np.ndarray:
        return leaf // math.prod(self.cfg.hierarchy[level + 1:])


def _zipf_weights(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    return w[rng.permutation(n)]


def _taste_level(cfg: SynthConfig) -> int:
    """The history term's topic level: level 1 (sub-topics), the level candidates are related at."""
    return min(1, len(cfg.hierarchy) - 1)


def _build_world(cfg: SynthConfig) -> _World:
    rng = _rng(cfg.seed, _TOPICS)
    d = cfg.dim
    centres, biases = [], []
    parent = np.zeros((1, d))
    for level, (branch, scale) in enumerate(zip(cfg.hierarchy, cfg.level_scales)):
        offsets = rng.normal(0.0, scale / math.sqrt(d), size=(len(parent) * branch, d))
        parent = np.repeat(parent, branch, axis=0) + offsets
        centres.append(parent.astype(np.float32))
        biases.append(rng.normal(0.0, 1.0 / math.sqrt(len(cfg.hierarchy)), size=len(parent)).astype(np.float32))
    style = rng.normal(size=d)
    style /= np.linalg.norm(style)

    # leaf popularity: Zipf over coarse topics, Dirichlet within
    c0 = cfg.hierarchy[0]
    per_coarse = cfg.n_leaves // c0
    coarse_share = _zipf_weights(c0, cfg.topic_zipf, rng)
    coarse_share /= coarse_share.sum()
    if cfg.subtopic_zipf is None:
        within = rng.dirichlet(np.full(per_coarse, 2.0), size=c0)
    else:  # the _TOPICS stream draws nothing after this: the knob leaves every other draw alone
        within = np.stack([_zipf_weights(per_coarse, cfg.subtopic_zipf, rng) for _ in range(c0)])
        within /= within.sum(axis=1, keepdims=True)
    leaf_share = (coarse_share[:, None] * within).reshape(-1)

    irng = _rng(cfg.seed, _ITEMS)
    n = cfg.n_items
    leaf = irng.choice(cfg.n_leaves, size=n, p=leaf_share).astype(np.int32)
    first_day = np.zeros(n, dtype=np.int32)
    n0 = cfg.initial_items
    first_day[n0:] = 1 + np.arange(n - n0) // max(cfg.new_items_per_day, 1)
    birth = first_day.astype(np.float32)
    birth[:n0] = -irng.uniform(0, cfg.initial_max_age_days, n0)
    # ids grow with time (as in real catalogues) but are shuffled within a day, so they carry no topic
    item_id = np.empty(n, dtype=np.int64)
    for day in np.unique(first_day):
        rows = np.flatnonzero(first_day == day)
        item_id[rows] = rows[0] + irng.permutation(len(rows))
    item_id = item_id * 7 + 1000  # sparse, non-contiguous ids: hashing must not rely on density
    base_pop = _zipf_weights(n, cfg.item_zipf, irng)
    quality = irng.normal(size=n).astype(np.float32)
    quality_engaged = (0.6 * quality + 0.8 * irng.normal(size=n)).astype(np.float32)
    topic_bias = sum(b[leaf // math.prod(cfg.hierarchy[lv + 1:])] for lv, b in enumerate(biases))

    urng = _rng(cfg.seed, _USERS)
    u = cfg.n_users
    user_id = urng.permutation(u).astype(np.int64) + 1
    activity = _zipf_weights(u, cfg.user_zipf, urng)
    prior = np.full(c0, cfg.user_interest_concentration)
    if cfg.interest_zipf is not None:  # same total concentration, shifted towards the populous topics
        by_share = np.argsort(-coarse_share, kind="stable")
        w = np.empty(c0)
        w[by_share] = np.arange(1, c0 + 1, dtype=np.float64) ** -cfg.interest_zipf
        prior = cfg.user_interest_concentration * c0 * w / w.sum()
    interest = urng.dirichlet(prior, size=u).astype(np.float32)
    # Dirichlet with small concentration can underflow to exact zeros; keep rows proper distributions
    interest = (interest + 1e-6) / (interest + 1e-6).sum(axis=1, keepdims=True)

    # its own stream, drawn whatever history_weight is: the other streams never see it
    trng = _rng(cfg.seed, _TASTE)
    n_topics_1 = math.prod(cfg.hierarchy[: _taste_level(cfg) + 1])
    user_taste = trng.normal(size=(u, TASTE_RANK)).astype(np.float32)
    topic_taste = (trng.normal(size=(n_topics_1, TASTE_RANK)) / math.sqrt(TASTE_RANK)).astype(np.float32)

    world = _World(cfg, centres, biases, style.astype(np.float32), leaf, item_id, first_day, birth, base_pop,
                   quality, quality_engaged, np.zeros(n, np.float32), topic_bias.astype(np.float32),
                   user_id, activity / activity.sum(), interest, user_taste, topic_taste)
    z = np.log(interest + 1e-3)
    world.interest_z_mean, world.interest_z_std = float(z.mean()), float(z.std() + 1e-9)
    if cfg.coengage_clusters:  # its own stream, drawn only with the knob on: every other draw is unchanged
        crng = _rng(cfg.seed, _COENGAGE)
        k = cfg.coengage_clusters
        world.cluster = crng.integers(0, k, size=n).astype(np.int32)  # independent of the topic: cuts across it
        world.user_cluster_taste = crng.normal(size=(u, TASTE_RANK)).astype(np.float32)
        world.cluster_taste = (crng.normal(size=(k, TASTE_RANK)) / math.sqrt(TASTE_RANK)).astype(np.float32)
        dirs = crng.normal(size=(k, d))
        world.cluster_dirs = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)
    return world


def _item_embeddings(world: _World, rows: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of ``rows`` (one chunk) and their style scores: leaf centre + noise, L2-normalised."""
    cfg = world.cfg
    rng = _rng(cfg.seed, _EMB, chunk)
    noise = rng.normal(0.0, cfg.item_noise / math.sqrt(cfg.dim), size=(len(rows), cfg.dim)).astype(np.float32)
    emb = world.node_centres[-1][world.leaf[rows]] + noise
    if cfg.coengage_content and world.cluster is not None and world.cluster_dirs is not None:
        emb = emb + cfg.coengage_content * world.cluster_dirs[world.cluster[rows]]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # the style score reads the item-level variation only, standardised: content the tree does not hold
    style = (noise @ world.style) / (cfg.item_noise / math.sqrt(cfg.dim))
    return emb, style.astype(np.float32)


class _DaySampler:
    """Per-day popularity with vectorised sampling inside topic groups (items sorted by leaf)."""

    def __init__(self, world: _World) -> None:
        self.world = world
        self.order = np.argsort(world.leaf, kind="stable")
        self.sorted_leaf = world.leaf[self.order]
        cfg = world.cfg
        self.group_bounds = []
        for level in range(len(cfg.hierarchy)):
            nodes = world.node_of(self.sorted_leaf, level)
            n_nodes = math.prod(cfg.hierarchy[: level + 1])
            starts = np.searchsorted(nodes, np.arange(n_nodes), side="left")
            ends = np.searchsorted(nodes, np.arange(n_nodes), side="right")
            self.group_bounds.append((starts, ends))
        if world.cluster is not None:  # co-engagement clusters: items sorted by cluster, for sample_cluster
            self.cluster_order = np.argsort(world.cluster, kind="stable")
            c = world.cluster[self.cluster_order]
            k = cfg.coengage_clusters
            self.cluster_bounds = (np.searchsorted(c, np.arange(k), side="left"),
                                   np.searchsorted(c, np.arange(k), side="right"))

    def sample_cluster(self, rng: np.random.Generator, cluster: np.ndarray) -> np.ndarray:
        """Item rows drawn by popularity within each given co-engagement cluster."""
        cum, (starts, ends) = self.cluster_cum, self.cluster_bounds
        s, e = starts[cluster], ends[cluster]
        lo = np.where(s > 0, cum[np.maximum(s - 1, 0)], 0.0)
        hi = np.where(e > 0, cum[np.maximum(e - 1, 0)], 0.0)
        empty = hi - lo <= 0
        lo[empty], hi[empty] = 0.0, cum[-1]
        pos = np.searchsorted(cum, lo + rng.random(len(cluster)) * (hi - lo), side="right")
        return self.cluster_order[np.minimum(pos, len(cum) - 1)]

    def set_day(self, day: int) -> np.ndarray:
        w = self.world
        cfg = w.cfg
        age = day - w.birth
        alive = w.first_day <= day
        decay = cfg.evergreen_floor + (1 - cfg.evergreen_floor) * np.exp2(-np.maximum(age, 0) / cfg.half_life_days)
        weight = np.where(alive, w.base_pop * decay, 0.0)
        self.cum = np.cumsum(weight[self.order])
        if w.cluster is not None:
            self.cluster_cum = np.cumsum(weight[self.cluster_order])
        return weight

    def sample(self, rng: np.random.Generator, level: int | None, group: np.ndarray | None, m: int) -> np.ndarray:
        """Item rows drawn by popularity, within ``group`` nodes of ``level`` (or globally)."""
        cum = self.cum
        if level is None:
            lo, hi = np.zeros(m), np.full(m, cum[-1])
        else:
            starts, ends = self.group_bounds[level]
            s, e = starts[group], ends[group]
            lo = np.where(s > 0, cum[np.maximum(s - 1, 0)], 0.0)
            hi = np.where(e > 0, cum[np.maximum(e - 1, 0)], 0.0)
            empty = hi - lo <= 0
            lo[empty], hi[empty] = 0.0, cum[-1]  # no live item in that topic yet: fall back to global
        pos = np.searchsorted(cum, lo + rng.random(m) * (hi - lo), side="right")
        return self.order[np.minimum(pos, len(cum) - 1)]


def _content_raw(world: _World, users: np.ndarray, watch: np.ndarray, cand: np.ndarray) -> np.ndarray:
    cfg = world.cfg
    leaf_c, leaf_w = world.leaf[cand], world.leaf[watch]
    shared = np.zeros(len(cand), np.float32)
    still = np.ones(len(cand), bool)
    for level in range(len(cfg.hierarchy)):
        still &= world.node_of(leaf_c, level) == world.node_of(leaf_w, level)
        shared += still
    relatedness = 1.5 * shared / len(cfg.hierarchy)
    coarse = world.node_of(leaf_c, 0)
    interest = (np.log(world.user_interest[users, coarse] + 1e-3) - world.interest_z_mean) / world.interest_z_std
    return world.topic_bias[cand] + interest + relatedness + 0.5 * world.style_score[cand]


def _taste(world: _World, users: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """t(u, n) = a_u . b_n / sqrt(r) for the candidate's level-1 topic n: unit variance over users."""
    topic = world.node_of(world.leaf[cand], _taste_level(world.cfg))
    return np.einsum("ij,ij->i", world.user_taste[users], world.topic_taste[topic])


def _logits(world: _World, users: np.ndarray, watch: np.ndarray, cand: np.ndarray) -> dict[str, np.ndarray]:
    cfg = world.cfg
    w_content, w_item = cfg.weights
    content = (_content_raw(world, users, watch, cand) - world.content_mean) / world.content_std
    content_part = w_content * content
    item_part = w_item * world.quality[cand]
    full = world.bias + content_part + item_part
    coengage_part = np.zeros_like(full)
    if world.cluster is not None and world.user_cluster_taste is not None and world.cluster_taste is not None:
        taste = np.einsum("ij,ij->i", world.user_cluster_taste[users], world.cluster_taste[world.cluster[cand]])
        coengage_part = (cfg.coengage_weight * taste).astype(full.dtype)
        full = full + coengage_part
    history_part = np.zeros_like(full)
    if cfg.history_weight:  # skipped at 0, so the default's logits are the same floats as before the knob
        history_part = (cfg.history_weight * _taste(world, users, cand)).astype(full.dtype)
        full = full + history_part
    return {"content": content_part, "item": item_part, "history": history_part, "coengage": coengage_part,
            "full": full}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _solve_bias(logit: np.ndarray, target: float) -> float:
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class _ImpressionSim:
    def __init__(self, world: _World) -> None:
        self.world = world
        self.sampler = _DaySampler(world)
        self.last_click = np.full(world.cfg.n_users, -1, dtype=np.int64)

    def chunk(self, day: int, rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
        w, cfg, s = self.world, self.world.cfg, self.sampler
        users = rng.choice(cfg.n_users, size=m, p=w.user_activity)
        # watch item: the user's last click (re-watch), else something from the user's interests
        interest_topic = _categorical_rows(w.user_interest[users], rng)
        watch = s.sample(rng, 0, interest_topic, m)
        prev = self.last_click[users]
        rewatch = (prev >= 0) & (rng.random(m) < cfg.rewatch_fraction)
        watch = np.where(rewatch, prev, watch)
        # candidate: the watch item's level-1 topic, the user's interests, or global popularity
        r = rng.random(m)
        related = r < cfg.related_fraction
        by_interest = (~related) & (r < cfg.related_fraction + cfg.interest_fraction)
        cand = s.sample(rng, None, None, m)
        rel_level = min(1, len(cfg.hierarchy) - 1)
        idx = np.flatnonzero(related)
        cand[idx] = s.sample(rng, rel_level, w.node_of(w.leaf[watch[idx]], rel_level), len(idx))
        idx = np.flatnonzero(by_interest)
        cand[idx] = s.sample(rng, 0, _categorical_rows(w.user_interest[users[idx]], rng), len(idx))
        if w.cluster is not None:  # "also engaged with": the watch item's co-engagement cluster
            idx = np.flatnonzero((r >= cfg.related_fraction + cfg.interest_fraction) &
                                 (r < cfg.related_fraction + cfg.interest_fraction + cfg.coengage_fraction))
            cand[idx] = s.sample_cluster(rng, w.cluster[watch[idx]])
        parts = _logits(w, users, watch, cand)
        click = rng.random(m) < _sigmoid(parts["full"])
        eng_logit = w.engaged_bias + 0.8 * w.quality_engaged[cand] + 0.5 * parts["content"]
        engaged = click & (rng.random(m) < _sigmoid(eng_logit))
        clicked = np.flatnonzero(click)
        self.last_click[users[clicked]] = cand[clicked]  # later rows win: numpy keeps the last write
        return {"users": users, "watch": watch, "cand": cand, "click": click, "engaged": engaged, **parts}


def _categorical_rows(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cum = np.cumsum(p, axis=1)
    u = rng.random(len(p))[:, None] * cum[:, -1:]
    return np.minimum((cum < u).sum(axis=1), p.shape[1] - 1)


def _calibrate(world: _World, sampler: _DaySampler) -> None:
    """Standardise the content term and solve the biases for the target CTR on a pilot sample."""
    cfg = world.cfg
    rng = _rng(cfg.seed, _CLICK, 10**6)
    pilot_day = max(cfg.n_days // 2, 0)
    sampler.set_day(pilot_day)
    m = min(50000, cfg.impressions_per_day * 2)
    users = rng.choice(cfg.n_users, size=m, p=world.user_activity)
    watch = sampler.sample(rng, 0, _categorical_rows(world.user_interest[users], rng), m)
    cand = sampler.sample(rng, min(1, len(cfg.hierarchy) - 1),
                              world.node_of(world.leaf[watch], min(1, len(cfg.hierarchy) - 1)), m)
    mix = rng.random(m) < 0.5
    cand[mix] = sampler.sample(rng, None, None, int(mix.sum()))
    raw = _content_raw(world, users, watch, cand)
    world.content_mean, world.content_std = float(raw.mean()), float(raw.std() + 1e-9)
    parts = _logits(world, users, watch, cand)
    world.bias = _solve_bias(parts["full"] - world.bias, cfg.target_ctr)
    eng = 0.8 * world.quality_engaged[cand] + 0.5 * parts["content"]
    world.engaged_bias = _solve_bias(eng, cfg.engaged_given_click)


def _auc(score: np.ndarray, label: np.ndarray) -> float | None:
    from torchmetrics.functional.classification import binary_auroc
    import torch

    if label.min() == label.max():
        return None
    return float(binary_auroc(torch.from_numpy(score.astype(np.float32)), torch.from_numpy(label.astype(np.int64))))


class _GroundTruth:
    """Oracle AUCs of each hidden term, overall and on items introduced that day (sampled)."""

    def __init__(self, cap: int = 400000) -> None:
        self.cap = cap
        self.rows: dict[str, list[np.ndarray]] = {k: [] for k in ("content", "item", "history", "full", "click", "new",
                                                                  "pop", "leaf")}
        self.n = 0
        self.per_day: list[JsonObject] = []

    def add(self, out: dict[str, np.ndarray], new: np.ndarray, pop: np.ndarray, leaf: np.ndarray,
            rng: np.random.Generator) -> None:
        keep = rng.random(len(new)) < min(1.0, self.cap / max(1, len(new)) / 8)
        for k, v in (("content", out["content"]), ("item", out["item"]), ("history", out["history"]),
                     ("full", out["full"]), ("click", out["click"]), ("new", new), ("pop", pop), ("leaf", leaf)):
            self.rows[k].append(v[keep])

    def summary(self) -> JsonObject:
        r = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.rows.items()}
        click = r["click"].astype(np.int64)
        out: JsonObject = {"sampled_impressions": int(len(click))}
        for name, score in (("oracle_full", r["full"]), ("oracle_content_only", r["content"]),
                            ("oracle_item_only", r["item"]), ("popularity_only", np.log(r["pop"] + 1e-30))):
            out[f"auc_{name}"] = _auc(score, click)
            new = r["new"].astype(bool)
            out[f"auc_{name}_new_items"] = _auc(score[new], click[new]) if new.sum() > 10 else None
        out["share_impressions_on_new_items"] = float(r["new"].mean()) if len(r["new"]) else 0.0
        return out

    def regime(self, world: _World) -> JsonObject:
        """The regime knobs as set and as realised on the sampled impressions (issue 21)."""
        cfg = world.cfg
        r = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.rows.items()}
        click = r["click"].astype(np.int64)
        w_content, w_item = cfg.weights
        var = {k: float(r[k].var()) if len(r[k]) else 0.0 for k in ("content", "item", "history")}
        leaf_imps = np.bincount(r["leaf"].astype(np.int64), minlength=cfg.n_leaves).astype(np.float64)
        coarse_imps = leaf_imps.reshape(cfg.hierarchy[0], -1).sum(axis=1)
        leaves_with_items = np.unique(world.leaf).size
        top = np.sort(leaf_imps)[::-1][: max(1, cfg.n_leaves // 10)]
        return {
            "topic_zipf": cfg.topic_zipf, "subtopic_zipf": cfg.subtopic_zipf, "interest_zipf": cfg.interest_zipf,
            "topic_zipf_measured": _zipf_exponent(coarse_imps), "leaf_zipf_measured": _zipf_exponent(leaf_imps),
            "share_leaves_with_items": leaves_with_items / cfg.n_leaves,
            "share_impressions_top_10pct_leaves": float(top.sum() / max(leaf_imps.sum(), 1)),
            "items": cfg.n_items, "reference_table_rows": cfg.reference_table_rows,
            "items_per_row": cfg.n_items / cfg.reference_table_rows,
            "initial_items": cfg.initial_items, "new_items_per_day": cfg.new_items_per_day,
            "new_item_share": cfg.new_items_per_day / cfg.n_items,
            "share_impressions_on_new_items": float(r["new"].mean()) if len(r["new"]) else 0.0,
            "content_weight": w_content, "memorization_weight": w_item,
            "memorization_share": w_item ** 2 / max(w_item ** 2 + w_content ** 2, 1e-30),
            # realised on impressions: popular items weigh q_i by their impressions
            "memorization_share_measured": var["item"] / max(var["item"] + var["content"], 1e-30),
            "history_weight": cfg.history_weight,
            "coengage_clusters": cfg.coengage_clusters, "coengage_weight": cfg.coengage_weight,
            "coengage_fraction": cfg.coengage_fraction, "coengage_content": cfg.coengage_content,
            "history_variance_share_measured": var["history"] / max(sum(var.values()), 1e-30),
            "auc_oracle_history_only": _auc(r["history"], click) if len(click) else None,
            "auc_oracle_without_history_term": _auc(r["full"] - r["history"], click) if len(click) else None,
        }


def _zipf_exponent(counts: np.ndarray) -> float | None:
    """s of share ~ rank^-s: least squares on log-log over the ranks that have any impression."""
    c = np.sort(counts[counts > 0])[::-1]
    if len(c) < 2:
        return None
    rank = np.arange(1, len(c) + 1)
    slope = np.polyfit(np.log(rank), np.log(c / c.sum()), 1)[0]
    return float(-slope)


def generate(cfg: SynthConfig, out: str | Path, *, overwrite: bool = False, preset: str | None = None) -> Path:
    """Write a synthetic corpus to ``out`` (atomically). Returns the corpus path."""
    t0 = time.time()
    world = _build_world(cfg)
    n = cfg.n_items
    extra = {"gt_topic_path": pa.list_(pa.int32(), len(cfg.hierarchy)), "gt_quality": pa.float32(),
             "title": pa.string()}
    if world.cluster is not None:
        extra["gt_coengage_cluster"] = pa.int32()
    with CorpusWriter(out, cfg.dim, overwrite=overwrite, item_extra=extra) as writer:
        with bar("synth items", total=n, unit="item") as pb:
            for chunk, start in enumerate(range(0, n, cfg.chunk_items)):
                rows = np.arange(start, min(n, start + cfg.chunk_items))
                emb, style = _item_embeddings(world, rows, chunk)
                world.style_score[rows] = style
                leaf = world.leaf[rows]
                path = np.stack([world.node_of(leaf, lv) for lv in range(len(cfg.hierarchy))], axis=1)
                local = np.stack([path[:, 0]] + [path[:, lv] % cfg.hierarchy[lv]
                                                  for lv in range(1, len(cfg.hierarchy))], axis=1)
                titles = ["topic " + "/".join(map(str, p)) + f" #{int(i)}" for p, i in zip(local, world.item_id[rows])]
                writer.write_items(world.item_id[rows], emb, world.first_day[rows],
                                   gt_topic_path=pa.FixedSizeListArray.from_arrays(
                                       pa.array(path.reshape(-1).astype(np.int32)), len(cfg.hierarchy)),
                                   gt_quality=world.quality[rows], title=titles,
                                   **({"gt_coengage_cluster": world.cluster[rows]} if world.cluster is not None else {}))
                pb.update(len(rows))
        sim = _ImpressionSim(world)
        _calibrate(world, sim.sampler)  # set_day below resets the sampler's only state
        truth = _GroundTruth()
        per_day = []
        co_clicks = np.zeros(2, np.int64)  # clicks with a watch item in the candidate's cluster, all clicks
        with bar("synth impressions", total=cfg.n_days * cfg.impressions_per_day, unit="imp") as pb:
            for day in range(cfg.n_days):
                weight = sim.sampler.set_day(day)
                left, chunk, clicks, new_imps = cfg.impressions_per_day, 0, 0, 0
                while left > 0:
                    m = min(left, cfg.chunk_impressions)
                    rng = _rng(cfg.seed, _DAY, day, chunk)
                    o = sim.chunk(day, rng, m)
                    new = (world.first_day[o["cand"]] == day) & (day > 0)  # day 0: the whole catalogue
                    truth.add(o, new, weight[o["cand"]], world.leaf[o["cand"]], rng)
                    writer.write_impressions(day, {
                        "day": np.full(m, day, np.int32), "user_id": world.user_id[o["users"]],
                        "watch_item_id": world.item_id[o["watch"]], "item_id": world.item_id[o["cand"]],
                        "click": o["click"].astype(np.int8), "engaged": o["engaged"].astype(np.int8)})
                    clicks += int(o["click"].sum())
                    if world.cluster is not None:
                        c = o["click"]
                        co_clicks += [int((world.cluster[o["watch"][c]] == world.cluster[o["cand"][c]]).sum()),
                                      int(c.sum())]
                    new_imps += int(new.sum())
                    left -= m
                    chunk += 1
                    pb.update(m)
                per_day.append({"day": day, "impressions": cfg.impressions_per_day, "ctr": clicks / cfg.impressions_per_day,
                                "new_items": int((world.first_day == day).sum()),
                                "impressions_on_new_items": new_imps})
        summary = truth.summary()
        summary["per_day"] = per_day
        summary["content_std_raw"] = world.content_std
        summary["click_bias"] = world.bias
        summary["regime"] = truth.regime(world)
        if world.cluster is not None:  # realised: how much more often than chance a click shares the watch's cluster
            summary["regime"]["coengage_click_share_same_cluster"] = float(co_clicks[0] / max(co_clicks[1], 1))
            summary["regime"]["coengage_chance_share"] = 1.0 / cfg.coengage_clusters
        path = writer.close({
            "source": "synthetic",
            "preset": preset,
            "generator": {"name": "semid.synth", "version": 1, "params": asdict(cfg)},
            "ground_truth": summary,
            "n_users": cfg.n_users,
            "build_seconds": round(time.time() - t0, 2),
        })
    return path
