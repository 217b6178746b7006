"""Stage 1 in memory: train a quantizer from item embeddings held as an (N, D) array or tensor, or an Arrow table of
(item_id, embedding), with optional per-item impression weights; no corpus, no files::

    >>> import numpy as np
    >>> from semid.rqvae import RqvaeConfig, fit_quantizer
    >>> emb = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float32)
    >>> impressions = np.random.default_rng(1).integers(0, 50, size=600)
    >>> q = fit_quantizer(emb, RqvaeConfig(levels=2, codebook_size=8, hidden_dim=32, latent_dim=8, steps=20,
    ...                                    batch_size=128, kmeans_init_items=256, holdout_items=0),
    ...                   weights=impressions)
    >>> q.encode(emb).shape
    (600, 2)

The paper trains on a random sample of *impressed* items: ``weights`` (impressions per item; None = every item
once) is that sample's distribution, an item of weight 0 is not trained on. ``train.holdout_items`` items are
held out for the SID-health validation, as on a corpus.

``semid sids train`` is a wrapper over the same functions: it reads a corpus into the data module
(``RqvaeDataModule``; this module's ``ArrayDataModule`` is the same with arrays instead of files) and calls
``fit_rqvae`` (or ``semid.rqvae.rqkmeans_train.fit_rqkmeans_arrays``), adding only what a run directory needs
(checkpoints and resuming, loggers, health.json). The same config, embeddings and impression counts give the
same SIDs either way.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from semid.core.config import ConfigFieldError, to_dict
from semid.core.dist_env import kept_dist_env
from semid.core.errors import SemidError
from semid.core.progress import enabled as progress_enabled
from semid.core.quiet import quiet_libraries
from semid.datamodules import Items
from semid.rqvae.assign_arrays import arrays_fingerprint
from semid.rqvae.callbacks import CodebookAgreement, DeadCodeReset, TrainCodeUsage
from semid.rqvae.config import RqvaeConfig, cpu_threads
from semid.rqvae.data import RqvaeDataModule, split_items, training_pool
from semid.rqvae.finite import FiniteGuard
from semid.rqvae.frozen import Quantizer, with_input_dim
from semid.rqvae.inputs import ArrayLike, as_embeddings, as_item_ids, as_weights, from_arrow
from semid.rqvae.module import RqvaeModule
from semid.rqvae.records import CodebookAgreementResult

if TYPE_CHECKING:
    import pyarrow as pa


def fit_quantizer(data: "ArrayLike | pa.Table", config: RqvaeConfig | None = None, *,
                  weights: ArrayLike | str | None = None, item_ids: ArrayLike | None = None,
                  progress: bool = False) -> Quantizer:
    """Train the quantizer ``config.quantizer`` names (``rqvae``, the default, or ``rqkmeans``) on ``data``
    and return it frozen (module docstring).

    ``data``: embeddings [N, D] (numpy or torch), or an Arrow table with columns ``item_id`` and ``embedding``;
    ``weights``: impressions per item [N] (or, for a table, the name of its column holding them); ``item_ids``:
    ids of array rows (default 0..N-1). Items are taken in id order, so the result does not depend on the rows'
    order. The returned ``Quantizer``'s ``corpus_fingerprint`` hashes the ids, embeddings and weights.

    >>> import numpy as np, semid
    >>> emb = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    >>> q = semid.fit_quantizer(emb, semid.RqvaeConfig(quantizer="rqkmeans", levels=2, codebook_size=4,
    ...                                                  holdout_items=0))
    >>> q.encode(emb[:3]).shape
    (3, 2)
    """
    cfg = config if config is not None else RqvaeConfig()
    ids, emb, w = _inputs(data, weights, item_ids)
    _check_in_memory(cfg)
    data_fp = arrays_fingerprint(ids, emb, w)
    with cpu_threads(cfg.run.threads), kept_dist_env():
        if cfg.quantizer == "rqkmeans":
            from semid.rqvae.rqkmeans_train import fit_rqkmeans_arrays, with_backend  # it imports this module

            cfg = with_backend(with_input_dim(cfg, emb.shape[1]))
            run = fit_rqkmeans_arrays(emb, w, cfg)
            return Quantizer.from_trained(run.fit.model(), cfg, data_fp, [0] * cfg.model.levels)
        cfg = with_input_dim(cfg, emb.shape[1])
        dm = ArrayDataModule(ids, emb, w, **data_module_args(cfg))
        dm.setup()
        with tempfile.TemporaryDirectory(prefix="semid-rqvae-") as root:
            fit = fit_rqvae(cfg, dm, root_dir=Path(root), progress=progress)
        return Quantizer.from_trained(fit.module.rqvae, cfg, data_fp, fit.dead_code_resets)


def _inputs(data: object, weights: object, item_ids: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids int64 [N] ascending, embeddings float32 [N, D], weights float64 [N]) in id order."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        emb = as_embeddings(data, "embeddings")
        ids = np.arange(len(emb), dtype=np.int64) if item_ids is None else as_item_ids(item_ids, "item_ids", len(emb))
    elif type(data).__name__ == "Table" and type(data).__module__.startswith("pyarrow"):
        if item_ids is not None:
            raise SemidError("item_ids: an Arrow table brings its own (column item_id); leave item_ids out")
        ids, emb = from_arrow(data, "table")  # type: ignore[arg-type]
        if isinstance(weights, str):
            if weights not in data.column_names:  # type: ignore[attr-defined]
                raise SemidError(f"weights: the table has no column '{weights}' (columns: "
                                 f"{', '.join(data.column_names)})")  # type: ignore[attr-defined]
            weights = data[weights].to_numpy()  # type: ignore[index]
    else:
        raise SemidError(f"data: expected an (N, D) numpy array or torch tensor of embeddings, or a pyarrow Table "
                         f"of (item_id, embedding); got {type(data).__name__}")
    if isinstance(weights, str):
        raise SemidError("weights: a column name needs an Arrow table as data; pass an array of weights instead")
    w = as_weights(weights, "weights", len(emb))
    order = np.argsort(ids, kind="stable")
    if (order != np.arange(len(ids))).any():
        ids, emb, w = ids[order], emb[order], w[order]
    return ids, emb, w


def _check_in_memory(cfg: RqvaeConfig) -> None:
    """Settings that need a corpus or several processes are refused, naming the field."""
    if cfg.quantizer not in ("rqvae", "rqkmeans"):
        raise ConfigFieldError("quantizer", f"{cfg.quantizer!r} trains from a corpus's impressions; in memory, "
                                            "use rqvae or rqkmeans (or `semid sids train --corpus ...`)")
    for day in ("min_day", "max_day"):
        if getattr(cfg.train, day) is not None:
            raise ConfigFieldError(f"train.{day}", "selects corpus days; in memory, pass weights= (impressions per "
                                                   "item over the days you want) and leave it unset")
    if cfg.run.devices != 1:
        raise ConfigFieldError("run.devices", "in-memory training runs in this process: set it to 1, or train "
                                              "from a corpus with `semid sids train` on several devices")


def data_module_args(cfg: RqvaeConfig) -> dict[str, int]:
    """The data module's settings from ``cfg``: one place, so a corpus and arrays make the same batches."""
    t = cfg.train
    return {"batch_size": t.batch_size, "steps": t.steps, "first_batch_size": t.kmeans_init_items,
            "holdout_items": t.holdout_items, "seed": t.seed, "eval_batch_size": cfg.run.encode_batch_size}


