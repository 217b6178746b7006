"""A Stage-1 trainer stops when training diverges: a non-finite loss or weight is a ``TrainingDiverged`` (a
``SemidError``: one line naming the step and a fix, exit 2 through the CLI), never a model that gives every
item the same SID.

Huge but finite embeddings are the usual cause (their squares overflow float32), so the message gives the
largest magnitude of the training data::

    >>> print(diverged_message("RQ-VAE training", "step 37", "the loss is nan", 3e30))
    RQ-VAE training diverged at step 37: the loss is nan (the item embeddings have magnitudes up to 3e+30; normalise them, or lower train.lr)
"""
from __future__ import annotations

import math
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.utilities.types import STEP_OUTPUT

from semid.core.errors import SemidError


class TrainingDiverged(SemidError):
    """Training produced a non-finite loss or weight; nothing was exported. The message names the step and a fix.

    >>> import semid
    >>> issubclass(semid.TrainingDiverged, semid.SemidError)  # the CLI prints it as one line, exit 2
    True
    """


def diverged_message(what: str, where: str, problem: str, magnitude: float, fix: str = "lower train.lr") -> str:
    """The one line of a ``TrainingDiverged``: what diverged, where, and the fix (normalising comes first when
    the embeddings are far from unit scale)."""
    scale = f"the item embeddings have magnitudes up to {magnitude:.0e}; " if math.isfinite(magnitude) else ""
    advice = f"normalise them, or {fix}" if magnitude > 1e3 or magnitude < 1e-3 else f"{fix}, or normalise them"
    return f"{what} diverged at {where}: {problem} ({scale}{advice})"


def nonfinite_weights(module: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``module`` that hold NaN or inf."""
    named = list(module.named_parameters()) + list(module.named_buffers())
    return [n for n, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


class FiniteGuard(L.Callback):
    """Raises ``TrainingDiverged`` at the first step whose loss is not finite, and after the last step if a
    weight is not; ``magnitude()``: the largest absolute value of the training embeddings (computed only
    then). Put it first among the callbacks, so that nothing else sees the diverged step."""

    def __init__(self, magnitude: Callable[[], float], steps: int) -> None:
        self.magnitude, self.steps = magnitude, steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                           batch: object, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        # one scalar read per step (~µs on CPU)
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            self._fail(trainer.global_step, f"the loss is {float(loss):g}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bad = nonfinite_weights(pl_module)
        if bad:
            self._fail(trainer.global_step, f"weights are not finite ({', '.join(bad[:3])})")

    def _fail(self, step: int, problem: str) -> None:
        raise TrainingDiverged(diverged_message("RQ-VAE training", f"step {step} of {self.steps}", problem,
                                                self.magnitude()))
