"""A Lightning strategy for TorchRec: shard the ranker's tables with ``DistributedModelParallel``.

Why a strategy: no maintained public one exists for Lightning 2.x (the old torchrecipes one targets
1.x), and the pieces that make it correct are easy to get wrong:

* DMP shards the ``EmbeddingBagCollection`` (built on ``meta``) in place and puts the dense rest
  under DDP itself, so this strategy replaces DDP's wrapping with DMP's — never both;
* tables train through FBGEMM's fused kernels; the LightningModule combines ``fused_optimizer``
  (set here) with its dense optimizer, so Lightning's automatic optimisation drives both;
* tables are initialised from a seed per table and row block, so the initial weights do not
  depend on the sharding plan or world size (1-process and N-process runs start identical);
* checkpoints go through ``torch.distributed.checkpoint``: every rank writes its own shards into
  one directory, rank 0 adds the loop state, and the load happens after sharding, so a checkpoint
  restores under another plan or world size. Never a rank-0-only ``torch.save`` of sharded tables;
* ``LOCAL_WORLD_SIZE`` is made consistent with the planner's topology (torchrec assumes 8 when
  it is unset and Lightning's launcher does not set it).

* with one process (``sharding.local_lookup``, on by default) the sharded collection's forward calls
  the FBGEMM kernels DMP created directly instead of DMP's input/output distribution
  (``rankers/local_lookup.py``): same modules, plan, optimizer state and checkpoints, bit-identical
  results, without DMP's fixed ~0.4 ms of orchestration per lookup call.

* managed-collision tables (``kind: mch``, TorchRec's ``ManagedCollisionEmbeddingBagCollection``) are
  sharded by TorchRec's MC sharder, row-wise (the only type it offers; on CPU through the EBC sharder
  below, which adds row-wise there), with the same fused kernel; their eviction resets rows without
  FBGEMM's CUDA-only reset op and their MCH buffers go into the DCP checkpoint
  (``rankers/local_lookup.py``). Their per-rank state resumes under the same world size only.

Works with gloo on CPU and NCCL on GPU. With one process it is still the same sharded model.
"""
from __future__ import annotations

import functools
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from semid.core.errors import SemidError, out_of_room
from semid.rankers.checkpoints import LOOP_STATE, load_failed, read_checkpoint
from semid.rankers.records import TablePlan

if TYPE_CHECKING:  # types only: torchrec is imported inside the functions using it (~0.5 s more at import time)
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder, ShardedEmbeddingBagCollection
    from torchrec.distributed.mc_embeddingbag import (ManagedCollisionEmbeddingBagCollectionSharder,
                                                      ShardedManagedCollisionEmbeddingBagCollection)
    from torchrec.distributed.types import ParameterSharding, ShardingEnv, ShardingPlan
    from torchrec.modules.mc_embedding_modules import ManagedCollisionEmbeddingBagCollection

    from semid.embeddings.torchrec_io import FusedParams

_LOOP_STATE = LOOP_STATE
_ROW_BLOCK = 4096


@dataclass
class ShardingConfig:
    """Sharding constraints. ``sharding_types`` applies to every table unless ``per_table`` names it."""

    sharding_types: list[str] | None = None  # e.g. ["table_wise"], ["row_wise"]; None: the planner decides
    per_table: dict[str, list[str]] = field(default_factory=dict)
    compute_kernel: str = "fused"
    batch_size_hint: int | None = None  # the planner's per-rank batch size estimate
    # world size 1: call the FBGEMM kernels DMP created directly, without its input/output distribution
    # (rankers/local_lookup.py; same tables, plan, optimizer state and checkpoints, bit-identical results)
    local_lookup: bool = True

    def __post_init__(self) -> None:
        from torchrec.distributed.types import ShardingType

        valid = {s.value for s in ShardingType}
        for t in list(self.sharding_types or []) + [x for v in self.per_table.values() for x in v]:
            if t not in valid:
                raise SemidError(f"sharding type '{t}' is not one of {', '.join(sorted(valid))}")