class ArrayDataModule(RqvaeDataModule):
    """``RqvaeDataModule`` over items in memory: ids [N] ascending, embeddings [N, D] and impression weights [N]
    instead of a corpus's files. The same sample, pool and batch stream as a corpus with these items and
    impression counts (``setup`` applies the same ``split_items`` and ``training_pool``)."""

    def __init__(self, item_ids: np.ndarray, embedding: np.ndarray, weights: np.ndarray, **kwargs: int) -> None:
        super().__init__(None, **kwargs)  # type: ignore[arg-type]  # no corpus: setup reads the arrays
        self._arrays = (item_ids, embedding, weights)

    def setup(self, stage: str | None = None) -> None:
        if self.items is not None:
            return
        ids, emb, w = self._arrays
        self.counts = w
        self.sample = split_items(w, self.holdout_items, self.seed)
        self.pool = training_pool(self.sample, emb.shape[1], self.seed, self.pool_bytes)
        # batches index the full matrix by item row, as RqvaeDataModule does when it holds every embedding
        self._embedding, self._pool_rows = torch.from_numpy(emb), self.pool.rows
        self.holdout_embedding = emb[self.sample.holdout_rows]
        self.items = Items(ids, emb, np.zeros(len(ids), np.int32))


@dataclass
class RqvaeFit:
    """What ``fit_rqvae`` trained: the Lightning module (its ``rqvae`` is the model) and the run's facts."""

    module: RqvaeModule
    trainer: L.Trainer
    fit_seconds: float  # this attempt's
    agreement: CodebookAgreementResult  # whether every rank held the same codebooks (one process: trivially)

    @property
    def dead_code_resets(self) -> list[int]:
        return [int(n) for n in self.module.dead_code_resets.cpu()]


