"""Stage-1 configuration: which quantizer, what it is, how it learns, and how a run is watched.

``quantizer`` picks the model: ``rqvae`` (the paper's RQ-VAE, trained by gradient descent) or
``rqkmeans`` (residual k-means: one k-means per level on the residuals of the levels before, no
encoder, no gradients; settings in ``rqkmeans``). ``model.levels`` (L) and ``model.codebook_size`` (K)
apply to both. What decides the learned model enters the fingerprint (``learned_part``): for the RQ-VAE
``model`` and ``train``, for residual k-means L, K, ``rqkmeans`` (with the k-means backend that actually
runs) and the sample settings of ``train``. ``run`` only changes how a run is observed or where it runs
(loggers, devices, intervals), so it is left out on purpose: switching CSV to W&B must not make existing
SIDs "foreign".
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Iterator

from semid.core.config import ConfigFieldError, apply_overrides, from_dict, load_layered, to_dict
from semid.core.fingerprint import fingerprint_of
from semid.core.records import JsonObject

LOGGERS = ("csv", "wandb")
LR_SCHEDULES = ("cosine", "constant")
QUANTIZERS = ("rqvae", "rqkmeans", "rqvae_cooc")  # rqvae_cooc: semid.rqvae.cooccur
KMEANS_BACKENDS = ("auto", "faiss", "torch")  # auto = faiss when it is installed, else semid's own (torch)


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
    # CPU threads for torch (and faiss in the bench); None = library default. 1 by default because the bits
    # depend on it: three `sids train --config ml100k` runs with the library default gave three different
    # models under one fingerprint (unique SIDs 92.8%, 91.1%, 93.3%), with 1 thread they are bit-identical.
    # It is also often faster on a shared machine: an OpenMP region waits for a descheduled thread.
    threads: int | None = 1

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
class RqkmeansConfig:
    """Residual k-means (``quantizer: rqkmeans``); L and K come from ``model``, seed and sample from ``train``."""

    # impression-weighted draws of training items (the RQ-VAE's training distribution); an item drawn m
    # times enters the k-means once with weight m
    fit_items: int = 65536
    # k-means of each level first in the top principal directions of its residuals, then in more (d^(i/steps)
    # dimensions at step i, each started from the last), as faiss.ResidualQuantizer trains its levels; 1 =
    # plain k-means in all dimensions, which spends the deep levels' codes on a few large residuals (small
    # corpus, L=4, K=256: perplexity 68-83 of 256 at levels 1-3, 50.6% unique SIDs, relative error 0.290;
    # progressive: 104-165, 54.7%, 0.281)
    dim_steps: int = 10
    iters: int = 10  # Lloyd iterations per step (and balanced refinements per level, when balanced)
    backend: str = "auto"  # faiss | torch | auto (faiss if installed); the one that ran is in the fingerprint
    # cap every code at ceil((1 + balance_slack) * n / K) of the n distinct fit items, per level: fewer
    # collisions and no dead codes, for some reconstruction error
    balanced: bool = False
    balance_slack: float = 0.1

    def __post_init__(self) -> None:
        if self.fit_items < 1 or self.iters < 1 or self.dim_steps < 1:
            raise ValueError("rqkmeans.fit_items, rqkmeans.iters and rqkmeans.dim_steps must be >= 1")
        if self.backend not in KMEANS_BACKENDS:
            raise ValueError(f"rqkmeans.backend must be one of {', '.join(KMEANS_BACKENDS)}, got {self.backend!r}")
        if self.balance_slack < 0:
            raise ValueError("rqkmeans.balance_slack must be >= 0")


@dataclass
class CooccurConfig:
    """The behaviour-aware RQ-VAE (``quantizer: rqvae_cooc``, ``semid.rqvae.cooccur``): the RQ-VAE loss plus
    ``weight`` (λ) x an InfoNCE term on the encoder outputs of co-engaged item pairs, in-batch negatives.
    The pairs come from impressions of days [first_day, last_day] only; last_day is required so that a study
    says which days are its training days (pairs from the evaluation day would leak it into the SIDs)."""

    weight: float = 0.1  # λ
    temperature: float = 0.1  # τ of the InfoNCE softmax over cosine similarities
    pair_batch_size: int = 256  # positive pairs per step; the other pairs' items are the negatives
    first_day: int | None = None  # None: from the corpus's first day
    last_day: int | None = None  # the last training day (required for rqvae_cooc)

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError("cooccur.weight must be >= 0")
        if self.temperature <= 0:
            raise ValueError("cooccur.temperature must be > 0")
        if self.pair_batch_size < 2:
            raise ValueError("cooccur.pair_batch_size must be >= 2 (in-batch negatives need another pair)")


@dataclass(init=False)
class RqvaeConfig:
    """Stage 1's whole config. Sections as keywords (``model=ModelConfig(...)``, as a YAML file nests them), or
    any section's keys directly, which go to the section that has them; a value that cannot be used is a
    ``ConfigFieldError`` (a ``SemidError``) naming the field::

        >>> cfg = RqvaeConfig(levels=3, codebook_size=64, steps=300, kmeans_init_items=1024)
        >>> (cfg.model.levels, cfg.model.codebook_size, cfg.train.steps, cfg.quantizer)
        (3, 64, 300, 'rqvae')
        >>> RqvaeConfig(quantizer="rqkmeans", levels=2, codebook_size=8, fit_items=512).rqkmeans.fit_items
        512
        >>> RqvaeConfig(levels=0)
        Traceback (most recent call last):
        ...
        semid.core.config.ConfigFieldError: model.levels must be >= 1
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    quantizer: str = "rqvae"  # rqvae | rqkmeans
    rqkmeans: RqkmeansConfig = field(default_factory=RqkmeansConfig)
    cooccur: CooccurConfig = field(default_factory=CooccurConfig)

    def __init__(self, **keys: object) -> None:
        # keywords only: a section by name, or a key of one section (flat, as vector-quantize-pytorch takes its
        # settings); the fields are read at run time so that a new section needs no change here
        try:
            flat = {k: keys.pop(k) for k in list(keys) if k not in _FIELDS}
            for name, f in _FIELDS.items():
                value = keys[name] if name in keys else (f.default_factory() if f.default_factory is not MISSING
                                                           else f.default)  # type: ignore[misc]
                setattr(self, name, value)
            by_section: dict[str, dict[str, object]] = {}
            for key, value in flat.items():
                owners = [s for s, cls in _SECTIONS.items() if key in {g.name for g in fields(cls)}]
                if len(owners) != 1:
                    raise ConfigFieldError(key, _flat_problem(key, owners))
                _check_type(owners[0], key, value)
                by_section.setdefault(owners[0], {})[key] = value
            for section, values in by_section.items():
                setattr(self, section, replace(getattr(self, section), **values))  # the section validates
            self.__post_init__()
        except ConfigFieldError:
            raise
        except (TypeError, ValueError) as e:  # the sections' checks name their field (``model.levels ...``)
            raise ConfigFieldError("", str(e)) from None

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {self.quantizer!r}")
        if self.quantizer == "rqkmeans":
            if self.rqkmeans.fit_items < self.model.codebook_size:
                raise ValueError(f"rqkmeans.fit_items ({self.rqkmeans.fit_items}) must be >= model.codebook_size "
                                 f"({self.model.codebook_size}): k-means needs a point per code")
            return
        if self.quantizer == "rqvae_cooc" and self.cooccur.last_day is None:
            raise ValueError("cooccur.last_day must be set for quantizer rqvae_cooc: the last training day (pairs "
                             "from later days would leak the evaluation into the SIDs)")
        if self.train.kmeans_init_items < self.model.codebook_size:
            raise ValueError(f"train.kmeans_init_items ({self.train.kmeans_init_items}) must be >= "
                             f"model.codebook_size ({self.model.codebook_size}): k-means needs a point per code")
        if self.train.batch_size < 2:
            raise ValueError("train.batch_size must be >= 2")


