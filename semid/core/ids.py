"""Looking ids up in a sorted id array: the one place the searchsorted idiom lives."""
from __future__ import annotations

import numpy as np


def locate(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each id in ``sorted_ids``, whether it is there). ``sorted_ids`` is ascending and unique.

    Positions of missing ids are clipped into range, so they are safe to index with (but meaningless);
    with an empty ``sorted_ids`` nothing is found and every position is 0.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = len(sorted_ids)
    if n == 0:
        return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), n - 1)
    return pos, sorted_ids[pos] == ids
