"""Residual k-means (RQ-KMeans): L codebooks of K centroids fitted level by level, without gradients.

Symbols as in ``semid.rqvae.quantizer`` (N = items, D = embedding dimension)::

    r_0 = x                                     x: content embedding                         [N, D]
    C_l = k-means(r_l, K)                       centroids of what the levels before left      [K, D]
    c_l = argmin_k ||r_l - C_l[k]||² + p_l[k]   p_l: code prices (0 unless balanced)          [K]
    r_{l+1} = r_l - C_l[c_l],   x̂ = Σ_l C_l[c_l]

There is no encoder: the codes quantize the embedding itself and x̂ lives in the input space. The fit
sample is the RQ-VAE's training distribution: ``fit_items`` draws of impressed items in proportion to
their impressions (n distinct items, item i drawn m_i times). Each level's k-means runs on the draws
(an item drawn m times counts m times) and is progressive in dimension, as ``faiss.ResidualQuantizer``
trains its levels: k-means in the top d^(1/s) principal directions of the residuals, then d^(2/s), ...,
each step started from the last (``rqkmeans.dim_steps`` = s). faiss's ``ProgressiveDimClustering`` when
faiss is installed, else the same schedule on semid's own k-means.

Balanced (``rqkmeans.balanced``): at every level each code may take at most
``cap = ceil((1 + balance_slack) * n / K)`` of the n fit items. Two steps:

1. Lloyd iterations whose assignment step is a capacity-constrained greedy: in rounds, every unplaced item
   proposes to its nearest code that still has room, and each code accepts its closest proposers up to
   its room. Exact caps on the fit items, and the centroids move to where a balanced partition puts them
   (dense regions get several codes).
2. A greedy partition is no rule for an item outside the fit (a new item's code would depend on which
   items came first), so the frozen model assigns ``argmin distance + p_k``, with per-code prices p >= 0
   from the Lagrangian dual of the capped assignment: best-response sweeps, each moving p_k towards the
   price at which exactly ``cap`` items would still choose code k given the other prices. One rule
   for every item, deterministic, the same on ``--update``; near the cap rather than at it (``health.json``
   reports the largest code per level next to the cap).

Why not Sinkhorn or an exact auction: Sinkhorn balances a soft assignment, so its prices need a schedule
of temperatures and still cap the hard argmin only approximately; raising the prices of over-full codes
until no code is over (an auction with minimal increments) caps exactly, but on the clustered small corpus
it had not converged after 400 rounds (27 s for one level), while 20 sweeps bring the largest code of
level 0 from 2.1x to 1.5x the cap in a few seconds (14k fit items, K = 256; see PRICE_SWEEPS).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semid.rqvae.records import RqkmeansLevel
from semid.rqvae.config import RqkmeansConfig, kmeans_backend
from semid.rqvae.quantizer import CHUNK_ROWS, code_costs, kmeans, nearest_code, residual_encode

# Best-response sweeps on the code prices and the step towards each best response. More sweeps and longer
# steps cap the fit items tighter (small corpus, level 0, cap 61: largest code 89 after 20 sweeps of 0.5,
# 79 after 40 of 0.8), but the SIDs came out no better: on all items of the small corpus 62.2% unique, largest
# collision 167, relative error 0.298 with (20, 0.5) against 61.5%, 203, 0.301 with (40, 0.8); on the tests'
# tiny corpus 54.1% / 14 against 53.8% / 23.
PRICE_SWEEPS = 20
_PRICE_STEP = 0.5


class LevelNotFinite(ArithmeticError):
    """A level's k-means met NaN or inf (residuals of huge magnitude); ``level`` says which."""

    def __init__(self, level: int, detail: str) -> None:
        super().__init__(f"level {level}: {detail}")
        self.level = level


