"""`semid plan`: a paper-scale planner dry run on a CPU-only machine."""
from __future__ import annotations

import json

from semid.rankers.plan import PlanSpec, dry_run, paper_tables
from semid.cli import main


def test_paper_scale_tables():
    rows = dict(paper_tables(PlanSpec(representation="all")))
    assert rows["bigram_g0"] == 2048 ** 2 and sum(k.startswith("bigram") for k in rows) == 4
    assert sum(k.startswith("unigram") for k in rows) == 8 and rows["spm"] == 4 * 2048 ** 2
    assert rows["hash"] == 10_000_000


def test_plan_accounts_every_byte_and_fits_hbm(tmp_path, capsys):
    spec = PlanSpec(representation="bigram", dim=64, nodes=4, gpus_per_node=8, sharding_types=["row_wise"])
    r = dry_run(spec)
    assert r["world_size"] == 32 and len(r["per_rank_gb"]) == 32
    weights = 4 * 2048 ** 2 * 64 * 4 / 1024 ** 3
    optimizer = 4 * 2048 ** 2 * 4 / 1024 ** 3  # row-wise Adagrad: one float per row
    assert abs(r["total_gb"] - (weights + optimizer)) < 1e-6
    assert all(t["sharding_type"] == "row_wise" and t["shards"] == 32 for t in r["tables"])
    assert r["max_rank_gb"] < spec.hbm_gb
    assert main(["plan", "--representation", "all", "--json", str(tmp_path / "p.json")]) == 0
    assert "per-rank memory" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["world_size"] == 32
