"""Parity of an export with its training run, and a corpus day as scoring requests.

``check_parity`` scores the run's evaluation day twice: through the training code (``semid.rankers.evaluate``: the
sharded model under Lightning, its FBGEMM kernels; every ranker forward is captured with a global forward hook)
and through the artifact (``Scorer``, from requests that ``day_requests`` builds with the same history rules), then
compares the logits impression by impression and the AUCs. This is the one place in the package that runs
training code, and only to check an export.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from semid.core.errors import SemidError
from semid.core.records import JsonObject
from semid.rankers.records import EvalResults
from semid.serve.artifact import Artifact, load_artifact
from semid.serve.requests import requests_from_arrow
from semid.serve.scorer import Scorer


def day_requests(corpus_path: str | Path, day: int, history_length: int = 50) -> pa.Table:
    """The impressions of ``day`` as requests: ``user_id``, ``item_id``, ``watch_item_id`` (null: none),
    ``history_item_ids`` (the user's last ``history_length`` clicks of earlier days, oldest first, as training
    builds them), ``day``, ``click``, ``engaged``; in the day files' order."""
    from semid.datamodules import RankingDataConfig, RankingDataModule, open_corpus

    corpus = open_corpus(corpus_path)
    days = corpus.days()
    if day not in days:
        raise SemidError(f"--day {day} is not a day of {corpus.path} (days {days[0]}..{days[-1]})")
    earlier = [d for d in days if d < day]
    if not earlier:
        raise SemidError(f"day {day} is the corpus's first day: requests need a day with earlier days (history)")
    cfg = RankingDataConfig(history_length=history_length, train_days=earlier, eval_day=day)
    dm = RankingDataModule(corpus.path, cfg, features=None, with_history=True)
    dm.setup()
    f = dm.day_frame(day)
    assert dm.items is not None
    ids = dm.items.item_id
    n = len(f)
    watch = pa.array(ids[np.maximum(f.watch, 0)], pa.int64(), mask=f.watch < 0)
    history = pa.ListArray.from_arrays(pa.array(f.hist_offsets, pa.int64()).cast(pa.int32()),
                                       pa.array(ids[f.hist_rows], pa.int64()))
    return pa.table({"user_id": pa.array(f.user_id, pa.int64()), "item_id": pa.array(ids[f.cand], pa.int64()),
                     "watch_item_id": watch, "history_item_ids": history, "day": pa.array(np.full(n, day), pa.int32()),
                     "click": pa.array(f.labels[:, 0].astype(np.int8)), "engaged": pa.array(f.labels[:, 1].astype(np.int8))})


def reference_logits(run_dir: str | Path) -> tuple[np.ndarray, EvalResults]:
    """The training code's logits [n, T] on the run's evaluation day (in the day's order) and its metrics."""
    from semid.rankers import MultitaskRanker, evaluate
    from semid.core.quiet import quiet_libraries

    captured: list[np.ndarray] = []

    def hook(module: torch.nn.Module, args: tuple[object, ...], output: Any) -> None:
        if isinstance(module, MultitaskRanker):
            captured.append(output.detach().float().cpu().numpy())

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        with quiet_libraries():
            results = evaluate(Path(run_dir))
    finally:
        handle.remove()
    return np.concatenate(captured), results


def score_table(artifact: Artifact, table: pa.Table, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(logits [n, T], candidate new on its day [n]) of every row of ``table``."""
    scorer = Scorer(artifact)
    logits, new = [], []
    for rb in table.to_batches(max_chunksize=batch_size):
        s = scorer.score(requests_from_arrow(rb, "requests", artifact.schema))
        logits.append(s.logits)
        new.append(s.is_new)
    return np.concatenate(logits), np.concatenate(new)


def auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    from torchmetrics.functional.classification import binary_auroc

    if len(labels) == 0 or labels.min() == labels.max():
        return None
    return float(binary_auroc(torch.from_numpy(probs), torch.from_numpy(labels.astype(np.int64))))


def check_parity(run_dir: str | Path, model_dir: str | Path | Artifact,
                 reference: tuple[np.ndarray, EvalResults] | None = None) -> JsonObject:
    """Export vs training code on the run's evaluation day: max |Δ logit| per task and CTR AUCs (overall, new).
    ``reference``: ``reference_logits(run_dir)`` if already computed (e.g. for an fp32 and an int8 export)."""
    from semid.rankers import read_results

    artifact = model_dir if isinstance(model_dir, Artifact) else load_artifact(model_dir)
    prev = read_results(Path(run_dir))
    if artifact.schema.run_fingerprint != prev["fingerprint"]:
        raise SemidError(f"{artifact.path} was exported from run {artifact.schema.run_fingerprint}, not from {run_dir} "
                         f"({prev['fingerprint']})")
    ref, results = reference if reference is not None else reference_logits(run_dir)
    table = day_requests(prev["corpus"], prev["eval_day"], artifact.schema.history_length)
    if len(table) != len(ref):
        raise SemidError(f"the evaluation day has {len(table)} impressions but the run scored {len(ref)} (a run of "
                         "several processes scores a share each; check parity on a one-process run)")
    logits, is_new = score_table(artifact, table)
    click = table["click"].to_numpy()
    sig = lambda x: torch.sigmoid(torch.from_numpy(x[:, 0].copy())).numpy()  # noqa: E731
    out: JsonObject = {"impressions": len(table), "eval_day": prev["eval_day"], "model": artifact.name,
                       "max_abs_logit_diff": {t: float(np.abs(logits[:, i] - ref[:, i]).max())
                                                  for i, t in enumerate(artifact.schema.tasks)}}
    for name, mask in (("overall", np.ones(len(click), bool)), ("new", is_new)):
        out[f"ctr_auc_{name}"] = {"run": prev["metrics"]["ctr"][name].get("auc"),
                                  "training_code": auc(sig(ref)[mask], click[mask]),
                                  "export": auc(sig(logits)[mask], click[mask])}
    return out
