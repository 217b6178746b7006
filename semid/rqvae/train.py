"""``semid sids train``: fit the RQ-VAE with Lightning's Trainer, freeze it, summarise its SID health.

A run directory::

    config.yaml        the resolved config (input_dim filled in)
    rqvae.pt           frozen export: weights + config + fingerprints
    health.json        SID health of the frozen model (held-out sample and all items)
    checkpoints/       Lightning checkpoints (last.ckpt), fingerprint included
    logs/              CSV metrics (always);  wandb/  when run.logger = wandb

The directory is built under a temporary name and renamed into place when training succeeds.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger

from datamodules.corpus import Corpus
from datamodules.rqvae_data import RqvaeDataModule
from semid.artifacts import atomic_path, write_json
from semid.config import to_dict
from semid.progress import _enabled as progress_enabled
from semid.rqvae.callbacks import DeadCodeReset, TrainCodeUsage
from semid.rqvae.config import RqvaeConfig, rqvae_fingerprint, cpu_threads
from semid.rqvae.frozen import EXPORT_FILE, FrozenRqvae, export_frozen, load_frozen, with_input_dim
from semid.rqvae.health import codes_summary, relative_error
from semid.rqvae.module import RqvaeModule

HEALTH_FILE = "health.json"


@dataclass
class TrainResult:
    out: Path
    model: FrozenRqvae
    health: dict[str, Any]
    fit_seconds: float


class _FingerprintInCheckpoint(L.Callback):
    """Checkpoints carry the fingerprint, so a resumed or inspected checkpoint names what it was trained on."""

    def __init__(self, fingerprint: str, corpus_fingerprint: str) -> None:
        self.meta = {"fingerprint": fingerprint, "corpus_fingerprint": corpus_fingerprint}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["semid"] = dict(self.meta)


def _loggers(cfg: RqvaeConfig, run_dir: Path, fingerprint: str) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs", version="")]
    if cfg.run.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        # offline unless the user asked for online explicitly (WANDB_MODE) or provided an API key
        os.environ.setdefault("WANDB_MODE", "online" if os.environ.get("WANDB_API_KEY") else "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(WandbLogger(project=cfg.run.wandb_project, save_dir=str(run_dir), name=f"rqvae-{fingerprint}",
                                   offline=os.environ["WANDB_MODE"] == "offline",
                                   config={"fingerprint": fingerprint, **to_dict(cfg)}))
    return loggers


def sid_health(model: FrozenRqvae, embedding: np.ndarray, batch_size: int) -> dict[str, Any]:
    """Reconstruction and SID statistics of ``model`` on ``embedding`` [N, D]."""
    if len(embedding) == 0:
        return {"items": 0}
    codes = model.encode(embedding, batch_size)
    x_hat = model.reconstruct(codes, batch_size)
    err = embedding.astype(np.float64) - x_hat
    return {"recon_loss": float((err ** 2).sum(1).mean()), "relative_error": relative_error(embedding, x_hat),
            **codes_summary(codes, model.codebook_size)}


def train_rqvae(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool = False,
                quiet: bool = False) -> TrainResult:
    with cpu_threads(cfg.run.threads):
        return _train(corpus_path, cfg, out, overwrite=overwrite, quiet=quiet)


def _train(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool, quiet: bool) -> TrainResult:
    corpus = Corpus(corpus_path)
    out = Path(out)
    t = cfg.train
    dm = RqvaeDataModule(corpus, batch_size=t.batch_size, steps=t.steps, first_batch_size=t.kmeans_init_items,
                         holdout_items=t.holdout_items, seed=t.seed, min_day=t.min_day, max_day=t.max_day,
                         eval_batch_size=cfg.run.encode_batch_size)
    dm.setup()
    assert dm.items is not None and dm.sample is not None
    cfg = with_input_dim(cfg, dm.input_dim)
    corpus_fp = corpus.fingerprint
    fingerprint = rqvae_fingerprint(cfg, corpus_fp)
    if not quiet:
        print(f"RQ-VAE {fingerprint}: L={cfg.model.levels} K={cfg.model.codebook_size} d={cfg.model.latent_dim} "
              f"on {len(dm.sample.train_rows):,} impressed items of {corpus.path} "
              f"({len(dm.sample.holdout_rows):,} held out), {t.steps} steps of {t.batch_size}")

    with atomic_path(out, overwrite=overwrite) as run_dir:
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        L.seed_everything(t.seed, workers=True, verbose=False)
        module = RqvaeModule(to_dict(cfg.model), to_dict(cfg.train))
        callbacks: list[L.Callback] = [
            TrainCodeUsage(cfg.run.health_every_n_steps),
            _FingerprintInCheckpoint(fingerprint, corpus_fp),
            ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                            every_n_train_steps=cfg.run.checkpoint_every_n_steps),
        ]
        if t.reset_dead_codes:
            callbacks.insert(0, DeadCodeReset(t.dead_after_steps, t.seed))
        has_holdout = len(dm.sample.holdout_rows) > 0
        with _quiet_lightning():
            trainer = L.Trainer(
                max_steps=t.steps, max_epochs=1, accelerator=cfg.run.accelerator, devices=cfg.run.devices,
                logger=_loggers(cfg, run_dir, fingerprint), callbacks=callbacks,
                log_every_n_steps=cfg.run.log_every_n_steps,
                val_check_interval=min(cfg.run.health_every_n_steps, t.steps) if has_holdout else 1.0,
                limit_val_batches=1.0 if has_holdout else 0, check_val_every_n_epoch=None if has_holdout else 1,
                num_sanity_val_steps=0, enable_model_summary=False, enable_progress_bar=progress_enabled(),
                default_root_dir=run_dir,
            )
        t0 = time.perf_counter()
        with warnings.catch_warnings(), _quiet_lightning():
            # the batches are generated in-process (num_workers=0), so the length warning does not apply
            warnings.filterwarnings("ignore", message=".*IterableDataset. has .__len__. defined")
            warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*deprecated")
            trainer.fit(module, datamodule=dm)
        fit_seconds = time.perf_counter() - t0
        resets = [int(n) for n in module.dead_code_resets.cpu()]
        export_frozen(run_dir / EXPORT_FILE, module.rqvae.cpu(), cfg, corpus_fp, resets)
        frozen = load_frozen(run_dir / EXPORT_FILE)
        emb = dm.items.embedding
        health = {
            "fingerprint": fingerprint, "corpus_fingerprint": corpus_fp, "corpus": str(corpus.path),
            "levels": cfg.model.levels, "codebook_size": cfg.model.codebook_size,
            "train": {"steps": t.steps, "batch_size": t.batch_size, "fit_seconds": round(fit_seconds, 2),
                      "impressed_items": int(len(dm.sample.train_rows)),
                      "dead_code_resets_per_level": resets,
                      "final_metrics": _final_metrics(trainer)},
            "heldout": sid_health(frozen, emb[dm.sample.holdout_rows], cfg.run.encode_batch_size),
            "all_items": sid_health(frozen, emb, cfg.run.encode_batch_size),
        }
        write_json(run_dir / HEALTH_FILE, health)
        final = _flatten({"final": {"heldout": health["heldout"], "all_items": health["all_items"]}})
        for lg in trainer.loggers:
            lg.log_metrics(final, step=trainer.global_step)
            lg.finalize("success")
    frozen.path = out / EXPORT_FILE
    return TrainResult(out, frozen, health, fit_seconds)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's INFO banners (GPU available, seed set, ...) are noise for a CLI user; restored afterwards."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch.utilities.rank_zero",
                                               "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before):
            lg.setLevel(level)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numbers of a nested dict as ``a/b/c`` keys; lists become ``..._l<i>`` (one per level)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (list, tuple)):
            out.update({f"{key}_l{i}": float(x) for i, x in enumerate(v)})
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _final_metrics(trainer: L.Trainer) -> dict[str, float]:
    keep = ("train/loss", "train/recon", "train/rel_error")
    return {k: round(float(v), 6) for k, v in trainer.callback_metrics.items() if k in keep
            and isinstance(v, torch.Tensor)}
