"""Findings on hand-made runs: every direction reproduces, is contradicted or is inconclusive as its
paired interval says; runs are matched by what they are, not by preset name; missing arms are 'not run'."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from semid.rankers.predictions import PredictionLog
from semid.results.findings import Study, explain, ranking_findings, stability_findings, table1_findings, verdict
from semid.results.paired import Estimate

DAY = 5
N_ITEMS, PER_ITEM = 200, 20
_rng = np.random.default_rng(0)
ITEMS = np.repeat(np.arange(N_ITEMS), PER_ITEM)
QUALITY = _rng.normal(size=N_ITEMS)
CLICK = (_rng.random(len(ITEMS)) < 1 / (1 + np.exp(-2 * QUALITY[ITEMS]))).astype(np.int8)
NEW = ITEMS < 60  # items 0..59 were introduced on the evaluation day


def _scores(skill: float, seed: int) -> np.ndarray:
    """A ranker that learned a ``skill`` share of the item quality (0: noise, 1: strong)."""
    rng = np.random.default_rng(seed)
    return skill * QUALITY[ITEMS] + rng.normal(size=len(ITEMS))


def _run(root: Path, name: str, kind: str, rows: int, skill: float, *, setting: str = "without_history",
         seed: int = 0, depth: float = 1.0, rep: dict | None = None, tag: str = "main") -> dict:
    import torch

    from semid.datamodules import RankingBatch

    run_dir = root / f"{name}-{setting}-{seed}-{tag}"
    log = PredictionLog()
    logits = torch.from_numpy(np.stack([_scores(skill, zlib.crc32(f'{name}/{seed}'.encode()))] * 2, 1).astype(np.float32))
    lab = torch.from_numpy(np.stack([CLICK, CLICK], 1).astype(np.float32))
    batch = RankingBatch(kjt=None, content=None, context=torch.zeros(len(ITEMS), 3), labels=lab,
                         is_new=torch.from_numpy(NEW), popularity=torch.zeros(len(ITEMS), dtype=torch.int8),
                         history_items=torch.zeros(len(ITEMS)), day=DAY,
                         row=torch.arange(len(ITEMS)), item_id=torch.from_numpy(ITEMS.astype(np.int64)))
    log.add(logits, batch)
    log.write(run_dir / "predictions", DAY, 0)
    cfg = {"representation": {"kind": kind, "name": name, **(rep or {})}, "ranker": {"depth_multiplier": depth}}
    return {"name": name, "representation": name, "representation_kind": kind, "setting": setting, "seed": seed,
            "tag": tag, "run_dir": str(run_dir), "table_rows": {"t": rows}, "learned_config": cfg,
            "metrics_by_day": {str(DAY): {}}, "fingerprint": f"{name}{seed}{setting}"}


def _rows(found: list[dict], claim_id: str, metric: str = "ctr") -> list[dict]:
    return [f for f in found if f["id"] == claim_id and f.get("metric") == metric]


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    root = tmp_path_factory.mktemp("runs")
    results = [_run(root, "hash_8k", "hash", 8192, 0.5)]
    results.append(_run(root, "my_dense_arm", "dense", 0, 0.1))  # worse than hash: (a) reproduces
    results.append(_run(root, "dense_deeper", "dense", 0, 1.5, depth=1.5))  # better: (b) 1.5x reproduces
    results.append(_run(root, "dense_deepest", "dense", 0, 0.1, depth=2.0))  # worse: (b) 2x contradicted
    results.append(_run(root, "uni", "ngram", 48, 0.5, rep={"n": 1}))  # about equal: (c) inconclusive
    results.append(_run(root, "bi", "ngram", 272, 1.5, rep={"n": 2}))  # better than hash: (c) contradicted
    return ranking_findings(Study(results, num_bootstraps=300))


def test_directions_reproduce_contradict_or_stay_inconclusive(found: list[dict]) -> None:
    (a,) = _rows(found, "a")
    assert a["verdict"] == "reproduces" and a["ci_high"] < 0 and a["candidate"].startswith("my_dense_arm")
    b = {r["candidate"].split()[0]: r for r in _rows(found, "b") if r["reference"].startswith("hash_8k")}
    assert b["dense_deeper"]["verdict"] == "reproduces" and b["dense_deeper"]["ci_low"] > 0
    assert b["dense_deepest"]["verdict"] == "contradicted" and b["dense_deepest"]["ci_high"] < 0
    c = {r["candidate"].split()[0]: r for r in _rows(found, "c")}
    assert c["uni"]["verdict"] == "inconclusive" and c["uni"]["ci_low"] < 0 < c["uni"]["ci_high"]
    assert c["bi"]["verdict"] == "contradicted"
    assert all(r["items"] == N_ITEMS and r["impressions"] == len(ITEMS) and r["n_seeds"] == 1
               for r in _rows(found, "a") + _rows(found, "c"))


def test_a_renamed_preset_keeps_its_finding_and_missing_arms_are_not_run(found: list[dict]) -> None:
    assert _rows(found, "a")[0]["candidate"].startswith("my_dense_arm")  # no preset called dense*
    d = [r for r in found if r["id"] == "d"]
    assert d == []  # no with-history runs: (d) is not even asked
    e = _rows(found, "e")
    assert e and all(r["verdict"] == "not run" and "SPM-SID of comparable rows" in r["reason"] for r in e)
    j = [r for r in found if r["id"] == "j"]
    assert j == []  # no random-SID arm
    assert not [r for r in found if r["id"] == "k"]  # no managed-collision arm: semid's (k) is not asked
    assert {r["source"] for r in found} == {"paper"}


def test_managed_collisions_vs_sids_on_ctr_1d_is_semids_own_question(tmp_path: Path) -> None:
    """(k), beyond the paper: Bigram-SID and the SPM-SID nearest in rows against each managed-collision arm,
    paired on the evaluation day's new items; asked only when the study has an mch arm."""
    results = [_run(tmp_path, "hash_8k", "hash", 8192, 0.5),
               _run(tmp_path, "tr_mch", "mch", 8192, 0.1, rep={"eviction": "lru", "rows": 8192}),
               _run(tmp_path, "bi", "ngram", 272, 1.5, rep={"n": 2}),  # far better on new items: reproduces
               _run(tmp_path, "spm_small", "spm", 64, 0.1),
               _run(tmp_path, "spm_big", "spm", 1024, 0.0)]  # nearest to 8,192 rows; worse than mch
    study = Study(results, num_bootstraps=300, ground_truth={"auc_oracle_content_only_new_items": 0.7})
    k = [r for r in ranking_findings(study) if r["id"] == "k"]
    assert [(r["metric"], r["source"], r["direction"]) for r in k] == [("ctr_1d", "semid", ">")] * 2
    assert all(r["claim"].startswith("semid's question, not the paper's:") and "LRU, 8,192 rows" in r["claim"]
               and r["reference"].startswith("tr_mch (mch, 8,192 rows)") for r in k)
    bi, spm = k
    assert bi["candidate"].startswith("bi ") and bi["verdict"] == "reproduces" and bi["ci_low"] > 0
    assert bi["items"] == int(NEW.reshape(N_ITEMS, PER_ITEM)[:, 0].sum())  # the CTR/1D slice: new items only
    assert spm["candidate"].startswith("spm_big ") and spm["verdict"] == "contradicted" and spm["ci_high"] < 0
    assert "shared miss row" in explain(spm, study) and "0.700" in explain(spm, study)
    assert explain(bi, study) is None
    # a study with the mch arm but no SID arm: (k) is asked and not run
    lone = [r for r in ranking_findings(Study(results[:2], num_bootstraps=50)) if r["id"] == "k"]
    assert [r["verdict"] for r in lone] == ["not run", "not run"] and "Bigram-SID" in lone[0]["reason"]