def _sharders(fused_params: FusedParams, local_lookup: bool = False,
              table_seed: int = 0) -> list[EmbeddingBagCollectionSharder | ManagedCollisionEmbeddingBagCollectionSharder]:
    """[the EBC sharder, the managed-collision EBC sharder built around it]: DMP picks one per module type."""
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.mc_embeddingbag import ManagedCollisionEmbeddingBagCollectionSharder
    from torchrec.distributed.types import ShardingType

    class _Sharder(EmbeddingBagCollectionSharder):
        # the stock sharder offers row-wise family shardings only on cuda; they are correct on cpu
        def sharding_types(self, compute_device_type: str) -> list[str]:
            types = super().sharding_types(compute_device_type)
            if compute_device_type == "cpu":
                extra = [ShardingType.ROW_WISE.value, ShardingType.TABLE_ROW_WISE.value, ShardingType.GRID_SHARD.value]
                types += [t for t in extra if t not in types]
            return types

        def shard(self, module: EmbeddingBagCollection, params: dict[str, ParameterSharding], env: ShardingEnv,
                  device: torch.device | None = None, module_fqn: str | None = None) -> ShardedEmbeddingBagCollection:
            if not local_lookup:
                return super().shard(module, params, env, device, module_fqn)
            from semid.rankers.local_lookup import LocalShardedEmbeddingBagCollection

            # the stock sharded module (same constructor arguments), with the world-size-1 fast path
            return LocalShardedEmbeddingBagCollection(
                module=module, table_name_to_parameter_sharding=params, env=env, fused_params=self.fused_params,
                device=device, qcomm_codecs_registry=self.qcomm_codecs_registry, module_fqn=module_fqn,
                sharded_module_order_overwrite=self._sharded_module_order_overwrite)

    class _McSharder(ManagedCollisionEmbeddingBagCollectionSharder):
        # TorchRec's sharded MC-EBC, with an eviction reset that runs on CPU and restarts a row exactly as
        # init_tables began it (rankers/local_lookup.py), and the world-size-1 fast path where it applies.
        # Its sharding types are those of the EBC sharder and of the MC sharder (row_wise only): on CPU
        # that is row_wise because _Sharder adds it.
        def shard(self, module: ManagedCollisionEmbeddingBagCollection, params: dict[str, ParameterSharding],
                  env: ShardingEnv, device: torch.device | None = None,
                  module_fqn: str | None = None) -> ShardedManagedCollisionEmbeddingBagCollection:
            from semid.rankers.local_lookup import LocalShardedManagedCollisionEBC

            return LocalShardedManagedCollisionEBC(
                module, params, ebc_sharder=self._e_sharder, mc_sharder=self._mc_sharder, env=env,
                device=device or torch.device("cpu"), initial_rows=functools.partial(_rows, table_seed),
                local_lookup=local_lookup)

    ebc = _Sharder(fused_params=fused_params)
    return [ebc, _McSharder(ebc_sharder=ebc)]


