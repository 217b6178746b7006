"""``semid rank fit``: train a ranker day by day on a corpus and write ``results.json``.

Readable top to bottom: config -> token cache -> data -> model -> Trainer -> results.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torchrec import EmbeddingBagConfig

from semid.datamodules import CONTEXT_DIM, Corpus, RankingDataModule, corpus_impressions, open_corpus, resolve_days
from semid.embeddings import CacheFeatures, MchConfig, RepresentationConfig, TokenCache, build_token_cache, \
    embedding_bag_configs
from semid.rankers.checkpoints import LOOP_STATE, load_failed, read_checkpoint, resume_fix
from semid.rankers.config import RankFitConfig, learned_part, rank_config_from_dict
from semid.rankers.divergence import DivergenceGuard
from semid.rankers.metrics import flat_scalars
from semid.rankers.module import RankerModule
from semid.rankers.strategy import TorchRecStrategy, managed_sharding_types
from semid.core import interrupt
from semid.core.artifacts import write_json
from semid.core.csv_log import continue_csv_log, rows_through_step
from semid.core.dist_env import kept_dist_env
from semid.core.errors import SemidError
from semid.core.fingerprint import code_fingerprint, code_record, fingerprint_of
from semid.core.kill_hook import kill_hooks
from semid.core.loggers import build_loggers
from semid.core.progress import enabled as progress_enabled
from semid.rankers.records import EvalResults, FitResults
from semid.core.run_lock import exclusive
from semid.rqvae import SidTable, read_sid_table


# the code a token cache and a fit depend on: a change there reruns them (semid.core.fingerprint)
TOKEN_ROOMS = ("datamodules", "rqvae", "embeddings")
FIT_ROOMS = (*TOKEN_ROOMS, "rankers")


# -- token cache ---------------------------------------------------------------------------------------


def prepare_tokens(cfg: RankFitConfig, corpus: Corpus, sids: SidTable | None, sids_path: Path | None,
                   train_days: list[int], cache_dir: Path) -> tuple[RepresentationConfig, TokenCache | None]:
    """(representation config, TokenCache or None for Dense Input); the cache is reused when its
    fingerprint (representation, SIDs, corpus, training days) matches. ``sids``: the table read from
    ``sids_path`` (named in errors)."""
    rep = cfg.representation
    if rep.kind == "dense":
        return rep, None
    if sids is not None and sids.corpus_fingerprint not in (None, corpus.fingerprint):
        raise SemidError(f"{sids_path}: SIDs were assigned on corpus {sids.corpus_fingerprint}, not on "
                         f"{corpus.path} ({corpus.fingerprint}); run `semid sids assign` on this corpus")
    key = fingerprint_of([asdict(rep), sids.fingerprint if sids else None, corpus.fingerprint, train_days,
                          code_fingerprint(*TOKEN_ROOMS)])
    path = cache_dir / f"tokens-{rep.name}-{key}"
    if path.exists():
        return rep, TokenCache.load(path, sids=sids)
    item_ids = corpus.read_item_ids()
    counts = corpus_impressions(corpus, item_ids, train_days)  # SPM must not see the evaluation day
    cache = build_token_cache(rep, sids, item_ids, counts)
    cache.save(path)
    return rep, cache


# -- run ----------------------------------------------------------------------------------------------------


def _build_module(cfg: RankFitConfig, cache: TokenCache | None,
                  dm: RankingDataModule) -> tuple[RankerModule, list[EmbeddingBagConfig] | None]:
    """The ranker over the cache's tables (shared by every role), or over raw content for Dense Input."""
    tables = None
    if cache is not None:
        tables = embedding_bag_configs(cache, cfg.ranker.embedding_dim, cfg.roles)
    managed = cfg.representation if isinstance(cfg.representation, MchConfig) else None
    module = RankerModule(cfg.ranker, cfg.optim, tables=tables, content_dim=dm.items.dim if cache is None else None,
                          context_dim=CONTEXT_DIM, num_bootstraps=cfg.trainer.num_bootstraps, seed=cfg.trainer.seed,
                          managed_collisions=managed)
    return module, tables


def _torchrec_strategy(cfg: RankFitConfig) -> TorchRecStrategy:
    return TorchRecStrategy(sharding=cfg.sharding, fused_params=cfg.optim.table.fused_params(), table_seed=cfg.trainer.seed)


