"""The report's quantizer table (issue 18): quantizer -> SID health -> ranker quality, paired against the same
representation on the main RQ-VAE's SIDs.

Each Stage-1 variant (another quantizer, or the collision suffix on the same model) drove the experiment's
``quantizer_representations`` in every setting and seed; here every such arm is paired with the main
table's arm of the same representation, setting and seeds, on the same evaluation impressions
(item-clustered, pooled over seeds and periods: ``semid.results.paired``). When the study names the main
table's reference (``baseline``, e.g. hash-8K), every arm, the main RQ-VAE's included, is also paired with it:
a behaviour-aware variant (issue 33) is judged both against content-only SIDs and against random hashing.
"""
from __future__ import annotations

from pathlib import Path
import numpy as np

from semid.core.numbers import estimate_text, sig
from semid.rankers.records import FitResults
from semid.results.records import EstimateDict, QuantizerArm, QuantizerSummary, QuantizerVariant, SidCollisions
from semid.study.records import QuantizerStudy
from semid.results.findings import Study
from semid.rqvae import read_sid_table

REFERENCE = "rqvae"  # the main table's row


def sid_collisions(sids: Path) -> SidCollisions:
    """Unique-SID share and the largest group of items sharing one full SID, from the table itself (a
    collision suffix changes both, and the quantizer's health.json describes the table without it)."""
    codes = read_sid_table(sids).codes
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return {"items": int(len(codes)), "unique_sid_fraction": float(len(counts) / max(len(codes), 1)),
            "largest_collision_group": int(counts.max()) if len(counts) else 0}


def quantizer_summary(main_results: list[FitResults], study: QuantizerStudy, bootstraps: int,
                      age_slices: tuple[int, ...] = (),
                      first_day: tuple[np.ndarray, np.ndarray] | None = None) -> QuantizerSummary:
    """variants (with health) and, per setting and representation, each variant's AUCs and its paired Δ%
    vs the main RQ-VAE's SIDs on CTR, CTR/1D and the item-age slices ``age_le_<k>`` (``first_day``: sorted item
    ids and their first days, as ``Study`` takes them). A corpus whose evaluation days introduce too few items for
    CTR/1D (MovieLens-1M: 2-7 a week) still has a new-item answer in the age slices.

    >>> quantizer_summary([], {"representations": ["bigram"], "variants": [], "results": []}, 10)["ranking"]
    {}
    """
    slices = ("overall", "new", *(f"age_le_{k}" for k in age_slices))
    reps = set(study["representations"])
    baseline = study.get("baseline")
    runs = [dict(r, name=f"{r['name']}@{REFERENCE}") for r in main_results
            if r.get("name") in reps and r.get("tag", "main") == "main"]
    runs += [r for r in main_results if baseline and r.get("name") == baseline and r.get("tag", "main") == "main"]
    runs += [dict(r, name=f"{r['name']}@{r['tag'].removeprefix('q-')}", tag="main") for r in study["results"]]
    s = Study(runs, num_bootstraps=bootstraps, first_day=first_day)
    variants: list[QuantizerVariant] = []
    for v in study["variants"]:
        h = v.get("health") or {}
        held, every = h.get("heldout") or {}, h.get("all_items") or {}
        util = every.get("utilisation_per_level") or []
        row: QuantizerVariant = {**{k: v[k] for k in ("name", "quantizer", "collision_suffix", "levels", "sids")},
                                 "relative_error_heldout": held.get("relative_error"),
                                 "relative_error_all": every.get("relative_error"),
                                 "utilisation_mean": float(np.mean(util)) if util else None,
                                 **sid_collisions(Path(v["sids"]))}
        if "cooccur" in v:
            row["cooccur"] = v["cooccur"]
        variants.append(row)
    table: dict[str, dict[str, dict[str, QuantizerArm]]] = {}
    for setting in s.settings():
        for rep in study["representations"]:
            ref = s.arms.get((setting, f"{rep}@{REFERENCE}"))
            base = s.arms.get((setting, baseline)) if baseline else None
            for v in study["variants"]:
                arm = s.arms.get((setting, f"{rep}@{v['name']}"))
                if arm is None:
                    continue
                arm_row: QuantizerArm = {"seeds": sorted(arm.runs),
                                         "auc": {sl: s.auc(arm, sl).as_dict() for sl in slices}}
                if ref is not None and v["name"] != REFERENCE:
                    arm_row["vs_rqvae_pct"] = {sl: s.compare(ref, arm, sl).as_dict() for sl in slices}
                if base is not None:
                    arm_row["vs_baseline_pct"] = {sl: s.compare(base, arm, sl).as_dict() for sl in slices}
                table.setdefault(setting, {}).setdefault(rep, {})[v["name"]] = arm_row
    out: QuantizerSummary = {"reference": REFERENCE, "variants": variants, "ranking": table}
    if baseline:
        out["baseline"] = baseline
    return out