class TorchRecStrategy(DDPStrategy):
    strategy_name = "torchrec"

    def __init__(self, sharding: ShardingConfig | None = None, fused_params: FusedParams | None = None,
                 table_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sharding = sharding or ShardingConfig()
        self.fused_params = dict(fused_params or {})
        self.table_seed = table_seed
        self.plan: ShardingPlan | None = None
        # the end of the one-line error for a damaged checkpoint (None: rerun with --no-resume or delete it);
        # `rank eval` tells the user to retrain instead
        self.damaged_fix: str | None = None

    # -- environment --------------------------------------------------------------------------------
    def setup_environment(self) -> None:
        # the planner's topology and torchrec's row-wise families read LOCAL_WORLD_SIZE
        os.environ["LOCAL_WORLD_SIZE"] = str(len(self.parallel_devices or [1]))
        super().setup_environment()

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True  # sharded state can only be loaded into the sharded model

    @property
    def lightning_restore_optimizer(self) -> bool:
        return False  # load_checkpoint restores model and optimizer together through DCP

    # -- sharding --------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer) -> None:
        assert self.accelerator is not None and self.model is not None
        self.accelerator.setup(trainer)
        self.model = self.shard(self.model)
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()

    def shard(self, module: nn.Module) -> DistributedModelParallel:
        """Plan and shard ``module``'s ``EmbeddingBagCollection`` tables with DMP on the current process group.

        What ``setup`` does to the LightningModule, callable on any ``nn.Module`` holding an
        ``EmbeddingBagCollection`` built on ``meta`` (the lookup benchmark, tests): each table constrained
        to ``self.sharding``'s sharding types (default: all but data_parallel) and compute kernel, the
        planner's plan kept in ``self.plan`` (``plan_summary``), DMP with this strategy's sharders (the
        world-size-1 fast path where ``sharding.local_lookup`` and it applies), the tables initialised
        from ``table_seed`` (``init_tables``) and ``module.fused_optimizer`` set to DMP's fused optimizer.

        Needs an initialised process group and ``LOCAL_WORLD_SIZE`` set (``setup_environment`` sets it).
        Returns the DMP-wrapped module; raises ``SemidError`` if ``module`` has no EmbeddingBagCollection.
        """
        from torchrec.distributed import DistributedModelParallel
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
        from torchrec.distributed.types import ShardingEnv

        tables = _table_configs(module)
        if not tables:
            raise SemidError("TorchRecStrategy needs a model with an EmbeddingBagCollection (the Dense Input "
                             "representation trains with the default strategy)")
        world = dist.get_world_size()
        device = self.root_device
        topology = Topology(world_size=world, compute_device=device.type,
                            local_world_size=int(os.environ["LOCAL_WORLD_SIZE"]))
        # every table on the fused kernel: left alone, the planner makes small tables data_parallel
        # with dense gradients, which the dense optimizer would then update (30x slower here)
        default_types = [s for s in _sharders(self.fused_params)[0].sharding_types(device.type)
                         if s != "data_parallel"]
        managed = _managed_tables(module)
        _one_bucket_per_rank(module, world)
        constraints = {}
        for t in tables:
            types = self.sharding.per_table.get(t.name, self.sharding.sharding_types) or default_types
            if t.name in managed:
                types = managed_sharding_types(self.sharding, t.name)
            constraints[t.name] = ParameterConstraints(sharding_types=list(types),
                                                       compute_kernels=[self.sharding.compute_kernel])
        sharders = _sharders(self.fused_params, local_lookup=self.sharding.local_lookup, table_seed=self.table_seed)
        planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints, debug=False,
                                           batch_size=self.sharding.batch_size_hint)
        self.plan = planner.collective_plan(module, sharders, dist.GroupMember.WORLD)
        dmp = DistributedModelParallel(module, env=ShardingEnv.from_process_group(dist.GroupMember.WORLD),
                                       device=device, plan=self.plan, sharders=sharders)
        init_tables(dmp, self.table_seed)
        module.fused_optimizer = dmp.fused_optimizer  # the LightningModule combines it with its dense one
        return dmp

    def plan_summary(self) -> dict[str, TablePlan]:
        """Per table: sharding type, kernel and ranks, read from the plan."""
        out = {}
        for _, module_plan in (self.plan.plan.items() if self.plan is not None else []):
            for table, ps in module_plan.items():
                ranks = sorted({s.placement.rank() for s in ps.sharding_spec.shards}) if ps.sharding_spec \
                    else ps.ranks
                out[table] = {"sharding_type": ps.sharding_type, "compute_kernel": ps.compute_kernel, "ranks": ranks}
        return out

    # -- training hooks ----------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # DCP does not carry optimizer param_groups: re-apply the restored schedulers' last LR
        for cfg in self.lr_scheduler_configs:
            for group, lr in zip(cfg.scheduler.optimizer.param_groups, cfg.scheduler.get_last_lr()):
                group["lr"] = lr
        super().on_train_start()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def lightning_module_state_dict(self) -> dict[str, torch.Tensor]:
        return {}  # the model goes through DCP in save_checkpoint

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        return {}

    def _dcp_state(self, with_optimizer: bool, for_load: bool = False) -> dict[str, dict[str, object]]:
        state: dict[str, dict[str, object]] = {"model": self.model.state_dict()}
        if with_optimizer and self.optimizers:
            opt = self.optimizers[0]
            if for_load:
                _materialise_dense_state(opt)
            state["optim"] = opt.state_dict()
        return state

    def save_checkpoint(self, checkpoint: dict[str, object], filepath: str | Path,
                        storage_options: object = None) -> None:
        import torch.distributed.checkpoint as dcp

        final = Path(filepath)
        tmp = final.with_name(f".{final.name}.tmp-dcp")
        if self.is_global_zero:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.barrier("dcp_mkdir")
        try:
            dcp.save(self._dcp_state(with_optimizer=True), checkpoint_id=str(tmp))
        except BaseException as e:  # DCP's CheckpointException derives from BaseException
            no_room = out_of_room(e, final)  # name the checkpoint: torch's message names no file
            if no_room is not None:
                raise no_room from None
            raise
        if self.is_global_zero:
            loop = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states")}
            loop["semid_world_size"] = self.world_size
            loop["semid_plan"] = self.plan_summary()
            torch.save(loop, tmp / _LOOP_STATE)
        self.barrier("dcp_written")
        if self.is_global_zero:
            old = final.with_name(f".{final.name}.old-dcp")
            if final.exists():
                # a kill during an earlier save's last rmtree leaves part of an old one: os.replace cannot
                # rename onto a non-empty directory
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        self.barrier("dcp_renamed")

    def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool | None = None) -> dict[str, object]:
        import torch.distributed.checkpoint as dcp

        path = Path(checkpoint_path)
        if not (path / _LOOP_STATE).exists():
            raise SemidError(f"{path} is not a semid sharded checkpoint (no {_LOOP_STATE}); "
                             "pass a checkpoint directory written by `semid rank fit`")
        loop = read_checkpoint(path, self.damaged_fix)
        saved_world = loop.get("semid_world_size", self.world_size)
        if saved_world != self.world_size and _managed_tables(self.model):
            # row-wise MCH state is per rank: each rank's sorted ids are those of its own block of the id space
            raise SemidError(f"{path}: its managed-collision (kind: mch) tables were checkpointed by {saved_world} "
                             f"process(es), each holding the ids of its own block; this run has {self.world_size} "
                             f"(resume with trainer.devices={saved_world}, or pass --no-resume to start over)")
        fitting = self.lightning_module.trainer.state.fn == TrainerFn.FITTING
        state = self._dcp_state(with_optimizer=fitting, for_load=True)
        try:
            dcp.load(state, checkpoint_id=str(path))
        except BaseException as e:  # DCP's CheckpointException derives from BaseException
            if _interrupted(e):
                raise KeyboardInterrupt from None  # a signal during the load: the usual one line
            # bytes garbled inside a shard of the right length: read_checkpoint cannot see them without reading
            # every tensor twice
            raise load_failed(e, path, self.damaged_fix) from None
        self.model.load_state_dict(state["model"])
        if "optim" in state:
            self.optimizers[0].load_state_dict(state["optim"])
        return {**loop, "state_dict": {}, "optimizer_states": []}

    def load_model_state_dict(self, checkpoint: Mapping[str, object], strict: bool = True) -> None:
        pass  # already loaded into the sharded model by load_checkpoint

    def remove_checkpoint(self, filepath: str | Path) -> None:
        if self.is_global_zero:
            shutil.rmtree(filepath, ignore_errors=True)

    def setup_distributed(self) -> None:
        self._owns_process_group = not dist.is_initialized()
        if not self._owns_process_group or self.num_nodes * len(self.parallel_devices or [1]) > 1:
            super().setup_distributed()
            return
        # One process: an in-memory store instead of a TCP rendezvous on a free port picked in advance,
        # which parallel fits (semid experiment, benchmarks, tests) raced for (EADDRINUSE).
        from lightning.fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        self._process_group_backend = self._get_process_group_backend()
        dist.init_process_group(self._process_group_backend, store=dist.HashStore(), rank=0, world_size=1,
                                timeout=self._timeout,
                                device_id=self.root_device if self.root_device.type != "cpu" else None)

    def teardown(self) -> None:
        from torchrec.distributed import DistributedModelParallel

        if isinstance(self.model, DistributedModelParallel):
            self.model = self.lightning_module
        lm = self.lightning_module
        if lm is not None and any(p.is_meta for p in lm.parameters()):
            # setup failed before sharding: Lightning's teardown would copy the meta tables to CPU and
            # replace the real error with "Cannot copy out of meta tensor"
            lm.cpu = lambda: lm  # type: ignore[method-assign]
        super().teardown()
        # leave the process as we found it: a later fit (or anything else) in the same process
        # initialises its own group instead of inheriting this run's
        if getattr(self, "_owns_process_group", False) and dist.is_initialized():
            dist.destroy_process_group()