class _DayCheckpoint(L.Callback):
    """``last.ckpt`` at every day boundary, replaced each day: what a rerun resumes from.

    Not Lightning's ModelCheckpoint: with ``save_top_k=0`` it writes ``last`` only alongside a top-k
    checkpoint (so in the Lightning 2.6 installed here), i.e. only when training ends, so a killed run
    restarted from day 0.
    Saved after the day's validation (which runs before ``on_train_epoch_end``), so the checkpoint
    carries that day's evaluation too. Every rank calls it: the sharded save is collective.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a SIGTERM or Ctrl-C during the write stops the run right after it: the new checkpoint is whole and the
        # stop is the usual one line, not torch's wrapped exception from inside the collective save
        with interrupt.deferred():
            trainer.save_checkpoint(self.path)
            day = trainer.datamodule.train_days[min(trainer.current_epoch, len(trainer.datamodule.train_days) - 1)]
            interrupt.at(f"rank fit {self.path.parent.parent}: the end of training day {day} (its checkpoint is "
                         "saved: a rerun resumes from there)")  # what a signal held during the save reports


class _Position(L.Callback):
    """Tells an interrupt message which day was training and where the run resumes from."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        day = trainer.datamodule.train_days[min(trainer.current_epoch, len(trainer.datamodule.train_days) - 1)]
        resume = "the previous day's checkpoint" if trainer.current_epoch else "the start"
        interrupt.at(f"rank fit {self.out}: training day {day} (a rerun resumes from {resume})")


class _Throughput(L.Callback):
    def __init__(self) -> None:
        self.samples, self.seconds, self._t = 0, 0.0, 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        # batch building + step, not the validation that runs after the day's last batch
        now = time.perf_counter()
        self.samples += len(batch)
        self.seconds += now - self._t
        self._t = now