_FIELDS = {f.name: f for f in fields(RqvaeConfig)}
_SECTIONS = {name: f.default_factory for name, f in _FIELDS.items() if f.default_factory is not MISSING}


def _check_type(section: str, key: str, value: object) -> None:
    """A flat key's value has its default's type (an int where a float is expected; a number where None is)."""
    default = next(g.default for g in fields(_SECTIONS[section]) if g.name == key)  # type: ignore[arg-type]
    optional = type(None) in typing.get_args(typing.get_type_hints(_SECTIONS[section])[key])
    if default is None or default is MISSING or (value is None and optional):
        return
    want = (int, float) if type(default) is float else type(default)
    if not isinstance(value, want) or (isinstance(value, bool) and type(default) is not bool):
        raise ConfigFieldError(f"{section}.{key}", f"expected {type(default).__name__}, got {value!r}")


def _flat_problem(key: str, owners: list[str]) -> str:
    if owners:
        return (f"is a key of {' and '.join(owners)}: pass the section, e.g. "
                f"{owners[0]}={_SECTIONS[owners[0]].__name__}({key}=...)")  # type: ignore[attr-defined]
    valid = sorted({g.name for cls in _SECTIONS.values() for g in fields(cls)} | set(_FIELDS))  # type: ignore[arg-type]
    return f"unknown key (valid: {', '.join(valid)})"