def _interrupted(e: BaseException) -> bool:
    """Whether ``e`` is, or DCP wrapped, a KeyboardInterrupt (the CLI's SIGINT and SIGTERM)."""
    if isinstance(e, KeyboardInterrupt):
        return True
    failures = getattr(e, "failures", None)
    return isinstance(failures, dict) and any(isinstance(f, tuple) and isinstance(f[0], KeyboardInterrupt)
                                              for f in failures.values())


def sparse_lookup_paths(model: nn.Module) -> dict[str, str]:
    """Per sharded ``EmbeddingBagCollection`` (or managed-collision collection) in ``model``: "local" when its
    forward takes the world-size-1 fast path (rankers/local_lookup.py), "dmp" when it runs DMP's input/output
    distribution. The collection inside a managed-collision one is named by its owner (its own forward is
    never called)."""
    from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection
    from torchrec.distributed.mc_embeddingbag import ShardedManagedCollisionEmbeddingBagCollection

    modules = dict(model.named_modules())
    inner = {f"{name}._embedding_module" for name, m in modules.items()
             if isinstance(m, ShardedManagedCollisionEmbeddingBagCollection)}
    return {name: "local" if getattr(m, "local_lookup", None) is not None else "dmp"
            for name, m in modules.items() if name not in inner and
            isinstance(m, (ShardedEmbeddingBagCollection, ShardedManagedCollisionEmbeddingBagCollection))}