def test_verdict_rules_for_every_direction() -> None:
    def e(lo: float, hi: float) -> Estimate:
        return Estimate((lo + hi) / 2, lo, hi, 1, 1, 100, 1000)

    assert [verdict(">", e(*x), 1) for x in ((0.1, 2), (-2, -0.1), (-1, 1))] == \
        ["reproduces", "contradicted", "inconclusive"]
    assert [verdict("<", e(*x), 1) for x in ((-2, -0.1), (0.1, 2), (-1, 1))] == \
        ["reproduces", "contradicted", "inconclusive"]
    assert [verdict(">=", e(*x), 1) for x in ((-0.5, 2), (-3, -1.5), (-2, 0.5))] == \
        ["reproduces", "contradicted", "inconclusive"]
    assert [verdict("~", e(*x), 1) for x in ((-0.5, 0.5), (1.5, 3), (-0.5, 2))] == \
        ["reproduces", "contradicted", "inconclusive"]
    assert verdict(">", Estimate(None, None, None, 1, 1, 3, 10, "3 items"), 1) == "inconclusive"


def test_stability_is_an_equivalence_test(tmp_path: Path) -> None:
    same = [_run(tmp_path, "spm-early", "spm", 64, 0.8), _run(tmp_path, "spm-late", "spm", 64, 0.8)]
    rows = stability_findings(Study(same, num_bootstraps=300), margin=5.0)
    ctr = next(r for r in rows if r["metric"] == "ctr")
    assert ctr["direction"] == "~" and -5 < ctr["ci_low"] and ctr["ci_high"] < 5 and ctr["verdict"] == "reproduces"
    apart = [_run(tmp_path, "x-early", "spm", 64, 1.5), _run(tmp_path, "x-late", "spm", 64, 0.0)]
    assert next(r for r in stability_findings(Study(apart, num_bootstraps=300), margin=1.0)
                if r["metric"] == "ctr")["verdict"] == "contradicted"
    assert stability_findings(None, 1.0)[0]["verdict"] == "not run"


