"""Stage 1: Semantic IDs from a quantizer (the RQ-VAE or residual k-means) — train, freeze, assign, report,
compare, benchmark.

In memory (no corpus): ``fit_quantizer(embeddings, RqvaeConfig(levels=3, codebook_size=64, ...), weights=...)``
returns a ``Quantizer``: ``encode(x)`` -> SIDs [N, L], ``assign(item_ids, x)`` -> ``SidTable``, ``save(path)`` /
``Quantizer.load(path)``. On a corpus: ``train_quantizer(corpus, cfg, out)`` and ``assign_sids(model, corpus,
out)`` (``semid sids train`` / ``assign``), wrappers over the same trainers and assignment rule.

Other rooms use these names; the rest of the package is private to it. Names load lazily so that
``from semid.rqvae import load_frozen`` (or ``SidTable``, the SID table every later stage reads) does not
pull in Lightning.
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "RqvaeConfig": "semid.rqvae.config", "load_rqvae_config": "semid.rqvae.config",
    "rqvae_fingerprint": "semid.rqvae.config", "quantizer_fingerprint": "semid.rqvae.config",
    "QUANTIZERS": "semid.rqvae.config",
    "Rqvae": "semid.rqvae.model", "rqvae_loss": "semid.rqvae.model",
    "ModelConfig": "semid.rqvae.config", "TrainConfig": "semid.rqvae.config", "RunConfig": "semid.rqvae.config",
    "RqkmeansConfig": "semid.rqvae.config",
    "Quantizer": "semid.rqvae.frozen", "FrozenRqvae": "semid.rqvae.frozen", "load_frozen": "semid.rqvae.frozen",
    "fit_quantizer": "semid.rqvae.fit",
    "TrainingDiverged": "semid.rqvae.finite",
    "train_quantizer": "semid.rqvae.train", "train_rqvae": "semid.rqvae.train", "TrainResult": "semid.rqvae.runs",
    "sid_health": "semid.rqvae.runs",
    "assign_sids": "semid.rqvae.assign",
    "sid_report": "semid.rqvae.report", "table1": "semid.rqvae.report",
    "compare_tables": "semid.rqvae.compare",
    "bench_peers": "semid.rqvae.bench",
    "SidTable": "semid.rqvae.sid_table", "read_sid_table": "semid.rqvae.sid_table",
    "write_sid_table": "semid.rqvae.sid_table",
    "sid_groups": "semid.rqvae.health",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
