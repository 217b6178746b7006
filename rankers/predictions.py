"""Evaluation-day predictions, saved per run: what a paired comparison of two runs joins on.

One Parquet file per (evaluation day, rank): ``<run>/predictions/day=NNNN/rank-R.parquet`` with the
impression's row in its day (the day files' order, so two runs on the same corpus see the same rows),
the candidate item, its slice (new on that day, head/torso/tail), both tasks' logits and labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch import Tensor

from semid.datamodules import RankingBatch
from semid.core.artifacts import atomic_path
from semid.core.errors import SemidError

SCHEMA = pa.schema([("row", pa.int64()), ("item_id", pa.int64()), ("is_new", pa.bool_()),
                    ("popularity", pa.int8()), ("ctr_logit", pa.float32()), ("engaged_logit", pa.float32()),
                    ("click", pa.int8()), ("engaged", pa.int8())])


class PredictionLog:
    """Collects one evaluation's predictions batch by batch (numpy on the CPU), then writes them."""

    def __init__(self) -> None:
        self._parts: list[dict[str, np.ndarray]] = []

    def add(self, logits: Tensor, batch: RankingBatch) -> None:
        if batch.row is None or batch.item_id is None:
            return  # a batch built without impression keys (tests, benchmarks): nothing to pair on
        lg = logits.detach().float().cpu().numpy()
        lab = batch.labels.detach().cpu().numpy()
        self._parts.append({"row": batch.row.numpy(), "item_id": batch.item_id.numpy(),
                            "is_new": batch.is_new.cpu().numpy().astype(bool),
                            "popularity": batch.popularity.cpu().numpy().astype(np.int8),
                            "ctr_logit": lg[:, 0], "engaged_logit": lg[:, 1],
                            "click": lab[:, 0].astype(np.int8), "engaged": lab[:, 1].astype(np.int8)})

    def write(self, directory: Path, day: int, rank: int) -> Path | None:
        if not self._parts:
            return None
        cols = {k: np.concatenate([p[k] for p in self._parts]) for k in SCHEMA.names}
        order = np.argsort(cols["row"], kind="stable")
        table = pa.table({k: pa.array(v[order], type=SCHEMA.field(k).type) for k, v in cols.items()}, schema=SCHEMA)
        path = Path(directory) / f"day={day:04d}" / f"rank-{rank}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        self._parts = []
        return path

    def reset(self) -> None:
        self._parts = []


def read_predictions(run_dir: str | Path, day: int) -> pa.Table:
    """Every rank's predictions of ``day`` in ``run_dir``, ordered by impression row."""
    d = Path(run_dir) / "predictions" / f"day={day:04d}"
    files = sorted(d.glob("rank-*.parquet"))
    if not files:
        raise SemidError(f"{d}: no predictions saved for day {day} (rerun the fit with this semid version)")
    t = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files])
    return t.take(pa.compute.sort_indices(t, [("row", "ascending")]))
