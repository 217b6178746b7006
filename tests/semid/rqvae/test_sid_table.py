"""The SID table hashes its content once: the fingerprint is cached and the arrays it covers are read-only."""
from __future__ import annotations

import numpy as np
import pytest

from semid.core.fingerprint import fingerprint_bytes
from semid.rqvae import SidTable, read_sid_table, write_sid_table


def _table() -> SidTable:
    return SidTable(np.array([3, 5, 9], np.int64), np.array([[0, 1], [1, 1], [2, 0]], np.int32), 4, "rq-test")


def test_fingerprint_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import semid.rqvae.sid_table as mod

    calls = []
    monkeypatch.setattr(mod, "fingerprint_bytes", lambda *a: calls.append(1) or fingerprint_bytes(*a))
    t = _table()
    first = t.fingerprint
    assert t.fingerprint == first and len(calls) == 1
    assert _table().fingerprint == first  # same content, same fingerprint


def test_arrays_are_read_only_so_the_cache_cannot_go_stale() -> None:
    t = _table()
    with pytest.raises(ValueError):
        t.codes[0, 0] = 3
    with pytest.raises(ValueError):
        t.item_id[0] = 4


def test_round_trip_keeps_the_fingerprint(tmp_path) -> None:  # noqa: ANN001
    t = _table()
    write_sid_table(t, tmp_path / "s.parquet")
    assert read_sid_table(tmp_path / "s.parquet").fingerprint == t.fingerprint
