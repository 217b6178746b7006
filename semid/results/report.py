"""The experiment report: ``report.json`` and ``report.md`` with ranking quality per representation and
setting (Figures 2-3), lookups per item (Figure 4), Table 1, the stability study, and the paper's findings
judged one by one (``semid.results.findings``).

The report is a stage: it reads the fits' results and saved predictions and the Stage-1 analysis
(``semid.results.analysis``, made once by the experiment) and rebuilds nothing; ``report.json`` records the
fingerprint of its inputs, and an up-to-date report is not recomputed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from semid.datamodules import Corpus  # noqa: E402
from semid.embeddings import plot_report  # noqa: E402
from semid.core.artifacts import atomic_path, read_json, write_json  # noqa: E402
from semid.core.fingerprint import ROOMS, code_fingerprint, fingerprint_of  # noqa: E402
from semid.core.numbers import sig  # noqa: E402
from semid.core.records import JsonObject  # noqa: E402
from semid.rankers.records import FitResults  # noqa: E402
from semid.results.records import EstimateDict, Finding, QuantizerSummary, SummaryRow  # noqa: E402
from semid.study.records import QuantizerStudy, StabilityStudy  # noqa: E402
from semid.results.quantizer_report import quantizer_markdown, quantizer_summary  # noqa: E402
from semid.results.findings import (METRIC_NAMES, STATISTIC, Study, explain, lookup_findings, ranking_findings,  # noqa: E402
                            stability_findings, table1_findings)

SLICES = ("overall", "new", "head", "torso", "tail")


@dataclass(frozen=True)
class ReportSpec:
    """What the report needs of the experiment's config."""

    name: str
    reference: str  # the row the "Δ% vs" columns compare with
    settings: list[str]  # in the config's order
    order: list[str]  # representations then ranker variants, in the config's order
    age_slices: tuple[int, ...] = ()  # item-age slices age_le_k, k in days (periods) before the evaluation day
    bootstraps: int = 1000
    margin_pct: float = 1.0  # equivalence / non-inferiority margin, % of the reference AUC
REPORT_VERSION = 2  # bump when the report's content changes: an older report.json is recomputed


def _interval(e: EstimateDict, pct: bool = False) -> str:
    if e.get("estimate") is None:
        return f"undefined ({e.get('undefined') or e.get('reason') or 'no estimate'})"
    unit = "%" if pct else ""
    sign = "+" if pct and e["estimate"] > 0 else ""
    return f"{sign}{sig(e['estimate'])}{unit} [{sig(e['ci_low'])}, {sig(e['ci_high'])}]"


def summarise(study: Study, reference: str, order: list[str],
              age_slices: tuple[int, ...] = ()) -> dict[str, dict[str, SummaryRow]]:
    """setting -> arm name -> pooled AUC per slice (with item and impression counts) and the paired %
    difference to ``reference`` on CTR and CTR/1D."""
    rank = {n: i for i, n in enumerate(order)}
    out: dict[str, dict[str, SummaryRow]] = {}
    for setting in study.settings():
        arms = sorted(study.in_setting(setting), key=lambda a: (rank.get(a.name, len(rank)), a.name))
        ref = next((a for a in arms if a.name == reference), None)
        out[setting] = {}
        for arm in arms:
            runs = list(arm.runs.values())
            row: SummaryRow = {
                "kind": arm.kind, "table_rows": arm.rows, "depth_multiplier": arm.depth, "seeds": sorted(arm.runs),
                "evaluation_days": arm.days,
                "lookups_per_item": float(sum(r.get("lookups_per_item") or 0 for r in runs) / len(runs)),
                "samples_per_s": float(sum(r.get("train_samples_per_s") or 0 for r in runs) / len(runs)),
                "auc": {s: study.auc(arm, s).as_dict() for s in SLICES + tuple(f"age_le_{k}" for k in age_slices)},
            }
            if ref is not None and arm is not ref:
                row["vs_reference_pct"] = {s: study.compare(ref, arm, s).as_dict() for s in ("overall", "new")}
                for k in age_slices:
                    row["vs_reference_pct"][f"age_le_{k}"] = study.compare(ref, arm, f"age_le_{k}").as_dict()
            out[setting][arm.name] = row
    return out


