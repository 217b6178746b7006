"""Results pages rendered from what experiments wrote: the tiny study's report.json (the session's shared run) and a
regime map's report.json written by the map's own writer; bad --results arguments are one line before any work."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from semid.cli import main
from semid.core.errors import SemidError
from semid.site.generate import results_pages
from semid.study.regimes import load_regimes_config, write_regimes_report
from tests.semid.tiny_study import tiny_study  # noqa: F401  # the session's one tiny study

CLAIM = "Dense Input (1x depth) is worse than random hashing with 8K rows"


def _as_older_report(run: Path, tmp: Path) -> Path:
    """The run's report.json and figures as a report written before reports named their experiment."""
    report = json.loads((run / "report.json").read_text())
    assert report.pop("experiment") == "tiny"
    (tmp / "older").mkdir()
    (tmp / "older" / "report.json").write_text(json.dumps(report))
    shutil.copytree(run / "figures", tmp / "older" / "figures")
    return tmp / "older"


def test_a_report_of_another_experiment_is_refused(tiny_study) -> None:  # noqa: F811
    with pytest.raises(SemidError, match=r"report.json is experiment 'tiny', but page 'small-study' is made from "
                                         r"'small-full' \(`semid experiment --preset small-full --seeds 0,1,2`\)"):
        results_pages({"small-study": tiny_study.out})


def test_a_study_page_shows_the_reports_numbers(tiny_study, tmp_path: Path) -> None:  # noqa: F811
    assert tiny_study.rc == 0
    report = json.loads((tiny_study.out / "report.json").read_text())
    pages = results_pages({"small-study": _as_older_report(tiny_study.out, tmp_path)})
    page = pages["results/small-study.md"]
    assert isinstance(page, str) and page.startswith("# The small study")
    hash8k = report["summary"]["without_history"]["hash_8k"]["auc"]["overall"]
    dense = report["summary"]["without_history"]["dense"]["vs_reference_pct"]["overall"]
    # AUCs to 4 decimals, paired differences to 2, fixed: a column lines up
    assert f"| hash_8k | hash | 8,192 | 1 | {hash8k['estimate']:.4f} [{hash8k['ci_low']:.4f}, " in page
    sign = "+" if dense["estimate"] > 0 else ""
    assert f"{sign}{dense['estimate']:.2f}% [{dense['ci_low']:.2f}, {dense['ci_high']:.2f}]" in page
    verdicts = {f["verdict"] for f in report["findings"]}
    assert all(f"### {v.capitalize()} (" in page for v in verdicts)
    # the figures travel with the page, byte for byte
    assert pages["results/small-study/improvement.png"] == (tiny_study.out / "figures" / "improvement.png").read_bytes()
    assert "](small-study/improvement.png)" in page


def _cell(name: str, mem: float, verdict: str, estimate: float) -> dict:
    finding = {"id": "a", "claim": CLAIM, "setting": "without_history", "metric": "ctr", "direction": "<",
               "verdict": verdict, "estimate": estimate, "ci_low": estimate - 0.5, "ci_high": estimate + 0.5,
               "n_seeds": 1, "candidate": "dense", "reference": "hash_8k"}
    return {"name": name, "label": name, "knobs": {"memorization_share": mem, "history_weight": 0.0}, "in_grid": True,
            "seeds": [0], "regime": {"items": 1000}, "oracle": {}, "fit_s": 120.0, "wall_s": 150.0,
            "findings": [finding]}


def test_a_regime_page_from_the_maps_own_report(tmp_path: Path) -> None:
    cfg = load_regimes_config("regimes", [])[1]
    cells = [_cell("m0.2", 0.2, "contradicted", 3.0), _cell("m0.8", 0.8, "reproduces", -2.0)]
    write_regimes_report(cfg, tmp_path, cells, 300.0)
    page = results_pages({"regime-map": tmp_path})["results/regime-map.md"]
    assert isinstance(page, str)
    assert f"| a | {CLAIM} | without history | CTR | **C** 3 [2.5, 3.5] | **R** -2 [-2.5, -1.5] |" in page
    assert "| m0.8 | history_weight=0, memorization_share=0.8 | 1 | 1,000 | 2.0 |" in page
    assert "## Which corpus property flips which finding" in page


def test_a_report_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps({"cells": [], "table": []}))
    with pytest.raises(SemidError, match="is a regime map's report, but page 'small-study' is made from a study"):
        results_pages({"small-study": tmp_path})


@pytest.mark.parametrize("arg, message", [
    ("nonsense", "--results nonsense: expected PAGE=DIR"),
    ("best-study=runs/x", "unknown page 'best-study' (valid: small-study, movielens-1m, regime-map, quantizer-study)"),
    ("small-study={missing}", "report.json is missing (give the --out of a finished"),
])
def test_bad_results_arguments_are_one_line_before_any_work(tmp_path: Path, capsys, arg: str, message: str) -> None:
    docs = tmp_path / "docs"
    rc = main(["docs", "generate", "--docs", str(docs), "--results", arg.format(missing=tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not docs.exists()  # nothing written, not even the reference pages


def _arm(kind: str, rows: int, overall: float, new: dict, ages: dict, vs: dict | None = None) -> dict:
    ci = {"estimate": overall, "ci_low": overall - 0.01, "ci_high": overall + 0.01}
    row = {"kind": kind, "table_rows": rows, "seeds": [0, 1], "auc": {"overall": ci, "new": new, **ages}}
    if vs is not None:
        row["vs_reference_pct"] = vs
    return row


def test_an_undefined_slice_gives_its_reason_once_and_an_empty_age_slice_no_column() -> None:
    from semid.site.results_pages import study_page

    why = "7 items on day 32, need >= 20 for an interval"
    undefined = {"estimate": None, "undefined": why, "items": 7, "impressions": 7}
    age = {"estimate": 0.68, "ci_low": 0.61, "ci_high": 0.72}
    ages = {"age_le_1": undefined, "age_le_16": age}
    vs = {"overall": {"estimate": 7.0123, "ci_low": 6.481, "ci_high": 7.52}, "new": undefined,
          "age_le_1": undefined, "age_le_16": {"estimate": 6.8, "ci_low": 0.51, "ci_high": 13.76}}
    report = {"summary": {"without_history": {"hash_1k": _arm("hash", 1024, 0.6756, undefined, ages),
                                              "bigram": _arm("ngram", 8192, 0.723, undefined, ages, vs)}}}
    page = study_page(report, "MovieLens-1M", "`r/report.json`", slug="movielens-1m")
    assert "| bigram | ngram | 8,192 | 2 | 0.7230 [0.7130, 0.7330] | +7.01% [6.48, 7.52] | undefined | undefined |" in page
    assert page.count(why) == 2  # once under the ranking table, once for the age slices no arm could estimate
    assert "| representation | age <= 16 |" in page and "age <= 1 |" not in page
    assert "| bigram | 0.6800 [0.6100, 0.7200]; +6.80% [0.51, 13.76] |" in page