def test_table1_rises_with_an_interval_and_falls_in_size() -> None:
    t1 = {"rows": [{"subtrie_size_median": 100.0}, {"subtrie_size_median": 9.0}],
          "rises": [{"from_n": 1, "to_n": 2, "estimate": 0.08, "ci_low": 0.05, "ci_high": 0.11}],
          "interval": "bootstrap"}
    rows = table1_findings(t1)
    assert [r["verdict"] for r in rows] == ["reproduces", "reproduces"]
    t1["rises"][0].update(estimate=-0.01, ci_low=-0.03, ci_high=0.01)
    assert table1_findings(t1)[0]["verdict"] == "inconclusive"


def test_explanations_point_the_way_the_contradiction_went() -> None:
    """A contradiction is explained only by facts that push its way: hash-8K beating Dense 2x on a 3.7k-movie
    catalogue is explained by 8K rows being an ID table there, never by 'hash-8K memorises little'; hash-8K
    losing to Dense on 50k items by its shared rows; an (e) at small tables by the SPM's larger table."""
    def row(fid: str, claim: str, cand: str, ref: str, metric: str = "ctr") -> dict:
        return {"id": fid, "verdict": "contradicted", "claim": claim, "metric": metric, "setting": "without_history",
                "candidate": cand, "reference": ref}

    dense2x = row("b", "Dense Input with 2x depth beats random hashing with 8K rows", "dense_2x (dense, 0 rows, 2x depth)",
                  "hash_8k (hash, 8,192 rows)")
    dense1x = row("a", "Dense Input (1x depth) is worse than random hashing with 8K rows", "dense (dense, 0 rows)",
                  "hash_8k (hash, 8,192 rows)")
    real = Study([], n_items=3678)  # MovieLens-1M: no ground truth
    assert "0.45 items a row" in explain(dense2x, real) and "item-ID table" in explain(dense2x, real)
    # the reference is recognised by its kind, not its name: a hash arm called h8 explains the same
    assert explain({**dense2x, "reference": "h8 (hash, 8,192 rows)"}, real) == explain(dense2x, real)
    deeper = {**dense2x, "claim": "Dense Input with 2x depth beats Dense Input with 1.5x depth",
              "reference": "hash_like_dense (dense, 0 rows, 1.5x depth)"}
    assert explain(deeper, real) == "this corpus records no ground truth that could explain it"
    assert explain(dense1x, real) == "this corpus records no ground truth that could explain it"
    synth = Study([], n_items=50_000, ground_truth={"auc_oracle_content_only": 0.70, "auc_oracle_item_only": 0.71})
    assert "6.1 items" in explain(dense1x, synth) and "ID table" not in explain(dense1x, synth)
    assert "content carries" not in explain(dense1x, synth)  # item memorisation leads: it cannot explain a Dense win
    assert "item memorisation carries more" in explain(dense2x, synth) and "6.1" not in explain(dense2x, synth)
    small = row("e", "at small tables (L x K rows) Unigram-SID is at least as good as SPM-SID",
                "unigram (ngram, 256 rows)", "spm_1k (spm, 1,024 rows)")
    assert "4x the N-gram's rows" in explain(small, real)
