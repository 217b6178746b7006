"""Lightning's CSV log across a resume: a resumed run's CSVLogger starts a new ``metrics.csv`` and would
delete the interrupted attempt's rows; these put back the rows that the checkpoint already covers."""
from __future__ import annotations

import csv
import itertools
import warnings
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger


def csv_rows(path: Path) -> int:
    """Data rows in a CSV log (0 if there is none yet)."""
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return max(sum(1 for _ in f) - 1, 0)


def rows_through_step(path: Path, step: int) -> int:
    """How many leading rows of a CSV log were logged at or before ``step``."""
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return sum(1 for _ in itertools.takewhile(lambda r: int(float(r.get("step") or 0)) <= step,
                                                  csv.DictReader(f)))


def continue_csv_log(logger: CSVLogger, rows: int) -> None:
    """Put the first ``rows`` rows of an interrupted attempt's CSV log (those on disk at its checkpoint)
    back ahead of the resumed run's rows."""
    path = Path(logger.log_dir) / "metrics.csv"
    kept: list[dict[str, str]] = []
    if path.exists():
        with open(path, newline="") as f:
            kept = [{k: v for k, v in row.items() if v != ""} for row in itertools.islice(csv.DictReader(f), rows)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exists and is not empty")
        logger.experiment.metrics[:0] = kept  # Lightning's writer deletes the old file here ...
    logger.save()  # ... and this writes the kept rows back at once
