"""Issue 18: the experiment trains the same representations on SIDs from each Stage-1 variant and the report
pairs them with the main RQ-VAE's SIDs (quantizer -> SID health -> ranker quality)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from semid.cli import main


def _config(tmp_path: Path, **extra: object) -> Path:
    cfg = {"base": "tiny", "name": "tiny-quantizers", "representations": ["hash_8k", "bigram", "spm_64"],
           "ranker_variants": [], "settings": ["without_history"], "stability": {"enabled": False},
           "age_slices": [], "report_bootstraps": 100,
           "quantizers": [{"name": "rqkmeans", "rqvae": "tiny_rqkmeans"},
                          # tiny's RQ-VAE (K=16) puts 58 items on one SID, more than a K=16 suffix can number
                          # (refused with one line): the suffix goes on a K=64 RQ-VAE
                          {"name": "k64_suffix", "overrides": ["model.codebook_size=64"], "collision_suffix": True}],
           "quantizer_representations": ["bigram", "spm_64"], **extra}
    path = tmp_path / "tiny-quantizers.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_quantizer_table_pairs_each_variant_with_the_rqvae(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    assert main(["experiment", "--preset", str(_config(tmp_path)), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    q = report["quantizers"]
    by_name = {v["name"]: v for v in q["variants"]}
    assert list(by_name) == ["rqvae", "rqkmeans", "k64_suffix"]
    assert by_name["rqkmeans"]["quantizer"] == "rqkmeans" and by_name["rqvae"]["quantizer"] == "rqvae"
    # the suffix adds one level and makes every SID unique; the plain tables collide (tiny: K=16, L=3)
    assert by_name["k64_suffix"]["levels"] == by_name["rqvae"]["levels"] + 1
    assert by_name["k64_suffix"]["unique_sid_fraction"] == 1.0
    assert by_name["k64_suffix"]["largest_collision_group"] == 1
    assert by_name["rqvae"]["largest_collision_group"] > 1
    assert 0 < by_name["rqkmeans"]["relative_error_heldout"] < 1.5
    rows = q["ranking"]["without_history"]
    assert set(rows) == {"bigram", "spm_64"}
    for rep, variants in rows.items():
        assert set(variants) == {"rqvae", "rqkmeans", "k64_suffix"}
        assert "vs_rqvae_pct" not in variants["rqvae"]
        for name in ("rqkmeans", "k64_suffix"):
            for sl in ("overall", "new"):
                e = variants[name]["vs_rqvae_pct"][sl]
                assert e["estimate"] is not None and e["ci_low"] <= e["estimate"] <= e["ci_high"], (rep, name, sl, e)
            # the paired difference is not the difference of two unrelated numbers: it equals the AUC gap
            gap = 100 * (variants[name]["auc"]["overall"]["estimate"] / variants["rqvae"]["auc"]["overall"]["estimate"] - 1)
            assert variants[name]["vs_rqvae_pct"]["overall"]["estimate"] == pytest.approx(gap, abs=1e-6)
    # the main grid is untouched: its rows do not include the variants' runs
    assert set(report["summary"]["without_history"]) == {"hash_8k", "bigram", "spm_64"}
    md = (out / "report.md").read_text()
    assert "## Quantizers: SID health -> ranker quality" in md and "| bigram | rqkmeans | 1 |" in md
    # a rerun reuses everything, including the variants' fits and the report
    assert main(["experiment", "--preset", str(_config(tmp_path)), "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["fingerprint"] == report["fingerprint"]


def test_quantizer_representations_must_be_in_the_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exp"
    cfg = _config(tmp_path, quantizer_representations=["unigram"])
    assert main(["experiment", "--preset", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quantizer_representations" in err[0] and "unigram" in err[0]
    assert not out.exists()
