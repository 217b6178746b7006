"""Sliced evaluation metrics with torchmetrics: AUC per task and slice, log loss, bootstrap intervals.

Slices: ``overall``; ``new`` (CTR/1D — candidates introduced on the evaluation day); ``head`` /
``torso`` / ``tail`` by training impressions. A slice without impressions, without both classes, or
with fewer than ``MIN_SLICE_ITEMS`` distinct candidate items is reported as undefined with the reason
instead of a number (an AUC over 2 impressions of 2 new movies is 0 or 1 and says nothing).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, SumMetric
from torchmetrics.classification import BinaryAUROC
from torchmetrics.utilities import dim_zero_cat

from semid.datamodules import RankingBatch
from semid.datamodules import HEAD, TAIL, TORSO
from semid.rankers.model import TASKS
from semid.rankers.records import EvalMetrics, SliceMetrics

SLICES = ("overall", "new", "head", "torso", "tail")
# fewer distinct items than this in a slice: no AUC (the report's paired statistics use the same floor)
MIN_SLICE_ITEMS = 20


def slice_masks(batch: RankingBatch) -> dict[str, Tensor]:
    pop = batch.popularity
    return {"overall": torch.ones_like(batch.is_new), "new": batch.is_new,
            "head": pop == HEAD, "torso": pop == TORSO, "tail": pop == TAIL}


def bootstrap_auc(probs: Tensor, target: Tensor, num: int, seed: int) -> Tensor:
    """AUC of ``num`` bootstrap resamples (n draws with replacement), all at once: sort once, then each
    resample is a vector of counts and its AUC a weighted rank statistic (ties count one half).
    A resample without both classes gives NaN."""
    g = torch.Generator().manual_seed(seed)
    p, order = torch.sort(probs.detach().double().cpu())
    y = target.detach().cpu()[order].double()
    _, grp = torch.unique_consecutive(p, return_inverse=True)
    n, groups = len(p), int(grp[-1]) + 1
    chunk = max(1, 4_000_000 // max(n, 1))  # resamples per pass: bounded memory on large evaluation days
    out = []
    for s in range(0, num, chunk):
        b = min(chunk, num - s)
        w = torch.zeros(b, n, dtype=torch.float64).scatter_add_(
            1, torch.randint(0, n, (b, n), generator=g), torch.ones(b, n, dtype=torch.float64))
        pos = torch.zeros(b, groups, dtype=torch.float64).index_add_(1, grp, w * y)
        neg = torch.zeros(b, groups, dtype=torch.float64).index_add_(1, grp, w * (1 - y))
        below = torch.cumsum(neg, 1) - neg
        out.append((pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1)))
    return torch.cat(out)


class _DistinctItems(Metric):
    """Distinct candidate item ids of a slice, synced across ranks. torchmetrics' CatMetric would cast the
    int64 ids to float32, which merges ids above 2^24."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, item_id: Tensor) -> None:
        self.ids.append(torch.unique(item_id.long()))

    def compute(self) -> int:
        return torch.unique(dim_zero_cat(self.ids)).numel()


