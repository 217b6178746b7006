"""One logger policy for every stage (RQ-VAE and ranker training): a CSV log, and W&B.

W&B runs offline unless the user is logged in (``WANDB_API_KEY`` or a ``~/.netrc`` entry for
api.wandb.ai, as ``wandb login`` writes) or sets ``WANDB_MODE``; offline runs land in
``<out>/wandb/offline-run-*`` (``wandb sync`` uploads them). A run's W&B id is derived from its run
directory, so a resumed run continues the same W&B run (``resume="allow"``) instead of starting another.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from semid.core.fingerprint import fingerprint_of

LOGGERS = ("csv", "wandb")


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else online when logged in, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        return "online" if netrc.netrc().authenticators("api.wandb.ai") else "offline"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return "offline"


def wandb_run_id(out: Path) -> str:
    """The same id for every attempt of the run in ``out`` (a resume continues the W&B run)."""
    return fingerprint_of(["wandb-run", str(Path(out).resolve())])


def build_loggers(kinds: list[str], out: Path, *, run_name: str, project: str, group: str | None,
                  config: dict[str, Any], csv_name: str = "csv", run_key: Path | None = None) -> list[Logger]:
    """``out``: where the logs go; ``run_key``: the directory that names the run (default ``out``; a stage that
    builds in a temporary directory passes its final one)."""
    loggers: list[Logger] = []
    if "csv" in kinds:
        loggers.append(CSVLogger(out, name=csv_name, version=""))
    if "wandb" in kinds:
        os.environ.setdefault("WANDB_SILENT", "true")
        (out / "wandb").mkdir(parents=True, exist_ok=True)
        lg = WandbLogger(project=project, group=group, name=run_name, save_dir=str(out), id=wandb_run_id(run_key or out),
                         config=config, mode=wandb_mode())
        # Lightning passes anonymous=None, which current wandb answers with a deprecation warning on every run
        lg._wandb_init.pop("anonymous", None)
        loggers.append(lg)
    return loggers
