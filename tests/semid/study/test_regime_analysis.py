"""The regime map's knob analysis (semid/study/regimes/analysis.py) on hand-made cells: a knob that flips a finding
is named, one that does not is not; a calibrated cell's residuals."""
from __future__ import annotations

import pytest

from semid.study.regimes.analysis import calibration_of, flip_of, paragraph, regime_table

CLAIM = "Dense Input (1x depth) is worse than random hashing with 8K rows"


def make_finding(verdict: str, estimate: float, fid: str = "a", claim: str = CLAIM) -> dict:
    return {"id": fid, "claim": claim, "setting": "without_history", "metric": "ctr", "direction": "<",
            "verdict": verdict, "estimate": estimate, "ci_low": estimate - 0.5, "ci_high": estimate + 0.5,
            "n_seeds": 1, "candidate": "dense", "reference": "hash_8k"}


def make_cell(mem: float, ipr: float, findings: list[dict]) -> dict:
    knobs = {"memorization_share": mem, "items_per_row": ipr}
    return {"name": f"m{mem}-i{ipr}", "label": f"m={mem}, i={ipr}", "knobs": knobs, "in_grid": True,
            "findings": findings}


def make_grid() -> list[dict]:
    """(a) reproduces only with much memorisation, whatever the items per row; (i) holds everywhere."""
    i_row = lambda: make_finding("reproduces", 20.0, "i", "Bigram-SID beats random hashing (hash-8K) on CTR/1D")  # noqa: E731
    return [make_cell(0.2, 1.0, [make_finding("contradicted", 3.0), i_row()]),
            make_cell(0.2, 8.0, [make_finding("contradicted", 4.0), i_row()]),
            make_cell(0.8, 1.0, [make_finding("reproduces", -2.0), i_row()]),
            make_cell(0.8, 8.0, [make_finding("reproduces", -1.0), i_row()])]


def test_the_knob_that_flips_a_finding_is_named_and_the_other_is_not():
    grid = make_grid()
    table = regime_table(grid)
    assert [r["id"] for r in table] == ["a", "i"] and table[0]["label"] == CLAIM
    assert table[0]["cells"]["m0.8-i1.0"] == {"verdict": "reproduces", "estimate": -2.0, "ci_low": -2.5,
                                              "ci_high": -1.5, "n_seeds": 1, "candidate": "dense",
                                              "reference": "hash_8k"}
    knobs = ["memorization_share", "items_per_row"]
    flip_a, flip_i = (flip_of(r, grid, knobs) for r in table)
    assert flip_a["kind"] == "flips" and flip_a["knob"] == "memorization_share"
    assert flip_a["counts"] == {"reproduces": 2, "contradicted": 2, "inconclusive": 0}
    e = flip_a["effects"]
    assert e["memorization_share"]["verdict_shift"] == 2.0 and e["memorization_share"]["estimate_shift"] == -5.0
    assert e["items_per_row"]["lines_with_change"] == 0 and e["items_per_row"]["estimate_shift"] == 1.0
    assert flip_i["kind"] == "reproduces" and flip_i["knob"] is None
    text = "\n".join(paragraph(table, [flip_a, flip_i], grid, knobs))
    assert "- **(a)** memorization_share flips 1 and moves 0 of its 1 judged rows." in text
    assert "raising memorization_share from 0.2 to 0.8 flips it towards the paper, estimate -5 points on average; " \
           "items_per_row does not change it." in text
    assert "Reproduces at: (memorization_share=0.8, items_per_row=1); (memorization_share=0.8, items_per_row=8)" in text
    assert "- **(i)** 1 row reproduces in every judged cell." in text
    assert "Bigram-SID beats random hashing (hash-8K) on CTR/1D — without history, CTR AUC: reproduces in every cell" in text


def test_calibration_residual_is_measured_minus_target():
    cell = {"findings": [make_finding("reproduces", -6.0),
                         make_finding("reproduces", -5.0, "c", "without user history, Unigram-SID is worse than hash-8K on CTR")]}
    cal = calibration_of(cell, {"dense_vs_hash_8k_pct": -6.61, "unigram_vs_hash_8k_pct": -6.47})
    assert cal["residual"]["dense_vs_hash_8k_pct"] == pytest.approx(0.61)
    assert cal["residual"]["unigram_vs_hash_8k_pct"] == pytest.approx(1.47)
    assert cal["rms_residual"] == pytest.approx(((0.61 ** 2 + 1.47 ** 2) / 2) ** 0.5)
    assert cal["measured"]["dense_vs_hash_8k_pct"] == {"estimate": -6.0, "ci_low": -6.5, "ci_high": -5.5}