def plot_improvements(summary: dict[str, dict[str, SummaryRow]], reference: str, path: Path) -> Path:
    """Figures 2 and 3: paired % difference in CTR AUC and CTR/1D AUC to the reference, per setting."""
    settings = list(summary)
    fig, axes = plt.subplots(len(settings), 2, figsize=(12, 3.6 * max(len(settings), 1)), squeeze=False)
    for i, setting in enumerate(settings):
        names = [n for n, r in summary[setting].items() if "vs_reference_pct" in r]
        for j, (s, title) in enumerate((("overall", "CTR AUC"), ("new", "CTR/1D AUC"))):
            ax = axes[i][j]
            est = [summary[setting][n]["vs_reference_pct"][s] for n in names]
            y = [e["estimate"] if e["estimate"] is not None else math.nan for e in est]
            lo = [0 if e["estimate"] is None else e["estimate"] - e["ci_low"] for e in est]
            hi = [0 if e["estimate"] is None else e["ci_high"] - e["estimate"] for e in est]
            colors = ["tab:green" if e["estimate"] is not None and e["ci_low"] > 0 else
                      "tab:red" if e["estimate"] is not None and e["ci_high"] < 0 else "tab:gray" for e in est]
            ax.bar(range(len(names)), [0 if math.isnan(v) else v for v in y], yerr=[lo, hi], color=colors, capsize=3)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
            ax.set_ylabel(f"% vs {reference} (paired, 95%)")
            ax.set_title(f"{title} — {setting.replace('_', ' ')}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _inputs_fingerprint(results: list[FitResults], stability: StabilityStudy | None,
                        analysis_fp: str, settings: JsonObject, quantizers: QuantizerStudy | None = None) -> str:
    def runs(rs: list[FitResults]) -> list[tuple[str | int | None, ...]]:
        return sorted((r.get("name"), r["setting"], r.get("seed"), r.get("tag"), r["fingerprint"]) for r in rs)

    stab = sorted((k, v["fingerprint"]) for k, v in (stability or {}).get("results", {}).items())
    parts: list[object] = [REPORT_VERSION, runs(results), stab, analysis_fp, settings, code_fingerprint(*ROOMS)]
    if quantizers:  # absent: the fingerprint of a report without a quantizer study is unchanged
        parts.append([runs(quantizers["results"]), [(v["name"], v["sids"]) for v in quantizers["variants"]]])
    return fingerprint_of(parts)


def report_fingerprint(cfg: ReportSpec, results: list[FitResults], stability: StabilityStudy | None,
                       analysis_fp: str, quantizers: QuantizerStudy | None = None) -> str:
    return _inputs_fingerprint(results, stability, analysis_fp, {k: v for k, v in asdict(cfg).items() if k != "name"},
                               quantizers)


def report_is_current(out: Path, fp: str) -> bool:
    """``out`` holds a report made from inputs of fingerprint ``fp``: nothing to recompute."""
    path, json_path = out / "report.md", out / "report.json"
    return path.exists() and json_path.exists() and read_json(json_path).get("fingerprint") == fp


def write_report(cfg: ReportSpec, out: Path, corpus: Path, model: Path, results: list[FitResults],
                 stability: StabilityStudy | None, analysis: JsonObject, analysis_fp: str,
                 timings: dict[str, float], quantizers: QuantizerStudy | None = None) -> Path:
    fp = report_fingerprint(cfg, results, stability, analysis_fp, quantizers)
    path, json_path = out / "report.md", out / "report.json"
    c = Corpus(corpus)
    meta = c.meta
    gt = meta.get("ground_truth") or {}
    items = c.read_items(columns=["item_id", "embedding", "first_day"])
    n_items = len(items)
    study = Study(results, num_bootstraps=cfg.bootstraps, margin_pct=cfg.margin_pct,
                  ground_truth=gt, n_items=n_items, first_day=(items.item_id, items.first_day))
    summary = summarise(study, cfg.reference, cfg.order, cfg.age_slices)
    summary = {st: summary[st] for st in cfg.settings if st in summary}  # the config's order
    stab_study = None
    if stability:
        stab_study = Study([{**r, "name": f"{r['name']}-{tag}", "tag": "main"}
                            for tag, r in stability["results"].items()], num_bootstraps=cfg.bootstraps)
    found = (ranking_findings(study) + lookup_findings(analysis["lookups"]) + table1_findings(analysis["table1"])
             + stability_findings(stab_study, cfg.margin_pct))
    for row in found:
        row["explanation"] = explain(row, stab_study if row["id"] == "h" and stab_study else study, analysis)

    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    plot_improvements(summary, cfg.reference, figs / "improvement.png")
    plot_report(analysis["lookups"], figs / "lookups_per_item.png")
    q = quantizer_summary(results, quantizers, cfg.bootstraps, cfg.age_slices,
                          (items.item_id, items.first_day)) if quantizers else None
    md = _markdown(cfg, corpus, c, model, n_items, gt, summary, found, analysis, stability, timings, q)
    with atomic_path(path) as tmp:
        tmp.write_text(md)
    write_json(json_path, {"experiment": cfg.name, "fingerprint": fp, "summary": summary, "findings": found,
                           "table1": analysis["table1"], "lookups": analysis["lookups"], "stability": _strip(stability), "timings": timings,
                           **({"quantizers": q} if q else {})})
    return path