class _SliceMetrics(nn.Module):
    def __init__(self, num_bootstraps: int, seed: int = 0) -> None:
        super().__init__()
        # keeps every prediction (synced across ranks); the bootstrap resamples those, no copies per resample
        self.auc = BinaryAUROC()
        self.num_bootstraps, self.seed = num_bootstraps, seed
        self.logloss = MeanMetric()
        self.n = SumMetric()
        self.positives = SumMetric()
        self.items = _DistinctItems()

    def update(self, logits: Tensor, target: Tensor, item_id: Tensor | None = None) -> None:
        if logits.numel() == 0:
            return
        if item_id is not None:
            self.items.update(item_id)
        probs = torch.sigmoid(logits)
        t = target.long()
        self.auc.update(probs, t)
        self.logloss.update(nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="none"))
        self.n.update(torch.tensor(float(target.numel())))
        self.positives.update(target.float().sum())

    def compute(self) -> SliceMetrics:
        if self.n.update_count == 0:  # an empty slice: computing torchmetrics' states would only warn
            return {"impressions": 0, "positives": 0, "auc": None, "undefined": "no impressions in this slice"}
        n, pos = int(self.n.compute()), int(self.positives.compute())
        out: SliceMetrics = {"impressions": n, "positives": pos}
        if n == 0:
            return {**out, "auc": None, "undefined": "no impressions in this slice"}
        if self.items.update_count:
            out["items"] = items = int(self.items.compute())
            if items < MIN_SLICE_ITEMS:
                return {**out, "auc": None, "logloss": float(self.logloss.compute()),
                        "undefined": f"{items} items among {n} impressions, need >= {MIN_SLICE_ITEMS} for an AUC"}
        if pos == 0 or pos == n:
            return {**out, "auc": None, "logloss": float(self.logloss.compute()),
                    "undefined": f"{'no positives' if pos == 0 else 'no negatives'} among {n} impressions"}
        out["auc"] = float(self.auc.compute())
        out["logloss"] = float(self.logloss.compute())
        if self.num_bootstraps > 0:
            with self.auc.sync_context():
                preds, target = dim_zero_cat(self.auc.preds), dim_zero_cat(self.auc.target)
            b = bootstrap_auc(preds, target, self.num_bootstraps, self.seed)
            b = b[~b.isnan()]
            lo, hi = torch.quantile(b, torch.tensor([0.025, 0.975], dtype=b.dtype)).tolist()
            out.update(ci_low=lo, ci_high=hi, bootstrap_std=float(b.std()))
        return out

    def reset(self) -> None:
        for m in (self.auc, self.logloss, self.n, self.positives, self.items):
            m.reset()


# why a slice without impressions is empty, in the words of the paper's metrics
_EMPTY_SLICE = {
    "overall": "no impressions on the evaluation day",
    "new": "no impressions of items introduced on the evaluation day (CTR/1D needs new items that day)",
    "head": "no impressions of head items", "torso": "no impressions of torso items",
    "tail": "no impressions of tail items",
}


class SlicedMetrics(nn.Module):
    """``update(logits [B, T], batch)``; ``compute() -> {task: {slice: {...}}}``."""

    def __init__(self, num_bootstraps: int = 100, seed: int = 0) -> None:
        super().__init__()
        # resamples are drawn in compute() from a generator per (seed, slice): the same intervals whatever ran before
        self.m = nn.ModuleDict({f"{task}__{s}": _SliceMetrics(num_bootstraps, seed * 1000 + i)
                                for i, (task, s) in enumerate((t, s) for t in TASKS for s in SLICES)})

    def update(self, logits: Tensor, batch: RankingBatch) -> None:
        masks = slice_masks(batch)
        for ti, task in enumerate(TASKS):
            for s, mask in masks.items():
                self.m[f"{task}__{s}"].update(logits[mask, ti], batch.labels[mask, ti],
                                              None if batch.item_id is None else batch.item_id[mask])

    def compute(self) -> EvalMetrics:
        out = {task: {s: self.m[f"{task}__{s}"].compute() for s in SLICES} for task in TASKS}
        for slices in out.values():
            for s, r in slices.items():
                if r.get("impressions") == 0:
                    r["undefined"] = _EMPTY_SLICE.get(s, r["undefined"])
        return out

    def reset(self) -> None:
        for m in self.m.values():
            m.reset()


def flat_scalars(results: EvalMetrics, prefix: str = "eval") -> dict[str, float]:
    """``eval/ctr_auc/new`` style scalars for loggers (undefined slices are left out)."""
    out = {}
    for task, slices in results.items():
        for s, r in slices.items():
            for k in ("auc", "logloss", "ci_low", "ci_high"):
                if r.get(k) is not None:
                    out[f"{prefix}/{task}_{k}/{s}"] = float(r[k])
    return out
