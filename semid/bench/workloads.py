"""Workloads of ``semid bench lookups``, shared by its 1-process run (lookups.py) and its 2-process DMP
run (dmp2.py): the benchmark's config, the table layouts, the pre-built id batches, and the ranker's
TorchRec path (``build_torchrec``) that both time.

Nothing here imports lookups.py or dmp2.py: lookups -> dmp2 -> workloads, lookups -> workloads.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import numpy as np
import torch
from torch import nn

from semid.bench.names import CONTENDERS, DEFAULT_CONTENDERS, DISTRIBUTIONS, LAYOUTS
from semid.core.errors import SemidError

# torchrec, fbgemm_gpu, torch.distributed and semid's embeddings and rankers are imported inside the
# functions that use them: torchrec alone takes seconds to import, and the lookups bench's 2-process run
# (dmp2.py) imports this module in each process

T = TypeVar("T")

DMP = "torchrec_dmp"  # the same module without the fast path: the targets are also checked for it
ZIPF_S = 1.05  # exponent of the Zipf id distribution (rank r drawn with p ~ (r + 1)^-s)
N_BATCHES = 4  # distinct pre-built batches cycled through, so caches do not see one batch only


@dataclass
class LookupBenchConfig:
    layouts: list[str] = field(default_factory=lambda: list(LAYOUTS))
    rows: list[int] = field(default_factory=lambda: [8192, 131072, 1048576])
    distributions: list[str] = field(default_factory=lambda: list(DISTRIBUTIONS))
    contenders: list[str] = field(default_factory=lambda: list(DEFAULT_CONTENDERS))
    batch: int = 4096
    dim: int = 64
    levels: int = 4  # L of the SIDs (taken from --sids when given)
    history: int = 20  # H items in a history bag
    spm_lengths: list[int] | None = None  # empirical SPM bag lengths; None: uniform in 1..levels
    spm_source: str = "default: bag lengths uniform in 1..L"
    rounds: int = 5
    iters: int = 5
    warmup: int = 2
    lr: float = 0.01
    device: str = "cpu"
    threads: int | None = None
    dmp2: bool = False  # also DMP on 2 processes (table_wise), spawned
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [x for x in self.layouts if x not in LAYOUTS] + \
            [x for x in self.distributions if x not in DISTRIBUTIONS] + \
            [x for x in self.contenders if x not in CONTENDERS]
        if bad:
            raise SemidError(f"unknown layout/distribution/contender {bad} (layouts: {', '.join(LAYOUTS)}; "
                             f"distributions: {', '.join(DISTRIBUTIONS)}; contenders: {', '.join(CONTENDERS)})")
        if min(self.batch, self.dim, self.rounds, self.iters, self.levels, self.history) < 1:
            raise SemidError("--batch, --dim, --rounds, --iters, --levels and --history must be >= 1")
        if min(self.rows, default=0) < 2:
            raise SemidError(f"--rows must list table sizes >= 2, got {self.rows}")
        if self.device not in ("cpu", "cuda"):
            raise SemidError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise SemidError("--device cuda: no CUDA device is visible to torch (run on a GPU machine, or use "
                             "--device cpu)")
        if self.dmp2 and DMP not in self.contenders:
            raise SemidError(f"--dmp2 times 2 processes against the 1-process {DMP} contender: add it to --contenders")
        if self.dmp2 and self.batch % 2:
            raise SemidError(f"--dmp2 splits the batch over 2 processes: --batch must be even, got {self.batch}")
        if self.dim % 4:
            raise SemidError(f"--dim must be a multiple of 4 (FBGEMM's row alignment), got {self.dim}")


# -- layouts and batches -------------------------------------------------------------------------------


@dataclass
class Layout:
    name: str
    table_rows: list[int]
    bag: list[int | None]  # fixed bag length per table; None = SPM's variable length

    @property
    def total_rows(self) -> int:
        return sum(self.table_rows)


def make_layout(name: str, rows: int, cfg: LookupBenchConfig) -> Layout:
    L = cfg.levels
    if name == "hash":
        return Layout(name, [rows], [1])
    if name == "unigram":
        return Layout(name, [max(rows // L, 1)] * L, [1] * L)
    if name == "bigram":
        g = max(L // 2, 1)
        return Layout(name, [max(rows // g, 1)] * g, [1] * g)
    if name == "spm":
        return Layout(name, [rows], [None])
    if name == "history":
        return Layout(name, [rows], [cfg.history])
    raise SemidError(f"unknown layout {name!r}")


@dataclass
class Batch:
    values: list[np.ndarray]  # per table: row ids int64
    lengths: list[np.ndarray]  # per table: bag length per sample int64 [B]

    @property
    def lookups(self) -> int:
        return int(sum(len(v) for v in self.values))


class _IdSampler:
    """Row ids of one table: uniform, or Zipf over a random permutation of the rows (hot rows scattered)."""

    def __init__(self, rows: int, dist: str, rng: np.random.Generator) -> None:
        self.rows, self.dist = rows, dist
        if dist == "zipf":
            p = 1.0 / np.arange(1, rows + 1, dtype=np.float64) ** ZIPF_S
            self.cdf = np.cumsum(p / p.sum())
            self.perm = rng.permutation(rows)

    def __call__(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.dist == "uniform":
            return rng.integers(0, self.rows, n, dtype=np.int64)
        rank = np.minimum(np.searchsorted(self.cdf, rng.random(n)), self.rows - 1)
        return self.perm[rank].astype(np.int64)


def make_batches(layout: Layout, dist: str, cfg: LookupBenchConfig, n: int = N_BATCHES) -> list[Batch]:
    rng = np.random.default_rng([cfg.seed, LAYOUTS.index(layout.name), layout.total_rows, DISTRIBUTIONS.index(dist)])
    samplers = [_IdSampler(r, dist, rng) for r in layout.table_rows]
    spm = np.asarray(cfg.spm_lengths if cfg.spm_lengths else np.arange(1, cfg.levels + 1), np.int64)
    out = []
    for _ in range(n):
        values, lengths = [], []
        for sampler, bag in zip(samplers, layout.bag):
            ln = np.full(cfg.batch, bag, np.int64) if bag is not None else rng.choice(spm, cfg.batch)
            lengths.append(ln)
            values.append(sampler(int(ln.sum()), rng))
        out.append(Batch(values, lengths))
    return out


# -- what a contender is -------------------------------------------------------------------------------

Step = Callable[[], object]


@dataclass
class Built:
    """One contender, ready to time: a forward step, a training step, and what it reports about itself."""

    fwd: Step
    train: Step
    info: dict[str, str] = field(default_factory=dict)  # JSON: merged into the result record


def cycle(items: list[T]) -> Callable[[], T]:
    """A step's input source: the next of ``items`` at each call, round and round."""
    it = itertools.cycle(items)
    return lambda: next(it)


