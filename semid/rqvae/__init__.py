"""Stage 1: Semantic IDs from a quantizer (the RQ-VAE or residual k-means) — train, freeze, assign, report,
compare, benchmark.

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
    "FrozenRqvae": "semid.rqvae.frozen", "load_frozen": "semid.rqvae.frozen",
    "train_quantizer": "semid.rqvae.train", "train_rqvae": "semid.rqvae.train", "TrainResult": "semid.rqvae.train",
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
