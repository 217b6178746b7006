"""The knob analysis of a regime map: the regime table (every findings row x cell), how each knob moves a row's
verdict and estimate over the grid, the paragraph that says so, and a calibrated cell's residuals.

Pure functions of the cells' findings (``semid.study.records``): no files, no figures.

Example::

    >>> from semid.study.regimes.analysis import verdict_score
    >>> verdict_score({"verdict": "contradicted"}), verdict_score(None)
    (-1, None)
"""
from __future__ import annotations

import math

import numpy as np

from semid.results.findings import METRIC_NAMES
from semid.results.records import Finding
from semid.study.records import Calibration, CellEntry, Flip, KnobEffect, RegimeCell, RegimeRow

VERDICT_SCORE = {"reproduces": 1, "inconclusive": 0, "contradicted": -1}  # not run / undefined: no score
# calibration targets: Δ% of a findings row (id, setting, metric, claim fragment) against hash-8K
TARGETS = {
    "dense_vs_hash_8k_pct": ("a", "without_history", "ctr", "Dense Input (1x depth)"),
    "unigram_vs_hash_8k_pct": ("c", "without_history", "ctr", "Unigram-SID"),
}


def format_value(v: float) -> str:
    """A knob value as cell names and labels write it: ``format_value(1.0) == "1"``, ``format_value(0.25) == "0.25"``."""
    return f"{v:g}"


def knobs_label(knobs: dict[str, float]) -> str:
    """``memorization_share=0.5, items_per_row=6.1``: a grid cell's label in tables and text.

    >>> knobs_label({"memorization_share": 0.5, "items_per_row": 6.1})
    'memorization_share=0.5, items_per_row=6.1'
    """
    return ", ".join(f"{k}={format_value(v)}" for k, v in knobs.items())


def row_key(f: Finding) -> str:
    """Identifies a findings row across cells: claims name their tables, (f) rows their SPM."""
    parts = [f["id"], f["claim"], str(f.get("setting", "")), str(f.get("metric", ""))]
    if f["id"] == "f":
        parts.append(str(f.get("candidate")))
    return " | ".join(parts)


def regime_table(cells: list[RegimeCell]) -> list[RegimeRow]:
    """One row per findings row (in the first cell's order), with each cell's verdict and estimate."""
    rows: dict[str, RegimeRow] = {}
    for c in cells:
        for f in c["findings"]:
            k = row_key(f)
            label = f"{f['claim']} ({f.get('candidate')})" if f["id"] == "f" else f["claim"]
            r = rows.setdefault(k, {"key": k, "id": f["id"], "claim": f["claim"], "label": label,
                                    "setting": f.get("setting"),
                                    "metric": f.get("metric"), "direction": f.get("direction"), "cells": {}})
            r["cells"][c["name"]] = {x: f.get(x) for x in ("verdict", "estimate", "ci_low", "ci_high", "n_seeds",
                                                          "candidate", "reference")}
    return sorted(rows.values(), key=lambda r: r["id"])  # stable: the findings' own order within an id


def verdict_score(entry: CellEntry | None) -> int | None:
    """A cell's verdict on a row as a number (``VERDICT_SCORE``); None where the row did not run or has no verdict."""
    return VERDICT_SCORE.get(entry["verdict"]) if entry else None


def knob_effects(row: RegimeRow, grid: list[RegimeCell], knobs: list[str]) -> dict[str, KnobEffect]:
    """Per knob: how the row's verdict score (reproduces +1, inconclusive 0, contradicted -1) and estimate move
    from the knob's lowest to its highest value, averaged over the other knob's values (a line = the other
    knob held fixed), and whether the verdict changes along some line at all."""
    out: dict[str, KnobEffect] = {}
    for k in knobs:
        others = [o for o in knobs if o != k]
        lines: dict[tuple[float, ...], list[RegimeCell]] = {}
        for c in grid:
            lines.setdefault(tuple(c["knobs"][o] for o in others), []).append(c)
        d_score, d_est, changes, monotone = [], [], 0, True
        for line in lines.values():
            line = sorted(line, key=lambda c: c["knobs"][k])
            entries = [row["cells"].get(c["name"]) for c in line]
            s = [verdict_score(e) for e in entries]
            e = [x.get("estimate") if x else None for x in entries]
            known = [v for v in s if v is not None]
            if len(set(known)) > 1:
                changes += 1
                steps = [b - a for a, b in zip(known, known[1:]) if b != a]
                monotone &= all(np.sign(x) == np.sign(steps[0]) for x in steps)
            if s[0] is not None and s[-1] is not None:
                d_score.append(s[-1] - s[0])
            if e[0] is not None and e[-1] is not None:
                d_est.append(e[-1] - e[0])
        values = sorted({c["knobs"][k] for c in grid})
        out[k] = {"low": values[0], "high": values[-1], "lines": len(lines), "lines_with_change": changes,
                  "monotone": monotone and changes > 0,
                  "verdict_shift": float(np.mean(d_score)) if d_score else None,
                  "estimate_shift": float(np.mean(d_est)) if d_est else None}
    return out


