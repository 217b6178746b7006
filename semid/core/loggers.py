"""One logger policy for every stage (RQ-VAE and ranker training): a CSV log, and W&B.

W&B runs offline unless the user is logged in (``WANDB_API_KEY`` or a ``~/.netrc`` entry for
api.wandb.ai, as ``wandb login`` writes) or sets ``WANDB_MODE``; offline runs land in
``<out>/wandb/offline-run-*`` (``wandb sync`` uploads them). A run's W&B id is derived from its run
directory, so a resumed run continues the same W&B run (``resume="allow"``) instead of starting another.

Offline, W&B cannot resume a run: each attempt writes its own ``offline-run-*-<id>`` directory, and an attempt
killed with -9 may leave nothing of its history (wandb-core flushes its log every few seconds: an attempt
killed 6 s after its first rows left a header-only ``.wandb`` file). So an offline attempt that resumes from a
checkpoint first replays the CSV log's rows through that checkpoint (the CSV log is continued across resumes,
``semid.core.csv_log``), and the earlier attempts' directories move to ``wandb/superseded/``: ``<out>/wandb``
holds one run per run directory with every step from the first, and ``wandb sync <out>/wandb/offline-run-*``
uploads it whole.
"""
from __future__ import annotations

import csv
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

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


class _ContinuedWandbLogger(WandbLogger):
    """An offline W&B logger whose first row is preceded by the CSV log's rows of earlier steps: in a resumed
    attempt those are the rows through the checkpoint (the attempt's first row comes after it); in a fresh
    attempt there are none."""

    def __init__(self, *args: Any, history: CSVLogger, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._history: CSVLogger | None = history

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        history, self._history = self._history, None
        if history is not None and step is not None:
            for s, row in _csv_rows_before(Path(history.log_dir) / "metrics.csv", step):
                super().log_metrics(row, step=s)
        super().log_metrics(metrics, step=step)


def _csv_rows_before(path: Path, step: int) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) of a CSV log's rows logged before ``step``, in the log's order."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = [(int(float(r.get("step") or 0)), r) for r in csv.DictReader(f)]
    return [(s, {k: float(v) for k, v in r.items() if k != "step" and v not in ("", None)}) for s, r in rows if s < step]


def set_aside_earlier_attempts(wandb_dir: Path, run_id: str) -> None:
    """Move earlier attempts' offline runs of ``run_id`` out of the way (kept for inspection): the new attempt's
    run holds their history through its checkpoint, and two offline runs of one id would overlap on sync."""
    earlier = sorted(wandb_dir.glob(f"offline-run-*-{run_id}"))
    if earlier:
        (wandb_dir / "superseded").mkdir(exist_ok=True)
        for d in earlier:
            os.replace(d, wandb_dir / "superseded" / d.name)


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
        run_id, mode = wandb_run_id(run_key or out), wandb_mode()
        kw: dict[str, Any] = dict(project=project, group=group, name=run_name, save_dir=str(out), id=run_id,
                                  config=config, mode=mode)
        # online, W&B continues the run from the server's history by itself; offline the CSV log is the only
        # record of the interrupted attempt's rows
        history = next((lg for lg in loggers if isinstance(lg, CSVLogger)), None)
        if mode == "offline" and history is not None:
            if rank_zero_only.rank == 0:
                set_aside_earlier_attempts(out / "wandb", run_id)
            lg = _ContinuedWandbLogger(history=history, **kw)
        else:
            lg = WandbLogger(**kw)
        # Lightning passes anonymous=None, which current wandb answers with a deprecation warning on every run
        lg._wandb_init.pop("anonymous", None)
        loggers.append(lg)
    return loggers