def fit(cfg: RankFitConfig, corpus_path: Path, out: Path, *, sids_path: Path | None = None,
        cache_dir: Path | None = None, resume: bool = True, max_train_days: int | None = None,
        restart_if_changed: bool = False) -> FitResults:
    """Train day by day and evaluate; returns (and writes) ``results.json``. ``max_train_days`` stops
    after that many days, as an interruption would (a rerun resumes from the day-boundary checkpoint).
    A fit refused for a user error leaves no ``out`` behind that it created (an interrupt keeps it)."""
    created = not Path(out).exists()
    try:
        # one process per run directory: a second fit there (or an orphan of a stopped experiment) would
        # interleave checkpoints with this one
        with exclusive(Path(out), "semid rank fit"), kept_dist_env():
            return _fit(cfg, corpus_path, out, sids_path=sids_path, cache_dir=cache_dir, resume=resume,
                        max_train_days=max_train_days, restart_if_changed=restart_if_changed)
    except SemidError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _fit(cfg: RankFitConfig, corpus_path: Path, out: Path, *, sids_path: Path | None, cache_dir: Path | None,
         resume: bool, max_train_days: int | None, restart_if_changed: bool) -> FitResults:
    _devices_from_launcher(cfg)
    if isinstance(cfg.representation, MchConfig):  # a sharding TorchRec cannot give it: refused before any work
        managed_sharding_types(cfg.sharding, cfg.representation.name)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
        # Lightning's launcher calls torch.set_num_threads(cpu_count // processes) unless OMP_NUM_THREADS is
        # set, which silently undid trainer.threads (and spawned ranks inherit this environment)
        os.environ["OMP_NUM_THREADS"] = str(cfg.trainer.threads)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    corpus = open_corpus(corpus_path)  # the data gate: refused before anything is written
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    # a damaged checkpoint is refused before anything in `out` changes (token cache, logs, the W&B run)
    saved = _saved_state(last) if resume else None
    done = out / "results.json"
    prev = _finished(done) if resume else None
    out.mkdir(parents=True, exist_ok=True)
    train_days, _ = resolve_days(corpus, cfg.data)
    sids = _read_sids(sids_path)  # once, before training: its fingerprint goes into results.json
    rep, cache = prepare_tokens(cfg, corpus, sids, sids_path, train_days, cache_dir or out / "cache")
    dense = cache is None
    dm = RankingDataModule(corpus_path, cfg.data, features=None if dense else CacheFeatures(cache),
                           with_history=cfg.ranker.use_history)
    dm.setup()
    run_fp = fingerprint_of([learned_part(cfg), corpus.fingerprint, cache.fingerprint if cache is not None else None,
                             code_fingerprint(*FIT_ROOMS)])
    if prev is not None and prev.get("fingerprint") == run_fp and prev.get("metrics") is not None:
        prev["skipped"] = True  # same inputs, finished: nothing to do
        return prev
    if saved is not None and saved.get("semid_run_fingerprint") != run_fp:
        if not restart_if_changed:  # before the loggers: a refused resume leaves the W&B run where it was
            raise SemidError(f"{last} belongs to another run (fingerprint {saved.get('semid_run_fingerprint')}, "
                             f"this run {run_fp}); pass --no-resume to start over or choose another --out")
        shutil.rmtree(ckpt_dir)  # another configuration's checkpoint: this run starts over
        saved = None

    module, tables = _build_module(cfg, cache, dm)
    strategy: TorchRecStrategy | str = "auto"
    if not dense:
        strategy = _torchrec_strategy(cfg)
    elif cfg.trainer.devices * cfg.trainer.num_nodes > 1:
        strategy = "ddp"

    ckpt = _DayCheckpoint(last)
    throughput = _Throughput()
    n_days = len(dm.train_days) if max_train_days is None else min(max_train_days, len(dm.train_days))
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=strategy, max_epochs=n_days, reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0,
        logger=build_loggers(cfg.trainer.loggers, out, run_name=f"{rep.name}-{run_fp}",
                             project=cfg.trainer.wandb_project, group=cfg.trainer.wandb_group, config=asdict(cfg)),
        # the guard before the checkpoint: a diverged day is never saved
        callbacks=[DivergenceGuard(out, cfg.optim, tables=not dense), ckpt, throughput, _Position(out),
                   *kill_hooks()],
        deterministic=cfg.trainer.deterministic, log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.progress_bar if cfg.trainer.progress_bar is not None else progress_enabled(),
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(out))
    module.run_fingerprint = run_fp
    module.predictions_dir = out / "predictions"
    if saved is not None:
        _recover_interrupted_save(last)
        step = int(saved.get("global_step", 0))  # type: ignore[call-overload]
        if trainer.is_global_zero:
            print(f"resuming {last} (saved at the end of a day, step {step})", flush=True)
            _continue_csv_logs(trainer, step)
    t0 = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if saved is not None else None)
    except BaseException:
        _close_failed_wandb()
        raise
    results = {
        "representation": rep.name,
        "representation_kind": rep.kind,
        "setting": "with_history" if cfg.ranker.use_history else "without_history",
        "fingerprint": run_fp,
        **code_record(*FIT_ROOMS),
        "corpus": str(corpus.path),
        "corpus_fingerprint": corpus.fingerprint,
        "token_cache_fingerprint": cache.fingerprint if cache is not None else None,
        "sids": str(sids_path) if sids_path else None,
        "sids_fingerprint": sids.fingerprint if sids is not None else None,
        "learned_config": learned_part(cfg),
        "train_days": dm.train_days[:n_days],
        "eval_day": dm.eval_day,
        "table_rows": {t.name: t.num_embeddings for t in tables} if tables else {},
        "lookups_per_item": float(np.mean(cache.lookups_per_item())) if cache is not None else 0.0,
        "world_size": trainer.world_size,
        "global_rank": trainer.global_rank,
        # every rank trains on an equal share: rank 0's rate times the world size is the global rate
        "train_samples_per_s": trainer.world_size * throughput.samples / throughput.seconds
        if throughput.seconds else None,
        "wall_seconds": time.perf_counter() - t0,
        "metrics_by_day": {str(d): r for d, r in sorted(module.eval_results.items())},
        "predictions": {str(d): f"predictions/day={d:04d}" for d in sorted(module.eval_results)},
        "metrics": module.eval_results.get(dm.eval_day),
        "config": asdict(cfg),
    }
    if isinstance(strategy, TorchRecStrategy):
        results["sharding_plan"] = strategy.plan_summary()
    if trainer.is_global_zero and n_days == len(dm.train_days):  # a stopped-early run writes none
        write_json(out / "results.json", results)
    _finish_wandb(trainer, results)
    return results


