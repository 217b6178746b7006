"""Library chatter that tells a semid user nothing, silenced for the length of a job.

Lightning's banners (GPU/TPU available, tips), TorchRec's planner notes, deprecation warnings aimed at
library authors and warnings about things semid does on purpose (an IterableDataset with ``__len__``,
short days below the logging interval) would otherwise bury the one line that matters. Warnings that
could mean a wrong result are left alone. ``SEMID_VERBOSE=1`` (or ``semid --debug``) keeps everything.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Iterator

# logger -> the lowest level still shown
_LOGGERS = {
    "lightning.pytorch.utilities.rank_zero": logging.WARNING,  # "GPU available: ...", tips
    "lightning.pytorch.accelerators.cuda": logging.WARNING,
    "lightning.fabric.utilities.seed": logging.WARNING,
    "lightning.fabric.utilities.distributed": logging.WARNING,
    "lightning.pytorch.utilities.distributed": logging.WARNING,
    "lightning.pytorch.trainer.connectors.checkpoint_connector": logging.WARNING,  # "`weights_only` was not set"
    "torchrec.distributed.planner": logging.ERROR,  # topology/storage-reservation advice for their own CI
    "torchrec.distributed.comm": logging.ERROR,  # "[Connection] intra_group ..."
    "torch.fx._symbolic_trace": logging.ERROR,  # "is_fx_tracing will return true for both ..."
}
# (message regex, category) of warnings about what semid does deliberately
_WARNINGS = [
    (r".*IterableDataset. has .__len__. defined", UserWarning),  # batches are built in-process
    (r".*treespec, LeafSpec.*deprecated", Warning),
    (r".*number of training batches .* is smaller than the logging interval", UserWarning),  # short days
    (r".*Total length of .* across ranks is zero", UserWarning),  # a day without validation batches
    (r".*overridden .transfer_batch_to_device. in .LightningModule.", UserWarning),  # KJTs move themselves
    (r".*", FutureWarning),  # deprecations inside torch/torchrec/lightning, not in semid's calls
]


def verbose() -> bool:
    return os.environ.get("SEMID_VERBOSE") == "1" or os.environ.get("SEMID_DEBUG") == "1"


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    if verbose():
        yield
        return
    loggers = {name: logging.getLogger(name) for name in _LOGGERS}
    before = {name: lg.level for name, lg in loggers.items()}
    for name, lg in loggers.items():
        lg.setLevel(max(_LOGGERS[name], lg.getEffectiveLevel()))
    try:
        with warnings.catch_warnings():
            for message, category in _WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for name, lg in loggers.items():
            lg.setLevel(before[name])
