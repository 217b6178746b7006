"""``semid score MODEL_DIR --requests R.parquet --out S.parquet``: stream requests through a ``Scorer``.

The requests are read in batches (``pyarrow.parquet.ParquetFile.iter_batches``) and each scored batch is appended
to the output (``ParquetWriter``, under a temporary name renamed into place at the end), so memory stays one
batch whatever the file's size. The output holds the request columns (less the embedding), both tasks'
probabilities and logits, the candidate's status (known / new / unknown) and, for SID representations, its SID.
With a ``click`` column the AUC is reported too (overall, and on candidates introduced on their request's day).
"""
from __future__ import annotations

import time
from pathlib import Path
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from semid.core.artifacts import atomic_path
from semid.core.errors import DataError
from semid.core.progress import bar
from semid.core.records import JsonObject
from semid.serve.artifact import Artifact, FeatureSchema, load_artifact
from semid.serve.requests import requests_from_arrow
from semid.serve.scorer import STATUS, Scorer, Scores

DEFAULT_BATCH = 4096


def output_table(batch: pa.RecordBatch | pa.Table, scores: Scores, schema: FeatureSchema) -> pa.Table:
    """The request columns (less ``embedding``) + ``<task>`` probabilities, ``<task>_logit``, ``status``, ``sid``."""
    cols: dict[str, pa.Array | pa.ChunkedArray] = {n: batch.column(n) for n in batch.schema.names if n != "embedding"}
    probs = scores.probabilities
    for t, task in enumerate(schema.tasks):
        cols[task] = pa.array(probs[:, t], pa.float32())
        cols[f"{task}_logit"] = pa.array(scores.logits[:, t], pa.float32())
    cols["status"] = pa.DictionaryArray.from_arrays(pa.array(scores.status, pa.int8()), pa.array(STATUS))
    if scores.sid is not None:
        flat = pa.array(scores.sid.reshape(-1), pa.int32())
        cols["sid"] = pa.FixedSizeListArray.from_arrays(flat, scores.sid.shape[1], mask=pa.array(scores.sid[:, 0] < 0))
    return pa.table(cols)


def score_file(model: str | Path | Artifact, requests: str | Path, out: str | Path, *, batch_size: int = DEFAULT_BATCH,
               allow_unknown: bool = False) -> JsonObject:
    """Score every row of ``requests`` into ``out``; returns a summary (rows, new / unknown candidates, AUCs)."""
    from torchmetrics.functional.classification import binary_auroc
    import torch

    artifact = model if isinstance(model, Artifact) else load_artifact(model)
    requests, out = Path(requests), Path(out)
    if batch_size < 1:
        raise DataError(requests, None, f"--batch-size must be >= 1, got {batch_size}")
    if not requests.exists():
        raise DataError(requests, None, "file is missing", "write the requests as Parquet (see `semid score --help`)")
    try:
        pf = pq.ParquetFile(requests)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(requests, None, f"not a readable Parquet file ({str(e).splitlines()[0]})") from None
    scorer = Scorer(artifact, allow_unknown=allow_unknown)
    n = pf.metadata.num_rows
    counts = np.zeros(len(STATUS), np.int64)
    clicks: list[np.ndarray] = []
    ctr: list[np.ndarray] = []
    new: list[np.ndarray] = []
    t0 = time.perf_counter()
    with atomic_path(out) as tmp, bar("scoring", total=n, unit="req") as progress:
        writer: pq.ParquetWriter | None = None
        try:
            for rb in pf.iter_batches(batch_size=batch_size):
                scores = scorer.score(requests_from_arrow(rb, requests, artifact.schema), where=str(requests))
                table = output_table(rb, scores, artifact.schema)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                counts += np.bincount(scores.status, minlength=len(STATUS))
                if "click" in rb.schema.names:
                    clicks.append(rb.column("click").to_numpy(zero_copy_only=False))
                    ctr.append(scores.probabilities[:, 0])
                    new.append(scores.is_new)
                progress.update(rb.num_rows)
            if writer is None:  # no rows: an empty file with the input's columns and the score columns
                empty = pf.schema_arrow.empty_table()
                writer = pq.ParquetWriter(tmp, output_table(empty, Scores(
                    np.zeros((0, len(artifact.schema.tasks)), np.float32), np.zeros(0, np.int8),
                    np.zeros((0, artifact.schema.levels or 0), np.int32) if scorer.needs_sids else None,
                    np.zeros(0, bool)), artifact.schema).schema)
        finally:
            if writer is not None:
                writer.close()
    seconds = time.perf_counter() - t0
    summary: JsonObject = {"rows": n, "out": str(out), "seconds": seconds, "model": artifact.fingerprint,
                           **{STATUS[i]: int(c) for i, c in enumerate(counts)}}
    if clicks:
        y, p, is_new = np.concatenate(clicks), np.concatenate(ctr), np.concatenate(new)
        for name, mask in (("overall", np.ones(len(y), bool)), ("new", is_new)):
            ok = mask.any() and 0 < y[mask].sum() < mask.sum()
            summary[f"ctr_auc_{name}"] = float(binary_auroc(torch.from_numpy(p[mask]), torch.from_numpy(
                y[mask].astype(np.int64)))) if ok else None
    return summary


def summary_line(s: JsonObject) -> str:
    rate = s["rows"] / s["seconds"] if s["seconds"] > 0 else float("nan")
    line = (f"scored {s['rows']:,} requests in {s['seconds']:.2f} s ({rate:,.0f}/s): {s['known']:,} known, {s['new']:,} "
            f"new (represented on the fly), {s['unknown']:,} unknown candidates -> {s['out']}")
    if "ctr_auc_overall" in s:
        fmt = lambda v: "undefined" if v is None else f"{v:.4f}"  # noqa: E731
        line += f"; CTR AUC {fmt(s['ctr_auc_overall'])} (new {fmt(s['ctr_auc_new'])})"
    return line