def _finish_wandb(trainer: L.Trainer, results: FitResults) -> None:
    """Final metrics into the W&B summary, then close the run: Lightning leaves it open until exit,
    which would merge the runs of an experiment that fits several rankers in one process."""
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger) and trainer.is_global_zero:
            if results.get("metrics"):
                lg.experiment.summary.update(flat_scalars(results["metrics"]))
            lg.experiment.finish()


def _close_failed_wandb() -> None:
    """A fit that fails once its loggers exist (a shard garbled past the up-front checks, a divergence, a signal)
    closes its W&B run as failed: left open, the next fit in the same process (an in-process experiment, the test
    suite) would log into it instead of starting its own."""
    wandb = sys.modules.get("wandb")  # only a fit with a W&B logger has imported it: nothing to close otherwise
    if wandb is not None and wandb.run is not None:
        wandb.run.finish(exit_code=1)


def _devices_from_launcher(cfg: RankFitConfig) -> None:
    """Under torchrun / `fabric run` the launcher decides the processes: take devices and nodes from it
    (Lightning only checks devices * num_nodes == WORLD_SIZE)."""
    from lightning.fabric.plugins.environments import TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        local, world = int(os.environ["LOCAL_WORLD_SIZE"]), int(os.environ["WORLD_SIZE"])
        cfg.trainer.devices, cfg.trainer.num_nodes = local, world // local


def _read_sids(sids_path: Path | None) -> SidTable | None:
    return read_sid_table(sids_path) if sids_path is not None else None


def is_up_to_date(out: Path, cfg: RankFitConfig, corpus_fingerprint: str, sids_fingerprint: str | None) -> bool:
    """A finished run in ``out`` made from exactly these inputs (checked without loading any model or
    table: the caller passes the fingerprints it already holds)."""
    try:
        prev = _finished(out / "results.json")
    except SemidError:
        return False  # unreadable: the fit that reruns it says so in one line
    if prev is None:
        return False
    return (prev.get("metrics") is not None and prev.get("corpus_fingerprint") == corpus_fingerprint
            and prev.get("code_fingerprint") == code_fingerprint(*FIT_ROOMS)
            and prev.get("learned_config") == json.loads(json.dumps(learned_part(cfg)))
            and prev.get("sids_fingerprint") == sids_fingerprint)


def _parked(last: Path) -> Path:
    """Where a save parks the previous checkpoint while it renames the new one in (TorchRecStrategy.save_checkpoint)."""
    return last.with_name(f".{last.name}.old-dcp")


def _saved_state(last: Path) -> dict[str, Any] | None:
    """The loop state of the checkpoint a resume would start from (``last``, or the previous one that a kill between
    a save's two renames left parked), checked whole; None when there is none. Changes nothing on disk."""
    if last.exists():
        return read_checkpoint(last)
    if (_parked(last) / LOOP_STATE).exists():
        return read_checkpoint(_parked(last), resume_fix(_parked(last)))
    return None


def _recover_interrupted_save(last: Path) -> None:
    """A kill between the two renames of a checkpoint save leaves only the previous checkpoint, parked
    as ``.last.ckpt.old-dcp`` (see TorchRecStrategy.save_checkpoint): put it back."""
    old = _parked(last)
    if not last.exists() and (old / LOOP_STATE).exists():
        os.replace(old, last)


