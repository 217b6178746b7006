"""`semid spm report` (Figure 4) and `semid tokens build|info` on a tiny hand-written corpus."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semid.datamodules.corpus import CorpusWriter
from semid.datamodules.stats import BUCKETS, popularity_buckets
from semid.embeddings import TokenCache, TokenizerWarning, build_token_cache
from semid.cli import main
from semid.rqvae.sid_table import SidTable, write_sid_table

L, K, N_ITEMS = 4, 8, 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SidTable]:
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    ids = np.arange(N_ITEMS, dtype=np.int64) + 100
    with CorpusWriter(root / "corpus", dim=4, engaged=False) as w:
        w.write_items(ids, rng.normal(size=(N_ITEMS, 4)).astype(np.float32), np.zeros(N_ITEMS, np.int32))
        for day in range(2):
            n = 4000
            item = ids[np.minimum(rng.zipf(1.3, n) - 1, N_ITEMS - 1)]  # Zipf popularity: item 100 is the head
            w.write_impressions(day, {"day": np.full(n, day), "user_id": rng.integers(0, 50, n),
                                      "watch_item_id": np.full(n, -1), "item_id": item,
                                      "click": rng.integers(0, 2, n)})
        w.close({"source": "test"})
    # popular items share their first two codes, so their SIDs are frequent strings
    codes = rng.integers(0, K, (N_ITEMS, L)).astype(np.int32)
    codes[:30, :2] = [2, 6]
    sids = SidTable(ids, codes, K, "rq-cli")
    write_sid_table(sids, root / "sids.parquet")
    return root / "corpus", root / "sids.parquet", sids


def test_spm_report_writes_table_json_and_png(corpus, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path, sids_path, _ = corpus
    out = tmp_path / "report"
    rc = main(["spm", "report", "--sids", str(sids_path), "--corpus", str(path), "--vocab-sizes", "16,40,120",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "lookups per item" in text and "spm_40" in text
    report = json.loads((out / "lookups.json").read_text())
    rows = {r["name"]: r for r in report["representations"]}
    assert rows["unigram"]["table_rows"] == L * K and rows["unigram"]["mean_lookups"]["all"] == L
    assert rows["bigram"]["table_rows"] == (L // 2) * K * K and rows["bigram"]["mean_lookups"]["all"] == L // 2
    assert rows["hash_8192"]["mean_lookups"]["all"] == 1
    spm = rows["spm_120"]
    assert spm["table_rows"] == 120
    assert spm["mean_lookups"]["all"] < L
    assert spm["mean_lookups"]["head"] < spm["mean_lookups"]["tail"]
    assert rows["spm_16"]["unk_token_share"] > 0  # 16 rows cannot hold L*K = 32 symbols
    assert any("map to the <unk> row" in w for w in report["warnings"])
    assert (out / "lookups.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tokens_build_info_and_extend(corpus, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path, sids_path, sids = corpus
    cache_path = tmp_path / "spm.npz"
    assert main(["tokens", "build", "--representation", "spm_1k", "--corpus", str(path), "--sids", str(sids_path),
                 "--out", str(cache_path)]) == 0
    cache = TokenCache.load(cache_path, sids)
    assert len(cache) == N_ITEMS and cache.kind == "spm"
    assert main(["tokens", "info", str(cache_path), "--sids", str(sids_path)]) == 0
    assert "consistent with" in capsys.readouterr().out
    # a different SID table (another RQ-VAE) is refused with one line and exit 2
    other = tmp_path / "other.parquet"
    write_sid_table(SidTable(sids.item_id, sids.codes, K, "rq-other"), other)
    assert main(["tokens", "info", str(cache_path), "--sids", str(other)]) == 2
    assert "SID space" in capsys.readouterr().err
    # a cache of the first 200 items, extended to the corpus: the new items use the frozen vocabulary
    imp = np.r_[np.arange(200, 0, -1), np.zeros(100)].astype(np.int64)
    with pytest.warns(TokenizerWarning, match="support only"):  # 200 items cannot fill 1024 pieces
        part = build_token_cache("spm_1k", sids, sids.item_id[:200], imp[:200])
    part.save(tmp_path / "part.npz")
    assert main(["tokens", "build", "--corpus", str(path), "--extend", str(tmp_path / "part.npz"),
                 "--sids", str(sids_path), "--out", str(tmp_path / "grown.npz")]) == 0
    assert "by 100 new items" in capsys.readouterr().out
    grown = TokenCache.load(tmp_path / "grown.npz", sids)
    assert len(grown) == N_ITEMS and grown.tokenizer.meta()["fingerprint"] == part.tokenizer.meta()["fingerprint"]
    new = grown.jagged[0].take(grown.rows_of(sids.item_id[200:]))
    want = part.tokenizer.tokenize(sids.item_id[200:], sids.codes[200:])[0]
    assert (new.values == want.values).all() and (new.offsets == want.offsets).all()
    assert main(["tokens", "build", "--corpus", str(path), "--out", str(tmp_path / "y.npz")]) == 2


def test_popularity_buckets_follow_impression_shares() -> None:
    imp = np.array([50, 30, 10, 5, 5, 0])
    assert np.asarray(BUCKETS)[popularity_buckets(imp)].tolist() == ["head", "torso", "tail", "tail", "tail", "tail"]
    assert np.asarray(BUCKETS)[popularity_buckets(imp, head_share=0.6, torso_share=0.3)].tolist() == \
        ["head", "head", "torso", "tail", "tail", "tail"]