def load_rqvae_config(name_or_path: str | Path, overrides: list[str] | None = None) -> RqvaeConfig:
    """A preset in ``conf/rqvae/`` or a YAML file (which may build on another with ``base:``), with
    ``section.key=value`` overrides (``quantizer=rqkmeans`` picks residual k-means)."""
    path, data = load_layered(name_or_path, "rqvae")
    return from_dict(RqvaeConfig, apply_overrides(data, overrides or []), where=str(path))


def config_from_dict(data: JsonObject, where: str = "rqvae config") -> RqvaeConfig:
    return from_dict(RqvaeConfig, data, where=where)


def kmeans_backend(requested: str) -> str:
    """The k-means implementation ``rqkmeans.backend`` stands for on this machine: faiss or torch."""
    if requested != "auto":
        return requested
    return "faiss" if importlib.util.find_spec("faiss") is not None else "torch"


def learned_part(cfg: RqvaeConfig) -> JsonObject:
    """The part of the config that decides the learned model, without ``model.input_dim``, which the corpus
    fixes (so a config with it unset or set to the corpus dimension names the same model).

    RQ-VAE: ``model`` and ``train`` (the same dict as before residual k-means existed, so earlier RQ-VAE
    fingerprints still hold). Residual k-means: its kind, L, K, ``rqkmeans`` with the backend resolved
    (faiss and semid's own k-means give different codebooks) and the sample settings of ``train``; the
    RQ-VAE's network and optimizer settings do not change it."""
    d = to_dict(cfg)
    if cfg.quantizer in ("rqvae", "rqvae_cooc"):
        for key in ("run", "quantizer", "rqkmeans", "cooccur"):
            d.pop(key)
        d["model"].pop("input_dim")
        if cfg.quantizer == "rqvae_cooc":  # the plain RQ-VAE's dict stays as it was: its fingerprints hold
            d.update(quantizer=cfg.quantizer, cooccur=to_dict(cfg.cooccur))
        return d
    t = d["train"]
    return {"quantizer": cfg.quantizer, "levels": cfg.model.levels, "codebook_size": cfg.model.codebook_size,
            "rqkmeans": {**d["rqkmeans"], "backend": kmeans_backend(cfg.rqkmeans.backend)},
            "train": {k: t[k] for k in ("seed", "holdout_items", "min_day", "max_day")}}


def rqvae_fingerprint(cfg: RqvaeConfig, corpus_fingerprint: str) -> str:
    """Fingerprint of a trained quantizer (RQ-VAE or residual k-means): hash of (kind, the config that
    decides the model, corpus fingerprint, seed)."""
    return fingerprint_of([cfg.quantizer, learned_part(cfg), corpus_fingerprint, cfg.train.seed])


quantizer_fingerprint = rqvae_fingerprint  # the kind-neutral name


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
