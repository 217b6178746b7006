"""Serving: export a trained ranker as one self-contained artifact, score requests with it, serve it over HTTP.

* ``semid export RUN --out MODEL_DIR [--int8]`` (``export.py``): the ranker's dense weights and tables as plain
  tensors (gathered from the sharded DCP checkpoint; optionally TorchRec int8 row-wise), the token cache with its
  fitted tokenizer, the frozen RQ-VAE, the known items and the feature schema, each part fingerprinted in
  ``manifest.json`` (``artifact.py``).
* ``semid score MODEL_DIR --requests R.parquet --out S.parquet`` (``score.py``): streaming batch scoring; an
  item the artifact never saw gets its SID from the frozen encoder and its tokens on the fly (``scorer.py``).
* ``semid serve MODEL_DIR`` (``server.py``): the same scorer behind uvicorn + FastAPI (``app.py``: typed request
  models in ``json_requests.py``, limits in ``limits.py`` and ``settings.py``, ``/metrics`` in ``metrics.py``,
  the drain on SIGTERM in ``http_server.py``); new items in a bounded LRU (``new_items.py``).
* ``semid serve-bench`` (``bench.py``): p50/p99 latency and requests/s; with ``--clients``, concurrent clients
  against a ``semid serve`` process (``loadtest.py``); ``parity.py`` checks an export against the training run's
  own evaluation.

Loading an artifact needs semid's model, tokenizer and encoder code (``semid.rankers.model``, ``embeddings``,
``semid.rqvae``) but no corpus, no Lightning and no training code. Names load on first use (PEP 562).
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "Artifact": "semid.serve.artifact", "FeatureSchema": "semid.serve.artifact", "load_artifact": "semid.serve.artifact",
    "export_run": "semid.serve.export",
    "Requests": "semid.serve.requests", "requests_from_arrow": "semid.serve.requests",
    "requests_from_json": "semid.serve.json_requests",
    "Scorer": "semid.serve.scorer", "Scores": "semid.serve.scorer",
    "score_file": "semid.serve.score",
    "ModelServer": "semid.serve.server", "ServeSettings": "semid.serve.settings", "create_app": "semid.serve.app",
    "NewItemCache": "semid.serve.new_items", "run_load": "semid.serve.loadtest",
    "check_parity": "semid.serve.parity", "day_requests": "semid.serve.parity",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
