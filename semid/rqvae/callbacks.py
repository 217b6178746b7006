"""Side concerns of RQ-VAE training, as Lightning callbacks: dead-code resets and train-time code usage.

Both keep state across steps; ``state_dict``/``load_state_dict`` put it in Lightning's checkpoints, so a
resumed run resets the same codes and logs the same usage as an uninterrupted one.
"""
from __future__ import annotations

from typing import cast

import lightning as L
import torch
from lightning.pytorch.utilities.types import STEP_OUTPUT

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
            # distinct residuals while there are enough of them, so two revived codes do not coincide
            if n <= batch:
                pick = torch.randperm(batch, generator=generator)[:n]
            else:
                pick = torch.randint(batch, (n,), generator=generator)
            codebooks[level, dead[level]] = residuals[level, pick.to(residuals.device)].to(codebooks.dtype)
    return n_reset


class DeadCodeReset(L.Callback):
    """After every optimizer step, reset the codes that no item chose for ``dead_after_steps`` steps."""

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
        if self.last_used is None:
            # as if every code had been chosen in the batch before the first one
            self.last_used = torch.full((levels, k), step - 1, dtype=torch.long)
        used = torch.zeros(levels, k, dtype=torch.bool)
        for level in range(levels):
            used[level, q.codes[:, level].cpu()] = True
        self.last_used[used] = step
        dead = (step - self.last_used) >= self.dead_after_steps
        n = torch.zeros(levels, dtype=torch.long)
        if dead.any():
            device = quantizer.codebooks.device
            n = reset_dead_codes(quantizer.codebooks.data, q.residuals, dead.to(device), self.generator).cpu()
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
