"""Side concerns of RQ-VAE training, as Lightning callbacks: dead-code resets, train-time code usage and,
on several processes, the check that every rank holds the same codebooks.

The first two keep state across steps; ``state_dict``/``load_state_dict`` put it in Lightning's
checkpoints, so a resumed run resets the same codes and logs the same usage as an uninterrupted one.

Several processes (DDP): gradients are averaged, so every rank takes the same optimizer step, but a reset
writes codebook rows directly. Each rank resetting from its own batch would revive different codes with
different residuals and the codebooks would drift apart for good. So a reset is decided once per step for
the global batch: code usage is summed over ranks, rank 0 decides which codes are dead and which rows of
the global batch revive them, broadcasts that, and the chosen residuals are assembled from the ranks that
hold them (a sum in which every other rank adds zeros, exact in floating point).
"""
from __future__ import annotations

from typing import cast

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities.types import STEP_OUTPUT

from semid.rqvae.records import CodebookAgreementResult
from semid.rqvae.health import CodeUsage
from semid.rqvae.module import RqvaeModule


def reset_dead_codes(codebooks: torch.Tensor, residuals: torch.Tensor, dead: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """Replace dead codes by randomly chosen in-batch residuals of their level (paper A.1).

    codebooks [L, K, d] (modified in place), residuals r [L, B, d], dead [L, K] bool.
    Returns the number of codes reset per level [L].
    """
    levels, batch = residuals.shape[0], residuals.shape[1]
    n_reset = dead.sum(dim=1)
    with torch.no_grad():
        for level in range(levels):
            n = int(n_reset[level])
            if n == 0:
                continue
            pick = _draw_rows(n, batch, generator)
            codebooks[level, dead[level]] = residuals[level, pick.to(residuals.device)].to(codebooks.dtype)
    return n_reset


def _draw_rows(n: int, rows: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` batch rows: distinct while there are enough of them, so two revived codes do not coincide."""
    if n <= rows:
        return torch.randperm(rows, generator=generator)[:n]
    return torch.randint(rows, (n,), generator=generator)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def reset_dead_codes_global(codebooks: torch.Tensor, residuals: torch.Tensor, dead: torch.Tensor,
                            generator: torch.Generator) -> torch.Tensor:
    """``reset_dead_codes`` over the batch of every rank together (one call per rank, all ranks at once).

    ``dead`` [L, K] must be the same on every rank (it is: decided from summed usage, see ``DeadCodeReset``);
    rank 0 draws the rows of the global batch (ranks' batches concatenated in rank order) with ``generator``
    and broadcasts them; every rank ends with the same codebooks. Returns codes reset per level [L].
    """
    levels, batch, d = residuals.shape
    device = codebooks.device
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(_world_size())]
    dist.all_gather(sizes, torch.tensor([batch], dtype=torch.long, device=device))
    sizes_ = [int(t) for t in sizes]
    rank, total = dist.get_rank(), sum(sizes_)
    n_reset = dead.sum(dim=1).cpu()
    n_all = int(n_reset.sum())
    if n_all == 0:
        return n_reset
    picks = torch.zeros(n_all, dtype=torch.long, device=device)
    if rank == 0:
        picks.copy_(torch.cat([_draw_rows(int(n), total, generator) for n in n_reset]).to(device))
    dist.broadcast(picks, src=0)
    level_of = torch.repeat_interleave(torch.arange(levels, device=device), n_reset.to(device))
    start = sum(sizes_[:rank])
    mine = (picks >= start) & (picks < start + batch)
    chosen = torch.zeros(n_all, d, dtype=codebooks.dtype, device=device)
    chosen[mine] = residuals[level_of[mine], picks[mine] - start].to(codebooks.dtype)
    dist.all_reduce(chosen)  # each row is held by one rank; the others add 0.0, so the sum is that row exactly
    with torch.no_grad():
        offset = 0
        for level in range(levels):
            n = int(n_reset[level])
            if n:
                codebooks[level, dead[level]] = chosen[offset:offset + n]
            offset += n
    return n_reset


class DeadCodeReset(L.Callback):
    """After every optimizer step, reset the codes that no item chose for ``dead_after_steps`` steps (on
    several processes: no item of any rank; see the module docstring)."""

    def __init__(self, dead_after_steps: int, seed: int) -> None:
        self.dead_after_steps = dead_after_steps
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self.last_used: torch.Tensor | None = None  # [L, K] step at which each code was last chosen

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                           batch: torch.Tensor, batch_idx: int) -> None:
        assert isinstance(pl_module, RqvaeModule)
        if pl_module.last_quantized is None:
            return
        self.apply(pl_module, trainer.global_step, trainer.optimizers)
        for level in range(pl_module.model_cfg.levels):
            pl_module.log(f"resets/total_l{level}", pl_module.dead_code_resets[level].float())

    def apply(self, pl_module: RqvaeModule, step: int, optimizers: list[torch.optim.Optimizer]) -> torch.Tensor:
        """Mark the codes of ``pl_module.last_quantized`` as used at ``step``, reset the dead ones.

        Returns the number of codes reset per level [L] (also added to ``pl_module.dead_code_resets``).
        """
        q = pl_module.last_quantized
        assert q is not None
        quantizer = pl_module.rqvae.quantizer
        levels, k = quantizer.levels, quantizer.codebook_size
        world = _world_size()
        device = quantizer.codebooks.device
        if self.last_used is None:
            # as if every code had been chosen in the batch before the first one
            self.last_used = torch.full((levels, k), step - 1, dtype=torch.long)
        used = torch.zeros(levels, k, dtype=torch.bool)
        for level in range(levels):
            used[level, q.codes[:, level].cpu()] = True
        if world > 1:  # chosen by an item of any rank
            counts = used.to(device=device, dtype=torch.long)
            dist.all_reduce(counts)
            used = counts.cpu() > 0
        self.last_used[used] = step
        dead = (step - self.last_used) >= self.dead_after_steps
        if world > 1:  # rank 0 decides; the others hold the same state, and now the same decision for certain
            dead_t = dead.to(device=device, dtype=torch.uint8)
            dist.broadcast(dead_t, src=0)
            dead = dead_t.cpu().bool()
        n = torch.zeros(levels, dtype=torch.long)
        if dead.any():
            reset = reset_dead_codes if world == 1 else reset_dead_codes_global
            n = reset(quantizer.codebooks.data, q.residuals, dead.to(device), self.generator).cpu()
            self.last_used[dead] = step
            pl_module.dead_code_resets += n.to(pl_module.dead_code_resets.device)
            _clear_optimizer_rows(optimizers, quantizer.codebooks, dead.to(device))
        return n

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        return {"last_used": self.last_used, "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor | None]) -> None:
        self.last_used = state_dict["last_used"]
        self.generator.set_state(cast(torch.Tensor, state_dict["generator"]))  # never None (see state_dict)


def _clear_optimizer_rows(optimizers: list[torch.optim.Optimizer], param: torch.nn.Parameter,
                          rows: torch.Tensor) -> None:
    """A revived code starts with fresh Adam moments, not the stale ones of the code it replaces."""
    for opt in optimizers:
        state = opt.state.get(param)
        if not state:
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][rows] = 0


class TrainCodeUsage(L.Callback):
    """Per-level utilisation and perplexity of the codes training batches chose, every ``every`` steps."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.usage: CodeUsage | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                           batch: torch.Tensor, batch_idx: int) -> None:
        assert isinstance(pl_module, RqvaeModule)
        q = pl_module.last_quantized
        if q is None:
            return
        if self.usage is None:
            cfg = pl_module.model_cfg
            self.usage = CodeUsage(cfg.levels, cfg.codebook_size)
        if self.usage.device != q.codes.device:  # created, or restored from a checkpoint, on the CPU
            self.usage = self.usage.to(q.codes.device)
        self.usage.update(q.codes)
        step = trainer.global_step
        if step % self.every and step != trainer.max_steps:
            return
        stats = self.usage.compute()
        metrics = {}
        for level in range(pl_module.model_cfg.levels):
            metrics[f"health/utilisation_l{level}"] = float(stats["utilisation"][level])
            metrics[f"health/perplexity_l{level}"] = float(stats["perplexity"][level])
            metrics[f"health/resets_l{level}"] = float(pl_module.dead_code_resets[level])
        # straight to the loggers: self.log would drop values on steps that miss log_every_n_steps
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.usage.reset()

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        """Counts since the last logged step (part of the next logged utilisation and perplexity)."""
        return {"counts": None if self.usage is None else self.usage.counts.cpu().clone()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor | None]) -> None:
        counts = state_dict["counts"]
        if counts is None:
            self.usage = None
            return
        self.usage = CodeUsage(*counts.shape)
        self.usage.counts.copy_(counts)


class CodebookAgreement(L.Callback):
    """At the end of training, whether every rank holds the same codebooks (``result``, for health.json):
    all ranks' codebooks are gathered and compared with rank 0's. One process: trivially identical."""

    def __init__(self) -> None:
        self.result: CodebookAgreementResult = {"world_size": 1, "codebooks_identical_across_ranks": True,
                                                       "max_abs_codebook_difference": 0.0}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, RqvaeModule)
        world = _world_size()
        if world == 1:
            return
        books = pl_module.rqvae.quantizer.codebooks.detach()
        gathered = [torch.empty_like(books) for _ in range(world)]
        dist.all_gather(gathered, books.contiguous())
        diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
        self.result = {"world_size": world, "codebooks_identical_across_ranks": diff == 0.0,
                       "max_abs_codebook_difference": diff}