def _markdown(cfg: ReportSpec, corpus: Path, c: Corpus, model: Path, n_items: int, gt: JsonObject,
              summary: dict[str, dict[str, SummaryRow]], found: list[Finding], analysis: JsonObject,
              stability: StabilityStudy | None, timings: dict[str, float], quantizers: QuantizerSummary | None) -> str:
    days = c.days()
    t1, lookups = analysis["table1"], analysis["lookups"]
    lines = [f"# semid experiment `{cfg.name}`\n",
             f"Corpus `{corpus}` (fingerprint `{c.fingerprint}`): {n_items:,} items, "
             f"{c.meta.get('n_impressions', 0):,} impressions over {len(days)} days."]
    if gt:
        lines.append(f"Planted signal (oracle AUCs of the hidden click model): full {sig(gt.get('auc_oracle_full'))}, "
                     f"content only {sig(gt.get('auc_oracle_content_only'))}, item-specific only "
                     f"{sig(gt.get('auc_oracle_item_only'))}; content only on new items "
                     f"{sig(gt.get('auc_oracle_content_only_new_items'))}.")
    lines.append(f"Semantic IDs: L={lookups['sid_levels']}, K={lookups['codebook_size']}, RQ-VAE `{model.name}`.\n")
    lines.append(f"Intervals are 95% and come from the evaluation predictions: AUCs resample **items** (all "
                 f"impressions of a drawn item together), % differences are **paired** (both runs on the same "
                 f"impressions and the same item draws), pooled over seeds (resampled) and evaluation days. "
                 f"{cfg.bootstraps} replicates. Counts are items / impressions of the slice (summed over "
                 "evaluation days).\n")
    for setting, arms in summary.items():
        lines.append(f"## Ranking quality — {setting.replace('_', ' ')}\n")
        lines.append(f"| representation | kind | table rows | lookups/item | seeds | CTR AUC | Δ% vs {cfg.reference} | "
                     f"CTR/1D AUC | Δ% vs {cfg.reference} | items / impressions (CTR/1D) | head | torso | tail | samples/s |")
        lines.append("|---|---|---:|---:|---:|---|---|---|---|---|---|---|---|---:|")
        for name, row in arms.items():
            a = row["auc"]
            vs = row.get("vs_reference_pct")
            new = a["new"]
            depth = "" if row["depth_multiplier"] == 1 else f" {row['depth_multiplier']:g}x"
            lines.append(
                f"| {name} | {row['kind']}{depth} "
                f"| {row['table_rows']:,} | {sig(row['lookups_per_item'], 3)} | {len(row['seeds'])} | "
                f"{_interval(a['overall'])} | {'reference' if vs is None else _interval(vs['overall'], True)} | "
                f"{_interval(new)} | {'reference' if vs is None else _interval(vs['new'], True)} | "
                f"{new['items']:,} / {new['impressions']:,} | {_interval(a['head'])} | {_interval(a['torso'])} | "
                f"{_interval(a['tail'])} | {row['samples_per_s']:,.0f} |")
        lines.append("")
    if cfg.age_slices:
        lines += _age_md(summary, cfg)
    lines.append("![paired % difference to the reference (Figures 2 and 3)](figures/improvement.png)\n")

    lines.append("## Findings: the paper's claims, in the paper's direction\n")
    lines.append(f"Statistic: {STATISTIC}. Equivalence and at-least-as-good claims use a margin of "
                 f"{cfg.margin_pct:g}% of the reference AUC.\n")
    lines.append("| id | claim | setting | metric | reference | candidate | estimate [95%] | seeds | verdict |")
    lines.append("|---|---|---|---|---|---|---|---:|---|")
    for f in found:
        est = "-" if f.get("estimate") is None else (
            f"{sig(f['estimate'])} [{sig(f['ci_low'])}, {sig(f['ci_high'])}]" if f.get("ci_low") is not None
            else sig(f["estimate"]))
        note = f" — {f['reason']}" if f.get("reason") else ""
        note += f" — *why*: {f['explanation']}" if f.get("explanation") else ""
        lines.append(f"| {f['id']} | {f['claim']} | {str(f.get('setting', '')).replace('_', ' ')} | "
                     f"{METRIC_NAMES.get(f.get('metric'), f.get('metric'))} | {f.get('reference') or '-'} | "
                     f"{f.get('candidate') or '-'} | {est} | {f.get('n_seeds') if f.get('n_seeds') is not None else '-'} "
                     f"| **{f['verdict']}**{note} |")
    lines.append("")

    lines.append("## Embedding lookups per item (Figure 4)\n")
    lines.append("![lookups per item vs table size](figures/lookups_per_item.png)\n")
    lines.append("| representation | table rows | tables | all | head | torso | tail | `<unk>` share |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in lookups["representations"]:
        m = r["mean_lookups"]
        unk = f"{r['unk_token_share']:.1%}" if "unk_token_share" in r else ""
        lines.append(f"| {r['name']} | {r['table_rows']:,} | {r['tables']} | "
                     + " | ".join(sig(m.get(b), 3) for b in ("all", "head", "torso", "tail")) + f" | {unk} |")
    lines.append(f"\nPopularity buckets: {lookups['bucket_definition']}.\n")

    lines.append("## Table 1: similarity of items sharing a SID prefix\n")
    lines.append("| prefix length n | avg pairwise cosine [95%] | pairs | prefixes | sub-trie size p25 | median | p75 |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|")
    for r in t1["rows"]:
        sim = _interval({"estimate": r["avg_cosine_similarity"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                         "reason": "no pairs"})
        lines.append(f"| {r['n']} | {sim} | {r['pairs']:,} | {r['prefixes']:,} | {sig(r['subtrie_size_p25'])} | "
                     f"{sig(r['subtrie_size_median'])} | {sig(r['subtrie_size_p75'])} |")
    lines.append(f"\nRandom item pairs: {sig(t1['random_pair_baseline'])}. {t1['interval']}.\n")

    if stability:
        lines += _stability_md(stability)
    if quantizers:
        lines += quantizer_markdown(quantizers)
    lines.append("## Timings\n")
    lines.append(", ".join(f"{k}: {v:.0f} s" for k, v in timings.items()) + "\n")
    return "\n".join(lines) + "\n"


def _age_md(summary: dict[str, dict[str, SummaryRow]], cfg: ReportSpec) -> list[str]:
    """Cold-start slices for sparse real data: items introduced at most k days (periods) before evaluation."""
    ks = [f"age_le_{k}" for k in cfg.age_slices]
    lines = ["## Cold start by item age\n",
             "Items introduced at most k days (periods) before the evaluation day (k = 0 is CTR/1D). "
             "Each cell: AUC [95%, item-clustered] and Δ% vs the reference; items / impressions.\n"]
    for setting, arms in summary.items():
        lines.append(f"### {setting.replace('_', ' ')}\n")
        lines.append("| representation | " + " | ".join(f"age <= {k.removeprefix('age_le_')}" for k in ks) + " |")
        lines.append("|---|" + "---|" * len(ks))
        for name, row in arms.items():
            cells = []
            for k in ks:
                a, vs = row["auc"][k], (row.get("vs_reference_pct") or {}).get(k)
                d = "reference" if vs is None else _interval(vs, True)
                cells.append(f"{_interval(a)}; {d}; {a['items']:,} / {a['impressions']:,}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _stability_md(stability: StabilityStudy) -> list[str]:
    lines = ["## Stability (Appendix A.2)\n",
             f"RQ-VAEs trained on impressions of days {stability['early_days']} and {stability['late_days']}, "
             f"each driving `{stability['representation']}` (without history); the verdict (h) is in the findings.\n",
             "| RQ-VAE | CTR AUC | CTR/1D AUC |", "|---|---|---|"]
    for tag, r in sorted(stability["results"].items()):
        m = (r.get("metrics") or {}).get("ctr", {})
        lines.append(f"| {tag} | {sig((m.get('overall') or {}).get('auc'))} | {sig((m.get('new') or {}).get('auc'))} |")
    ag = stability["agreement"]
    lines += ["", f"SID agreement between the two tables ({ag.get('common_items', 0):,} common items, codes matched "
              f"{ag.get('matching', '')} per level; identical full SIDs: {ag.get('identical_sids', 0):.1%}):\n",
              "| level | agreement after matching codes | raw agreement |", "|---:|---:|---:|"]
    for lv in ag.get("per_level", []):
        lines.append(f"| {lv['level']} | {lv['agreement']:.1%} | {lv['raw_agreement']:.1%} |")
    lines += ["", "| prefix length n | early pairs kept in late | late pairs kept in early | pairs (early / late) |",
              "|---:|---:|---:|---|"]
    for p in ag.get("prefix_stability", []):
        lines.append(f"| {p['n']} | {p['a_pairs_kept_in_b']:.1%} | {p['b_pairs_kept_in_a']:.1%} | "
                     f"{p['pairs_a']:,} / {p['pairs_b']:,} |")
    return lines + [""]


def _strip(stability: StabilityStudy | None) -> StabilityStudy | None:
    if not stability:
        return None
    return {**stability, "results": {k: {"metrics": v.get("metrics"), "run_dir": v.get("run_dir")}
                                     for k, v in stability["results"].items()}}
