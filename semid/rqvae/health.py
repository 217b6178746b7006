"""SID health: one definition of each number, shared by training logs, health.json, report and bench.

* utilisation (per level): share of the K codes that at least one item uses
* perplexity (per level): exp(entropy) of the code distribution; K when codes are used uniformly
* unique-SID fraction: distinct full SIDs / items; largest collision group: most items on one SID
* relative error: ||x - x̂|| / ||x|| per item, averaged
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from semid.rqvae.records import CodesSummary, Uniqueness


def code_counts(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """How often each code is used per level: codes [N, L] -> counts [L, K]."""
    codes = np.asarray(codes, dtype=np.int64)
    n, levels = codes.shape
    flat = (codes + np.arange(levels, dtype=np.int64) * codebook_size).reshape(-1)
    return np.bincount(flat, minlength=levels * codebook_size).reshape(levels, codebook_size)


def usage_stats(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(utilisation [L], perplexity [L]) from per-level code counts [L, K]."""
    counts = np.asarray(counts, dtype=np.float64)
    utilisation = (counts > 0).mean(axis=1)
    total = counts.sum(axis=1, keepdims=True)
    p = counts / np.maximum(total, 1)
    entropy = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0)).sum(axis=1)
    return utilisation, np.exp(entropy)


def sid_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group id per item [N], items per group [G]) of identical rows of ``codes`` [N, n]."""
    codes = np.ascontiguousarray(np.asarray(codes, dtype=np.int32))
    if codes.shape[1] == 0:
        return np.zeros(len(codes), np.int64), np.array([len(codes)], np.int64)
    # a row as one opaque value: np.unique on a void view sorts rows without per-column passes
    rows = codes.view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))).reshape(-1)
    _, inverse, sizes = np.unique(rows, return_inverse=True, return_counts=True)
    return inverse.reshape(-1).astype(np.int64), sizes.astype(np.int64)


def uniqueness(codes: np.ndarray) -> Uniqueness:
    """Unique-SID fraction and the largest collision group of full SIDs [N, L]."""
    if len(codes) == 0:
        return {"items": 0, "unique_sids": 0, "unique_sid_fraction": 0.0, "largest_collision_group": 0,
                "items_sharing_a_sid": 0}
    _, sizes = sid_groups(codes)
    return {"items": int(len(codes)), "unique_sids": int(len(sizes)),
            "unique_sid_fraction": float(len(sizes) / len(codes)),
            "largest_collision_group": int(sizes.max()),
            "items_sharing_a_sid": int(sizes[sizes > 1].sum())}


def collision_histogram(codes: np.ndarray) -> dict[int, int]:
    """Items-per-SID group size -> number of SIDs with that many items."""
    _, sizes = sid_groups(codes)
    values, counts = np.unique(sizes, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def relative_error(x: np.ndarray | Tensor, x_hat: np.ndarray | Tensor) -> float:
    """Mean over items of ||x - x̂|| / ||x|| (items with ||x|| = 0 are skipped)."""
    total, n = relative_error_sum(x, x_hat)
    return total / n if n else 0.0


def _float64(a: np.ndarray | Tensor) -> Tensor:
    # a copy: torch.as_tensor of a read-only array (a memory-mapped chunk) warns on every run
    return torch.from_numpy(np.array(a, dtype=np.float64)) if isinstance(a, np.ndarray) else a.to(torch.float64)


def relative_error_sum(x: np.ndarray | Tensor, x_hat: np.ndarray | Tensor) -> tuple[float, int]:
    """(sum over items of ||x - x̂|| / ||x||, number of items with ||x|| > 0): the mean, a chunk at a time."""
    x, x_hat = _float64(x), _float64(x_hat)
    norm = x.norm(dim=1)
    ok = norm > 0
    return float(((x - x_hat).norm(dim=1)[ok] / norm[ok]).sum()), int(ok.sum())


def codes_summary(codes: np.ndarray, codebook_size: int) -> CodesSummary:
    """Utilisation, perplexity and uniqueness of a set of SIDs [N, L]."""
    util, ppl = usage_stats(code_counts(codes, codebook_size))
    return {"utilisation_per_level": [round(float(u), 4) for u in util],
            "perplexity_per_level": [round(float(p), 1) for p in ppl],
            **uniqueness(codes)}


class CodeUsage(Metric):
    """Code counts per level, summed across processes; ``compute`` gives utilisation and perplexity."""

    full_state_update = False

    def __init__(self, levels: int, codebook_size: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.levels, self.codebook_size = levels, codebook_size
        self.add_state("counts", torch.zeros(levels, codebook_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, codes: Tensor) -> None:  # codes [B, L]
        offset = torch.arange(self.levels, device=codes.device) * self.codebook_size
        flat = (codes.long() + offset).reshape(-1)
        self.counts += torch.bincount(flat, minlength=self.levels * self.codebook_size).view(
            self.levels, self.codebook_size)

    def compute(self) -> dict[str, Tensor]:
        util, ppl = usage_stats(self.counts.cpu().numpy())
        return {"utilisation": torch.from_numpy(util), "perplexity": torch.from_numpy(ppl)}
