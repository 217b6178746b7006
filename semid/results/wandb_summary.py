"""The experiment's summary run in W&B: the report's tables and figures, in the group of its fits.

``report.md`` lives in one experiment directory; to compare experiments in W&B, each experiment logs one run
(job type ``summary``) to its fits' project and group holding ``report.json``'s tables as ``wandb.Table``s
(``ranking``: AUC per representation and setting with intervals and the paired Δ% to the reference;
``findings``: the paper's claims with estimate, interval and verdict; ``table1``: similarity by shared SID
prefix) and the figures the report wrote (``figures/*.png``) as images. Its summary holds the headline numbers
as scalars (``ctr_auc/<setting>/<representation>/overall|new``, ``findings/<verdict>``), which W&B's runs
table compares across experiments directly.

The run follows the one W&B policy (``semid.core.loggers``): offline unless logged in or ``WANDB_MODE`` says
otherwise, and a run id derived from the experiment directory, so a rerun with a changed report updates the
same run (offline: the earlier attempt moves to ``wandb/superseded/``). ``wandb-summary.json`` records the
report it logged: an unchanged report is not logged again.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from semid.core.artifacts import read_json, write_json
from semid.core.config import require
from semid.core.loggers import set_aside_earlier_attempts, wandb_mode, wandb_run_id
from semid.core.records import JsonObject

if TYPE_CHECKING:
    import wandb

MARKER = "wandb-summary.json"
SETTINGS = ("auto", True, False)
FINDING_COLUMNS = ("id", "claim", "setting", "metric", "direction", "reference", "candidate", "estimate", "ci_low",
                   "ci_high", "margin_pct", "n_seeds", "n_periods", "items", "impressions", "verdict", "reason",
                   "explanation", "statistic")
TABLE1_COLUMNS = ("n", "avg_cosine_similarity", "ci_low", "ci_high", "prefixes", "pairs", "subtrie_size_p25",
                  "subtrie_size_median", "subtrie_size_p75")


def check_setting(value: object, field: str = "wandb_summary") -> None:
    # `is` for the booleans: 1 == True, and a 1 in the YAML is not a yes
    require(value == "auto" or value is True or value is False, field,
            f"must be auto, true or false (got {value!r})")


def wanted(setting: bool | str, fit_loggers: Iterable[str]) -> bool:
    """Log the summary run? ``auto``: when the fits log to W&B; never when W&B is disabled."""
    if wandb_mode() == "disabled":
        return False
    return setting is True or (setting == "auto" and "wandb" in set(fit_loggers))


def is_logged(out: Path) -> bool:
    """``out`` holds a summary run of the report now in ``out/report.json``."""
    marker, report = out / MARKER, out / "report.json"
    return marker.exists() and report.exists() and \
        read_json(marker).get("report_fingerprint") == read_json(report).get("fingerprint")


def log_summary(out: Path, *, name: str, project: str, group: str | None,
                config: JsonObject | None = None) -> Path:
    """Log ``out/report.json`` and ``out/figures/*.png`` as the experiment's summary run; returns the run's
    local directory (``out/wandb/offline-run-*`` offline)."""
    # deferred: importing wandb takes 1-3 s, and every experiment imports this module (check_setting) while only
    # a summary run needs wandb
    import wandb

    report = read_json(out / "report.json")
    mode = wandb_mode()
    run_id = wandb_run_id(out / "report")  # not the id of any fit: those are keyed by their own directories
    if mode == "offline":
        set_aside_earlier_attempts(out / "wandb", run_id)
    (out / "wandb").mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, group=group, job_type="summary", name=f"{name}-summary", id=run_id,
                     dir=str(out), mode=mode, resume="allow", reinit="create_new",
                     config={"experiment": config or {}, "report_fingerprint": report.get("fingerprint")},
                     # console off: the experiment's own progress lines stay on its terminal, not in the run
                     settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
    try:
        logged: dict[str, wandb.Table | wandb.Image] = {"ranking": ranking_table(report),
                                                        "findings": findings_table(report)}
        if report.get("table1", {}).get("rows"):
            logged["table1"] = _table(TABLE1_COLUMNS, report["table1"]["rows"])
        for png in sorted((out / "figures").glob("*.png")):
            logged[f"figures/{png.stem}"] = wandb.Image(str(png), caption=png.stem)
        run.log(logged)
        run.summary.update(headline(report))
        run_dir = Path(run.settings.sync_dir)
    finally:
        run.finish()
    write_json(out / MARKER, {"report_fingerprint": report.get("fingerprint"), "run_id": run_id, "mode": mode,
                              "project": project, "group": group, "run_dir": str(run_dir)})
    return run_dir


def _number(x: float | None) -> float | None:
    """A table cell of a numeric column: None for an undefined estimate (W&B tables refuse NaN mixed in)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _table(columns: tuple[str, ...], rows: Sequence[Mapping[str, object]]) -> "wandb.Table":
    import wandb  # deferred as in log_summary (its only caller: already loaded there)

    def cell(v: object) -> str | float | bool | None:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            return _number(v)
        return str(v)  # lists and mappings: one readable cell

    return wandb.Table(columns=list(columns), data=[[cell(r.get(c)) for c in columns] for r in rows])


def _slices(report: JsonObject) -> list[str]:
    """The AUC slices the report holds, in its order (overall, new, head, torso, tail, age_le_k)."""
    seen: dict[str, None] = {}
    for arms in report["summary"].values():
        for row in arms.values():
            seen.update(dict.fromkeys(row["auc"]))
    return list(seen)


def ranking_rows(report: JsonObject) -> tuple[tuple[str, ...], list[JsonObject]]:
    """One row per setting and representation: AUC with its 95% interval per slice, the paired Δ% to the
    reference on CTR and CTR/1D, table rows, depth, lookups per item, training throughput."""
    slices = _slices(report)
    columns = ["setting", "representation", "kind", "table_rows", "depth_multiplier", "seeds"]
    for s in slices:
        columns += [f"auc_{s}", f"auc_{s}_ci_low", f"auc_{s}_ci_high", f"items_{s}"]
    deltas = ("overall", "new")
    for s in deltas:
        columns += [f"delta_pct_{s}", f"delta_pct_{s}_ci_low", f"delta_pct_{s}_ci_high"]
    columns += ["lookups_per_item", "samples_per_s"]
    rows = []
    for setting, arms in report["summary"].items():
        for rep, r in arms.items():
            row: JsonObject = {"setting": setting, "representation": rep, "kind": r.get("kind"),
                               "table_rows": r.get("table_rows"), "depth_multiplier": r.get("depth_multiplier"),
                               "seeds": ",".join(str(s) for s in r.get("seeds", [])),
                               "lookups_per_item": r.get("lookups_per_item"), "samples_per_s": r.get("samples_per_s")}
            for s in slices:
                e = r["auc"].get(s) or {}
                row.update({f"auc_{s}": e.get("estimate"), f"auc_{s}_ci_low": e.get("ci_low"),
                            f"auc_{s}_ci_high": e.get("ci_high"), f"items_{s}": e.get("items")})
            for s in deltas:
                e = (r.get("vs_reference_pct") or {}).get(s) or {}
                row.update({f"delta_pct_{s}": e.get("estimate"), f"delta_pct_{s}_ci_low": e.get("ci_low"),
                            f"delta_pct_{s}_ci_high": e.get("ci_high")})
            rows.append(row)
    return tuple(columns), rows


def ranking_table(report: JsonObject) -> "wandb.Table":
    return _table(*ranking_rows(report))


def findings_table(report: JsonObject) -> "wandb.Table":
    return _table(FINDING_COLUMNS, report["findings"])


def headline(report: JsonObject) -> dict[str, float | int]:
    """Scalars for W&B's runs table: CTR and CTR/1D AUC per setting and representation, verdict counts."""
    out: dict[str, float | int] = {}
    for setting, arms in report["summary"].items():
        for rep, r in arms.items():
            for s in ("overall", "new"):
                v = _number((r["auc"].get(s) or {}).get("estimate"))
                if v is not None:
                    out[f"ctr_auc/{setting}/{rep}/{s}"] = v
    for f in report["findings"]:
        # "undefined (reason)" counts as undefined, "not run" as not_run
        key = "findings/" + f["verdict"].split(" (")[0].replace(" ", "_")
        out[key] = out.get(key, 0) + 1
    return out
