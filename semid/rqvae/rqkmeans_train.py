"""Residual k-means as Stage 1's trainer (``quantizer: rqkmeans``): on arrays in memory (``fit_rqkmeans_arrays``,
what ``semid.rqvae.fit_quantizer`` runs) and on a corpus (``train_rqkmeans``, what ``semid sids train`` runs: the
same steps on the corpus's embeddings and impression counts, plus the run directory).

The steps: hold out ``train.holdout_items`` items, draw ``rqkmeans.fit_items`` impressed items in proportion to
their impressions (the RQ-VAE's training distribution), fit one k-means per level (``semid.rqvae.rqkmeans``).
Deterministic, seconds to minutes, no checkpoints: an interrupted run starts over in ``<out>.partial/`` and ends
with the same bits. A level whose centroids are not finite (embeddings of huge magnitude) is a
``TrainingDiverged`` naming the level::

    >>> import numpy as np
    >>> from semid.rqvae.config import RqvaeConfig
    >>> cfg = with_backend(RqvaeConfig(quantizer="rqkmeans", levels=2, codebook_size=4, fit_items=400,
    ...                                holdout_items=0, backend="torch"))
    >>> emb = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    >>> run = fit_rqkmeans_arrays(emb, np.ones(100), cfg)
    >>> tuple(run.fit.codebooks.shape)
    (2, 4, 3)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from semid.core.artifacts import publish, remove_stale_temps, write_json
from semid.core.config import to_dict
from semid.core.errors import SemidError
from semid.core.records import JsonObject
from semid.datamodules import open_corpus
from semid.rqvae.callbacks import CodebookAgreement
from semid.rqvae.config import RqvaeConfig, kmeans_backend, rqvae_fingerprint
from semid.rqvae.data import RqvaeSample, impression_counts, impression_draws, split_items
from semid.rqvae.finite import TrainingDiverged, diverged_message
from semid.rqvae.frozen import EXPORT_FILE, Quantizer, with_input_dim
from semid.rqvae.health import code_counts
from semid.rqvae.partial import MARKER, claim_partial
from semid.rqvae.rqkmeans import LevelNotFinite, RqkmeansFit, backend_detail, fit_rqkmeans
from semid.rqvae.runs import (HEALTH_FILE, TrainResult, finished_run, flatten_metrics, health_record, launched_rank,
                              run_loggers)


@dataclass
class RqkmeansRun:
    """A residual k-means fit and the sample it was fitted on."""

    fit: RqkmeansFit
    sample: RqvaeSample  # training rows (impressed, not held out) and the hold-out
    rows: np.ndarray  # int64 [n] distinct item rows drawn
    times: np.ndarray  # int64 [n] how often each was drawn
    fit_seconds: float


def fit_rqkmeans_arrays(embedding: np.ndarray, counts: np.ndarray, cfg: RqvaeConfig) -> RqkmeansRun:
    """Residual k-means of items ``embedding`` [N, D] with impressions ``counts`` [N] (``cfg``: input_dim and
    backend resolved, ``with_backend``)."""
    sample, rows, times = rqkmeans_sample(counts, cfg)
    fit, seconds = fit_rqkmeans_sample(embedding[rows], times, cfg)
    return RqkmeansRun(fit, sample, rows, times, seconds)


def rqkmeans_sample(counts: np.ndarray, cfg: RqvaeConfig) -> tuple[RqvaeSample, np.ndarray, np.ndarray]:
    """(sample, distinct item rows drawn [n], times each was drawn [n]) of items with impressions ``counts``."""
    t, rk = cfg.train, cfg.rqkmeans
    sample = split_items(counts, t.holdout_items, t.seed)
    rows, times = impression_draws(sample, rk.fit_items, t.seed)
    k = cfg.model.codebook_size
    if len(rows) < k:
        raise SemidError(f"residual k-means: {rk.fit_items:,} impression-weighted draws gave {len(rows):,} distinct "
                         f"items, fewer than K={k} codes (raise rqkmeans.fit_items or lower model.codebook_size)")
    return sample, rows, times


def fit_rqkmeans_sample(x: np.ndarray, times: np.ndarray, cfg: RqvaeConfig) -> tuple[RqkmeansFit, float]:
    """(fit, seconds) of residual k-means on distinct items ``x`` [n, D] drawn ``times`` [n] times; a level that
    is not finite raises ``TrainingDiverged``."""
    t0 = time.perf_counter()

    def diverged(level: int) -> TrainingDiverged:
        return TrainingDiverged(diverged_message("residual k-means", f"level {level} of {cfg.model.levels}",
                                                 "its centroids or residuals are not finite",
                                                 float(np.abs(x).max()) if len(x) else float("nan"),
                                                 fix="drop the items of extreme magnitude"))

    try:
        fit = fit_rqkmeans(x, times.astype(np.float64), cfg.model.levels, cfg.model.codebook_size, cfg.rqkmeans,
                           cfg.train.seed)
    except LevelNotFinite as e:
        raise diverged(e.level) from None
    seconds = time.perf_counter() - t0
    for level in range(cfg.model.levels):
        finite = bool(np.isfinite(fit.codebooks[level].numpy()).all() and np.isfinite(fit.prices[level].numpy()).all()
                      and np.isfinite(fit.levels[level]["residual_sq"]))
        # float32 is what the export holds: a centroid beyond its range would be inf there
        if not finite or float(fit.codebooks[level].abs().max()) > np.finfo(np.float32).max:
            raise diverged(level)
    return fit, seconds


def with_backend(cfg: RqvaeConfig) -> RqvaeConfig:
    """The config with ``rqkmeans.backend`` resolved to the k-means that runs here (faiss or torch)."""
    return replace(cfg, rqkmeans=replace(cfg.rqkmeans, backend=kmeans_backend(cfg.rqkmeans.backend)))


def train_rqkmeans(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool, resume: bool,
                    quiet: bool) -> TrainResult:
    """``semid sids train`` for ``quantizer: rqkmeans``: residual k-means on an impression-weighted sample of the
    corpus's impressed items (``fit_rqkmeans_arrays``'s steps), then the same export, health and logs as the
    RQ-VAE, published as ``out``. One process: ``run.devices`` does not apply."""
    if launched_rank() != 0:
        raise SemidError("residual k-means (quantizer: rqkmeans) trains in one process; run `semid sids train` "
                         "without a launcher (torchrun, fabric)")
    corpus = open_corpus(corpus_path)  # the data gate, before <out>.partial/ exists
    out = Path(out)
    t, rk = cfg.train, cfg.rqkmeans
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    if len(items) == 0:
        raise SemidError(f"{corpus.items_path}: no items (the corpus needs items to train on)")
    assert items.embedding is not None
    sample, rows, times = rqkmeans_sample(impression_counts(corpus, items, t.min_day, t.max_day), cfg)
    cfg = with_backend(with_input_dim(cfg, items.dim))
    corpus_fp = corpus.fingerprint
    fingerprint = rqvae_fingerprint(cfg, corpus_fp)
    if out.exists() and not overwrite:
        done = finished_run(out, fingerprint)
        if done is not None:
            return done
        raise SemidError(f"{out} already exists (pass --overwrite to replace it, or choose another --out)")
    k = cfg.model.codebook_size
    balance = "balanced" if rk.balanced else "plain"
    if not quiet:
        print(f"residual k-means {fingerprint}: L={cfg.model.levels} K={k} on {len(rows):,} distinct items of "
              f"{rk.fit_items:,} impression-weighted draws from {len(sample.train_rows):,} impressed items of "
              f"{corpus.path} ({len(sample.holdout_rows):,} held out), {rk.iters} iterations per level, {balance}; "
              f"k-means: {kmeans_detail(rk.backend, rk.dim_steps)}")
    info = {"corpus_fingerprint": corpus_fp, "corpus": str(corpus.path)}
    with claim_partial(out, fingerprint, info, keep=False, discard_other=overwrite or not resume,
                       command="semid sids train") as part:
        run_dir = part.path  # cleared: without checkpoints there is nothing to resume, and the fit is deterministic
        remove_stale_temps(out)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        x = items.embedding[rows]
        fit, fit_seconds = fit_rqkmeans_sample(x, times, cfg)
        resets = [0] * cfg.model.levels  # no gradient steps, nothing to reset
        frozen = Quantizer.from_trained(fit.model(), cfg, corpus_fp, resets)
        frozen.save(run_dir / EXPORT_FILE)
        emb = items.embedding
        fit_codes = frozen.encode(x, cfg.run.encode_batch_size)
        x_hat = frozen.reconstruct(fit_codes, cfg.run.encode_batch_size)
        w = times.astype(np.float64)  # the fit's own weighting: items by how often they were drawn
        err = x.astype(np.float64) - x_hat
        sq = (err ** 2).sum(1)
        rel = np.linalg.norm(err, axis=1) / np.maximum(np.linalg.norm(x.astype(np.float64), axis=1), 1e-12)
        final = {"train/loss": round(float((sq * w).sum() / w.sum()), 6),
                 "train/recon": round(float((sq * w).sum() / w.sum()), 6),
                 "train/rel_error": round(float((rel * w).sum() / w.sum()), 6)}
        train = {"steps": rk.iters, "batch_size": int(len(rows)), "fit_seconds": round(fit_seconds, 2),
                 "impressed_items": int(len(sample.train_rows)), "dead_code_resets_per_level": resets,
                 "final_metrics": final, "fit_draws": rk.fit_items, "fit_items": int(len(rows)),
                 "distributed": CodebookAgreement().result}  # one process
        quantizer: JsonObject = {"kind": "rqkmeans", "backend": fit.backend, "kmeans": fit.backend_detail,
                                 "balanced": rk.balanced, "levels": fit.levels}
        if rk.balanced:
            all_sizes = code_counts(frozen.encode(emb, cfg.run.encode_batch_size), k).max(axis=1)
            quantizer["balance"] = {
                "method": "capacity-constrained greedy Lloyd iterations, then code prices from damped "
                          "best-response sweeps on the capped assignment's dual (semid.rqvae.rqkmeans)",
                "cap": fit.levels[0]["cap"], "slack": rk.balance_slack,
                "largest_code_fit_items": [lv["largest_code"] for lv in fit.levels],
                "cap_all_items": int(np.ceil((1 + rk.balance_slack) * len(emb) / k)),
                "largest_code_all_items": [int(v) for v in all_sizes]}
        health = health_record(fingerprint, corpus_fp, corpus, cfg, train, quantizer, frozen, emb,
                               emb[sample.holdout_rows])
        write_json(run_dir / HEALTH_FILE, health)
        for lg in run_loggers(cfg, run_dir, fingerprint, out):
            for lv in fit.levels:
                lg.log_metrics({f"fit/{k_}": float(v) for k_, v in lv.items() if isinstance(v, (int, float))},
                               step=lv["level"])
            lg.log_metrics(flatten_metrics({"final": {"heldout": health["heldout"], "all_items": health["all_items"]}}),
                           step=cfg.model.levels)
            lg.finalize("success")
        publish(run_dir, out)
        (out / MARKER).unlink(missing_ok=True)
    frozen.path = out / EXPORT_FILE
    return TrainResult(out, frozen, health, fit_seconds)


def kmeans_detail(backend: str, steps: int) -> str:
    """What ``rqkmeans.backend`` runs here, with its version (e.g. "faiss 1.15.1 (faiss.Kmeans per level)")."""
    return backend_detail(kmeans_backend(backend), steps)


