"""Sliced evaluation metrics with torchmetrics: AUC per task and slice, log loss, bootstrap intervals.

Slices: ``overall``; ``new`` (CTR/1D — candidates introduced on the evaluation day); ``head`` /
``torso`` / ``tail`` by training impressions. A slice without impressions, or without both
classes, is reported as undefined with the reason instead of a number.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import BinaryAUROC
from torchmetrics.wrappers import BootStrapper

from datamodules.batch import RankingBatch
from datamodules.stats import HEAD, TAIL, TORSO
from rankers.model import TASKS

SLICES = ("overall", "new", "head", "torso", "tail")


def slice_masks(batch: RankingBatch) -> dict[str, Tensor]:
    pop = batch.popularity
    return {"overall": torch.ones_like(batch.is_new), "new": batch.is_new,
            "head": pop == HEAD, "torso": pop == TORSO, "tail": pop == TAIL}


class _SliceMetrics(nn.Module):
    def __init__(self, num_bootstraps: int) -> None:
        super().__init__()
        self.auc = BinaryAUROC()
        # quantile CIs need every resample's predictions: memory is num_bootstraps x impressions
        self.boot = BootStrapper(BinaryAUROC(), num_bootstraps=num_bootstraps, quantile=torch.tensor([0.025, 0.975]),
                                 sampling_strategy="multinomial") if num_bootstraps > 0 else None
        self.logloss = MeanMetric()
        self.n = SumMetric()
        self.positives = SumMetric()

    def update(self, logits: Tensor, target: Tensor) -> None:
        if logits.numel() == 0:
            return
        probs = torch.sigmoid(logits)
        t = target.long()
        self.auc.update(probs, t)
        if self.boot is not None:
            self.boot.update(probs, t)
        self.logloss.update(nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="none"))
        self.n.update(torch.tensor(float(target.numel())))
        self.positives.update(target.float().sum())

    def compute(self) -> dict[str, Any]:
        n, pos = int(self.n.compute()), int(self.positives.compute())
        out: dict[str, Any] = {"impressions": n, "positives": pos}
        if n == 0:
            return {**out, "auc": None, "undefined": "no impressions in this slice"}
        if pos == 0 or pos == n:
            return {**out, "auc": None, "logloss": float(self.logloss.compute()),
                    "undefined": f"{'no positives' if pos == 0 else 'no negatives'} among {n} impressions"}
        out["auc"] = float(self.auc.compute())
        out["logloss"] = float(self.logloss.compute())
        if self.boot is not None:
            b = self.boot.compute()
            lo, hi = b["quantile"].tolist()
            out.update(ci_low=lo, ci_high=hi, bootstrap_std=float(b["std"]))
        return out

    def reset(self) -> None:
        for m in (self.auc, self.boot, self.logloss, self.n, self.positives):
            if m is not None:
                m.reset()


class SlicedMetrics(nn.Module):
    """``update(logits [B, T], batch)``; ``compute() -> {task: {slice: {...}}}``."""

    def __init__(self, num_bootstraps: int = 100) -> None:
        super().__init__()
        # BootStrapper resamples in update() from torch's global RNG, seeded by the run's seed
        self.m = nn.ModuleDict({f"{task}__{s}": _SliceMetrics(num_bootstraps) for task in TASKS for s in SLICES})

    def update(self, logits: Tensor, batch: RankingBatch) -> None:
        masks = slice_masks(batch)
        for ti, task in enumerate(TASKS):
            for s, mask in masks.items():
                self.m[f"{task}__{s}"].update(logits[mask, ti], batch.labels[mask, ti])

    def compute(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {task: {s: self.m[f"{task}__{s}"].compute() for s in SLICES} for task in TASKS}

    def reset(self) -> None:
        for m in self.m.values():
            m.reset()


def flat_scalars(results: dict[str, dict[str, dict[str, Any]]], prefix: str = "eval") -> dict[str, float]:
    """``eval/ctr_auc/new`` style scalars for loggers (undefined slices are left out)."""
    out = {}
    for task, slices in results.items():
        for s, r in slices.items():
            for k in ("auc", "logloss", "ci_low", "ci_high"):
                if r.get(k) is not None:
                    out[f"{prefix}/{task}_{k}/{s}"] = float(r[k])
    return out
