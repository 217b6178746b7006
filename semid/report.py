"""The experiment report: ``report.md`` with the paper's Figures 2-4, Table 1, the stability study and
a finding-by-finding verdict on what reproduces on this corpus."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from semid.core.artifacts import atomic_path, write_json

# two-sided 95% Student t quantiles for n-1 degrees of freedom (n seeds)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _mean_ci(values: list[float], half_widths: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width: across seeds when there are several, else the run's bootstrap."""
    v = np.asarray(values, float)
    if len(v) >= 2:
        return float(v.mean()), _T95.get(len(v) - 1, 1.96) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return float(v[0]), float(half_widths[0]) if half_widths else float("nan")


def _auc(r: dict[str, Any], s: str) -> tuple[float | None, float]:
    m = ((r.get("metrics") or {}).get("ctr") or {}).get(s) or {}
    if m.get("auc") is None:
        return None, float("nan")
    hw = (m["ci_high"] - m["ci_low"]) / 2 if "ci_low" in m else float("nan")
    return float(m["auc"]), hw


def summarise(results: list[dict[str, Any]], reference: str) -> dict[str, dict[str, dict[str, Any]]]:
    """setting -> representation -> {slice: mean, ci, improvement vs reference (paired by seed), ...}."""
    by = defaultdict(lambda: defaultdict(dict))  # setting -> rep -> seed -> result
    for r in results:
        if r.get("tag", "main") == "main":
            by[r["setting"]][r.get("name", r["representation"])][r["seed"]] = r
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for setting, reps in by.items():
        ref = reps.get(reference, {})
        out[setting] = {}
        for rep, seeds in reps.items():
            row: dict[str, Any] = {"seeds": sorted(seeds)}
            any_r = next(iter(seeds.values()))
            row["table_rows"] = sum(any_r.get("table_rows", {}).values())
            row["lookups_per_item"] = any_r.get("lookups_per_item", 0.0)
            row["samples_per_s"] = float(np.mean([r["train_samples_per_s"] or 0 for r in seeds.values()]))
            for s in ("overall", "new", "head", "torso", "tail"):
                vals = [(sd, *_auc(r, s)) for sd, r in seeds.items()]
                vals = [v for v in vals if v[1] is not None]
                if not vals:
                    row[s] = None
                    continue
                mean, hw = _mean_ci([v[1] for v in vals], [v[2] for v in vals])
                cell = {"auc": mean, "ci": hw, "n": len(vals)}
                paired = [(v[1], _auc(ref[v[0]], s)) for v in vals if v[0] in ref]
                paired = [(a, b) for a, b in paired if b[0] is not None]
                if paired:
                    imp = [100.0 * (a - b[0]) / b[0] for a, b in paired]
                    if len(imp) >= 2:
                        m, h = _mean_ci(imp, [])
                    else:  # one seed: both runs' bootstrap intervals, combined as if independent (conservative)
                        a_hw, b_hw = vals[0][2], paired[0][1][1]
                        m, h = imp[0], 100.0 * math.sqrt(a_hw ** 2 + b_hw ** 2) / paired[0][1][0]
                    cell.update(improvement_pct=m, improvement_ci=h)
                row[s] = cell
            out[setting][rep] = row
    return out


def _fmt(cell: dict[str, Any] | None, key: str = "auc", ci: str = "ci", pct: bool = False) -> str:
    if not cell or cell.get(key) is None:
        return "undefined"
    v, h = cell[key], cell.get(ci, float("nan"))
    if pct:
        return f"{v:+.2f}% ± {h:.2f}" if not math.isnan(h) else f"{v:+.2f}%"
    return f"{v:.4f} ± {h:.4f}" if not math.isnan(h) else f"{v:.4f}"


