"""A quantizer's run directory, whichever trainer made it (``semid.rqvae.train`` for the RQ-VAE,
``semid.rqvae.rqkmeans_train`` for residual k-means): its result, ``health.json`` (SID health of the frozen
model), its loggers and the check that a finished run is up to date.

    >>> flatten_metrics({"final": {"heldout": {"recon_loss": 0.5, "utilisation_per_level": [1.0, 0.5]}}})
    {'final/heldout/recon_loss': 0.5, 'final/heldout/utilisation_per_level_l0': 1.0, 'final/heldout/utilisation_per_level_l1': 0.5}
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from lightning.pytorch.loggers import Logger

from semid.core.config import to_dict
from semid.core.errors import SemidError
from semid.core.fingerprint import code_fingerprint, code_record
from semid.core.loggers import build_loggers
from semid.core.records import JsonObject
from semid.datamodules import Corpus
from semid.rqvae.config import RqvaeConfig
from semid.rqvae.frozen import EXPORT_FILE, STAGE1_ROOMS, Quantizer, load_frozen
from semid.rqvae.health import codes_summary, relative_error_sum
from semid.rqvae.records import QuantizerHealth, SidHealth

HEALTH_FILE = "health.json"


@dataclass
class TrainResult:
    out: Path
    model: Quantizer
    health: QuantizerHealth
    fit_seconds: float  # over every attempt of the run
    resumed_from_step: int | None = None  # the checkpoint an interrupted run continued from
    up_to_date: bool = False  # nothing to do: ``out`` already held this run, complete


def finished_run(out: Path, fingerprint: str) -> TrainResult | None:
    """The run at ``out`` if it is this config's on this corpus and complete, else None."""
    try:
        model = load_frozen(out / EXPORT_FILE)
        health = json.loads((out / HEALTH_FILE).read_text())
    except (SemidError, OSError, ValueError):
        return None
    if model.fingerprint != fingerprint or health.get("fingerprint") != fingerprint:
        return None
    if health.get("code_fingerprint") != code_fingerprint(*STAGE1_ROOMS):
        return None  # trained by other code: train again (the export stays loadable for serving)
    return TrainResult(out, model, health, float(health["train"]["fit_seconds"]), up_to_date=True)


def run_loggers(cfg: RqvaeConfig, run_dir: Path, fingerprint: str, out: Path) -> list[Logger]:
    """CSV always; W&B by the one policy of every stage (semid.core.loggers), named by the final run directory."""
    kinds = ["csv"] + (["wandb"] if cfg.run.logger == "wandb" else [])
    return build_loggers(kinds, run_dir, run_name=f"rqvae-{fingerprint}", project=cfg.run.wandb_project, group=None,
                         config={"fingerprint": fingerprint, **to_dict(cfg)}, csv_name="logs", run_key=out)


HEALTH_CHUNK_ROWS = 65536  # items per pass of the health statistics: float64 temporaries of ~0.5 GB at dim 256


def sid_health(model: Quantizer, embedding: np.ndarray | Iterable[np.ndarray], batch_size: int) -> SidHealth:
    """Reconstruction and SID statistics of ``model`` on ``embedding`` [N, D], or on chunks of it (an iterator
    of [n, D] arrays, e.g. items.parquet a record batch at a time): either way only ``HEALTH_CHUNK_ROWS`` rows
    are encoded, decoded and compared at once, so the all-items health of a 10M-item corpus holds its SIDs
    (N x L int32) and one chunk, not the [N, D] matrix and its float64 copies (10.8 GB at 1M items)."""
    chunks = embedding
    if isinstance(embedding, np.ndarray):
        chunks = (embedding[s:s + HEALTH_CHUNK_ROWS] for s in range(0, len(embedding), HEALTH_CHUNK_ROWS))
    codes, sq_sum, rel_sum, rel_n, n = [], 0.0, 0.0, 0, 0
    for x in chunks:
        if len(x) == 0:
            continue
        c = model.encode(x, batch_size)
        x_hat = model.reconstruct(c, batch_size)
        err = x.astype(np.float64) - x_hat
        sq_sum += float((err ** 2).sum())
        rs, rn = relative_error_sum(x, x_hat)
        rel_sum, rel_n, n = rel_sum + rs, rel_n + rn, n + len(x)
        codes.append(c)
    if n == 0:
        return {"items": 0}
    return {"recon_loss": sq_sum / n, "relative_error": rel_sum / rel_n if rel_n else 0.0,
            **codes_summary(np.concatenate(codes), model.codebook_size)}


def health_record(fingerprint: str, corpus_fp: str, corpus: Corpus, cfg: RqvaeConfig, train: JsonObject,
            quantizer: JsonObject, frozen: Quantizer, emb: np.ndarray | None,
            heldout: np.ndarray) -> QuantizerHealth:
    """``health.json``: the same keys for every quantizer (``quantizer`` and ``train`` say what ran). ``emb``:
    every item's embedding, or None to stream them from the corpus; ``heldout``: the hold-out's embeddings."""
    bs = cfg.run.encode_batch_size
    # all items: from ``emb`` when the caller holds them, else items.parquet a record batch at a time
    all_items = sid_health(frozen, emb if emb is not None else (m for _, m in corpus.iter_embeddings()), bs)
    return {
        "fingerprint": fingerprint, "corpus_fingerprint": corpus_fp, "corpus": str(corpus.path),
        **code_record(*STAGE1_ROOMS),  # a run made by other Stage-1 code is not up to date
        "levels": cfg.model.levels, "codebook_size": cfg.model.codebook_size,
        "quantizer": quantizer, "train": train,
        "heldout": sid_health(frozen, heldout, bs),
        "all_items": all_items,
        "warnings": collapse_warnings(all_items, cfg.model.levels, cfg.model.codebook_size),
    }


MIN_UTILISATION = 0.25  # share of a level's codes in use
MIN_DISTINCT = 0.10  # distinct SIDs, as a share of what the items and the codebook allow (min(N, K^L))


def collapse_warnings(health: SidHealth, levels: int, k: int) -> list[str]:
    """Warnings for a codebook that collapsed (few codes in use, few distinct SIDs), printed and recorded
    in health.json: such SIDs carry little of the content whatever the ranker does with them."""
    out = []
    n = health.get("items", 0)
    for level, u in enumerate(health.get("utilisation_per_level", [])):
        if u < MIN_UTILISATION:
            out.append(f"level {level} uses {u:.1%} of its {k} codes (< {MIN_UTILISATION:.0%}): the codebook "
                       "collapsed; check the embeddings' spread, or lower model.codebook_size")
    possible = min(n, k ** levels)
    if n and health.get("unique_sids", possible) < MIN_DISTINCT * possible:
        out.append(f"only {health['unique_sids']:,} distinct SIDs for {n:,} items (< {MIN_DISTINCT:.0%} of "
                   f"{possible:,} possible): most items share their SID with many others")
    for w in out:
        print(f"semid: warning: {w}", file=sys.stderr)
    return out


def launched_rank() -> int:
    """This process's rank when a launcher (Lightning's DDP, torchrun) started it, else 0."""
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)



def flatten_metrics(d: Mapping[str, object], prefix: str = "") -> dict[str, float]:
    """Numbers of a nested dict as ``a/b/c`` keys; lists become ``..._l<i>`` (one per level)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_metrics(v, key + "/"))
        elif isinstance(v, (list, tuple)):
            out.update({f"{key}_l{i}": float(x) for i, x in enumerate(v)})
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out
