"""The ranker: fit configuration, multitask model, LightningModule, sliced metrics, the TorchRec Lightning
strategy, and day-by-day fit / evaluation (``rankers.fit.fit``: not exported, the name is its module's).

Other rooms (the application layer) use these names; names load on first use (PEP 562).
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "DEFAULT_RANKER": "rankers.config", "RankFitConfig": "rankers.config", "load_rank_config": "rankers.config",
    "rank_config_from_dict": "rankers.config",
    "MultitaskRanker": "rankers.model", "RankerConfig": "rankers.model",
    "prepare_tokens": "rankers.fit", "read_predictions": "rankers.predictions",
    "evaluate": "rankers.fit", "is_up_to_date": "rankers.fit", "read_results": "rankers.fit",
    "summary_line": "rankers.fit",
    "ShardingConfig": "rankers.strategy", "TorchRecStrategy": "rankers.strategy",
    "sparse_lookup_paths": "rankers.strategy",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
