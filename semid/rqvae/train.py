"""``semid sids train``: fit the quantizer the config names, freeze it, summarise its SID health.

``quantizer: rqvae`` trains the RQ-VAE with Lightning's Trainer; ``quantizer: rqkmeans`` fits residual
k-means (``semid.rqvae.rqkmeans``) on an impression-weighted item sample. Both write the same run directory::

    config.yaml        the resolved config (input_dim and, for residual k-means, the k-means backend filled in)
    rqvae.pt           frozen export: weights + config + fingerprints (the name is the same for both kinds)
    health.json        SID health of the frozen model (held-out sample and all items); ``quantizer`` says
                       which kind ran and, for residual k-means, which k-means (faiss or semid's own)
    checkpoints/       RQ-VAE only: Lightning checkpoints (last.ckpt, every ``run.checkpoint_every_n_steps``)
    logs/              CSV metrics (always);  wandb/  when run.logger = wandb

Residual k-means takes seconds to minutes and has no checkpoints: an interrupted fit starts over in
``<out>.partial/`` and, being deterministic, ends with the same bits.

The directory is built in ``<out>.partial/`` (see ``semid.rqvae.partial``; its ``partial.json`` names
the run's fingerprint, config + corpus) and renamed to ``<out>`` once training and export are complete,
so ``<out>`` never exists half-written. After a crash or ``kill -9`` the same command resumes from
``<out>.partial/checkpoints/last.ckpt`` and ends with the same weights and health as an uninterrupted
run: the checkpoint carries the model, optimizer, schedule, loop position and every callback's state
(dead-code ages and their generator, train-time code counts), and the batch stream continues at the
restored step. An interrupted run of another config or corpus is refused unless ``overwrite`` (which
then discards it); ``resume=False`` always starts over.

Test hook: ``SEMID_TEST_KILL_AT_STEP=N`` makes the process ``SIGKILL`` itself at the end of step N
(before that step's checkpoint), so tests can interrupt a run at a known point without timing races.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from semid.datamodules import Corpus, open_corpus
from semid.rqvae.data import RqvaeDataModule
from semid.core.artifacts import atomic_path, publish, remove_stale_temps, write_json
from semid.core.config import to_dict
from semid.core.csv_log import continue_csv_log, csv_rows
from semid.core.errors import SemidError
from semid.core.dist_env import kept_dist_env
from semid.core.fingerprint import code_fingerprint, code_record
from semid.core.loggers import build_loggers
from semid.core.kill_hook import kill_hooks
from semid.core.progress import enabled as progress_enabled
from semid.core.quiet import quiet_libraries
from semid.core.records import JsonObject
from semid.rqvae.records import QuantizerHealth, SidHealth
from semid.rqvae.callbacks import CodebookAgreement, DeadCodeReset, TrainCodeUsage
from semid.rqvae.config import RqvaeConfig, cpu_threads, kmeans_backend, rqvae_fingerprint
from semid.rqvae.data import impression_counts, impression_draws, split_items
from semid.rqvae.frozen import EXPORT_FILE, FrozenRqvae, export_frozen, load_frozen, with_input_dim
from semid.rqvae.health import code_counts, codes_summary, relative_error_sum
from semid.rqvae.module import RqvaeModule
from semid.rqvae.partial import MARKER, claim_partial, partial_path
from semid.rqvae.rqkmeans import backend_detail, fit_rqkmeans

HEALTH_FILE = "health.json"


@dataclass
class TrainResult:
    out: Path
    model: FrozenRqvae
    health: QuantizerHealth
    fit_seconds: float  # over every attempt of the run
    resumed_from_step: int | None = None  # the checkpoint an interrupted run continued from
    up_to_date: bool = False  # nothing to do: ``out`` already held this run, complete


# the code a quantizer run depends on; not part of the model fingerprint itself, which load_frozen recomputes
# from the config (an upgrade must not make existing exports unloadable)
STAGE1_ROOMS = ("datamodules", "rqvae")


def _finished_run(out: Path, fingerprint: str) -> TrainResult | None:
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


class _RunRecord(L.Callback):
    """What a checkpoint carries besides Lightning's own state: the run's fingerprint (a resumed or
    inspected checkpoint names what it was trained on), the training time so far, and how many rows the
    CSV log had, so that a resumed run continues the log instead of replacing it."""

    def __init__(self, fingerprint: str, corpus_fingerprint: str, csv_log: Path) -> None:
        self.meta = {"fingerprint": fingerprint, "corpus_fingerprint": corpus_fingerprint}
        self.csv_log = csv_log
        self.seconds_before = 0.0  # of the attempts before this one
        self._started = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, object]) -> None:
        for lg in trainer.loggers:
            if isinstance(lg, CSVLogger):
                lg.save()  # the rows logged so far are on disk with the checkpoint
        checkpoint["semid"] = {**self.meta, "csv_rows": csv_rows(self.csv_log),
                               "fit_seconds": self.seconds_before + time.perf_counter() - self._started}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self.seconds_before = float(checkpoint.get("semid", {}).get("fit_seconds", 0.0))


class _AtomicCheckpointIO(TorchCheckpointIO):
    """A checkpoint is written to a temporary sibling and renamed, so a kill mid-save leaves the previous one
    (Lightning's own transaction stages the file in the system temp dir, possibly another file system, and
    copies it over)."""

    def save_checkpoint(self, checkpoint: dict[str, object], path: str | Path,
                        storage_options: object = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def _loggers(cfg: RqvaeConfig, run_dir: Path, fingerprint: str, out: Path) -> list[Logger]:
    """CSV always; W&B by the one policy of every stage (semid.core.loggers), named by the final run directory."""
    kinds = ["csv"] + (["wandb"] if cfg.run.logger == "wandb" else [])
    return build_loggers(kinds, run_dir, run_name=f"rqvae-{fingerprint}", project=cfg.run.wandb_project, group=None,
                         config={"fingerprint": fingerprint, **to_dict(cfg)}, csv_name="logs", run_key=out)


HEALTH_CHUNK_ROWS = 65536  # items per pass of the health statistics: float64 temporaries of ~0.5 GB at dim 256


def sid_health(model: FrozenRqvae, embedding: np.ndarray | Iterable[np.ndarray], batch_size: int) -> SidHealth:
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


def train_quantizer(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool = False,
                    resume: bool = True, quiet: bool = False) -> TrainResult:
    """Train the quantizer ``cfg.quantizer`` names (rqvae | rqkmeans) into ``<out>.partial/`` and rename it
    to ``out``; an interrupted RQ-VAE run of the same config and corpus is resumed unless ``resume=False``.
    A complete run of the same fingerprint at ``out`` is returned as it is (``up_to_date``)."""
    with cpu_threads(cfg.run.threads), kept_dist_env():
        if cfg.quantizer == "rqkmeans":
            return _train_rqkmeans(corpus_path, cfg, out, overwrite=overwrite, resume=resume, quiet=quiet)
        return _train(corpus_path, cfg, out, overwrite=overwrite, resume=resume, quiet=quiet)


# the historical name: it always trained what the config names, and callers (experiment, benchmarks) use it
train_rqvae = train_quantizer


def _health(fingerprint: str, corpus_fp: str, corpus: Corpus, cfg: RqvaeConfig, train: JsonObject,
            quantizer: JsonObject, frozen: FrozenRqvae, emb: np.ndarray | None,
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


def _train(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool, resume: bool,
           quiet: bool) -> TrainResult:
    corpus = open_corpus(corpus_path)  # the data gate, before <out>.partial/ exists
    out = Path(out)
    t = cfg.train
    dm = RqvaeDataModule(corpus, batch_size=t.batch_size, steps=t.steps, first_batch_size=t.kmeans_init_items,
                         holdout_items=t.holdout_items, seed=t.seed, min_day=t.min_day, max_day=t.max_day,
                         eval_batch_size=cfg.run.encode_batch_size, all_embeddings=False,
                         cooccur=cfg.cooccur if cfg.quantizer == "rqvae_cooc" else None)
    dm.setup()
    assert dm.items is not None and dm.sample is not None
    cfg = with_input_dim(cfg, dm.input_dim)
    corpus_fp = corpus.fingerprint
    fingerprint = rqvae_fingerprint(cfg, corpus_fp)
    if out.exists() and not overwrite:
        done = _finished_run(out, fingerprint)
        if done is not None:  # the same command ran to completion (e.g. killed just after the rename)
            return done
        raise SemidError(f"{out} already exists (pass --overwrite to replace it, or choose another --out)")
    if not quiet:
        print(f"RQ-VAE {fingerprint}: L={cfg.model.levels} K={cfg.model.codebook_size} d={cfg.model.latent_dim} "
              f"on {len(dm.sample.train_rows):,} impressed items of {corpus.path} "
              f"({len(dm.sample.holdout_rows):,} held out), {t.steps} steps of {t.batch_size}")

    # a DDP process that Lightning started re-runs this command: rank 0 owns the work directory
    lead = launched_rank() == 0
    info = {"corpus_fingerprint": corpus_fp, "corpus": str(corpus.path)}
    claim = claim_partial(out, fingerprint, info, keep=resume, discard_other=overwrite or not resume,
                          command="semid sids train") if lead else contextlib.nullcontext()
    with claim as part:
        run_dir = partial_path(out)
        last = run_dir / "checkpoints" / "last.ckpt"
        if part is not None and part.resumed and not last.exists():
            part.clear()  # interrupted before its first checkpoint: nothing to resume
        start, csv_rows = _resume_point(last, fingerprint) if last.exists() else (None, 0)
        if start is not None and not quiet and lead:
            print(f"resuming {run_dir} from step {start} of {t.steps} (checkpoint {last.name})")
        if lead:
            remove_stale_temps(out)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        L.seed_everything(t.seed, workers=True, verbose=False)
        module = RqvaeModule(to_dict(cfg.model), to_dict(cfg.train),
                             to_dict(cfg.cooccur) if cfg.quantizer == "rqvae_cooc" else None)
        record = _RunRecord(fingerprint, corpus_fp, run_dir / "logs" / "metrics.csv")
        agreement = CodebookAgreement()
        callbacks: list[L.Callback] = [
            TrainCodeUsage(cfg.run.health_every_n_steps),
            record,
            agreement,
            ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                            every_n_train_steps=cfg.run.checkpoint_every_n_steps, enable_version_counter=False),
        ]
        if t.reset_dead_codes:
            callbacks.insert(0, DeadCodeReset(t.dead_after_steps, t.seed))
        callbacks += kill_hooks()  # test hook (semid.core.kill_hook), nothing unless SEMID_TEST_KILL_AT_STEP
        loggers = _loggers(cfg, run_dir, fingerprint, out)
        if lead and start is not None:
            continue_csv_log(loggers[0], csv_rows)  # type: ignore[arg-type]
        has_holdout = len(dm.sample.holdout_rows) > 0
        with quiet_libraries():
            trainer = L.Trainer(
                max_steps=t.steps, max_epochs=1, accelerator=cfg.run.accelerator, devices=cfg.run.devices,
                logger=loggers, callbacks=callbacks, plugins=[_AtomicCheckpointIO()],
                log_every_n_steps=cfg.run.log_every_n_steps,
                val_check_interval=min(cfg.run.health_every_n_steps, t.steps) if has_holdout else 1.0,
                limit_val_batches=1.0 if has_holdout else 0, check_val_every_n_epoch=None if has_holdout else 1,
                num_sanity_val_steps=0, enable_model_summary=False, enable_progress_bar=progress_enabled(),
                default_root_dir=run_dir,
            )
        t0 = time.perf_counter()
        with warnings.catch_warnings(), quiet_libraries():
            # the batch stream continues at the restored step by itself (RqvaeDataModule.train_dataloader)
            warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch")
            # a rerun may checkpoint at another interval (run.* settings are not the run's fingerprint): the
            # checkpoint callback's own state (file paths) is not needed to resume
            warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided")
            trainer.fit(module, datamodule=dm, ckpt_path=str(last) if start is not None else None)
        fit_seconds = record.seconds_before + time.perf_counter() - t0
        resets = [int(n) for n in module.dead_code_resets.cpu()]
        if lead:
            export_frozen(run_dir / EXPORT_FILE, module.rqvae.cpu(), cfg, corpus_fp, resets)
            frozen = load_frozen(run_dir / EXPORT_FILE)
        else:  # writes nothing: rank 0 is writing the same directory
            frozen = FrozenRqvae(copy.deepcopy(module.rqvae).cpu().double().eval().requires_grad_(False), cfg,
                                 fingerprint, corpus_fp, resets)
        train = {"steps": t.steps, "batch_size": t.batch_size, "fit_seconds": round(fit_seconds, 2),
                 "impressed_items": int(len(dm.sample.train_rows)), "dead_code_resets_per_level": resets,
                 "final_metrics": module.final_train_metrics(), "distributed": agreement.result}
        kind: JsonObject = {"kind": cfg.quantizer}
        if dm.pairs is not None:  # the behaviour-aware RQ-VAE: which days' pairs shaped it
            kind.update(cooccur_pairs=len(dm.pairs), cooccur_days=list(dm.pairs.days), cooccur_weight=cfg.cooccur.weight)
        health = _health(fingerprint, corpus_fp, corpus, cfg, train, kind, frozen, None,
                         dm.holdout_embedding)
        if not lead:
            return TrainResult(out, frozen, health, fit_seconds, start)
        write_json(run_dir / HEALTH_FILE, health)
        final = _flatten({"final": {"heldout": health["heldout"], "all_items": health["all_items"]}})
        for lg in trainer.loggers:
            lg.log_metrics(final, step=trainer.global_step)
            lg.finalize("success")
        publish(run_dir, out)
        (out / MARKER).unlink(missing_ok=True)
    frozen.path = out / EXPORT_FILE
    return TrainResult(out, frozen, health, fit_seconds, start)


def with_backend(cfg: RqvaeConfig) -> RqvaeConfig:
    """The config with ``rqkmeans.backend`` resolved to the k-means that runs here (faiss or torch)."""
    return replace(cfg, rqkmeans=replace(cfg.rqkmeans, backend=kmeans_backend(cfg.rqkmeans.backend)))


def _train_rqkmeans(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool, resume: bool,
                    quiet: bool) -> TrainResult:
    """Residual k-means on an impression-weighted sample of the impressed items, then the same export,
    health and logs as the RQ-VAE. One process: ``run.devices`` does not apply."""
    if launched_rank() != 0:
        raise SemidError("residual k-means (quantizer: rqkmeans) trains in one process; run `semid sids train` "
                         "without a launcher (torchrun, fabric)")
    corpus = open_corpus(corpus_path)  # the data gate, before <out>.partial/ exists
    out = Path(out)
    t, rk = cfg.train, cfg.rqkmeans
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    if len(items) == 0:
        raise SemidError(f"{corpus.items_path}: no items (the corpus needs items to train on)")
    sample = split_items(impression_counts(corpus, items, t.min_day, t.max_day), t.holdout_items, t.seed)
    cfg = with_backend(with_input_dim(cfg, items.dim))
    corpus_fp = corpus.fingerprint
    fingerprint = rqvae_fingerprint(cfg, corpus_fp)
    if out.exists() and not overwrite:
        done = _finished_run(out, fingerprint)
        if done is not None:
            return done
        raise SemidError(f"{out} already exists (pass --overwrite to replace it, or choose another --out)")
    rows, times = impression_draws(sample, rk.fit_items, t.seed)
    k = cfg.model.codebook_size
    if len(rows) < k:
        raise SemidError(f"residual k-means: {rk.fit_items:,} impression-weighted draws gave {len(rows):,} distinct "
                         f"items, fewer than K={k} codes (raise rqkmeans.fit_items or lower model.codebook_size)")
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
        t0 = time.perf_counter()
        fit = fit_rqkmeans(x, times.astype(np.float64), cfg.model.levels, k, rk, t.seed)
        fit_seconds = time.perf_counter() - t0
        resets = [0] * cfg.model.levels  # no gradient steps, nothing to reset
        export_frozen(run_dir / EXPORT_FILE, fit.model(), cfg, corpus_fp, resets)
        frozen = load_frozen(run_dir / EXPORT_FILE)
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
        health = _health(fingerprint, corpus_fp, corpus, cfg, train, quantizer, frozen, emb, emb[sample.holdout_rows])
        write_json(run_dir / HEALTH_FILE, health)
        for lg in _loggers(cfg, run_dir, fingerprint, out):
            for lv in fit.levels:
                lg.log_metrics({f"fit/{k_}": float(v) for k_, v in lv.items() if isinstance(v, (int, float))},
                               step=lv["level"])
            lg.log_metrics(_flatten({"final": {"heldout": health["heldout"], "all_items": health["all_items"]}}),
                           step=cfg.model.levels)
            lg.finalize("success")
        publish(run_dir, out)
        (out / MARKER).unlink(missing_ok=True)
    frozen.path = out / EXPORT_FILE
    return TrainResult(out, frozen, health, fit_seconds)


def kmeans_detail(backend: str, steps: int) -> str:
    """What ``rqkmeans.backend`` runs here, with its version (e.g. "faiss 1.15.1 (faiss.Kmeans per level)")."""
    return backend_detail(kmeans_backend(backend), steps)


def launched_rank() -> int:
    """This process's rank when a launcher (Lightning's DDP, torchrun) started it, else 0."""
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


def _resume_point(last: Path, fingerprint: str) -> tuple[int, int]:
    """(step, CSV log rows) of the checkpoint an interrupted run left, after checking it is this run's."""
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        found, step = ckpt.get("semid", {}).get("fingerprint"), int(ckpt["global_step"])
    except Exception as e:  # torch raises several types for a damaged file
        raise SemidError(f"{last}: not a readable checkpoint ({str(e).splitlines()[0][:120]}); pass --no-resume "
                         "to start over") from None
    if found != fingerprint:
        raise SemidError(f"{last} belongs to another run (fingerprint {found}, this run {fingerprint}); pass "
                         "--no-resume to start over, or choose another --out")
    return step, int(ckpt["semid"].get("csv_rows", 0))


def _flatten(d: Mapping[str, object], prefix: str = "") -> dict[str, float]:
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
