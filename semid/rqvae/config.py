"""RQ-VAE configuration: what the model is, how it learns, and how a run is watched.

``model`` and ``train`` define what is learned and enter the fingerprint; ``run`` only changes how
a run is observed or where it runs (loggers, devices, intervals), so it is left out of the
fingerprint on purpose: switching CSV to W&B must not make existing SIDs "foreign".
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from semid.core.config import from_dict, load_yaml, apply_overrides, resolve_conf, to_dict
from semid.core.fingerprint import fingerprint_of

LOGGERS = ("csv", "wandb")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class ModelConfig:
    levels: int = 8  # L: codes per item
    codebook_size: int = 2048  # K: codes per level
    hidden_dim: int = 256  # the one hidden layer of encoder and decoder (paper: 256)
    latent_dim: int = 256  # d: dimension of z, r_l and e_l
    beta: float = 0.25  # commitment weight β
    input_dim: int | None = None  # D; None = taken from the corpus when training starts

    def __post_init__(self) -> None:
        for name in ("levels", "codebook_size", "hidden_dim", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1")
        if self.codebook_size < 2:
            raise ValueError("model.codebook_size must be >= 2")
        if self.beta < 0:
            raise ValueError("model.beta must be >= 0")


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 2000  # optimizer steps, the first one on the k-means batch
    batch_size: int = 4096
    lr: float = 1e-3
    # cosine decay to ``min_lr``: late steps refine the fine levels, whose codes are small next to a
    # constant Adam step
    lr_schedule: str = "cosine"  # cosine | constant
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    kmeans_init_items: int = 16384  # size of the first batch; codebooks are k-means of its residuals
    kmeans_iters: int = 20
    reset_dead_codes: bool = True
    # A code no item of the last ``dead_after_steps`` batches chose is reset to a random in-batch residual
    # of its level. 1 is the paper's rule (every step); larger values suit batches much smaller than K.
    dead_after_steps: int = 1
    holdout_items: int = 2000  # items kept out of training, used for SID health
    min_day: int | None = None  # impressions of days [min_day, max_day] decide the training sample
    max_day: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "kmeans_init_items", "kmeans_iters", "dead_after_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1")
        if self.holdout_items < 0:
            raise ValueError("train.holdout_items must be >= 0")
        if self.lr <= 0 or self.min_lr < 0:
            raise ValueError("train.lr must be > 0 and train.min_lr >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")


@dataclass
class RunConfig:
    logger: str = "csv"  # csv | wandb (CSV is always written; W&B is offline unless WANDB_MODE says otherwise)
    wandb_project: str = "semid-rqvae"
    health_every_n_steps: int = 200
    log_every_n_steps: int = 20
    checkpoint_every_n_steps: int = 500  # last.ckpt, what an interrupted run resumes from
    accelerator: str = "cpu"
    devices: int = 1
    encode_batch_size: int = 1024  # items per encoding batch; SIDs do not depend on it, speed does (cache)
    # CPU threads for torch (and faiss in the bench); None = library default. On a shared machine 1 can be
    # far faster than 2: an OpenMP region waits for its slowest thread, and a descheduled one stalls it.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.logger not in LOGGERS:
            raise ValueError(f"run.logger must be one of {', '.join(LOGGERS)}, got {self.logger!r}")
        for name in ("health_every_n_steps", "log_every_n_steps", "checkpoint_every_n_steps", "devices",
                     "encode_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"run.{name} must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("run.threads must be >= 1 (or null for the library default)")


@dataclass
class RqvaeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.train.kmeans_init_items < self.model.codebook_size:
            raise ValueError(f"train.kmeans_init_items ({self.train.kmeans_init_items}) must be >= "
                             f"model.codebook_size ({self.model.codebook_size}): k-means needs a point per code")
        if self.train.batch_size < 2:
            raise ValueError("train.batch_size must be >= 2")


def load_rqvae_config(name_or_path: str | Path, overrides: list[str] | None = None) -> RqvaeConfig:
    """A preset in ``conf/rqvae/`` or a YAML file, with ``section.key=value`` overrides."""
    path = resolve_conf(name_or_path, "rqvae")
    return from_dict(RqvaeConfig, apply_overrides(load_yaml(path), overrides or []), where=str(path))


def config_from_dict(data: dict[str, Any], where: str = "rqvae config") -> RqvaeConfig:
    return from_dict(RqvaeConfig, data, where=where)


def learned_part(cfg: RqvaeConfig) -> dict[str, Any]:
    """The part of the config that decides the learned model: everything but ``run``, and without
    ``model.input_dim``, which the corpus fixes (so a config with it unset or set to the corpus dimension
    names the same model)."""
    d = to_dict(cfg)
    d.pop("run")
    d["model"].pop("input_dim")
    return d


def rqvae_fingerprint(cfg: RqvaeConfig, corpus_fingerprint: str) -> str:
    """Fingerprint of a trained RQ-VAE: hash of (config, corpus fingerprint, seed)."""
    return fingerprint_of(["rqvae", learned_part(cfg), corpus_fingerprint, cfg.train.seed])


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` CPU threads in torch (and faiss when loaded); restored afterwards."""
    if threads is None:
        yield
        return
    import torch

    faiss = sys.modules.get("faiss")
    before = torch.get_num_threads()
    before_faiss = faiss.omp_get_max_threads() if faiss is not None else None
    torch.set_num_threads(threads)
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if faiss is not None:
            faiss.omp_set_num_threads(before_faiss)
