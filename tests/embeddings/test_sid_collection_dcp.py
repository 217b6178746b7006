"""The SID module's mapping travels in torch.distributed.checkpoint (DCP) like any other state (issue 30 item 1):
saved from one module, loaded into another of the same shapes built from other SIDs, it gives the saved module's
bags bit for bit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torchrec import KeyedJaggedTensor

from semid.embeddings import NgramConfig, SemanticIdCollection


def _module(seed: int) -> SemanticIdCollection:
    rng = np.random.default_rng(seed)
    return SemanticIdCollection.from_sids(NgramConfig(n=2), np.arange(100) * 7, rng.integers(0, 8, (100, 4)), 8,
                                          features=["candidate", "history"], fallback_rows=4)


def _bags(m: SemanticIdCollection) -> tuple[list[int], list[int]]:
    kjt = KeyedJaggedTensor.from_lengths_sync(["candidate", "history"], torch.tensor([0, 7, 693, 14, 21, 5]),
                                              torch.tensor([1, 1, 1, 3]))  # 5: an unseen id -> a fallback row
    out = m(kjt)
    return out.values().tolist(), out.lengths().tolist()


def test_dcp_round_trip_carries_the_mapping(tmp_path: Path) -> None:
    saved, other = _module(0), _module(1)
    assert _bags(saved) != _bags(other)  # the test can fail: the two mappings differ
    dcp.save(saved.state_dict(), checkpoint_id=tmp_path / "ckpt")
    state = other.state_dict()
    dcp.load(state, checkpoint_id=tmp_path / "ckpt")
    other.load_state_dict(state)
    assert _bags(other) == _bags(saved)
    assert other.rows_of([693]) == saved.rows_of([693])
