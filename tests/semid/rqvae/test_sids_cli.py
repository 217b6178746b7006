"""End to end through the CLI: synth corpus -> sids train -> assign -> report -> compare."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from semid.cli import main


def _run(*argv: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


def test_train_assign_report_compare(tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert _run("sids", "train", "--corpus", tiny_corpus, "--config", "tiny", "--out", run,
                "--set", "train.steps=40", "--set", "train.holdout_items=100") == 0
    assert (run / "rqvae.pt").exists() and (run / "logs" / "metrics.csv").exists()
    health = json.loads((run / "health.json").read_text())
    assert min(health["all_items"]["utilisation_per_level"]) > 0.9
    assert health["all_items"]["unique_sid_fraction"] > 0.2
    assert sum(health["train"]["dead_code_resets_per_level"]) > 0
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "health/utilisation_l0", "val/unique_sid_fraction", "resets/total_l0"} <= set(header)

    sids = tmp_path / "sids.parquet"
    assert _run("sids", "assign", "--model", run, "--corpus", tiny_corpus, "--out", sids, "--batch-size", "97") == 0
    n_items = pq.read_metadata(tiny_corpus / "items.parquet").num_rows
    assert pq.read_metadata(sids).num_rows == n_items == health["all_items"]["items"]

    report = tmp_path / "report.json"
    assert _run("sids", "report", sids, "--corpus", tiny_corpus, "--model", run, "--json", report,
                "--prefix", "0") == 0
    r = json.loads(report.read_text())
    sims = [row["avg_cosine_similarity"] for row in r["table1"]["rows"]]
    # the synthetic items sit in a topic tree: longer shared prefixes mean more similar items
    assert sims[0] > r["table1"]["random_pair_baseline"] + 0.1
    assert all(b > a for a, b in zip(sims, sims[1:]))
    assert r["subtrie"]["items"] > 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "prefix 0:" in out and "topic " in out  # titles shown in the browser

    assert _run("sids", "compare", sids, sids, "--json", tmp_path / "cmp.json") == 0
    c = json.loads((tmp_path / "cmp.json").read_text())
    assert c["identical_sids"] == 1.0 and [lv["agreement"] for lv in c["per_level"]] == [1.0] * 3

    # a second model (another seed): compare runs and agrees less than perfectly
    run_b = tmp_path / "run_b"
    assert _run("sids", "train", "--corpus", tiny_corpus, "--config", "tiny", "--out", run_b, "--seed", "1",
                "--set", "train.steps=20", "--set", "train.holdout_items=0") == 0
    sids_b = tmp_path / "sids_b.parquet"
    assert _run("sids", "assign", "--model", run_b, "--corpus", tiny_corpus, "--out", sids_b) == 0
    assert _run("sids", "compare", sids, sids_b, "--json", tmp_path / "cmp_b.json") == 0
    c = json.loads((tmp_path / "cmp_b.json").read_text())
    assert 0 < c["per_level"][0]["agreement"] < 1 and c["identical_sids"] < 1
    assert 0 < c["prefix_stability"][0]["a_pairs_kept_in_b"] < 1

    # user errors: one line, exit 2
    capsys.readouterr()
    assert _run("sids", "report", sids, "--corpus", tiny_corpus, "--model", run_b) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "re-run `semid sids assign`" in err
    assert _run("sids", "assign", "--model", run_b, "--corpus", tiny_corpus, "--out", sids) == 2
    assert "--update" in capsys.readouterr().err
    assert _run("sids", "train", "--corpus", tiny_corpus, "--config", "tiny", "--out", run, "--seed", "7") == 2
    assert "--overwrite" in capsys.readouterr().err
    # the same commands again (a kill may land after the final rename): nothing to do, exit 0
    assert _run("sids", "assign", "--model", run, "--corpus", tiny_corpus, "--out", sids) == 0
    assert "is up to date" in capsys.readouterr().out
    assert _run("sids", "train", "--corpus", tiny_corpus, "--config", "tiny", "--out", run,
                "--set", "train.steps=40", "--set", "train.holdout_items=100") == 0
    assert "up to date" in capsys.readouterr().out
    assert _run("sids", "train", "--corpus", tiny_corpus, "--config", "tiny", "--out", tmp_path / "x",
                "--set", "model.levles=3") == 2
    assert "unknown key(s) levles" in capsys.readouterr().err
    assert np.isfinite(sims).all()


def test_a_run_made_by_other_stage1_code_is_retrained(tiny_corpus, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """health.json records the Stage-1 code; `sids train` of a run whose code changed trains again."""
    import json

    import semid.rqvae.runs as runs

    out = tmp_path / "rq"
    args = ["sids", "train", "--corpus", str(tiny_corpus), "--config", "tiny", "--out", str(out)]
    assert main(args) == 0
    health = json.loads((out / "health.json").read_text())
    assert health["code_fingerprint"] == runs.code_fingerprint(*runs.STAGE1_ROOMS)
    assert main(args) == 0  # same code: up to date
    monkeypatch.setattr(runs, "code_fingerprint", lambda *rooms: "other-code")
    assert runs.finished_run(out, health["fingerprint"]) is None


def test_default_presets_give_the_same_bits_twice_and_a_large_holdout_is_scaled(tiny_corpus, tmp_path,
                                                                              capsys) -> None:  # noqa: ANN001
    import torch

    from semid.rqvae.config import RqvaeConfig

    assert RqvaeConfig().run.threads == 1  # a file that says nothing about threads is deterministic too
    outs = [tmp_path / f"rq{i}" for i in range(2)]
    for out in outs:  # holdout_items 5000: more than 10% of the tiny corpus's items
        assert main(["sids", "train", "--corpus", str(tiny_corpus), "--config", "tiny", "--out", str(out),
                     "--set", "train.holdout_items=5000"]) == 0
    err = capsys.readouterr().err
    assert "train.holdout_items=5,000 is more than 10% of the corpus's" in err and "for SID health" in err
    a, b = (torch.load(o / "rqvae.pt", weights_only=False)["state_dict"] for o in outs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