def _finished(done: Path) -> FitResults | None:
    """A previous attempt's ``results.json`` (None when there is none); unreadable, it is one line naming it."""
    if not done.exists():
        return None
    try:
        prev = json.loads(done.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SemidError(f"{done}: not valid JSON ({e}); delete it, or rerun with --no-resume") from None
    if not isinstance(prev, dict):
        raise SemidError(f"{done}: holds a JSON {type(prev).__name__}, not a run's results; delete it, or rerun "
                         "with --no-resume")
    return prev  # type: ignore[return-value]


def _continue_csv_logs(trainer: L.Trainer, step: int) -> None:
    """Keep the interrupted attempt's CSV rows up to the checkpoint (the resumed logger would delete them)."""
    for lg in trainer.loggers:
        if isinstance(lg, CSVLogger):
            continue_csv_log(lg, rows_through_step(Path(lg.log_dir) / "metrics.csv", step))


def summary_line(results: FitResults | EvalResults) -> str:
    m = results.get("metrics") or {}
    ctr = m.get("ctr", {})

    def fmt(s: str) -> str:
        r = ctr.get(s, {})
        if r.get("auc") is None:
            return f"{s} undefined ({r.get('undefined', 'not evaluated')})"
        ci = f" [{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if "ci_low" in r else ""
        return f"{s} {r['auc']:.4f}{ci}"

    return f"{results['representation']} ({results['setting']}), day {results['eval_day']}: CTR AUC " + \
        "; ".join(fmt(s) for s in ("overall", "new")) + \
        (f"; {results['train_samples_per_s']:,.0f} samples/s" if results.get("train_samples_per_s") else "")


def read_results(path: Path) -> FitResults:
    """A finished run's ``results.json`` (``path``: the run directory); missing or unreadable, one line naming it.

    >>> read_results(Path("no/such/run"))
    Traceback (most recent call last):
    ...
    semid.core.errors.SemidError: no/such/run/results.json does not exist (train the run first with `semid rank fit`)
    """
    done = Path(path) / "results.json"
    prev = _finished(done)
    if prev is None:
        raise SemidError(f"{done} does not exist (train the run first with `semid rank fit`)")
    return prev


def evaluate(run_dir: Path, day: int | None = None, checkpoint: Path | None = None) -> EvalResults:
    """Evaluate a trained run's checkpoint on ``day`` (default: its evaluation day)."""
    run_dir = Path(run_dir)
    prev = read_results(run_dir) if (run_dir / "results.json").exists() else None
    if prev is None:
        raise SemidError(f"{run_dir}: no results.json (train it first with `semid rank fit`)")
    cfg = rank_config_from_dict(prev["config"], where=str(run_dir / "results.json"))
    corpus_path = Path(prev["corpus"])
    ckpt = checkpoint or run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        raise SemidError(f"{ckpt} does not exist (the run has no checkpoint to evaluate)")
    retrain = f"retrain the run with `semid rank fit --no-resume --out {run_dir}`"
    read_checkpoint(ckpt, retrain)  # a damaged checkpoint is one line before any work
    corpus = open_corpus(corpus_path)  # the data gate: refused before anything is written
    if corpus.fingerprint != prev["corpus_fingerprint"]:
        raise SemidError(f"{corpus_path} changed since the run was trained (fingerprint {corpus.fingerprint}, "
                         f"run used {prev['corpus_fingerprint']})")
    L.seed_everything(cfg.trainer.seed, verbose=False)
    sids_path = Path(prev["sids"]) if prev.get("sids") else None
    rep, cache = prepare_tokens(cfg, corpus, _read_sids(sids_path), sids_path, prev["train_days"], run_dir / "cache")
    if cache is not None and cache.fingerprint != prev["token_cache_fingerprint"]:
        raise SemidError(f"{run_dir}: the token cache no longer matches the one the run was trained with")
    dm = RankingDataModule(corpus_path, cfg.data, features=None if cache is None else CacheFeatures(cache),
                           with_history=cfg.ranker.use_history)
    dm.setup()
    dm.forced_eval_day = prev["eval_day"] if day is None else day
    if dm.forced_eval_day not in corpus.day_files():
        raise SemidError(f"--day {dm.forced_eval_day} is not a day of {corpus_path}")
    module, _ = _build_module(cfg, cache, dm)
    strategy: TorchRecStrategy | str = _torchrec_strategy(cfg) if cache is not None else "auto"
    if isinstance(strategy, TorchRecStrategy):
        strategy.damaged_fix = retrain
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, strategy=strategy, logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    if cache is None:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        try:
            module.load_state_dict(state["state_dict"])
        except (KeyError, RuntimeError) as e:  # read_checkpoint saw a loop state; the weights may still not fit
            raise load_failed(e, ckpt, retrain) from None
        trainer.validate(module, datamodule=dm)
    else:
        trainer.validate(module, datamodule=dm, ckpt_path=str(ckpt))
    return {"run": str(run_dir), "representation": rep.name, "setting": prev["setting"],
            "eval_day": dm.forced_eval_day, "train_samples_per_s": None,
            "metrics": module.eval_results.get(dm.forced_eval_day)}
