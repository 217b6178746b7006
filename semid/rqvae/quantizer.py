"""Residual quantizer: L codebooks of K codes, each quantizing what the previous levels left over.

Symbols follow the paper (B = batch, d = latent dimension)::

    r_0 = z                          z: encoder output            [B, d]
    c_l = argmin_k ||r_l - C_l[k]||  C_l: codebook of level l      [K, d]
    e_l = C_l[c_l]                                                 [B, d]
    r_{l+1} = r_l - sg[e_l]
    ẑ = Σ_l e_l,   z_q = z + sg[ẑ - z]   (straight-through: the decoder sees ẑ, gradients reach z)

``r_{l+1}`` subtracts ``sg[e_l]`` so a residual is a function of the encoder only: the commitment
term ``β||r_l - sg[e_l]||²`` moves the encoder, the codebook term ``||sg[r_l] - e_l||²`` moves the
codebooks, and nothing else crosses between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Quantized:
    codes: Tensor  # c: [B, L] int64
    residuals: Tensor  # r: [L, B, d], r_0 = z
    codewords: Tensor  # e: [L, B, d], e_l = C_l[c_l]
    z_q: Tensor  # [B, d] straight-through quantized latent


def code_costs(x: Tensor, codebook: Tensor, c2: Tensor | None = None) -> Tensor:
    """||x - e||² - ||x||² for rows x [N, d] and codes e of ``codebook`` [K, d] -> [N, K].

    ||x||² is the same for every code of a row, so it cannot change an argmin over codes: left out.
    """
    if c2 is None:
        c2 = (codebook * codebook).sum(-1)  # [K]
    return torch.addmm(c2, x, codebook.T, alpha=-2.0)  # ||e||² - 2 x·e


CHUNK_ROWS = 8192  # rows per distance block: [8192, K] at a time, whatever N


def nearest_code(r: Tensor, codebook: Tensor, chunk: int = CHUNK_ROWS, bias: Tensor | None = None) -> Tensor:
    """Index of the nearest code for each row of ``r`` [N, d] in ``codebook`` [K, d] -> [N] int64.

    ``bias`` [K] is added to every row's squared distances (the code prices of balanced residual k-means;
    None = plain nearest code). ``argmin`` returns the first minimum, so ties resolve to the lowest code
    index. Each row's distances depend only on that row, so results do not depend on how rows are batched.
    """
    c2 = (codebook * codebook).sum(-1)  # [K]
    out = []
    for s in range(0, len(r), chunk):
        d = code_costs(r[s:s + chunk], codebook, c2)
        out.append((d if bias is None else d + bias).argmin(dim=-1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=r.device)


def residual_encode(z: Tensor, codebooks: Tensor, biases: Tensor | None = None) -> Tensor:
    """Codes c [N, L] of z [N, d]: level by level the nearest code of what the levels before left over,
    r_{l+1} = r_l - C_l[c_l] (``biases`` [L, K]: per-code prices, or None)."""
    r = z
    codes = []
    for level in range(codebooks.shape[0]):
        c_l = nearest_code(r, codebooks[level], bias=None if biases is None else biases[level])
        codes.append(c_l)
        r = r - codebooks[level][c_l]
    return torch.stack(codes, dim=1)


def kmeans(x: Tensor, k: int, iters: int, generator: torch.Generator | None = None,
           weights: Tensor | None = None, init: Tensor | None = None) -> Tensor:
    """Lloyd's k-means of ``x`` [N, d] into ``k`` centroids [k, d]; empty clusters re-seeded at random points.

    ``weights`` [N] > 0 (e.g. how often each item was drawn) weight the centroid means; None = every point 1.
    ``init`` [k, d]: the starting centroids; None = k random points.
    """
    n = len(x)
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if init is None:
        perm = torch.randperm(n, generator=generator, device=gen_device).to(x.device)
        centroids = x[perm[:k]].clone()
    else:
        centroids = init.to(x.dtype).clone()
    for _ in range(iters):
        assign = nearest_code(x, centroids)
        if weights is None:
            sums = torch.zeros_like(centroids).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=k).to(x.dtype)
        else:
            sums = torch.zeros_like(centroids).index_add_(0, assign, x * weights[:, None])
            counts = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, assign, weights.to(x.dtype))
        filled = counts > 0
        centroids = torch.where(filled[:, None], sums / torch.where(filled, counts, 1.0)[:, None], centroids)
        n_empty = int((~filled).sum())
        if n_empty:
            pick = torch.randperm(n, generator=generator, device=gen_device)[:n_empty].to(x.device)
            centroids[~filled] = x[pick]
    return centroids


class ResidualQuantizer(nn.Module):
    """L codebooks C [L, K, d]; ``forward`` quantizes z level by level (see the module docstring)."""

    def __init__(self, levels: int, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.levels, self.codebook_size, self.dim = levels, codebook_size, dim
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, dim) / dim ** 0.5)  # C [L, K, d]
        # k-means has not run yet; saved with the weights so a restored model is not re-initialised
        self.register_buffer("initialised", torch.tensor(False))

    def forward(self, z: Tensor) -> Quantized:
        r = z  # r_0 [B, d]
        codes, residuals, codewords = [], [], []
        for level in range(self.levels):
            c_l = nearest_code(r.detach(), self.codebooks[level])  # [B]
            e_l = self.codebooks[level][c_l]  # [B, d]; gradients reach only the chosen codes
            codes.append(c_l)
            residuals.append(r)
            codewords.append(e_l)
            r = r - e_l.detach()  # r_{l+1} = r_l - sg[e_l]
        e = torch.stack(codewords)  # [L, B, d]
        z_hat = e.sum(0)  # ẑ [B, d]
        z_q = z + (z_hat - z).detach()  # straight-through
        return Quantized(torch.stack(codes, dim=1), torch.stack(residuals), e, z_q)

    @torch.no_grad()
    def encode(self, z: Tensor) -> Tensor:
        """Codes [B, L] only (no autograd graph); the path `semid sids assign` uses."""
        return residual_encode(z, self.codebooks)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """ẑ = Σ_l C_l[c_l] for codes [B, L] -> [B, d]."""
        return sum(self.codebooks[level][codes[:, level]] for level in range(self.levels))  # type: ignore[return-value]

    @torch.no_grad()
    def init_kmeans(self, z: Tensor, iters: int, generator: torch.Generator | None = None) -> None:
        """Codebook l = k-means of the level-l residuals of ``z`` [N, d] (level l-1 already initialised)."""
        r = z.detach()
        for level in range(self.levels):
            self.codebooks[level].copy_(kmeans(r, self.codebook_size, iters, generator))
            r = r - self.codebooks[level][nearest_code(r, self.codebooks[level])]
        self.initialised.fill_(True)