def _cell(e: EstimateDict | None, pct: bool = False) -> str:
    if not e:
        return "reference"
    if e.get("estimate") is None:
        return f"undefined ({e.get('undefined') or 'no estimate'})"
    return estimate_text(e, pct, decimals=2 if pct else 4)


def quantizer_markdown(q: QuantizerSummary) -> list[str]:
    lines = ["## Quantizers: SID health -> ranker quality\n",
             "Each Stage-1 variant's SIDs drive the same representations; Δ% is paired with the same "
             f"representation, setting and seeds on the main RQ-VAE's SIDs (`{REFERENCE}`), on the same "
             "evaluation impressions, item-clustered.\n",
             "| variant | quantizer | levels | relative error (held-out / all) | mean utilisation | unique SIDs | "
             "largest collision |", "|---|---|---:|---|---:|---:|---:|"]
    behaviour = any("cooccur" in v for v in q["variants"])
    if behaviour:  # the lambda of each row: the main RQ-VAE is the behaviour-aware loss at lambda = 0
        lines[-2:] = [lines[-2] + " λ (co-engaged pairs, days) |", lines[-1] + "---|"]
    for v in q["variants"]:
        suffix = " + collision suffix" if v["collision_suffix"] else ""
        line = (f"| {v['name']} | {v['quantizer']}{suffix} | {v['levels']} | {sig(v['relative_error_heldout'])} / "
                f"{sig(v['relative_error_all'])} | {sig(v['utilisation_mean'])} | "
                f"{v['unique_sid_fraction']:.1%} | {v['largest_collision_group']:,} |")
        lines.append(line + f" {_lambda(v)} |" if behaviour else line)
    lines.append("")
    base = q.get("baseline")
    for setting, reps in q["ranking"].items():
        lines.append(f"### {setting.replace('_', ' ')}\n")
        head = f"| representation | variant | seeds | CTR AUC | Δ% vs {REFERENCE} | CTR/1D AUC | Δ% vs {REFERENCE} |"
        rule = "|---|---|---:|---|---|---|---|"
        if base:
            head, rule = head + f" CTR Δ% vs {base} | CTR/1D Δ% vs {base} |", rule + "---|---|"
        lines += [head, rule]
        for rep, variants in reps.items():
            for name, row in variants.items():
                vs = row.get("vs_rqvae_pct") or {}
                line = (f"| {rep} | {name} | {len(row['seeds'])} | {_cell(row['auc']['overall'])} | "
                        f"{_cell(vs.get('overall'), True)} | {_cell(row['auc']['new'])} | {_cell(vs.get('new'), True)} |")
                if base:
                    vb = row.get("vs_baseline_pct") or {}
                    line += f" {_cell(vb.get('overall'), True)} | {_cell(vb.get('new'), True)} |"
                lines.append(line)
        lines.append("")
        lines += _age_lines(reps, base)
    return lines


def _lambda(v: QuantizerVariant) -> str:
    """A variant's λ cell: the co-occurrence weight with its pairs and days, 0 for the content-only RQ-VAE."""
    c = v.get("cooccur")
    if c is None:
        return "0 (content only)" if v["quantizer"] == "rqvae" and not v["collision_suffix"] else "-"
    days = c.get("days") or []
    span = f", days {days[0]}-{days[-1]}" if days else ""
    pairs = f"{c['pairs']:,} pairs" if c.get("pairs") is not None else "pairs ?"
    return f"{c['weight']:g} ({pairs}{span})"


def _age_lines(reps: dict[str, dict[str, QuantizerArm]], base: str | None) -> list[str]:
    """One table of the item-age slices (CTR on items at most k days or periods old), where the study has them:
    the new-item answer of a corpus whose CTR/1D slice is too small for an interval."""
    ages = sorted({sl for variants in reps.values() for row in variants.values() for sl in row["auc"]
                   if sl.startswith("age_le_")}, key=lambda sl: int(sl.removeprefix("age_le_")))
    if not ages:
        return []
    head, rule = "| representation | variant |", "|---|---|"
    for sl in ages:
        k = sl.removeprefix("age_le_")
        head += f" AUC age <= {k} | Δ% vs {REFERENCE} |" + (f" Δ% vs {base} |" if base else "")
        rule += "---|---|" + ("---|" if base else "")
    lines = ["Items at most k days (periods) old on the evaluation day, CTR:\n", head, rule]
    for rep, variants in reps.items():
        for name, row in variants.items():
            vs, vb = row.get("vs_rqvae_pct") or {}, row.get("vs_baseline_pct") or {}
            line = f"| {rep} | {name} |"
            for sl in ages:
                line += f" {_cell(row['auc'].get(sl))} | {_cell(vs.get(sl), True)} |"
                if base:
                    line += f" {_cell(vb.get(sl), True)} |"
            lines.append(line)
    return [*lines, ""]
