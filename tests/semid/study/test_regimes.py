"""The regime map's run (semid/study/regimes/run.py): configs refused before work, a report without grid cells, the
CLI, and `regimes_tiny` end to end."""
from __future__ import annotations

import json

import pytest

from semid.cli import main
from semid.core.errors import SemidError
from semid.study.regimes import load_regimes_config, plan_cells, run_regimes, write_regimes_report
from tests.semid.study.test_regime_analysis import make_cell, make_finding


def test_a_part_of_the_map_without_grid_cells_writes_its_table(tmp_path):
    """`--set only=[movielens-1m]` runs no grid cell: the report has the cell's table and no knob paragraph (it
    used to fail on the empty grid after the cell had run)."""
    cell = dict(make_cell(0.9, 0.45, [make_finding("reproduces", -6.0)]), in_grid=False, name="movielens-1m",
                seeds=[0], regime={"items": 3678}, oracle={}, fit_s=60.0, wall_s=90.0)
    md = write_regimes_report(load_regimes_config("regimes", [])[1], tmp_path, [cell], 90.0)
    text = md.read_text()
    assert "No cell of the grid ran" in text and "regime_map.png" not in text
    assert "| a | Dense Input (1x depth) is worse than random hashing with 8K rows |" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["flips"] == [] and [c["name"] for c in report["cells"]] == ["movielens-1m"]


@pytest.mark.parametrize("override, message", [
    ("grid.items_per_row=[1.0, 1.0]", "--set grid.items_per_row=[1.0, 1.0]: needs distinct values"),
    ("grid={}", "--set grid={}: needs one or two knobs (got 0)"),
    ("paper_cell={memorization_share: 0.5, items_per_row: 1.0}", "--set paper_cell={memorization_share: 0.5, "
                                                                   "items_per_row: 1.0}: 0.5 is not among grid."
                                                                   "memorization_share's values"),
    ("grid.items_per_row=[-1.0, 1.0]", "field 'grid': items_per_row=-1.0: must be a finite number > 0"),
    ("experiment.representations=[dense]", "field 'experiment.reference': 'hash_8k' is not among the representations"),
    ("fixed=[n_dayz=3]", "field 'fixed': "),
    ("fixed=[n_dayz=3]", "unknown key(s) n_dayz"),
    ("cells=[{name: x, synth_overrides: [new_item_share=0.9]}]", "field 'cells[0]': new_item_share=0.9: leaves"),
    ("cells=[{name: x, experiment_overrides: ['seeds=[0'], target: {}}]",
     "field 'cells[0].experiment_overrides': override 'seeds=[0': the value is not valid YAML"),
    ("cells=[{name: x, experiment_overrides: [seedz=1]}]", "field 'cells[0].experiment_overrides': experiment: "
                                                             "unknown key(s) seedz"),
])
def test_bad_configs_are_refused_before_any_cell_runs(tmp_path, override, message):
    out = tmp_path / "out"
    with pytest.raises(SemidError) as e:
        run_regimes("regimes_tiny", out, [override], log=lambda m: None)
    assert message in str(e.value), str(e.value)
    assert not out.exists()


@pytest.mark.slow
# 53 tiny fits: 7.3 CPU-minutes (measured 2026-12-02, user+sys of this test), ~4 min on CI's 2 cores
def test_regimes_tiny_end_to_end(tmp_path, capsys):
    """`semid experiment --preset regimes_tiny`, as a user types it: every cell, the aggregate report, a rerun."""
    out = tmp_path / "regimes"
    assert main(["experiment", "--preset", "regimes_tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    md = out / "regimes.md"
    assert f"report: {md}" in printed
    path, cfg = load_regimes_config("regimes_tiny")
    names = [c.name for c in plan_cells(path, cfg)]
    report = json.loads((out / "report.json").read_text())
    # one findings block per cell, each judging every finding (a)-(j) on the cell's own runs
    assert [c["name"] for c in report["cells"]] == names
    for c in report["cells"]:
        assert (out / "cells" / c["name"] / "report.json").exists()
        assert c["regime"]["history_weight"] == 1.0 and c["regime"]["items"] > 0
        if not c["in_grid"]:  # the calibrated cell runs hash_8k, dense and unigram without history only
            assert {f["id"] for f in c["findings"] if f["verdict"] != "not run"} == {"a", "c", "f", "g"}
            continue
        assert {f["id"] for f in c["findings"]} == set("abcdefghij")
        judged = [f for f in c["findings"] if f["id"] in "acdfgij"]  # (b), (e), (h): arms and stages left out
        assert all(f["verdict"] in ("reproduces", "contradicted", "inconclusive") for f in judged), \
            (c["name"], [f for f in judged if f["verdict"] == "not run"])
    paper = next(c for c in report["cells"] if c["knobs"] == cfg.paper_cell)
    assert {f["n_seeds"] for f in paper["findings"] if f["id"] == "a"} == {2}
    # the knobs reached the corpora: 0.25 and 1.0 items per 8K row, as measured on each cell's corpus
    assert sorted({c["regime"]["items"] for c in report["cells"] if c["in_grid"]}) == [2048, 8192]
    lows = [c["regime"]["memorization_share_measured"] for c in report["cells"] if c["knobs"].get("memorization_share") == 0.2]
    highs = [c["regime"]["memorization_share_measured"] for c in report["cells"] if c["knobs"].get("memorization_share") == 0.8]
    assert max(lows) < 0.35 < 0.65 < min(highs)
    cal = next(c for c in report["cells"] if c["name"] == "calibrated")["calibration"]
    assert set(cal["residual"]) == {"dense_vs_hash_8k_pct", "unigram_vs_hash_8k_pct"}
    assert all(v is not None for v in cal["residual"].values())
    assert len(report["table"]) == len(report["flips"]) and report["paragraph"]
    assert all(c["fit_s"] > 0 for c in report["cells"])  # each cell's fits, as they recorded their wall time
    text = md.read_text()
    assert "## Regime table" in text and "## Which corpus property flips which finding" in text
    for c in report["cells"]:
        assert c["label"] in text
    for fid in "abcdefghij":
        assert f"- **({fid})**" in text
    for fig in ("regime_map.png", "regime_table.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    assert any("cell 1/5" in m for m in printed) and any("ranker fits" in m for m in printed)
    # a rerun reuses every cell's stages
    again: list[str] = []
    run_regimes("regimes_tiny", out, [], log=again.append)
    assert not any(m.endswith(": running") and "cell" not in m for m in again), again


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0,1"], "--seeds 0,1: a regime map sets its seeds per cell"),
    (["--set", "grid={}"], "--set grid={}: needs one or two knobs (got 0)"),
    (["--set", "experiment.representations=[dense]"], "field 'experiment.reference': 'hash_8k' is not among"),
])
def test_the_cli_runs_a_regimes_preset_and_refuses_bad_input_before_any_cell(tmp_path, capsys, argv, message):
    """`semid experiment --preset regimes_tiny` is the regime map, not an ordinary experiment (which would refuse
    its grid: key): a bad flag or value is one line, exit 2, nothing written."""
    out = tmp_path / "out"
    assert main(["experiment", "--preset", "regimes_tiny", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()
