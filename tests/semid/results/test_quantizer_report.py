"""Issue 33: the quantizer study's report holds a behaviour-aware variant's rows, paired with the content-only
RQ-VAE (lambda = 0) and with the hash reference, on CTR, CTR/1D and the item-age slices, and names each row's
lambda and the days its co-engaged pairs came from (never the evaluation day)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from semid.cli import main


def test_a_behaviour_aware_variant_gets_paired_rows_on_every_slice(tmp_path: Path) -> None:
    cfg = {"base": "tiny", "name": "tiny-cooc", "representations": ["hash_8k", "bigram"], "ranker_variants": [],
           "settings": ["without_history"], "stability": {"enabled": False}, "age_slices": [1, 2],
           "report_bootstraps": 100,
           "quantizers": [{"name": "cooc_l1", "rqvae": "tiny", "overrides": ["quantizer=rqvae_cooc",
                                                                              "cooccur.weight=1.0"]}],
           "quantizer_representations": ["bigram"]}
    preset = tmp_path / "tiny-cooc.yaml"
    preset.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "exp"
    assert main(["experiment", "--preset", str(preset), "--out", str(out)]) == 0
    q = json.loads((out / "report.json").read_text())["quantizers"]
    by_name = {v["name"]: v for v in q["variants"]}
    assert "cooccur" not in by_name["rqvae"]
    co = by_name["cooc_l1"]["cooccur"]
    # tiny's rankers train on days 0-4 and are judged on day 5: the pairs stop before it
    assert co["weight"] == 1.0 and co["days"] == [0, 4] and co["pairs"] > 100
    row = q["ranking"]["without_history"]["bigram"]["cooc_l1"]
    slices = {"overall", "new", "age_le_1", "age_le_2"}
    assert set(row["auc"]) == slices
    for key in ("vs_rqvae_pct", "vs_baseline_pct"):
        assert set(row[key]) == slices
        for sl, e in row[key].items():
            assert e["estimate"] is not None and e["ci_low"] <= e["estimate"] <= e["ci_high"], (key, sl, e)
    # the content-only row is the reference of the Δ% vs rqvae, and is itself paired with hash-8K
    ref = q["ranking"]["without_history"]["bigram"]["rqvae"]
    assert "vs_rqvae_pct" not in ref and set(ref["vs_baseline_pct"]) == slices
    md = (out / "report.md").read_text()
    assert "| cooc_l1 | rqvae_cooc | 3 |" in md and "| 1 (" in md and "days 0-4) |" in md
    assert "| 0 (content only) |" in md
    assert "| representation | variant | AUC age <= 1 | Δ% vs rqvae | Δ% vs hash_8k | AUC age <= 2 |" in md
