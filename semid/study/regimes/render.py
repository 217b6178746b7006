"""The regime map's figures (the table of every findings row x cell, the map per finding id) and regimes.md.

Example::

    >>> from semid.study.regimes.render import ABBREV
    >>> ABBREV["reproduces"]
    'R'
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semid.core.artifacts import atomic_path  # noqa: E402
from semid.core.numbers import sig  # noqa: E402
from semid.results.findings import METRIC_NAMES  # noqa: E402
from semid.study.records import CellEntry, Flip, RegimeCell, RegimeRow  # noqa: E402
from semid.study.regimes.analysis import format_value, verdict_score  # noqa: E402
from semid.study.regimes.plan import RegimesConfig  # noqa: E402

ABBREV = {"reproduces": "R", "contradicted": "C", "inconclusive": "I", "not run": "-"}
_CMAP = matplotlib.colors.ListedColormap(["tab:red", "lightgray", "tab:green"])


def plot_table(table: list[RegimeRow], cells: list[RegimeCell], path: Path) -> Path:
    """Every findings row x cell: colour = verdict, text = estimate."""
    names = [c["name"] for c in cells]
    m = np.full((len(table), len(names)), np.nan)
    # wide enough for the row labels even with one cell (tight_layout warns otherwise)
    fig, ax = plt.subplots(figsize=(max(7.0, 2.0 + 1.15 * len(names)), 1.0 + 0.28 * len(table)))
    for i, r in enumerate(table):
        for j, n in enumerate(names):
            e = r["cells"].get(n)
            s = verdict_score(e)
            if s is not None:
                m[i, j] = s
            if e and e.get("estimate") is not None:
                ax.text(j, i, sig(e["estimate"], 2), ha="center", va="center", fontsize=6)
    ax.imshow(np.ma.masked_invalid(m), cmap=_CMAP, vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(names)), [c["label"] for c in cells], rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(table)), [f"({r['id']}) {r['label'][:60]} · {str(r['setting'])[:7]} · {r['metric']}"
                                      for r in table], fontsize=6)
    ax.set_title("Findings per cell: green reproduces, red contradicted, gray inconclusive, white not run", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_map(table: list[RegimeRow], grid: list[RegimeCell], knobs: list[str], path: Path) -> Path:
    """The regime map: per finding id, the grid coloured by (rows reproducing - rows contradicted) / rows."""
    ids = sorted({r["id"] for r in table})
    k1, k2 = knobs[0], (knobs[1] if len(knobs) > 1 else None)
    v1 = sorted({c["knobs"][k1] for c in grid})
    v2 = sorted({c["knobs"][k2] for c in grid}) if k2 else [None]
    cols = min(5, len(ids))
    rows_n = math.ceil(len(ids) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(max(2.6 * cols, 8.0), 2.5 * rows_n + 0.4), squeeze=False)
    for ax in axes.flat[len(ids):]:
        ax.axis("off")
    for ax, fid in zip(axes.flat, ids):
        rows = [r for r in table if r["id"] == fid]
        m = np.full((len(v2), len(v1)), np.nan)
        for c in grid:
            i = v2.index(c["knobs"][k2]) if k2 else 0
            j = v1.index(c["knobs"][k1])
            scores = [s for s in (verdict_score(r["cells"].get(c["name"])) for r in rows) if s is not None]
            if scores:
                m[i, j] = float(np.mean(scores))
                rep, con = sum(s > 0 for s in scores), sum(s < 0 for s in scores)
                ax.text(j, i, f"{rep}R {con}C\n/{len(scores)}", ha="center", va="center", fontsize=7)
        ax.imshow(np.ma.masked_invalid(m), cmap="RdYlGn", vmin=-1, vmax=1, origin="lower", aspect="auto")
        ax.set_title(f"({fid})", fontsize=9)
        ax.set_xticks(range(len(v1)), [format_value(v) for v in v1], fontsize=7)
        ax.set_xlabel(k1, fontsize=7)
        ax.set_yticks(range(len(v2)), [format_value(v) for v in v2] if k2 else [""], fontsize=7)
        if k2:
            ax.set_ylabel(k2, fontsize=7)
    fig.suptitle("Regime map: per finding, (rows reproducing - rows contradicted) / rows judged; "
                 "text: rows R, C / judged", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _cell_md(c: RegimeCell) -> str:
    r, gt = c["regime"], c["oracle"]
    return (f"| {c['label']} | {len(c['seeds'])} | {r.get('items', 0):,} | {sig(r.get('items_per_row'), 3)} | "
            f"{sig(r.get('memorization_share_measured'), 3)} | {sig(r.get('new_item_share'), 3)} | "
            f"{sig(r.get('share_impressions_on_new_items'), 3)} | {sig(r.get('topic_zipf_measured'), 3)} | "
            f"{sig(r.get('history_variance_share_measured'), 3)} | {sig(gt.get('auc_oracle_content_only'))} | "
            f"{sig(gt.get('auc_oracle_item_only'))} | {sig(c['fit_s'] / 60, 3)} | {sig(c['wall_s'] / 60, 3)} |")


def _entry_md(e: CellEntry | None) -> str:
    if not e:
        return "-"
    v = ABBREV.get(e["verdict"], e["verdict"][:1].upper())
    if e.get("estimate") is None:
        return v
    ci = f" [{sig(e['ci_low'], 3)}, {sig(e['ci_high'], 3)}]" if e.get("ci_low") is not None else ""
    return f"**{v}** {sig(e['estimate'], 3)}{ci}"


def markdown(cfg: RegimesConfig, cells: list[RegimeCell], table: list[RegimeRow],
             flips: list[Flip], para: list[str], wall_s: float) -> str:
    knobs = cfg.knobs
    lines = [f"# Regime map `{cfg.name}`: when do Semantic IDs help?\n",
             f"Each cell is the ordinary experiment on the `{cfg.experiment['corpus']['synth']}` synthetic corpus with "
             f"the cell's knobs ({', '.join(f'`{k}` in {cfg.grid[k]}' for k in knobs)}"
             + (f"; every cell also {', '.join(f'`{o}`' for o in cfg.fixed)}" if cfg.fixed else "")
             + "). Verdicts are the paper's findings (semid.results.findings) on each cell's own paired, item-clustered "
               "intervals: **R** reproduces (the 95% interval lies on the paper's side), **C** contradicted (on the "
               "other side), **I** inconclusive; the number is the estimate (Δ% vs the claim's reference; lookups "
               "for (f), cosine for (g)) with its 95% interval.\n",
             "## Cells\n",
             "Knobs as measured on each corpus (`ground_truth.regime` of its corpus.json): items, items per row of "
             "the 8K reference table, memorisation share of the click signal, new items per day (share of the "
             "catalogue), impressions on new items, Zipf exponent of impressions over coarse topics, history term's "
             "variance share; oracle AUCs of the content and item parts; minutes of the cell's ranker fits (the sum of "
             "the training and evaluation time each fit recorded, without process start-up and the RQ-VAE) and "
             "this run's wall time for the cell (near 0 when it reused everything).\n",
             "| cell | seeds | items | items/row | memo share | new/day | imps on new | topic zipf | history share "
             "| oracle content | oracle item | fit minutes | run minutes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_cell_md(c) for c in cells]
    if flips:
        lines += ["", "![regime map](figures/regime_map.png)\n", "## Which corpus property flips which finding\n"]
        lines += para + [""]
    else:
        lines += ["", "No cell of the grid ran, so no knob is judged (run the grid into the same --out for the map).\n"]
    lines += ["## Regime table\n", "| id | claim | setting | metric | " + " | ".join(c["label"] for c in cells) + " |",
              "|---|---|---|---|" + "---|" * len(cells)]
    for r in table:
        lines.append(f"| {r['id']} | {r['label']} | {str(r['setting']).replace('_', ' ')} | "
                     f"{METRIC_NAMES.get(r['metric'], r['metric'])} | "
                     + " | ".join(_entry_md(r["cells"].get(c["name"])) for c in cells) + " |")
    lines += ["", "![every findings row per cell](figures/regime_table.png)\n"]
    calibrated = [c for c in cells if c.get("calibration")]
    if calibrated:
        lines.append("## Calibrated cells\n")
        for c in calibrated:
            cal = c["calibration"]
            lines.append(f"`{c['name']}`: {c.get('note') or ''}\n")
            lines.append("| gap | target | measured [95%] | residual |")
            lines.append("|---|---:|---|---:|")
            for k, want in cal["target"].items():
                got = cal["measured"].get(k)
                meas = "not run" if got is None else f"{sig(got['estimate'])} [{sig(got['ci_low'])}, {sig(got['ci_high'])}]"
                lines.append(f"| {k} | {sig(want)} | {meas} | {sig(cal['residual'].get(k))} |")
            lines.append(f"\nRMS residual: {sig(cal['rms_residual'])} points.\n")
    lines.append(f"## Timings\n\n{len(cells)} cells in {wall_s / 60:.1f} min this run; their ranker fits took "
                 f"{sum(c['fit_s'] for c in cells) / 60:.1f} fit-minutes in all (fits run `parallel` at a time).\n")
    return "\n".join(lines) + "\n"