def grads(batches: list[Batch], width: int, device: torch.device) -> torch.Tensor:
    """A fixed small output gradient [batch, width] (seeded), for the training steps."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(len(batches[0].lengths[0]), width, generator=g) * 1e-3).to(device)


# -- the ranker's TorchRec path ------------------------------------------------------------------------


def build_torchrec(layout: Layout, batches: list[Batch], cfg: LookupBenchConfig, device: torch.device,
                   sharding_types: list[str] | None, local_lookup: bool = False) -> Built:
    """The ranker's path: EBC on ``meta`` -> ``TorchRecStrategy.shard`` (its planner constraints, sharder
    with fused params, DMP, ``init_tables``) on the current process group; ``local_lookup``: with the
    world-size-1 fast path (an error if it does not apply: the figure would silently be DMP's)."""
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, KeyedTensor

    from semid.embeddings import fused_params
    from semid.rankers import ShardingConfig, TorchRecStrategy

    configs = [EmbeddingBagConfig(name=f"t{i}", embedding_dim=cfg.dim, num_embeddings=r, feature_names=[f"f{i}"])
               for i, r in enumerate(layout.table_rows)]

    class _Tables(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ebc = EmbeddingBagCollection(tables=configs, device=torch.device("meta"))

        def forward(self, kjt: KeyedJaggedTensor) -> KeyedTensor:
            return self.ebc(kjt)

    strategy = TorchRecStrategy(sharding=ShardingConfig(sharding_types=sharding_types, local_lookup=local_lookup),
                                fused_params=fused_params("rowwise_adagrad", cfg.lr), table_seed=cfg.seed,
                                parallel_devices=[device])
    import torch.distributed as dist

    world = dist.get_world_size()
    old = os.environ.get("LOCAL_WORLD_SIZE")
    os.environ["LOCAL_WORLD_SIZE"] = str(world)  # what the strategy's setup_environment would set
    try:
        dmp = strategy.shard(_Tables())
    finally:
        if old is None:
            os.environ.pop("LOCAL_WORLD_SIZE", None)
        else:
            os.environ["LOCAL_WORLD_SIZE"] = old
    keys = [f"f{i}" for i in range(len(layout.table_rows))]
    kjts = [KeyedJaggedTensor(keys=keys, values=torch.from_numpy(np.concatenate(b.values)),
                              lengths=torch.from_numpy(np.concatenate(b.lengths).astype(np.int32))).to(device)
            for b in batches]
    nxt = cycle(kjts)
    grad = grads(batches, cfg.dim * len(configs), device)

    def fwd() -> object:
        with torch.no_grad():
            return dmp(nxt()).values()

    def train() -> object:
        out = dmp(nxt()).values()
        out.backward(grad)  # FBGEMM's fused backward applies rowwise Adagrad; nothing else to step
        return out

    types = sorted({v["sharding_type"] for v in strategy.plan_summary().values()})
    if not local_lookup:
        return Built(fwd, train, {"sharding_type": ",".join(types)})
    from semid.rankers import sparse_lookup_paths

    paths = set(sparse_lookup_paths(dmp).values())
    if paths != {"local"}:
        raise SemidError(f"the world-size-1 fast path does not apply here (lookup paths {sorted(paths)}); "
                         "run without the torchrec_fast contender")
    return Built(fwd, train, {"sharding_type": ",".join(types), "lookup_path": "local"})
