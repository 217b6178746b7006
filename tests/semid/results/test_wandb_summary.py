"""The experiment's W&B summary run: report.json's tables as wandb.Tables and its figures as images, in the fits'
project and group, read back from the offline run directory with wandb's own reader of the ``.wandb`` log.
(The summary run of a real experiment is checked in tests/semid/test_launchers.py.)"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
import pytest

from semid.core.artifacts import write_json
from semid.core.config import ConfigFieldError
from semid.core.loggers import wandb_run_id
from semid.core.records import JsonObject
from semid.results.records import EstimateDict
from semid.results.wandb_summary import FINDING_COLUMNS, MARKER, check_setting, is_logged, log_summary, wanted
from tests.rankers.test_wandb_resume import wandb_records


def _auc(estimate: float | None, items: int, undefined: str | None = None) -> EstimateDict:
    if estimate is None:
        return {"estimate": None, "ci_low": None, "ci_high": None, "items": items, "impressions": 0,
                "n_seeds": 1, "n_periods": 1, "undefined": undefined}
    return {"estimate": estimate, "ci_low": estimate - 0.02, "ci_high": estimate + 0.03, "items": items,
            "impressions": 10 * items, "n_seeds": 1, "n_periods": 1, "undefined": None}


def _report(fingerprint: str) -> JsonObject:
    """A report.json as semid.results.report writes it: two settings, a reference and a candidate with an undefined
    slice, findings of every verdict kind, Table 1."""
    summary = {}
    for i, setting in enumerate(("without_history", "with_history")):
        summary[setting] = {
            "hash_8k": {"kind": "hash", "table_rows": 8192, "depth_multiplier": 1.0, "seeds": [0, 1],
                        "evaluation_days": [9], "lookups_per_item": 1.0, "samples_per_s": 5000.0 + i,
                        "auc": {"overall": _auc(0.70 + i / 100, 900), "new": _auc(0.55, 80)}},
            "spm_64": {"kind": "spm", "table_rows": 64, "depth_multiplier": 1.0, "seeds": [0, 1],
                       "evaluation_days": [9], "lookups_per_item": 2.8, "samples_per_s": 4000.0,
                       "auc": {"overall": _auc(0.72 + i / 100, 900), "new": _auc(None, 3, "fewer than 20 items")},
                       "vs_reference_pct": {"overall": _auc(2.5, 900), "new": _auc(None, 3, "fewer than 20 items")}},
        }
    finding = {"claim": "SPM-SID beats hash-8K", "metric": "ctr", "direction": ">", "reference": "hash_8k",
               "candidate": "spm_64", "statistic": "Δ%", "margin_pct": None, "n_seeds": 2, "n_periods": 1,
               "items": 900, "impressions": 9000, "reason": None, "explanation": None}
    findings = [{**finding, "id": "i", "setting": "without_history", "estimate": 2.5, "ci_low": 0.4, "ci_high": 4.1,
                 "verdict": "reproduces"},
                {**finding, "id": "i", "setting": "with_history", "estimate": -1.0, "ci_low": -2.0, "ci_high": -0.1,
                 "verdict": "contradicted", "explanation": "content carries the signal"},
                {**finding, "id": "h", "setting": "without_history", "estimate": None, "ci_low": None,
                 "ci_high": None, "items": None, "impressions": None, "verdict": "not run",
                 "reason": "the stability study is off"},
                {**finding, "id": "i", "metric": "ctr_1d", "setting": "with_history", "estimate": None,
                 "ci_low": None, "ci_high": None, "verdict": "undefined (fewer than 20 items)"}]
    table1 = {"rows": [{"n": n, "avg_cosine_similarity": 0.8 + n / 100, "ci_low": 0.7, "ci_high": 0.9,
                        "prefixes": 16 * n, "pairs": 1000 // n, "subtrie_size_p25": 10.0 / n,
                        "subtrie_size_median": 20.0 / n, "subtrie_size_p75": 30.0 / n} for n in (1, 2, 3)]}
    return {"fingerprint": fingerprint, "summary": summary, "findings": findings, "table1": table1}


def _experiment_dir(tmp_path: Path, fingerprint: str = "fp-1") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tmp_path / "exp"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", _report(fingerprint))
    for name, ys in (("improvement", [1, 3, 2]), ("lookups_per_item", [3, 2, 1])):
        fig = plt.figure(figsize=(2, 2))
        plt.plot(ys)
        fig.savefig(out / "figures" / f"{name}.png")
        plt.close(fig)
    return out


def _logged(run_dir: Path) -> tuple[JsonObject, JsonObject, JsonObject]:
    """(the run record, the one history row, the final summary) of an offline run."""
    records = wandb_records(run_dir)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    (row,) = [r["history"]["item"] for r in records if r["type"] == "history"]
    summary: JsonObject = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    return run, row, summary


def _table(run_dir: Path, row: JsonObject, key: str) -> list[JsonObject]:
    assert row[f"{key}._type"] == "table-file"
    t = json.loads((run_dir / "files" / row[f"{key}.path"]).read_text())
    return [dict(zip(t["columns"], r)) for r in t["data"]]


def test_the_summary_run_holds_the_reports_tables_and_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = _experiment_dir(tmp_path)
    run_dir = log_summary(out, name="tiny", project="semid-test", group="tiny", config={"name": "tiny"})
    assert run_dir.parent == out / "wandb" and run_dir.name.endswith(wandb_run_id(out / "report"))
    run, row, summary = _logged(run_dir)
    assert (run["project"], run["run_group"], run["job_type"], run["display_name"]) == \
        ("semid-test", "tiny", "summary", "tiny-summary")
    assert run["config"]["update"]["report_fingerprint"] == "fp-1"

    report = json.loads((out / "report.json").read_text())  # as written (write_json sorts the keys)
    ranking = _table(run_dir, row, "ranking")
    assert [(r["setting"], r["representation"]) for r in ranking] == \
        [(s, a) for s in report["summary"] for a in report["summary"][s]]
    for r in ranking:
        arm = report["summary"][r["setting"]][r["representation"]]
        for s in ("overall", "new"):
            assert (r[f"auc_{s}"], r[f"auc_{s}_ci_low"], r[f"auc_{s}_ci_high"], r[f"items_{s}"]) == \
                (arm["auc"][s]["estimate"], arm["auc"][s]["ci_low"], arm["auc"][s]["ci_high"], arm["auc"][s]["items"])
            delta = arm.get("vs_reference_pct", {}).get(s, {})
            assert r[f"delta_pct_{s}"] == delta.get("estimate")  # None for the reference and an undefined slice
        assert (r["kind"], r["table_rows"], r["seeds"]) == (arm["kind"], arm["table_rows"], "0,1")

    findings = _table(run_dir, row, "findings")
    assert [{k: f[k] for k in FINDING_COLUMNS} for f in findings] == \
        [{k: f.get(k) for k in FINDING_COLUMNS} for f in report["findings"]]
    assert [r["avg_cosine_similarity"] for r in _table(run_dir, row, "table1")] == \
        [r["avg_cosine_similarity"] for r in report["table1"]["rows"]]

    for name in ("improvement", "lookups_per_item"):  # the report's PNGs, byte for byte
        assert row[f"figures/{name}._type"] == "image-file"
        logged = (run_dir / "files" / row[f"figures/{name}.path"]).read_bytes()
        assert hashlib.sha256(logged).digest() == hashlib.sha256((out / "figures" / f"{name}.png").read_bytes()).digest()

    # scalars for W&B's runs table, comparable across experiments
    assert summary["ctr_auc/with_history/spm_64/overall"] == pytest.approx(0.73)
    assert "ctr_auc/without_history/spm_64/new" not in summary  # undefined: no made-up number
    assert (summary["findings/reproduces"], summary["findings/contradicted"], summary["findings/not_run"],
            summary["findings/undefined"]) == (1, 1, 1, 1)
    assert is_logged(out) and json.loads((out / MARKER).read_text())["run_dir"] == str(run_dir)


def test_a_changed_report_updates_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = _experiment_dir(tmp_path)
    first = log_summary(out, name="tiny", project="semid-test", group="tiny")
    write_json(out / "report.json", _report("fp-2"))  # a rerun with another config rewrote the report
    assert not is_logged(out)
    second = log_summary(out, name="tiny", project="semid-test", group="tiny")
    assert is_logged(out) and first.name.split("-")[-1] == second.name.split("-")[-1]  # one W&B run id
    # offline, the earlier attempt is set aside: `wandb sync <exp>/wandb/offline-run-*` uploads the newest only
    assert sorted((out / "wandb").glob("offline-run-*")) == [second]
    assert [p.name for p in (out / "wandb" / "superseded").iterdir()] == [first.name]


def test_when_the_summary_is_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wanted("auto", ["csv", "wandb"]) and not wanted("auto", ["csv"])
    assert wanted(True, ["csv"]) and not wanted(False, ["csv", "wandb"])
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the user switched W&B off: nothing to log to
    assert not wanted(True, ["wandb"])
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigFieldError, match="must be auto, true or false"):
            check_setting(bad)