class RqkmeansModel(nn.Module):
    """The frozen residual k-means: codebooks C [L, K, D] and code prices p [L, K], as buffers (nothing to
    learn by gradient). ``encode`` / ``reconstruct`` have the RQ-VAE's signatures, so ``FrozenRqvae``,
    ``semid sids assign`` and the health report use either model unchanged."""

    def __init__(self, levels: int, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.levels, self.codebook_size, self.dim = levels, codebook_size, dim
        self.register_buffer("codebooks", torch.zeros(levels, codebook_size, dim))  # C [L, K, D]
        self.register_buffer("prices", torch.zeros(levels, codebook_size))  # p [L, K]

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """SIDs [B, L] of embeddings [B, D]."""
        return residual_encode(x, self.codebooks, self.prices)

    @torch.no_grad()
    def reconstruct(self, codes: Tensor) -> Tensor:
        """x̂ = Σ_l C_l[c_l] [B, D] of SIDs [B, L]."""
        return sum(self.codebooks[level][codes[:, level]] for level in range(self.levels))  # type: ignore[return-value]


@dataclass
class RqkmeansFit:
    codebooks: Tensor  # [L, K, D] float64
    prices: Tensor  # [L, K] float64
    backend: str  # "faiss" | "torch"
    backend_detail: str  # what ran, with its version
    levels: list[RqkmeansLevel] = field(default_factory=list)  # per-level fit statistics

    def model(self) -> RqkmeansModel:
        levels, k, d = self.codebooks.shape
        m = RqkmeansModel(levels, k, d)
        m.codebooks.copy_(self.codebooks)
        m.prices.copy_(self.prices)
        return m


def _costs(r: Tensor, codebook: Tensor) -> Tensor:
    """``code_costs`` [n, K] in the same row blocks ``nearest_code`` uses, so an argmin over these costs
    (plus prices) is exactly the frozen model's choice."""
    c2 = (codebook * codebook).sum(-1)
    return torch.cat([code_costs(r[s:s + CHUNK_ROWS], codebook, c2) for s in range(0, len(r), CHUNK_ROWS)])


def weighted_means(r: Tensor, codes: Tensor, weights: Tensor, old: Tensor) -> Tensor:
    """Weighted centroid of each code's items [K, D]; a code without items keeps ``old``."""
    k = len(old)
    sums = torch.zeros_like(old).index_add_(0, codes, r * weights[:, None])
    mass = torch.zeros(k, dtype=r.dtype).index_add_(0, codes, weights)
    filled = mass > 0
    return torch.where(filled[:, None], sums / torch.where(filled, mass, 1.0)[:, None], old)


def capped_greedy(cost: Tensor, cap: int) -> Tensor:
    """Codes [n] with at most ``cap`` items each: in rounds, every unplaced item proposes to its cheapest code
    with room left and each code accepts its cheapest proposers up to its room. cost [n, K]."""
    n, k = cost.shape
    if cap * k < n:
        raise ValueError(f"{k} codes of capacity {cap} cannot hold {n} items")
    codes = torch.full((n,), -1, dtype=torch.long)
    room = torch.full((k,), cap, dtype=torch.long)
    free = torch.arange(n)
    while len(free):
        value, best = cost[free].masked_fill((room <= 0)[None, :], math.inf).min(dim=1)
        # proposers grouped by code, cheapest first (stable sorts: ties go to the lower item row)
        order = torch.argsort(value, stable=True)
        order = order[torch.argsort(best[order], stable=True)]
        b = best[order]
        per_code = torch.bincount(b, minlength=k)
        rank = torch.arange(len(order)) - (torch.cumsum(per_code, 0) - per_code)[b]
        accept = rank < room[b]
        codes[free[order[accept]]] = b[accept]
        room -= torch.bincount(b[accept], minlength=k)
        free = torch.sort(free[order[~accept]]).values
    return codes


def code_prices(cost: Tensor, cap: int, sweeps: int = PRICE_SWEEPS) -> Tensor:
    """Prices p [K] >= 0 under which ``argmin_k cost[i, k] + p_k`` puts about ``cap`` items or fewer on a code.

    Item i stays on code k while p_k < M_ik = min_{j != k}(cost_ij + p_j) - cost_ik, so the best response of
    code k to the others' prices is the (cap+1)-th largest M_ik (a code that fewer than cap+1 items want
    costs 0). Each sweep moves every price ``_PRICE_STEP`` of the way to its best response.
    """
    n, k = cost.shape
    p = torch.zeros(k, dtype=cost.dtype)
    if cap >= n:
        return p
    codes = torch.arange(k)
    for _ in range(sweeps):
        top = torch.topk(cost + p, 2, dim=1, largest=False)  # the two cheapest codes of each item
        others = torch.where(top.indices[:, :1] == codes, top.values[:, 1:2], top.values[:, :1])  # [n, K]
        stay = torch.topk(others - cost, cap + 1, dim=0).values  # [cap+1, K], descending
        best_response = ((stay[cap - 1] + stay[cap]) / 2).clamp(min=0)  # between the cap-th and (cap+1)-th
        p = p + _PRICE_STEP * (best_response - p)
    return p


def _faiss_kmeans(x: np.ndarray, k: int, iters: int, steps: int, seed: int) -> np.ndarray:
    import faiss

    n, d = x.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    # the sample is drawn already: no subsampling by faiss (max_points) and no "too few points" warning (min)
    limits = {"min_points_per_centroid": 1, "max_points_per_centroid": n // k + 1}
    if steps == 1:
        km = faiss.Kmeans(d, k, niter=iters, seed=seed, verbose=False, **limits)
        km.train(x)
        return np.asarray(km.centroids, dtype=np.float64)
    pdc = faiss.ProgressiveDimClustering(d, k)
    pdc.niter, pdc.progressive_dim_steps, pdc.seed, pdc.verbose = iters, steps, seed, False
    pdc.min_points_per_centroid, pdc.max_points_per_centroid = limits["min_points_per_centroid"], \
        limits["max_points_per_centroid"]
    pdc.train(n, faiss.swig_ptr(x), faiss.ProgressiveDimIndexFactory())
    return faiss.vector_float_to_array(pdc.centroids).reshape(k, d).astype(np.float64)


def progressive_kmeans(x: Tensor, k: int, iters: int, steps: int, generator: torch.Generator) -> Tensor:
    """k-means of x [N, d] in its top d^(i/steps) principal directions at step i = 1..steps, each step started
    from the last step's centroids (zero in the new directions: the data is centred); [k, d] in x's space.
    ``steps`` = 1 is plain k-means. The schedule of faiss's ``ProgressiveDimClustering``."""
    if steps == 1:
        return kmeans(x, k, iters, generator)
    n, d = x.shape
    mu = x.mean(0)
    xc = x - mu
    _, vecs = torch.linalg.eigh((xc.T @ xc).double() / n)  # ascending eigenvalues
    v = vecs.flip(1).to(x.dtype)  # principal directions, largest first
    y = xc @ v
    c: Tensor | None = None
    for step in range(steps):
        di = max(1, int(d ** ((1 + step) / steps)))
        init = None if c is None else F.pad(c, (0, di - c.shape[1]))
        c = kmeans(y[:, :di].contiguous(), k, iters, generator, init=init)
    assert c is not None
    return c @ v.T + mu


def backend_detail(backend: str, steps: int = 10) -> str:
    kind = "progressive-dimension k-means" if steps > 1 else "k-means"
    if backend == "faiss":
        import faiss

        name = "faiss.ProgressiveDimClustering" if steps > 1 else "faiss.Kmeans"
        return f"faiss {faiss.__version__} ({name} per level)"
    return f"semid {kind} (torch {torch.__version__.split('+')[0]}, semid.rqvae.rqkmeans)"


def fit_rqkmeans(x: np.ndarray, times: np.ndarray, levels: int, codebook_size: int, cfg: RqkmeansConfig,
                 seed: int) -> RqkmeansFit:
    """Residual k-means of distinct items x [n, D], item i drawn ``times[i]`` times (module docstring)."""
    n, d = x.shape
    k = codebook_size
    if n < k:
        raise ValueError(f"residual k-means needs at least K={k} distinct items, got {n}")
    backend = kmeans_backend(cfg.backend)
    r = torch.from_numpy(np.asarray(x, dtype=np.float64))  # r_0 = x
    w = torch.from_numpy(np.asarray(times, dtype=np.float64))
    draws = torch.repeat_interleave(torch.arange(n), torch.from_numpy(np.asarray(times, dtype=np.int64)))
    cap = math.ceil((1 + cfg.balance_slack) * n / k)
    books, prices, stats = [], [], []
    for level in range(levels):
        level_seed = seed * 1009 + level  # every level its own k-means seed
        r_draws = r[draws].float()  # the level's residuals, one row per draw
        try:
            if backend == "faiss":
                c_l = torch.from_numpy(_faiss_kmeans(r_draws.numpy(), k, cfg.iters, cfg.dim_steps, level_seed))
            else:
                gen = torch.Generator().manual_seed(level_seed)
                c_l = progressive_kmeans(r_draws, k, cfg.iters, cfg.dim_steps, gen).double()
        except RuntimeError as e:  # the PCA of huge residuals fails (torch) or makes NaN that faiss refuses
            if not isinstance(e, torch.linalg.LinAlgError) and "NaN" not in str(e) and "Inf" not in str(e):
                raise
            raise LevelNotFinite(level, str(e).splitlines()[0]) from None
        del r_draws
        p_l = torch.zeros(k, dtype=torch.float64)
        if cfg.balanced:
            for _ in range(cfg.iters):
                c_l = weighted_means(r, capped_greedy(_costs(r, c_l), cap), w, c_l)
            p_l = code_prices(_costs(r, c_l), cap)
        codes = nearest_code(r, c_l, bias=p_l if cfg.balanced else None)  # the frozen rule
        sizes = torch.bincount(codes, minlength=k)
        r = r - c_l[codes]
        stats.append({"level": level, "utilisation": round(float((sizes > 0).double().mean()), 4),
                      "largest_code": int(sizes.max()), "cap": cap if cfg.balanced else None,
                      "residual_sq": round(float(((r * r).sum(1) * w).sum() / w.sum()), 6)})
        books.append(c_l)
        prices.append(p_l)
    return RqkmeansFit(torch.stack(books), torch.stack(prices), backend, backend_detail(backend, cfg.dim_steps),
                       stats)
