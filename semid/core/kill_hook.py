"""Test hook: ``SEMID_TEST_KILL_AT_STEP=N`` makes a training process ``SIGKILL`` itself at the end of step N
(``SEMID_TEST_KILL_SIGNAL=TERM`` sends that signal instead, as a scheduler or Ctrl-C would).

Tests use it to interrupt a run at a known point (after a checkpoint, in the middle of a day) without
racing a timer on a busy machine. Every rank of a multi-process run kills itself at the same step, as a
node failure would take them all. Unset, it adds nothing.
"""
from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L

from semid.core.errors import SemidError

ENV = "SEMID_TEST_KILL_AT_STEP"
SIGNAL_ENV = "SEMID_TEST_KILL_SIGNAL"


class KillAtStep(L.Callback):
    def __init__(self, step: int, signum: int = signal.SIGKILL) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def kill_hooks() -> list[L.Callback]:
    """The hook that ``SEMID_TEST_KILL_AT_STEP`` asks for, or none; a malformed value is one line naming it.

    >>> kill_hooks() if ENV not in os.environ else []
    []
    """
    step = os.environ.get(ENV)
    if not step:
        return []
    name = os.environ.get(SIGNAL_ENV, "KILL")
    if not step.isdigit() or name not in ("KILL", "TERM", "INT"):
        raise SemidError(f"{ENV}={step} {SIGNAL_ENV}={name}: expected a step number and one of KILL, TERM, INT "
                         f"(unset {ENV} outside tests)")
    return [KillAtStep(int(step), signal.Signals[f"SIG{name}"])]
