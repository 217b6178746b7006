"""Token cache: save/load, extension with new items, and the fingerprint chain SIDs -> SPM -> cache."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from semid.embeddings import TokenCache, build_kjt, build_token_cache, embedding_bag_configs
from semid.embeddings.hashing import HashConfig
from semid.embeddings.hybrid import HybridConfig
from semid.embeddings.ngram import NgramConfig
from semid.embeddings.registry import DenseConfig
from semid.embeddings.spm import SpmConfig
from semid.core.errors import DataError, FingerprintMismatch, SemidError
from semid.rqvae.sid_table import SidTable

L, K = 3, 6


def _sids(n: int = 40, rq: str = "rq-a", seed: int = 0, start: int = 0) -> SidTable:
    rng = np.random.default_rng(seed)
    return SidTable(np.arange(start, start + n, dtype=np.int64) * 2, rng.integers(0, K, (n, L)).astype(np.int32),
                    K, rq)


def _impressions(n: int) -> np.ndarray:
    return (1000 // (np.arange(n) + 1)).astype(np.int64)


HYBRID = HybridConfig(name="hyb", parts=[SpmConfig(name="spm", vocab_size=30), HashConfig(name="hash", rows=7)])


def _arrays(cache: TokenCache) -> list[np.ndarray]:
    return [cache.item_id] + [a for j in cache.jagged for a in (j.offsets, j.values)]


@pytest.mark.parametrize("cfg", [NgramConfig(name="bi", n=2), HYBRID, DenseConfig()], ids=lambda c: c.kind)
def test_save_load_round_trip(tmp_path: Path, cfg) -> None:
    sids = _sids()
    cache = build_token_cache(cfg, sids, sids.item_id[::-1], _impressions(len(sids))[::-1])
    assert (np.diff(cache.item_id) > 0).all()
    path = cache.save(tmp_path / "c.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # atomic: no temp file left behind
    back = TokenCache.load(path, sids)
    assert back.fingerprint == cache.fingerprint and back.tables == cache.tables
    for a, b in zip(_arrays(cache), _arrays(back)):
        assert a.dtype == np.int64 and (a == b).all()
    assert back.rows_of(np.array([sids.item_id[3], -1])).tolist() == [3, -1]
    with pytest.raises(SemidError, match="not in token cache"):
        back.rows_of(np.array([1]))


def test_dense_cache_has_no_tables() -> None:
    sids = _sids()
    cache = build_token_cache(DenseConfig(), None, sids.item_id, None)
    assert cache.kind == "dense" and cache.tables == [] and embedding_bag_configs(cache, 4, ["candidate"]) == []
    assert cache.rows_of(sids.item_id[:2]).tolist() == [0, 1]
    with pytest.raises(SemidError, match="no embedding tables"):
        build_kjt(cache, {"candidate": np.array([0])})


def test_extend_tokenises_new_items_like_a_fresh_build() -> None:
    old, new = _sids(30), _sids(10, start=30, seed=1)
    both = SidTable(np.r_[old.item_id, new.item_id], np.r_[old.codes, new.codes], K, "rq-a")
    cfg = NgramConfig(name="bi", n=2)
    grown = build_token_cache(cfg, old, old.item_id, None).extend(both.item_id, both)
    fresh = build_token_cache(cfg, both, both.item_id, None)
    for a, b in zip(_arrays(grown), _arrays(fresh)):
        assert (a == b).all()

    cache = build_token_cache(HYBRID, old, old.item_id, _impressions(30))
    grown = cache.extend(new.item_id, new)  # only the new items' SIDs are needed
    assert len(grown) == 40
    rows = grown.rows_of(old.item_id)
    for t in range(len(cache.tables)):  # existing items keep their tokens
        assert (grown.jagged[t].take(rows).values == cache.jagged[t].values).all()
    direct = cache.tokenizer.tokenize(new.item_id, new.codes)
    for t in range(len(cache.tables)):
        assert (grown.jagged[t].take(grown.rows_of(new.item_id)).values == direct[t].values).all()
    assert grown.fingerprint != cache.fingerprint


def test_cache_refuses_sids_of_another_space_or_content(tmp_path: Path) -> None:
    sids = _sids()
    path = build_token_cache(HYBRID, sids, sids.item_id, _impressions(len(sids))).save(tmp_path / "c.npz")
    TokenCache.load(path, sids)
    other_model = SidTable(sids.item_id, sids.codes, K, "rq-b")
    with pytest.raises(FingerprintMismatch, match="SID space"):
        TokenCache.load(path, other_model)
    changed = sids.codes.copy()
    changed[5, 2] = (changed[5, 2] + 1) % K
    with pytest.raises(FingerprintMismatch, match="different SIDs"):
        TokenCache.load(path, SidTable(sids.item_id, changed, K, "rq-a"))
    cache = TokenCache.load(path)  # without SIDs nothing to compare
    with pytest.raises(FingerprintMismatch, match="SID space"):
        cache.extend(np.array([1001]), SidTable(np.array([1001]), np.zeros((1, L), np.int32), K, "rq-b"))


def _rewrite(path: Path, edit) -> None:  # noqa: ANN001
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    edit(data)
    with open(path, "wb") as f:
        np.savez(f, **data)


def test_spm_model_records_its_space_and_a_tampered_chain_is_refused(tmp_path: Path) -> None:
    sids = _sids()
    cache = build_token_cache(SpmConfig(name="spm", vocab_size=30), sids, sids.item_id, _impressions(len(sids)))
    spm = cache.tokenizer.meta()
    assert spm["space_fingerprint"] == sids.space_fingerprint
    assert spm["sid_table_fingerprint"] == sids.fingerprint
    meta = cache.meta()
    assert meta["space"]["fingerprint"] == sids.space_fingerprint and meta["sid_table_fingerprint"] == sids.fingerprint
    path = cache.save(tmp_path / "c.npz")

    def other_space(data: dict) -> None:  # SPM model claims another SID space
        keys = json.loads(data["meta"].tobytes())["state_keys"]
        i = keys.index("meta")
        m = json.loads(data[f"state__{i}"].tobytes())
        m["space_fingerprint"] = "0" * 20
        data[f"state__{i}"] = np.frombuffer(json.dumps(m).encode(), np.uint8)

    _rewrite(path, other_space)
    with pytest.raises(FingerprintMismatch, match="SPM model"):
        TokenCache.load(path, sids)

    path = cache.save(tmp_path / "d.npz")
    _rewrite(path, lambda d: d.__setitem__("values__0", d["values__0"][::-1].copy()))
    with pytest.raises(DataError, match="edited or damaged"):
        TokenCache.load(path, sids)

    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a token cache"):
        TokenCache.load(tmp_path / "junk.npz")
    assert zipfile.is_zipfile(tmp_path / "c.npz")
