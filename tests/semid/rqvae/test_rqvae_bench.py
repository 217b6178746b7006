"""``semid sids bench``: every quantizer on the same embeddings, residual k-means (plain and balanced) included."""
from __future__ import annotations

import warnings
from pathlib import Path

from semid.rqvae.bench import bench_peers, markdown_table
from semid.rqvae.config import load_rqvae_config


def test_bench_has_every_contender(tiny_corpus: Path) -> None:
    cfg = load_rqvae_config("tiny", ["train.steps=20", "train.holdout_items=80", "rqkmeans.fit_items=4096",
                                     "rqkmeans.dim_steps=4", "rqkmeans.iters=8"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bench_peers(tiny_corpus, cfg)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["RQ-VAE (semid)", "residual k-means (semid)", "residual k-means, balanced (semid)",
                          "residual k-means (faiss)", "ResidualVQ (vector-quantize-pytorch)"]
    for r in rows.values():
        assert 0 < r["relative_error"] < 1 and r["items"] == result["items"] and len(r["utilisation_per_level"]) == 3
    plain, bal = rows["residual k-means (semid)"], rows["residual k-means, balanced (semid)"]
    assert "faiss" in plain["note"] and "cap" in bal["note"]
    assert bal["unique_sid_fraction"] > plain["unique_sid_fraction"]
    # semid's residual k-means is faiss's ResidualQuantizer's training, so it reconstructs about as well
    assert abs(plain["relative_error"] - rows["residual k-means (faiss)"]["relative_error"]) < 0.03
    table = markdown_table(result)
    assert table.count("\n") == 6 and "residual k-means, balanced (semid)" in table
