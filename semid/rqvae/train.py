"""``semid sids train``: fit the quantizer the config names, freeze it, summarise its SID health.

``quantizer: rqvae`` trains the RQ-VAE with Lightning's Trainer (``semid.rqvae.fit.fit_rqvae``, the trainer
``fit_quantizer`` runs on arrays in memory); ``quantizer: rqkmeans`` fits residual k-means
(``semid.rqvae.rqkmeans_train``) on an impression-weighted item sample. Both write the same run directory::

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
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from semid.core.artifacts import atomic_path, publish, remove_stale_temps, write_json
from semid.core.config import to_dict
from semid.core.csv_log import continue_csv_log, csv_rows
from semid.core.dist_env import kept_dist_env
from semid.core.errors import SemidError
from semid.core.fingerprint import code_fingerprint  # noqa: F401  (tests compare health.json's with it)
from semid.core.kill_hook import kill_hooks
from semid.core.records import JsonObject
from semid.datamodules import open_corpus
from semid.rqvae.config import RqvaeConfig, cpu_threads, rqvae_fingerprint
from semid.rqvae.data import RqvaeDataModule
from semid.rqvae.finite import TrainingDiverged
from semid.rqvae.fit import data_module_args, fit_rqvae
from semid.rqvae.frozen import EXPORT_FILE, STAGE1_ROOMS, Quantizer, with_input_dim  # noqa: F401
from semid.rqvae.module import RqvaeModule
from semid.rqvae.partial import MARKER, claim_partial, partial_path
from semid.rqvae.rqkmeans_train import kmeans_detail, train_rqkmeans, with_backend  # noqa: F401  (their old home)
# a run directory's helpers, shared with residual k-means; imported from here by older callers
from semid.rqvae.runs import (HEALTH_FILE, TrainResult, collapse_warnings, finished_run,  # noqa: F401
                              flatten_metrics, health_record, launched_rank, run_loggers, sid_health)

_finished_run = finished_run  # the name tests and older callers use


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


def train_quantizer(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool = False,
                    resume: bool = True, quiet: bool = False) -> TrainResult:
    """Train the quantizer ``cfg.quantizer`` names (rqvae | rqkmeans) on the corpus at ``corpus_path`` into
    ``<out>.partial/`` and rename it to ``out``; an interrupted RQ-VAE run of the same config and corpus is
    resumed unless ``resume=False``. A complete run of the same fingerprint at ``out`` is returned as it is
    (``up_to_date``). A diverged run (``TrainingDiverged``, a ``SemidError``) leaves neither ``out`` nor
    ``<out>.partial/``. The training itself is ``semid.rqvae.fit``'s, which ``fit_quantizer`` runs on arrays.

    Example (what ``semid sids train --corpus c --config tiny --out runs/rqvae-tiny`` runs)::

        r = train_quantizer("c", load_rqvae_config("tiny"), "runs/rqvae-tiny")
        r.model.encode(embeddings)   # SIDs [N, L]
    """
    with cpu_threads(cfg.run.threads), kept_dist_env():
        try:
            if cfg.quantizer == "rqkmeans":
                return train_rqkmeans(corpus_path, cfg, out, overwrite=overwrite, resume=resume, quiet=quiet)
            return _train(corpus_path, cfg, out, overwrite=overwrite, resume=resume, quiet=quiet)
        except TrainingDiverged:
            # its checkpoints lead to the same divergence: nothing is kept, <out> was never written
            if launched_rank() == 0:
                shutil.rmtree(partial_path(out), ignore_errors=True)
            raise


# the historical name: it always trained what the config names, and callers (experiment, benchmarks) use it
train_rqvae = train_quantizer


def _train(corpus_path: str | Path, cfg: RqvaeConfig, out: str | Path, *, overwrite: bool, resume: bool,
           quiet: bool) -> TrainResult:
    corpus = open_corpus(corpus_path)  # the data gate, before <out>.partial/ exists
    out = Path(out)
    t = cfg.train
    # the in-memory path's data module settings (semid.rqvae.fit), on the corpus's files
    dm = RqvaeDataModule(corpus, **data_module_args(cfg), min_day=t.min_day, max_day=t.max_day, all_embeddings=False,
                         cooccur=cfg.cooccur if cfg.quantizer == "rqvae_cooc" else None)
    dm.setup()
    assert dm.items is not None and dm.sample is not None
    cfg = with_input_dim(cfg, dm.input_dim)
    corpus_fp = corpus.fingerprint
    fingerprint = rqvae_fingerprint(cfg, corpus_fp)
    if out.exists() and not overwrite:
        done = finished_run(out, fingerprint)
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
        record = _RunRecord(fingerprint, corpus_fp, run_dir / "logs" / "metrics.csv")
        cooccur = to_dict(cfg.cooccur) if cfg.quantizer == "rqvae_cooc" else None
        callbacks: list[L.Callback] = [
            record,
            ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                            every_n_train_steps=cfg.run.checkpoint_every_n_steps, enable_version_counter=False),
        ]
        callbacks += kill_hooks()  # test hook (semid.core.kill_hook), nothing unless SEMID_TEST_KILL_AT_STEP
        loggers = run_loggers(cfg, run_dir, fingerprint, out)
        if lead and start is not None:
            continue_csv_log(loggers[0], csv_rows)  # type: ignore[arg-type]
        # the in-memory trainer (semid.rqvae.fit), with the run directory's checkpoints, loggers and resume point
        fit = fit_rqvae(cfg, dm, root_dir=run_dir, loggers=loggers, callbacks=callbacks,
                        plugins=[_AtomicCheckpointIO()], ckpt_path=str(last) if start is not None else None,
                        make_module=lambda: RqvaeModule(to_dict(cfg.model), to_dict(cfg.train), cooccur))
        module, trainer = fit.module, fit.trainer
        fit_seconds = record.seconds_before + fit.fit_seconds
        resets = fit.dead_code_resets
        frozen = Quantizer.from_trained(module.rqvae, cfg, corpus_fp, resets)
        if lead:  # another rank writes nothing: rank 0 is writing the same directory
            frozen.save(run_dir / EXPORT_FILE)
        train = {"steps": t.steps, "batch_size": t.batch_size, "fit_seconds": round(fit_seconds, 2),
                 "impressed_items": int(len(dm.sample.train_rows)), "dead_code_resets_per_level": resets,
                 "final_metrics": module.final_train_metrics(), "distributed": fit.agreement}
        kind: JsonObject = {"kind": cfg.quantizer}
        if dm.pairs is not None:  # the behaviour-aware RQ-VAE: which days' pairs shaped it
            kind.update(cooccur_pairs=len(dm.pairs), cooccur_days=list(dm.pairs.days), cooccur_weight=cfg.cooccur.weight)
        health = health_record(fingerprint, corpus_fp, corpus, cfg, train, kind, frozen, None, dm.holdout_embedding)
        if not lead:
            return TrainResult(out, frozen, health, fit_seconds, start)
        write_json(run_dir / HEALTH_FILE, health)
        final = flatten_metrics({"final": {"heldout": health["heldout"], "all_items": health["all_items"]}})
        for lg in trainer.loggers:
            lg.log_metrics(final, step=trainer.global_step)
            lg.finalize("success")
        publish(run_dir, out)
        (out / MARKER).unlink(missing_ok=True)
    frozen.path = out / EXPORT_FILE
    return TrainResult(out, frozen, health, fit_seconds, start)


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
