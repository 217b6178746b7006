from __future__ import annotations

import json

import numpy as np

from semid.datamodules.stats import corpus_stats, fit_zipf_exponent
from semid.cli import main


def test_zipf_fit_recovers_the_exponent():
    ranks = np.arange(1, 5001)
    for s in (0.8, 1.2):
        counts = np.round(1e6 * ranks ** -s).astype(int)
        assert abs(fit_zipf_exponent(counts) - s) < 0.05


def test_stats_of_tiny_corpus(tiny_corpus, tmp_path, capsys):
    s = corpus_stats(tiny_corpus)
    assert s["items"] == 2000 and s["days"] == 6 and s["impressions"] == 36000
    assert [d["new_items"] for d in s["per_day"]] == [1500, 100, 100, 100, 100, 100]
    assert 0.1 < s["ctr"] < 0.35
    assert 0.7 < s["zipf_exponent"] < 1.5
    h = s["history_length_at_impression"]
    assert h["p50"] <= h["p90"] <= h["max"] and h["max"] > 0
    assert main(["data", "stats", str(tiny_corpus), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "Zipf exponent" in out and "36,000" in out
    assert json.loads((tmp_path / "s.json").read_text())["impressions"] == 36000
