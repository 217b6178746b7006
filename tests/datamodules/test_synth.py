"""The synthetic corpus must carry both planted signals — tested on the data, not on the generator."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from semid.datamodules.corpus import Corpus
from semid.datamodules.synth import SynthConfig, generate, load_synth_config
from semid.datamodules.validate import validate_corpus
from semid.core.errors import SemidError


def _impressions(corpus: Corpus) -> dict[str, np.ndarray]:
    cols = {"day": [], "item_id": [], "click": [], "user_id": []}
    for _, t in corpus.iter_days(columns=list(cols)):
        for c in cols:
            cols[c].append(t[c].to_numpy())
    return {c: np.concatenate(v) for c, v in cols.items()}


def test_tiny_corpus_is_valid_and_described(tiny_corpus):
    report = validate_corpus(tiny_corpus, deep_fingerprint=True)
    cfg = load_synth_config("tiny")
    assert report.n_items == cfg.n_items
    assert report.n_impressions == cfg.n_days * cfg.impressions_per_day
    assert report.days == list(range(cfg.n_days))
    meta = Corpus(tiny_corpus).meta
    assert meta["generator"]["params"]["seed"] == 0
    gt = meta["ground_truth"]
    # both terms carry signal on their own, and together more than either
    assert gt["auc_oracle_content_only"] > 0.6
    assert gt["auc_oracle_item_only"] > 0.6
    assert gt["auc_oracle_full"] > max(gt["auc_oracle_content_only"], gt["auc_oracle_item_only"]) + 0.03
    assert 0.1 < np.mean([d["ctr"] for d in gt["per_day"]]) < 0.35


def test_deterministic_for_a_seed(tmp_path):
    cfg = load_synth_config("tiny", ["n_days=3", "impressions_per_day=2000"])
    a = generate(cfg, tmp_path / "a")
    b = generate(cfg, tmp_path / "b")
    c = generate(load_synth_config("tiny", ["n_days=3", "impressions_per_day=2000", "seed=1"]), tmp_path / "c")
    fa, fb, fc = (Corpus(p).meta["fingerprint"] for p in (a, b, c))
    assert fa == fb and fa != fc


def test_chunked_generation_is_bounded_and_complete(tmp_path):
    cfg = load_synth_config("tiny", ["n_days=2", "impressions_per_day=3000", "chunk_impressions=700",
                                     "chunk_items=300"])
    path = generate(cfg, tmp_path / "chunked")
    corpus = Corpus(path)
    assert len(corpus.day_files()[1]) == 5  # 3000 rows in chunks of 700
    assert pq.ParquetFile(corpus.items_path).metadata.num_rows == cfg.n_items
    assert validate_corpus(path).n_impressions == 6000


def test_new_items_every_day_and_impressed_on_arrival(tiny_corpus):
    corpus = Corpus(tiny_corpus)
    items = corpus.read_items()
    imp = _impressions(corpus)
    first = items.first_day[items.index_of(imp["item_id"])]
    for day in range(1, len(corpus.days())):
        assert (items.first_day == day).sum() == 100
        assert ((imp["day"] == day) & (first == day)).sum() > 100  # cold-start slice is not empty


def test_item_quality_is_invisible_in_content_but_visible_in_clicks(tiny_corpus):
    """Memorisation signal: embeddings cannot predict q_i, observed per-item CTR does."""
    corpus = Corpus(tiny_corpus)
    items = corpus.read_items()
    q = items.extra["gt_quality"].astype(np.float64)
    x = np.c_[items.embedding.astype(np.float64), np.ones(len(items))]
    half = len(items) // 2
    w = np.linalg.solve(x[:half].T @ x[:half] + 1.0 * np.eye(x.shape[1]), x[:half].T @ q[:half])
    resid = q[half:] - x[half:] @ w
    r2 = 1 - resid.var() / q[half:].var()
    assert r2 < 0.05, f"content predicts item quality (held-out R^2 {r2:.3f}): memorisation signal leaks"

    imp = _impressions(corpus)
    rows = items.index_of(imp["item_id"])
    n = np.bincount(rows, minlength=len(items))
    ctr = np.bincount(rows, weights=imp["click"], minlength=len(items)) / np.maximum(n, 1)
    busy = n >= 30
    assert busy.sum() > 30
    assert np.corrcoef(ctr[busy], q[busy])[0, 1] > 0.3


def test_embeddings_follow_the_topic_hierarchy(tiny_corpus):
    items = Corpus(tiny_corpus).read_items()
    path = np.stack(items.extra["gt_topic_path"])
    e = items.embedding
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(e), size=(2, 20000))
    cos = (e[i] * e[j]).sum(1)
    shared = (path[i] == path[j]).cumprod(axis=1).sum(axis=1)  # shared prefix depth 0..3
    means = [cos[(shared == s) & (i != j)].mean() for s in range(4)]
    assert means == sorted(means) and means[3] - means[0] > 0.5, means


def test_content_generalises_to_new_items(tiny_corpus):
    """Generalisation signal: older items of the same topic (and the watch item's relatedness) predict
    the clicks on items introduced on the last day. Leaf CTR is averaged per item, not per impression:
    pooled impressions would be dominated by the item-specific quality of a leaf's few head items."""
    from torchmetrics.functional.classification import binary_auroc
    import torch

    corpus = Corpus(tiny_corpus)
    items = corpus.read_items()
    path = np.stack(items.extra["gt_topic_path"])
    leaf = path[:, -1]
    cols = {k: [] for k in ("day", "item_id", "click", "watch_item_id")}
    for _, t in corpus.iter_days(columns=list(cols)):
        for k in cols:
            cols[k].append(t[k].to_numpy(zero_copy_only=False))
    imp = {k: np.concatenate(v) for k, v in cols.items()}
    rows, wrows = items.index_of(imp["item_id"]), items.index_of(imp["watch_item_id"])
    last = imp["day"].max()
    old, new = imp["day"] < last, (items.first_day[rows] == last) & (imp["day"] == last)
    n_item = np.bincount(rows[old], minlength=len(items))
    item_ctr = np.bincount(rows[old], weights=imp["click"][old], minlength=len(items)) / np.maximum(n_item, 1)
    seen = n_item >= 5
    leaf_ctr = np.bincount(leaf[seen], weights=item_ctr[seen], minlength=leaf.max() + 1) / np.maximum(
        np.bincount(leaf[seen], minlength=leaf.max() + 1), 1)
    depth = (path[rows] == path[wrows]).cumprod(1).sum(1)
    depth_ctr = np.bincount(depth[old], weights=imp["click"][old], minlength=4) / np.bincount(depth[old], minlength=4)

    def logit(p):
        p = np.clip(p, 1e-3, 1 - 1e-3)
        return np.log(p / (1 - p))

    score = logit(leaf_ctr[leaf[rows]]) + logit(depth_ctr[depth])
    auc = float(binary_auroc(torch.tensor(score[new], dtype=torch.float32), torch.tensor(imp["click"][new])))
    assert auc > 0.6, auc
    # and no item-level estimate exists for them: they were never seen before the last day
    assert n_item[rows[new]].sum() == 0


def test_bad_config_values_are_refused():
    with pytest.raises(SemidError, match="hierarchy and level_scales"):
        SynthConfig(hierarchy=[4, 4], level_scales=[1.0])
    with pytest.raises(SemidError, match="unknown key"):
        load_synth_config("tiny", ["n_dayz=3"])
    with pytest.raises(SemidError, match="no preset 'nope'"):
        load_synth_config("nope")