def plot_improvements(summary: dict[str, dict[str, dict[str, Any]]], reference: str, path: Path) -> Path:
    """Figures 2 and 3: % improvement in CTR AUC and CTR/1D AUC over the reference, per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(summary)
    fig, axes = plt.subplots(len(settings), 2, figsize=(12, 3.6 * len(settings)), squeeze=False)
    for i, setting in enumerate(settings):
        reps = [r for r in summary[setting] if r != reference]
        for j, (s, title) in enumerate((("overall", "CTR AUC"), ("new", "CTR/1D AUC"))):
            ax = axes[i][j]
            vals = [(summary[setting][r].get(s) or {}) for r in reps]
            y = [v.get("improvement_pct", np.nan) for v in vals]
            e = [v.get("improvement_ci", 0.0) for v in vals]
            e = [0.0 if (x is None or math.isnan(x)) else x for x in e]
            colors = ["tab:green" if (v or 0) > 0 else "tab:red" for v in np.nan_to_num(y)]
            ax.bar(range(len(reps)), np.nan_to_num(y), yerr=e, color=colors, capsize=3)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(range(len(reps)), reps, rotation=35, ha="right", fontsize=8)
            ax.set_ylabel(f"% vs {reference}")
            ax.set_title(f"{title} — {setting.replace('_', ' ')}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def findings(summary: dict[str, dict[str, dict[str, Any]]], reference: str, table1: dict[str, Any] | None,
             stability: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(paper finding, verdict, evidence). Verdicts: reproduces / does not reproduce / inconclusive / not run."""
    out: list[tuple[str, str, str]] = []

    def imp(setting: str, rep: str, s: str) -> tuple[float, float] | None:
        c = (summary.get(setting, {}).get(rep) or {}).get(s) or {}
        return (c["improvement_pct"], c.get("improvement_ci", float("nan"))) if "improvement_pct" in c else None

    def verdict(x: tuple[float, float] | None, sign: int) -> str:
        if x is None:
            return "not run"
        m, h = x
        if math.isnan(h):
            return "reproduces" if m * sign > 0 else "does not reproduce"
        if m * sign - h > 0:
            return "reproduces"
        if m * sign + h < 0:
            return "does not reproduce"
        return "inconclusive"

    for setting in summary:
        dense = [r for r in summary[setting] if r.startswith("dense")]
        for r in dense:
            x = imp(setting, r, "overall")
            out.append((f"Dense Input ({r}) is worse than {reference} on CTR AUC ({setting})", verdict(x, -1),
                        _ev(x)))
        sid_reps = [r for r in summary[setting] if r.startswith(("unigram", "bigram", "spm", "prefix"))]
        for r in sid_reps:
            x = imp(setting, r, "new")
            out.append((f"{r} generalises better than {reference} on new items: CTR/1D ({setting})", verdict(x, 1),
                        _ev(x)))
        spm = sorted([r for r in summary[setting] if r.startswith("spm")])
        for r in spm:
            x = imp(setting, r, "overall")
            out.append((f"{r} improves CTR AUC over {reference} ({setting})", verdict(x, 1), _ev(x)))
        if "bigram" in summary[setting] and "unigram" in summary[setting]:
            b = (summary[setting]["bigram"].get("overall") or {}).get("auc")
            u = (summary[setting]["unigram"].get("overall") or {}).get("auc")
            hb = (summary[setting]["bigram"].get("overall") or {}).get("ci", float("nan"))
            hu = (summary[setting]["unigram"].get("overall") or {}).get("ci", float("nan"))
            if b is not None and u is not None:
                d, h = b - u, math.sqrt(hb ** 2 + hu ** 2)
                out.append((f"Bigram-SID beats Unigram-SID on CTR AUC ({setting})", verdict((d, h), 1),
                            f"{b:.4f} vs {u:.4f}"))
        if len(spm) >= 2:
            aucs = [((summary[setting][r].get("overall") or {}).get("auc"), summary[setting][r]["table_rows"]) for r in spm]
            aucs = sorted(a for a in aucs if a[0] is not None)
            by_size = sorted(aucs, key=lambda a: a[1])
            mono = all(x[0] <= y[0] for x, y in zip(by_size, by_size[1:]))
            out.append((f"Larger SPM vocabularies give higher CTR AUC ({setting})",
                        "reproduces" if mono else "does not reproduce",
                        ", ".join(f"{rows:,} rows: {a:.4f}" for a, rows in by_size)))
    if table1 is not None:
        sims = [r["avg_cosine_similarity"] for r in table1["rows"] if r["avg_cosine_similarity"] is not None]
        rising = all(a <= b + 1e-6 for a, b in zip(sims, sims[1:]))
        out.append(("Table 1: items sharing a longer SID prefix are more similar", "reproduces" if rising
                    else "does not reproduce", ", ".join(f"n={r['n']}: {r['avg_cosine_similarity']:.3f}"
                                                         for r in table1["rows"] if r["avg_cosine_similarity"] is not None)))
    if stability:
        res = stability["results"]
        if {"early", "late"} <= set(res):
            a, b = _auc(res["early"], "overall"), _auc(res["late"], "overall")
            if a[0] is not None and b[0] is not None:
                d, h = abs(a[0] - b[0]), math.sqrt(a[1] ** 2 + b[1] ** 2)
                ok = d <= h if not math.isnan(h) else d < 0.005
                out.append(("A.2: SIDs from RQ-VAEs trained on different periods give comparable ranking quality",
                            "reproduces" if ok else "does not reproduce",
                            f"early {a[0]:.4f} vs late {b[0]:.4f} (|diff| {d:.4f}, 95% half-width {h:.4f})"))
    return out


