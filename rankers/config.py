"""A ranker fit's configuration: parsed once per process into one typed object, then passed down.

``conf/ranker/<name>.yaml`` holds ranker settings (``base.yaml`` the defaults; ``dense_1.5x`` and
``dense_2x`` deepen the ranker); ``representation`` names the item representation, a preset of
``conf/embeddings/`` (or a YAML path, or an inline mapping with a ``kind``), and is resolved here into
its typed config. ``semid rank fit --representation spm_8k`` replaces the config's choice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semid.datamodules import RankingDataConfig
from semid.embeddings import RepresentationConfig, TableOptimizerConfig, load_representation_config, \
    parse_representation
from semid.rankers.model import RankerConfig
from semid.rankers.strategy import ShardingConfig
from semid.core.config import (ConfigFieldError, apply_overrides, blame_overrides, from_dict, load_layered,
                               require, require_int, require_positive)
from semid.core.errors import SemidError

DEFAULT_RANKER = "base"


@dataclass
class OptimConfig:
    dense_optimizer: str = "adam"  # adam | adagrad
    dense_lr: float = 0.002
    table: TableOptimizerConfig = field(default_factory=lambda: TableOptimizerConfig(lr=0.05))  # FBGEMM fused
    lr_decay_per_day: float = 1.0  # multiplies dense and table LR after each training day
    engaged_weight: float = 0.5

    def __post_init__(self) -> None:
        require(self.dense_optimizer in ("adam", "adagrad"), "dense_optimizer",
                f"must be 'adam' or 'adagrad' (got {self.dense_optimizer!r})")
        require_positive(self.dense_lr, "dense_lr")
        require_positive(self.lr_decay_per_day, "lr_decay_per_day", maximum=1.0)
        require_positive(self.engaged_weight, "engaged_weight", allow_zero=True)


@dataclass
class TrainerConfig:
    seed: int = 0
    accelerator: str = "cpu"
    devices: int = 1  # processes per node (must match the launcher's LOCAL_WORLD_SIZE)
    num_nodes: int = 1
    deterministic: bool = True
    loggers: list[str] = field(default_factory=lambda: ["csv", "wandb"])
    wandb_project: str = "semid"
    wandb_group: str | None = None
    num_bootstraps: int = 100
    threads: int | None = None
    log_every_n_steps: int = 50
    progress_bar: bool | None = None  # None: when stderr is a terminal

    def __post_init__(self) -> None:
        unknown = set(self.loggers) - {"csv", "wandb"}
        require(not unknown, "loggers", f"unknown logger(s) {sorted(unknown)} (valid: csv, wandb)")
        require_int(self.devices, "devices")
        require_int(self.num_nodes, "num_nodes")
        require_int(self.num_bootstraps, "num_bootstraps", minimum=0)
        require_int(self.log_every_n_steps, "log_every_n_steps")
        require(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1), "threads",
                f"must be an integer >= 1 or null (got {self.threads!r})")
        require(self.accelerator in ("cpu", "cuda", "gpu", "auto"), "accelerator",
                f"must be cpu, cuda, gpu or auto (got {self.accelerator!r})")


@dataclass
class RankFitConfig:
    representation: RepresentationConfig
    ranker: RankerConfig = field(default_factory=RankerConfig)
    data: RankingDataConfig = field(default_factory=RankingDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)

    @property
    def roles(self) -> list[str]:
        """The item roles this setting feeds to the ranker (all share the representation's tables)."""
        from semid.datamodules import ROLES

        return [r for r in ROLES if r != "history" or self.ranker.use_history]


def rank_config_from_dict(data: dict[str, Any], where: str) -> RankFitConfig:
    """A ``RankFitConfig`` from a mapping: a YAML file's content or ``results.json``'s ``config``."""
    data = dict(data)
    rep = data.pop("representation", None)
    if rep is None:
        raise SemidError(f"{where}: field 'representation' is missing (name a conf/embeddings preset, e.g. "
                         "representation: hash_8k, or pass --representation)")
    if isinstance(rep, str):
        representation = load_representation_config(rep)
    else:
        representation = parse_representation(rep, f"{where}: representation")
    return from_dict(RankFitConfig, {**data, "representation": representation}, where=where)


def load_rank_config(config: str | Path = DEFAULT_RANKER, overrides: list[str] | None = None, *,
                     representation: str | None = None) -> RankFitConfig:
    """``conf/ranker/<config>.yaml`` (with its ``base:`` chain), ``--set`` overrides, and the representation
    preset (``representation`` replaces the config's own)."""
    path, data = load_layered(config, "ranker")
    if representation is not None:
        data["representation"] = representation
    try:
        return rank_config_from_dict(apply_overrides(data, overrides or []), str(path))
    except ConfigFieldError as e:
        raise blame_overrides(e, overrides or []) from None


# settings that change where and how a run executes, not what it learns: a checkpoint written under
# one sharding plan, world size or logger set resumes under another
_EXECUTION_ONLY = {"devices", "num_nodes", "threads", "progress_bar", "loggers", "wandb_project", "wandb_group",
                   "log_every_n_steps", "accelerator"}


def learned_part(cfg: RankFitConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d.pop("sharding")
    d["trainer"] = {k: v for k, v in d["trainer"].items() if k not in _EXECUTION_ONLY}
    return d
