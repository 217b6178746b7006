"""Every benchmark path end to end at a tiny size: the JSON has every contender / stage with positive
numbers. No timing assertions (speed targets live in the benchmarks, BENCHMARKS.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from semid.bench.lookups import DEFAULT_CONTENDERS, LAYOUTS
from semid.cli import main


def test_bench_lookups_every_contender(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "lookups", "--rows", "1000", "--batch", "64", "--iters", "2", "--rounds", "2",
               "--warmup", "1", "--threads", "1", "--dim", "16", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "lookups.json").read_text())
    assert len(res["results"]) == len(LAYOUTS) * 2  # every layout x (zipf, uniform)
    for r in res["results"]:
        assert r["layout"] in LAYOUTS and r["rows"] <= 1000
        for mode in ("fwd", "train"):
            assert set(r[mode]) == set(DEFAULT_CONTENDERS)
            for fig in r[mode].values():
                assert fig["lookups_per_s"] > 0 and fig["samples_per_s"] > 0 and fig["gb_per_s"] > 0
            # ratios of the project's path (the fast path) to every other contender, and of plain DMP to the rest
            assert r[f"{mode}_reference"] == "torchrec_fast"
            assert set(r[f"{mode}_ratio_vs_ref"]) == set(DEFAULT_CONTENDERS) - {"torchrec_fast"}
            assert set(r[f"{mode}_ratio_dmp_vs"]) == set(DEFAULT_CONTENDERS) - {"torchrec_fast", "torchrec_dmp"}
            assert all(v > 0 for v in r[f"{mode}_ratio_vs_ref"].values())
            assert all(v > 0 for v in r[f"{mode}_ratio_dmp_vs"].values())
        assert r["sharding_type"] and r["lookup_path"] == "local"
    # layouts: lookups per sample as documented
    per = {(r["layout"], r["distribution"]): r["lookups_per_sample"] for r in res["results"]}
    assert per[("hash", "zipf")] == 1 and per[("unigram", "zipf")] == 4 and per[("bigram", "zipf")] == 2
    assert per[("history", "zipf")] == 20 and 1 <= per[("spm", "zipf")] <= 4
    keys = {"torchrec_within_1.2x_of_tbe", "torchrec_5x_eb_adagrad", "torchrec_50pct_of_ceiling"}
    assert set(res["targets"]) == keys and set(res["targets_dmp"]) == keys
    assert all(t["of"] == len(LAYOUTS) * 2 for t in [*res["targets"].values(), *res["targets_dmp"].values()])
    md = (out / "lookups.md").read_text()
    assert "FBGEMM TBE" in md and "EB+Adagrad" in md and "fast / FBGEMM TBE" in md and "DMP / FBGEMM TBE" in md


def test_bench_lookups_dmp2(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "lookups", "--rows", "1000", "--batch", "64", "--iters", "1", "--rounds", "2",
               "--warmup", "1", "--threads", "1", "--dim", "16", "--layouts", "unigram", "--distributions", "zipf",
               "--contenders", "torchrec_fast,torchrec_dmp,fbgemm_tbe", "--dmp2", "--out", str(out)])
    assert rc == 0
    (r,) = json.loads((out / "lookups.json").read_text())["results"]
    assert r["dmp2"]["train"]["lookups_per_s"] > 0 and r["dmp2"]["train_ratio_vs_dmp1"] > 0
    assert r["dmp2"]["sharding_type"] == "table_wise"


def test_bench_lookups_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "lookups", "--layouts", "trigram"]) == 2
    assert "unknown layout" in capsys.readouterr().err
    assert main(["bench", "lookups", "--contenders", "torchrec_fast,fbgemm_tbe", "--dmp2"]) == 2
    assert "add it to --contenders" in capsys.readouterr().err
    assert main(["bench", "lookups", "--device", "cuda"] if not _cuda() else ["bench", "lookups", "--batch", "0"]) == 2


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_bench_pipeline_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "pipeline", "--preset", "tiny", "--representations", "hash_8k", "--train-days", "0",
               "--spm-representation", "spm_1k", "--set", "trainer.num_bootstraps=0",
               "--set", "data.batch_size=512", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "pipeline.json").read_text())
    st = res["stages"]
    assert st["synth"]["rows_per_s"] > 0 and st["synth"]["peak_rss_mb"] > 0
    assert st["rqvae_encode"]["encode_items_per_s"] > 0 and st["rqvae_encode"]["briefly_trained"]
    assert st["tokens"]["tokenize_items_per_s"] > 0 and st["tokens"]["cache_build_items_per_s"] > 0
    assert st["tokens"]["kjt_samples_per_s_with_history"] > 0 and st["tokens"]["lookups_per_item"] >= 1
    (run,) = st["rank_fit"]
    assert "failed" not in run, run
    assert run["train_samples_per_s"] > 0 and run["peak_rss_mb"] > 0 and run["world_size"] == 1
    assert "samples/s" in (out / "pipeline.md").read_text()