def _managed_tables(module: nn.Module) -> set[str]:
    """Names of the tables inside managed-collision collections (``kind: mch``), sharded or not."""
    from torchrec.distributed.mc_embeddingbag import ShardedManagedCollisionEmbeddingBagCollection
    from torchrec.modules.mc_embedding_modules import ManagedCollisionEmbeddingBagCollection

    out = set()
    for m in module.modules():
        if isinstance(m, ManagedCollisionEmbeddingBagCollection):
            out |= {t.name for t in m._embedding_module.embedding_bag_configs()}
        elif isinstance(m, ShardedManagedCollisionEmbeddingBagCollection):
            out |= set(m._managed_collision_collection._managed_collision_modules)
    return out


def _one_bucket_per_rank(module: nn.Module, world: int) -> None:
    """Give each managed-collision module one bucket per rank before planning: the planner refuses a bucket
    count the world size does not divide (TorchRec's uneven-bucket planning is off by default), and the
    modules are built with 1. One bucket per rank is what row-wise sharding does anyway: rank r manages the
    r-th block of the id space (and sharding rebuilds the modules with that many buckets)."""
    from torchrec.modules.mc_modules import MCHManagedCollisionModule

    for m in module.modules():
        if isinstance(m, MCHManagedCollisionModule):
            m._buckets = world


