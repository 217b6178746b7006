"""The regime knobs of the synthetic corpus (issue 21): each changes what it should — checked on the data it
writes, not only on the generator's own ground truth — is recorded in corpus.json, and the defaults give the
corpus the generator wrote before the knobs existed."""
from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from torchmetrics.functional.classification import binary_auroc
import torch

from semid.datamodules.corpus import Corpus
from semid.datamodules.synth import generate, load_synth_config
from semid.datamodules.validate import validate_corpus
from semid.core.errors import SemidError
from semid.core.fingerprint import fingerprint_bytes

SHORT = ["n_days=3", "impressions_per_day=2000"]
# digest of the decoded arrays (items and impressions) of load_synth_config("tiny", SHORT), made by the generator
# at commit 97f66b5, before the knobs: a knob whose default draws or computes anything differently changes it
PRE_KNOB_DIGEST = "96e2d2742d096d287982"


def _digest(path) -> str:
    c = Corpus(path)
    items = c.read_items()
    arrays = [items.item_id, items.first_day, items.embedding]
    for _, t in c.iter_days(columns=["day", "user_id", "watch_item_id", "item_id", "click", "engaged"]):
        arrays += [t[col].to_numpy(zero_copy_only=False) for col in t.column_names]
    return fingerprint_bytes(*[np.ascontiguousarray(a) for a in arrays])


def _make(tmp_path, name: str, overrides: list[str]) -> Corpus:
    return Corpus(generate(load_synth_config("tiny", overrides), tmp_path / name))


def _regime(c: Corpus) -> dict:
    return c.meta["ground_truth"]["regime"]


def _impressions(c: Corpus) -> dict[str, np.ndarray]:
    cols = {k: [] for k in ("day", "user_id", "watch_item_id", "item_id", "click")}
    for _, t in c.iter_days(columns=list(cols)):
        for k in cols:
            cols[k].append(t[k].to_numpy(zero_copy_only=False))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    return float(binary_auroc(torch.tensor(score, dtype=torch.float32), torch.tensor(label.astype(np.int64))))


def test_defaults_are_the_corpus_before_the_knobs(tmp_path):
    c = _make(tmp_path, "default", SHORT)
    assert _digest(c.path) == PRE_KNOB_DIGEST
    # the neutral values spelled out change nothing either: s = 0.5 re-splits weights 1 and 1 into 1 and 1
    same = _make(tmp_path, "neutral", SHORT + ["memorization_share=0.5", "history_weight=0.0"])
    assert same.meta["fingerprint"] == c.meta["fingerprint"]
    r = _regime(c)
    assert (r["items"], r["initial_items"], r["new_items_per_day"]) == (1700, 1500, 100)
    assert r["items_per_row"] == 1700 / 8192 and r["memorization_share"] == 0.5 and r["history_weight"] == 0.0
    assert r["subtopic_zipf"] is None and r["interest_zipf"] is None and r["topic_zipf"] == 0.8
    assert r["auc_oracle_history_only"] == 0.5  # no history term: a constant score