def _ev(x: tuple[float, float] | None) -> str:
    if x is None:
        return "no run"
    return f"{x[0]:+.2f}% ± {x[1]:.2f}" if not math.isnan(x[1]) else f"{x[0]:+.2f}%"


def write_report(cfg: Any, out: Path, corpus: Path, model: Path, sids: Path, results: list[dict[str, Any]],
                 stability: dict[str, Any] | None, timings: dict[str, float]) -> Path:
    from datamodules import Corpus
    from datamodules import corpus_impressions
    from embeddings import lookup_report, plot_report
    from semid.rqvae import table1 as table1_of
    from semid.rqvae import read_sid_table

    c = Corpus(corpus)
    items = c.read_items(columns=["item_id", "embedding", "first_day"])
    table = read_sid_table(sids)
    rows = table.rows_of(items.item_id)
    t1 = table1_of(table.codes[rows], items.embedding)
    days = c.days()
    train_days = days[:-1]
    lookups = lookup_report(table, items.item_id, corpus_impressions(c, items.item_id, train_days),
                            vocab_sizes=cfg.lookup_vocab_sizes)
    summary = summarise(results, cfg.reference)
    summary = {st: summary[st] for st in cfg.settings if st in summary}  # the config's order
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    plot_improvements(summary, cfg.reference, figs / "improvement.png")
    plot_report(lookups, figs / "lookups_per_item.png")
    found = findings(summary, cfg.reference, t1, stability)

    lines: list[str] = []
    lines.append(f"# semid experiment `{cfg.name}`\n")
    gt = c.meta.get("ground_truth") or {}
    lines.append(f"Corpus `{corpus}` (fingerprint `{c.fingerprint}`): {len(items):,} items, {c.meta.get('n_impressions', 0):,} "
             f"impressions over {len(days)} days; training days {train_days[0]}..{train_days[-1]}, evaluation on day "
             f"{days[-1]} (the day after training).")
    if gt:
        lines.append(f"Planted signal (oracle AUCs of the hidden click model): full {gt.get('auc_oracle_full', 0):.3f}, "
                 f"content only {gt.get('auc_oracle_content_only', 0):.3f}, item-specific only "
                 f"{gt.get('auc_oracle_item_only', 0):.3f}; content only on new items "
                 f"{gt.get('auc_oracle_content_only_new_items') or 0:.3f}.")
    lines.append(f"Semantic IDs: L={table.levels}, K={table.codebook_size}, RQ-VAE `{model.name}`.\n")
    lines.append("Intervals are 95%: across seeds (Student t) when several seeds ran, else the run's bootstrap "
             "interval; % improvements are paired by seed against the reference "
             f"`{cfg.reference}` (with one seed, both bootstrap intervals are combined as if independent).\n")
    for setting, reps in summary.items():
        lines.append(f"## Ranking quality — {setting.replace('_', ' ')}\n")
        lines.append("| representation | table rows | lookups/item | CTR AUC | % vs ref | CTR/1D AUC | % vs ref | head | torso | tail | samples/s |")
        lines.append("|---|---:|---:|---|---|---|---|---|---|---|---:|")
        order = sorted(reps, key=lambda r: (r != cfg.reference, r))
        for r in order:
            row = reps[r]
            ref = r == cfg.reference
            lines.append(f"| {r} | {row['table_rows']:,} | {row['lookups_per_item']:.2f} | {_fmt(row['overall'])} | "
                     f"{'reference' if ref else _fmt(row['overall'], 'improvement_pct', 'improvement_ci', True)} | "
                     f"{_fmt(row['new'])} | "
                     f"{'reference' if ref else _fmt(row['new'], 'improvement_pct', 'improvement_ci', True)} | {_fmt(row['head'])} | "
                     f"{_fmt(row['torso'])} | {_fmt(row['tail'])} | {row['samples_per_s']:,.0f} |")
        lines.append("")
    lines.append("![% improvement over the reference (Figures 2 and 3)](figures/improvement.png)\n")
    lines.append("## Embedding lookups per item (Figure 4)\n")
    lines.append("![lookups per item vs table size](figures/lookups_per_item.png)\n")
    lines.append("| representation | table rows | tables | all | head | torso | tail | `<unk>` share |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in lookups["representations"]:
        m = r["mean_lookups"]
        cells = ["-" if m.get(b) is None else f"{m[b]:.2f}" for b in ("all", "head", "torso", "tail")]
        unk = f"{r['unk_token_share']:.1%}" if "unk_token_share" in r else ""
        lines.append(f"| {r['name']} | {r['table_rows']:,} | {r['tables']} | " + " | ".join(cells) + f" | {unk} |")
    lines.append(f"\nPopularity buckets: {lookups['bucket_definition']}.\n")
    lines.append("## Table 1: similarity of items sharing a SID prefix\n")
    lines.append("| prefix length n | avg pairwise cosine | prefixes | sub-trie size p25 | median | p75 |")
    lines.append("|---:|---:|---:|---:|---:|---:|")
    for r in t1["rows"]:
        sim = "n/a" if r["avg_cosine_similarity"] is None else f"{r['avg_cosine_similarity']:.3f}"
        lines.append(f"| {r['n']} | {sim} | {r['prefixes']:,} | {r['subtrie_size_p25']:.0f} | {r['subtrie_size_median']:.0f} | "
                 f"{r['subtrie_size_p75']:.0f} |")
    lines.append(f"\nRandom item pairs: {t1['random_pair_baseline']:.3f}.\n")
    if stability:
        lines.append("## Stability (Appendix A.2)\n")
        lines.append(f"RQ-VAEs trained on impressions of days {stability['early_days']} and {stability['late_days']}, "
                 f"each driving `{stability['representation']}` (without history):\n")
        for tag, r in sorted(stability["results"].items()):
            a = _auc(r, "overall")
            n = _auc(r, "new")
            lines.append(f"- {tag}: CTR AUC {a[0]:.4f} ± {a[1]:.4f}; CTR/1D {n[0] if n[0] is not None else float('nan'):.4f}")
        ag = stability["agreement"]
        lines.append(f"\nSID agreement between the two tables: `{_short(ag)}`\n")
    lines.append("## Findings: what reproduces on this corpus\n")
    lines.append("| paper finding | verdict | evidence |")
    lines.append("|---|---|---|")
    for f, v, e in found:
        lines.append(f"| {f} | **{v}** | {e} |")
    lines.append("\n## Timings\n")
    lines.append(", ".join(f"{k}: {v:.0f}s" for k, v in timings.items()) + "\n")
    md = "\n".join(lines) + "\n"
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text(md)
    write_json(out / "report.json", {"summary": summary, "findings": found, "table1": t1, "lookups": lookups,
                                     "stability": _strip(stability), "timings": timings})
    return path


def _short(agreement: dict[str, Any]) -> str:
    keep = {k: v for k, v in agreement.items() if not isinstance(v, (list, dict)) or k in ("level_agreement",)}
    return ", ".join(f"{k}={v}" for k, v in keep.items())


def _strip(stability: dict[str, Any] | None) -> dict[str, Any] | None:
    if not stability:
        return None
    return {**stability, "results": {k: {"metrics": v.get("metrics"), "run_dir": v.get("run_dir")}
                                     for k, v in stability["results"].items()}}