def flip_of(row: RegimeRow, grid: list[RegimeCell], knobs: list[str]) -> Flip:
    """What the grid says about one findings row: where it reproduces / is contradicted, and the knob that
    moves its verdict most (largest mean verdict shift, then largest estimate shift)."""
    verdicts = {c["name"]: (row["cells"].get(c["name"]) or {}).get("verdict", "not run") for c in grid}
    counts = {v: sum(1 for x in verdicts.values() if x == v) for v in ("reproduces", "contradicted", "inconclusive")}
    effects = knob_effects(row, grid, knobs)
    moving = [k for k in knobs if effects[k]["lines_with_change"] > 0]
    knob = max(moving, key=lambda k: (abs(effects[k]["verdict_shift"] or 0), abs(effects[k]["estimate_shift"] or 0)),
               default=None)
    judged = sum(counts.values())
    kind = ("unjudged" if not judged else
            "flips" if counts["reproduces"] and counts["contradicted"] else
            "partial" if knob is not None else
            next(v for v in ("reproduces", "contradicted", "inconclusive") if counts[v] == judged))
    return {"key": row["key"], "id": row["id"], "kind": kind, "counts": counts, "cells": len(grid), "knob": knob,
            "effects": effects}


def _where(row: RegimeRow, grid: list[RegimeCell], verdict: str) -> str:
    names = [knobs_label(c["knobs"]) for c in grid if (row["cells"].get(c["name"]) or {}).get("verdict") == verdict]
    return "; ".join(f"({n})" for n in names)


def _row_text(f: Flip, r: RegimeRow, grid: list[RegimeCell], knobs: list[str]) -> str:
    what = f"{r['label']} — {str(r['setting']).replace('_', ' ')}, {METRIC_NAMES.get(r['metric'], r['metric'])}"
    n, c = f["cells"], f["counts"]
    if f["knob"] is None:
        judged = sum(c.values())
        where = "every cell" if judged == n else f"every judged cell ({judged} of {n})"
        state = {"reproduces": f"reproduces in {where}", "contradicted": f"contradicted in {where}",
                 "inconclusive": f"inconclusive in {where}"}.get(f["kind"], "no verdict in any cell")
        return f"{what}: {state}"
    e = f["effects"][f["knob"]]
    toward = (e["verdict_shift"] or 0) > 0
    direction = "towards the paper" if toward else "away from the paper" if (e["verdict_shift"] or 0) < 0 else \
        "(no net verdict change from end to end)"
    est = "" if e["estimate_shift"] is None else f", estimate {e['estimate_shift']:+.3g} points on average"
    others = [k for k in knobs if k != f["knob"]]
    moving = [k for k in others if f["effects"][k]["lines_with_change"]]
    also = f"; {', '.join(moving)} changes it too" if moving else \
        (f"; {', '.join(others)} does not change it" if others else "")
    verb = "flips" if f["kind"] == "flips" else "moves"
    return (f"{what}: reproduces in {c['reproduces']}/{n} cells, contradicted in {c['contradicted']}/{n}; raising "
            f"{f['knob']} from {format_value(e['low'])} to {format_value(e['high'])} {verb} it {direction}{est}{also}. "
            f"Reproduces at: {_where(r, grid, 'reproduces') or 'no cell'}")


def paragraph(table: list[RegimeRow], flips: list[Flip], grid: list[RegimeCell], knobs: list[str]) -> list[str]:
    """Per finding id, from the verdicts: a summary line (which knob flips how many of its rows), then one
    line per row: where it reproduces and which knob moves its verdict, in which direction."""
    by_key = {r["key"]: r for r in table}
    lines = []
    for fid in sorted({f["id"] for f in flips}):
        rows = [f for f in flips if f["id"] == fid]
        never = [f for f in rows if f["kind"] == "unjudged"]
        rows = [f for f in rows if f["kind"] != "unjudged"]
        summary = []
        for k in knobs:
            n_flip = sum(1 for f in rows if f["knob"] == k and f["kind"] == "flips")
            n_move = sum(1 for f in rows if f["knob"] == k and f["kind"] == "partial")
            if n_flip or n_move:
                summary.append(f"{k} flips {n_flip} and moves {n_move} of its {len(rows)} judged rows")
        for v in ("reproduces", "contradicted", "inconclusive"):
            same = sum(1 for f in rows if f["kind"] == v)
            if same:
                one = same == 1
                verb = {"reproduces": "reproduces" if one else "reproduce",
                        "contradicted": "is contradicted" if one else "are contradicted",
                        "inconclusive": "is inconclusive" if one else "are inconclusive"}[v]
                summary.append(f"{same} {'row' if one else 'rows'} {verb} in every judged cell")
        if never:  # e.g. a claim about an arm the preset leaves out
            claims = sorted({by_key[f["key"]]["label"] for f in never})
            summary.append(f"not run in any cell: {'; '.join(claims)}")
        lines.append(f"- **({fid})** " + "; ".join(summary) + ".")
        lines += [f"  - {_row_text(f, by_key[f['key']], grid, knobs)}." for f in rows]
    return lines


def calibration_of(cell: RegimeCell, target: dict[str, float]) -> Calibration:
    """Measured vs targeted Δ% (the cell's own findings rows) and the residuals."""
    out = Calibration(target=target, measured={}, residual={}, rms_residual=None)
    for name, want in target.items():
        fid, setting, metric, fragment = TARGETS[name]
        row = next((f for f in cell["findings"] if f["id"] == fid and f.get("setting") == setting
                    and f.get("metric") == metric and fragment in f["claim"]), None)
        got = row.get("estimate") if row else None
        out["measured"][name] = None if got is None else {"estimate": got, "ci_low": row["ci_low"],
                                                          "ci_high": row["ci_high"]}
        out["residual"][name] = None if got is None else got - want
    res = [v for v in out["residual"].values() if v is not None]
    out["rms_residual"] = float(math.sqrt(np.mean(np.square(res)))) if res else None
    return out