def fit_rqvae(cfg: RqvaeConfig, dm: RqvaeDataModule, *, root_dir: Path, loggers: Sequence[Logger] = (),
              callbacks: Sequence[L.Callback] = (), plugins: Sequence[object] = (), ckpt_path: str | None = None,
              progress: bool | None = None, make_module: Callable[[], RqvaeModule] | None = None) -> RqvaeFit:
    """Train the RQ-VAE of ``cfg`` (``model.input_dim`` set) on ``dm`` (set up) with Lightning's Trainer, from
    ``ckpt_path`` when resuming. ``callbacks``: the caller's besides the training's own (dead-code resets,
    code usage, the codebook agreement and the divergence guard); a ``ModelCheckpoint`` among them turns
    checkpointing on; ``plugins``: Lightning plugins (the checkpoint IO); ``make_module``: builds the module
    after the seed is set (default: the plain RQ-VAE of ``cfg``). Raises ``TrainingDiverged`` at a non-finite
    loss or weight."""
    t = cfg.train
    assert dm.sample is not None, "set the data module up first"
    L.seed_everything(t.seed, workers=True, verbose=False)
    module = make_module() if make_module is not None else RqvaeModule(to_dict(cfg.model), to_dict(cfg.train))
    agreement = CodebookAgreement()
    # first: a diverged step stops before any other callback (a reset, a checkpoint) sees it
    own: list[L.Callback] = [FiniteGuard(lambda: _magnitude(dm), t.steps)]
    if t.reset_dead_codes:
        own.append(DeadCodeReset(t.dead_after_steps, t.seed))
    own += [TrainCodeUsage(cfg.run.health_every_n_steps), agreement]
    has_holdout = len(dm.sample.holdout_rows) > 0
    with quiet_libraries():
        trainer = L.Trainer(
            max_steps=t.steps, max_epochs=1, accelerator=cfg.run.accelerator, devices=cfg.run.devices,
            logger=list(loggers) or False, callbacks=[*own, *callbacks],
            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
            plugins=list(plugins) or None,
            log_every_n_steps=cfg.run.log_every_n_steps,
            val_check_interval=min(cfg.run.health_every_n_steps, t.steps) if has_holdout else 1.0,
            limit_val_batches=1.0 if has_holdout else 0, check_val_every_n_epoch=None if has_holdout else 1,
            num_sanity_val_steps=0, enable_model_summary=False,
            enable_progress_bar=progress_enabled() if progress is None else progress,
            default_root_dir=root_dir,
        )
    t0 = time.perf_counter()
    with warnings.catch_warnings(), quiet_libraries():
        # the batch stream continues at the restored step by itself (RqvaeDataModule.train_dataloader)
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch")
        # a rerun may checkpoint at another interval (run.* settings are not the run's fingerprint): the
        # checkpoint callback's own state (file paths) is not needed to resume
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided")
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return RqvaeFit(module, trainer, time.perf_counter() - t0, agreement.result)


def _magnitude(dm: RqvaeDataModule) -> float:
    """The largest absolute value of the embeddings the batches are drawn from (for a divergence message)."""
    x = getattr(dm, "_embedding", None)
    return float(x.abs().max()) if isinstance(x, torch.Tensor) and x.numel() else float("nan")