def test_topic_skew_concentrates_items_and_impressions(tmp_path):
    flat = _make(tmp_path, "flat", SHORT + ["topic_zipf=0.0"])
    skew = _make(tmp_path, "skew", SHORT + ["topic_zipf=2.0", "subtopic_zipf=2.0"])
    wanted = _make(tmp_path, "wanted", SHORT + ["topic_zipf=2.0", "subtopic_zipf=2.0", "interest_zipf=2.0"])

    def top_leaf_share(c: Corpus) -> float:  # items in the 10% most populated leaves, from the written topic paths
        leaf = np.stack(c.read_items().extra["gt_topic_path"])[:, -1]
        n = np.sort(np.bincount(leaf, minlength=64))[::-1]
        return n[: len(n) // 10].sum() / n.sum()

    assert top_leaf_share(skew) > top_leaf_share(flat) + 0.2
    rf, rs = _regime(flat), _regime(skew)
    assert (rs["topic_zipf"], rs["subtopic_zipf"]) == (2.0, 2.0) and rf["subtopic_zipf"] is None
    assert rs["leaf_zipf_measured"] > rf["leaf_zipf_measured"] + 0.5
    assert rs["share_impressions_top_10pct_leaves"] > rf["share_impressions_top_10pct_leaves"]
    assert rs["share_leaves_with_items"] < rf["share_leaves_with_items"]
    # users without a topic preference spread impressions evenly over coarse topics; interest_zipf makes the
    # populous topics the wanted ones, so impressions concentrate as items do
    rw = _regime(wanted)
    assert rw["interest_zipf"] == 2.0 and rs["interest_zipf"] is None
    assert rw["topic_zipf_measured"] > rs["topic_zipf_measured"] + 0.5


def test_items_per_row_sizes_the_catalogue_against_the_reference_table(tmp_path):
    c = _make(tmp_path, "ipr", SHORT + ["items_per_row=0.5"])
    r = _regime(c)
    assert validate_corpus(c.path).n_items == 4096 == r["items"]  # 0.5 x 8,192 rows
    assert r["items_per_row"] == 0.5
    # the daily share of new items is the preset's (100 of 1,700), so only the size changed
    assert r["new_items_per_day"] == round(100 / 1700 * 4096)
    first = c.read_items().first_day
    assert (first == 2).sum() == r["new_items_per_day"] and (first == 0).sum() == r["initial_items"]
    bigger = _regime(_make(tmp_path, "ipr-rows", SHORT + ["items_per_row=0.5", "reference_table_rows=1024"]))
    assert bigger["items"] == 512 and bigger["items_per_row"] == 0.5


def test_new_item_share_moves_items_and_impressions_to_new_items(tmp_path):
    base = _make(tmp_path, "base", SHORT)
    more = _make(tmp_path, "more", SHORT + ["new_item_share=0.2"])
    first = more.read_items().first_day
    assert len(first) == 1700  # catalogue size kept
    assert (first == 1).sum() == (first == 2).sum() == 340 == _regime(more)["new_items_per_day"]
    assert _regime(more)["new_item_share"] == 0.2
    assert _regime(more)["share_impressions_on_new_items"] > 1.5 * _regime(base)["share_impressions_on_new_items"]


def test_memorization_share_moves_the_signal_from_content_to_the_item(tmp_path):
    low = _make(tmp_path, "low", ["n_days=4", "impressions_per_day=6000", "memorization_share=0.1"])
    high = _make(tmp_path, "high", ["n_days=4", "impressions_per_day=6000", "memorization_share=0.9"])
    rl, rh = _regime(low), _regime(high)
    assert math.isclose(rh["memorization_weight"], math.sqrt(1.8)) and math.isclose(rh["content_weight"], math.sqrt(0.2))
    assert rl["memorization_share_measured"] < 0.2 < 0.8 < rh["memorization_share_measured"]
    gl, gh = low.meta["ground_truth"], high.meta["ground_truth"]
    assert gh["auc_oracle_item_only"] > gl["auc_oracle_item_only"] + 0.1
    assert gl["auc_oracle_content_only"] > gh["auc_oracle_content_only"] + 0.1

    def quality_ctr_corr(c: Corpus) -> float:  # in the clicks: per-item CTR follows the hidden q_i
        items = c.read_items()
        imp = _impressions(c)
        rows = items.index_of(imp["item_id"])
        n = np.bincount(rows, minlength=len(items))
        ctr = np.bincount(rows, weights=imp["click"], minlength=len(items)) / np.maximum(n, 1)
        busy = n >= 20
        return float(np.corrcoef(ctr[busy], items.extra["gt_quality"][busy])[0, 1])

    assert quality_ctr_corr(high) > quality_ctr_corr(low) + 0.2


def test_history_weight_makes_the_click_history_tell_more_than_the_watch_item(tmp_path):
    """On impressions whose candidate is outside the watch item's sub-topic, the user's click rate on the
    candidate's sub-topic over earlier days (what a history feature can carry) predicts the click far better
    when the history term is on."""

    def history_auc(c: Corpus) -> float:
        items = c.read_items()
        sub = np.stack(items.extra["gt_topic_path"])[:, 1]  # level-1 topic of every item row
        imp = _impressions(c)
        cand, watch = sub[items.index_of(imp["item_id"])], sub[items.index_of(imp["watch_item_id"])]
        users, uid = np.unique(imp["user_id"], return_inverse=True)
        last = imp["day"].max()
        past, test = imp["day"] < last, (imp["day"] == last) & (cand != watch)
        n_sub = sub.max() + 1
        seen = np.zeros((len(users), n_sub))
        clicks = np.zeros((len(users), n_sub))
        np.add.at(seen, (uid[past], cand[past]), 1)
        np.add.at(clicks, (uid[past], cand[past]), imp["click"][past])
        rate = (clicks + 0.2) / (seen + 1.0)  # smoothed towards the overall click rate
        return _auc(rate[uid[test], cand[test]], imp["click"][test])

    off = _make(tmp_path, "off", [])
    on = _make(tmp_path, "on", ["history_weight=2.0"])
    assert history_auc(on) > history_auc(off) + 0.05
    r_on, r_off = _regime(on), _regime(off)
    assert r_on["history_weight"] == 2.0 and r_on["auc_oracle_history_only"] > 0.65
    assert r_on["history_variance_share_measured"] > 0.3 > r_off["history_variance_share_measured"] == 0.0
    # the other parts are the same draws: only the history term was added
    assert r_on["auc_oracle_without_history_term"] < on.meta["ground_truth"]["auc_oracle_full"]


@pytest.mark.parametrize("override, message", [
    ("memorization_share=1.5", "--set memorization_share=1.5: must be a finite number >= 0 and <= 1"),
    ("items_per_row=0", "--set items_per_row=0: must be a finite number > 0"),
    ("history_weight=-1", "--set history_weight=-1: must be a finite number >= 0"),
    ("new_item_share=0.6", "--set new_item_share=0.6: leaves -340 initial items"),
    ("subtopic_zipf=.nan", "--set subtopic_zipf=.nan: must be a finite number >= 0"),
    ("interest_zipf=-0.5", "--set interest_zipf=-0.5: must be a finite number >= 0"),
])
def test_bad_knob_values_are_refused_before_any_work(override, message):
    with pytest.raises(SemidError) as e:
        load_synth_config("tiny", SHORT + [override])
    assert str(e.value).startswith(message), str(e.value)


def test_coengagement_clusters_cut_across_topics_and_get_clicked_together(tmp_path):
    c = _make(tmp_path, "coengage", SHORT + ["coengage_clusters=8"])
    r = _regime(c)
    assert r["coengage_clusters"] == 8 and r["coengage_chance_share"] == 1 / 8
    # measured on the data written: clicks whose watch item is in the candidate's hidden cluster, vs chance
    t = pq.read_table(c.items_path, columns=["item_id", "gt_coengage_cluster", "gt_topic_path"])
    ids = t["item_id"].to_numpy()
    cluster = dict(zip(ids, t["gt_coengage_cluster"].to_numpy()))
    imp = _impressions(c)
    clicked = (imp["click"] == 1) & (imp["watch_item_id"] >= 0)
    same = [cluster[int(w)] == cluster[int(i)] for w, i in zip(imp["watch_item_id"][clicked], imp["item_id"][clicked])]
    share = float(np.mean(same))
    assert share > 2 / 8 and abs(share - r["coengage_click_share_same_cluster"]) < 1e-9
    # clusters cut across topics: every cluster holds items of several coarse topics
    topic = np.array(t["gt_topic_path"].to_pylist())[:, 0]
    k = t["gt_coengage_cluster"].to_numpy()
    assert min(len(np.unique(topic[k == j])) for j in range(8)) >= 3


def test_coengage_fraction_may_take_exactly_the_share_the_other_candidates_leave():
    # 1 - 0.3 - 0.3 is 0.39999999999999997 in binary: the bound must still admit 0.4, and refuse just past it
    ok = load_synth_config("tiny", SHORT + ["related_fraction=0.3", "interest_fraction=0.3", "coengage_fraction=0.4"])
    assert ok.coengage_fraction == 0.4
    with pytest.raises(SemidError, match="coengage_fraction=0.41: must be a finite number >= 0 and <= 0.4"):
        load_synth_config("tiny", SHORT + ["related_fraction=0.3", "interest_fraction=0.3", "coengage_fraction=0.41"])