def managed_sharding_types(sharding: ShardingConfig, table: str) -> list[str]:
    """``["row_wise"]``: TorchRec 1.8 shards a managed-collision table row-wise only (its MC sharder offers
    nothing else); a ``sharding`` that asks ``table`` for other types only is a one-line error (``rank fit``
    checks it before any work)."""
    types = sharding.per_table.get(table, sharding.sharding_types)
    if types is None or "row_wise" in types:
        return ["row_wise"]
    field = f"sharding.per_table.{table}" if table in sharding.per_table else "sharding.sharding_types"
    raise SemidError(f"{field}: table '{table}' is a managed-collision (kind: mch) table, which TorchRec shards "
                     f"only row_wise (got {', '.join(types)}) (add row_wise, or set sharding.per_table.{table}="
                     "[row_wise])")


def _materialise_dense_state(opt: torch.optim.Optimizer) -> None:
    """DCP loads into existing tensors, so a fresh dense optimizer needs its state created first.

    Only on load and only while empty: ``init_state`` takes a zero-gradient step, which moves the
    weights once Adam's moments are non-zero — calling it on save would change training."""
    parts = getattr(opt, "_optims", [("dense", opt)])
    for _, sub in parts:
        if hasattr(sub, "init_state") and not getattr(sub, "state", None) and not _is_fused(sub):
            sub.init_state()


def _is_fused(opt: torch.optim.Optimizer) -> bool:
    from torchrec.optim.keyed import KeyedOptimizerWrapper

    return not isinstance(opt, KeyedOptimizerWrapper)


def _table_configs(module: nn.Module) -> list[EmbeddingBagConfig]:
    from torchrec import EmbeddingBagCollection

    return [t for m in module.modules() if isinstance(m, EmbeddingBagCollection) for t in m.embedding_bag_configs()]


def init_tables(dmp: nn.Module, seed: int) -> None:
    """Uniform(±1/sqrt(rows)) weights from a generator per (seed, table, row block), written into each
    rank's local shards: the same initial tables whatever the plan or world size."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    for key, value in dmp.state_dict().items():
        if not key.endswith(".weight") or ".embedding_bags." not in key:
            continue
        table = key.split(".embedding_bags.")[1].rsplit(".", 1)[0]
        if isinstance(value, ShardedTensor):
            rows_total, dim = value.size()
            for shard in value.local_shards():
                r0, c0 = shard.metadata.shard_offsets
                nr, nc = shard.metadata.shard_sizes
                block = _rows(seed, table, rows_total, dim, r0, r0 + nr)
                with torch.no_grad():
                    shard.tensor.copy_(block[:, c0:c0 + nc].to(shard.tensor.dtype))
        elif isinstance(value, torch.Tensor):
            rows_total, dim = value.shape
            with torch.no_grad():
                value.copy_(_rows(seed, table, rows_total, dim, 0, rows_total).to(value.dtype))


def _rows(seed: int, table: str, rows_total: int, dim: int, lo: int, hi: int) -> torch.Tensor:
    bound = 1.0 / float(rows_total) ** 0.5
    out = torch.empty(hi - lo, dim)
    tid = zlib.crc32(table.encode())
    for b in range(lo // _ROW_BLOCK, (hi - 1) // _ROW_BLOCK + 1 if hi > lo else lo // _ROW_BLOCK):
        g = torch.Generator().manual_seed(hash((seed, tid, b)) & 0x7FFFFFFFFFFFFFFF)
        start = b * _ROW_BLOCK
        n = min(_ROW_BLOCK, rows_total - start)
        full = torch.empty(n, dim).uniform_(-bound, bound, generator=g)
        a, z = max(lo, start), min(hi, start + n)
        out[a - lo:z - lo] = full[a - start:z - start]
    return out
