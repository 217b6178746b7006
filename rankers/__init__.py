"""The ranker: fit configuration, multitask model, LightningModule, sliced metrics, the TorchRec Lightning
strategy, and day-by-day fit / evaluation (``semid.rankers.fit.fit``: not exported, the name is its module's).

Other rooms (the application layer) use these names; names load on first use (PEP 562).
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "DEFAULT_RANKER": "semid.rankers.config", "RankFitConfig": "semid.rankers.config", "load_rank_config": "semid.rankers.config",
    "rank_config_from_dict": "semid.rankers.config",
    "MultitaskRanker": "semid.rankers.model", "RankerConfig": "semid.rankers.model",
    "prepare_tokens": "semid.rankers.fit", "read_predictions": "semid.rankers.predictions",
    "evaluate": "semid.rankers.fit", "is_up_to_date": "semid.rankers.fit", "read_results": "semid.rankers.fit",
    "summary_line": "semid.rankers.fit",
    "ShardingConfig": "semid.rankers.strategy", "TorchRecStrategy": "semid.rankers.strategy",
    "sparse_lookup_paths": "semid.rankers.strategy",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
