"""``semid experiment --preset regimes``: when do Semantic IDs help? The paper's findings over a grid of corpus
properties (issue 21).

A regimes config (``conf/experiment/regimes*.yaml``, recognised by its ``grid:`` key) names one ordinary
experiment (``experiment:``, the fields of :class:`semid.study.experiment.ExperimentConfig`) and a grid of synthetic
corpus knobs (``semid.datamodules.synth.SynthConfig``'s regime knobs). Every grid point is a *cell*: the same
experiment on the synth preset with the cell's knobs in ``corpus.synth_overrides`` (which key its corpus),
run into ``<out>/cells/<cell>/`` with its own report. Extra cells (``cells:``, e.g. one calibrated to real
data) run the same way. The aggregate ``report.json`` holds one findings block per cell, and ``regimes.md``
the regime table (every finding row x cell: verdict and paired estimate), a heatmap per finding id over the
grid, and a paragraph, computed from the verdicts, on which knob flips which finding.

Cells run one after another (each runs its fits ``parallel`` at a time); a rerun reuses every stage of a cell
that is up to date, exactly as ``semid experiment`` does.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semid.datamodules import Corpus, load_synth_config  # noqa: E402
from semid.core.artifacts import atomic_path, read_json, write_json  # noqa: E402
from semid.core.config import (ConfigFieldError, apply_overrides, blame_overrides, from_dict, load_yaml,  # noqa: E402
                               require, resolve_conf)
from semid.core.errors import SemidError  # noqa: E402
from semid.core.numbers import sig  # noqa: E402
from semid.results.records import Finding  # noqa: E402
from semid.study.records import Calibration, CellEntry, Flip, KnobEffect, RegimeCell, RegimeRow  # noqa: E402
from semid.study.experiment import Experiment, ExperimentConfig  # noqa: E402
from semid.results.findings import METRIC_NAMES  # noqa: E402

VERDICT_SCORE = {"reproduces": 1, "inconclusive": 0, "contradicted": -1}  # not run / undefined: no score
ABBREV = {"reproduces": "R", "contradicted": "C", "inconclusive": "I", "not run": "-"}
# calibration targets: Δ% of a findings row (id, setting, metric, claim fragment) against hash-8K
TARGETS = {
    "dense_vs_hash_8k_pct": ("a", "without_history", "ctr", "Dense Input (1x depth)"),
    "unigram_vs_hash_8k_pct": ("c", "without_history", "ctr", "Unigram-SID"),
}


@dataclass
class CellSpec:
    """A cell outside the grid (e.g. one calibrated to real data)."""

    name: str
    synth_overrides: list[str] = field(default_factory=list)
    # KEY=VALUE on the cell's experiment (e.g. an RQ-VAE sized for a small catalogue)
    experiment_overrides: list[str] = field(default_factory=list)
    # the Δ% this cell was fitted to (keys of TARGETS), e.g. MovieLens-1M's gaps; the report states the residual
    target: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        require(bool(self.name) and "/" not in self.name and not self.name.startswith("."), "name",
                f"must be a plain directory name (got {self.name!r})")
        bad = sorted(set(self.target) - set(TARGETS))
        require(not bad, "target", f"{bad} unknown (valid: {', '.join(TARGETS)})")


@dataclass
class RegimesConfig:
    name: str = "regimes"
    # the ordinary experiment every cell runs (ExperimentConfig fields); corpus.synth names the base preset
    experiment: dict[str, Any] = field(default_factory=dict)
    # knob -> values; every combination is a cell (one or two knobs)
    grid: dict[str, list[float]] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)  # synth overrides every cell shares
    paper_cell: dict[str, float] = field(default_factory=dict)  # the grid point closest to the paper's setting
    paper_seeds: list[int] = field(default_factory=list)  # its seeds (the other cells keep the experiment's)
    paper_overrides: list[str] = field(default_factory=list)  # KEY=VALUE on its experiment (e.g. the stability study)
    cells: list[CellSpec] = field(default_factory=list)
    # run only these cells (names as in <out>/cells/): part of a map now, the rest later into the same <out>
    only: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(1 <= len(self.grid) <= 2, "grid", f"needs one or two knobs (got {len(self.grid)})")
        for k, vs in self.grid.items():
            # one value is allowed, to run part of a map (e.g. --set grid.items_per_row=[24.4]) into the same
            # <out>: a later full run reuses those cells
            require(isinstance(vs, list) and len(vs) >= 1 and len(set(vs)) == len(vs), f"grid.{k}",
                    f"needs distinct values, at least one (got {vs!r})")
            require(all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs), f"grid.{k}",
                    f"values must be numbers (got {vs!r})")
        if self.paper_cell:
            require(set(self.paper_cell) == set(self.grid), "paper_cell",
                    f"must give a value of each grid knob ({', '.join(self.grid)})")
            for k, v in self.paper_cell.items():
                require(v in self.grid[k], f"paper_cell.{k}", f"{v!r} is not among grid.{k}'s values {self.grid[k]}")
        require(not self.paper_seeds or bool(self.paper_cell), "paper_seeds", "needs paper_cell")
        require(not self.paper_overrides or bool(self.paper_cell), "paper_overrides", "needs paper_cell")
        require(len(set(self.paper_seeds)) == len(self.paper_seeds), "paper_seeds", "must be distinct")
        names = [c.name for c in self.cells]
        require(len(set(names)) == len(names), "cells", f"names must be distinct (got {names})")

    @property
    def knobs(self) -> list[str]:
        return list(self.grid)


@dataclass
class Cell:
    name: str
    knobs: dict[str, float]  # grid knob values ({} for an extra cell)
    config: ExperimentConfig
    spec: CellSpec | None = None  # extra cells

    @property
    def in_grid(self) -> bool:
        return self.spec is None


def _fmt(v: float) -> str:
    return f"{v:g}"


def cell_name(knobs: dict[str, float]) -> str:
    """``memorization_share-0.5__items_per_row-6.1``: a directory name that reads back as the knobs."""
    return "__".join(f"{k}-{_fmt(v)}" for k, v in knobs.items())


def _label(knobs: dict[str, float]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in knobs.items())


def is_regimes_config(name_or_path: str) -> bool:
    """A conf/experiment preset (or YAML file) that describes a regime grid (a top-level ``grid:`` key)."""
    try:
        return "grid" in load_yaml(resolve_conf(name_or_path, "experiment"))
    except SemidError:
        return False  # not a preset at all: the ordinary experiment path reports that


def load_regimes_config(name_or_path: str, overrides: list[str] | None = None) -> tuple[Path, RegimesConfig]:
    path = resolve_conf(name_or_path, "experiment")
    try:
        return path, from_dict(RegimesConfig, apply_overrides(load_yaml(path), overrides or []), where=str(path))
    except ConfigFieldError as e:
        raise blame_overrides(e, overrides or []) from None


def plan_cells(path: Path, cfg: RegimesConfig) -> list[Cell]:
    """Every cell's ExperimentConfig, built and checked (synth knobs included) before any work starts."""
    where = str(path)
    if not isinstance(cfg.experiment.get("corpus"), dict) or not cfg.experiment["corpus"].get("synth"):
        raise ConfigFieldError("experiment.corpus.synth", "a regime map needs a synthetic corpus preset "
                               "(its knobs are the grid; e.g. synth: small)", where)
    if cfg.experiment["corpus"].get("path") is not None:
        raise ConfigFieldError("experiment.corpus.path", "must be null: the cells generate their corpora", where)

    def build(name: str, synth_overrides: list[str], seeds: list[int] | None, extra: list[str],
              field_of: str) -> ExperimentConfig:
        data = {**cfg.experiment, "name": f"{cfg.name}-{name}",
                "corpus": {**cfg.experiment["corpus"], "synth_overrides": synth_overrides}}
        if seeds:
            data["seeds"] = list(seeds)
        own = "paper_overrides" if field_of == "paper_cell" else f"{field_of}.experiment_overrides"
        try:
            data = apply_overrides(data, extra)
        except SemidError as e:  # e.g. a value that is not YAML
            raise ConfigFieldError(own, str(e), where) from None
        try:
            exp = from_dict(ExperimentConfig, data, where=where, _path="experiment")
        except ConfigFieldError as e:
            if extra:  # the cell's own overrides made it: blame them
                raise ConfigFieldError(own, f"{e.field}: {e.problem}", where) from None
            raise ConfigFieldError(e.field, e.problem, where) from None
        _check_synth(exp.corpus.synth, synth_overrides, field_of if field_of != "paper_cell" else "grid", where)
        return exp

    _check_synth(cfg.experiment["corpus"]["synth"], list(cfg.fixed), "fixed", where)
    cells = []
    for values in itertools.product(*cfg.grid.values()):
        knobs = dict(zip(cfg.grid, values))
        paper = bool(cfg.paper_cell) and knobs == cfg.paper_cell
        over = list(cfg.fixed) + [f"{k}={v}" for k, v in knobs.items()]
        cells.append(Cell(cell_name(knobs), knobs, build(cell_name(knobs), over, cfg.paper_seeds if paper else None,
                                                         cfg.paper_overrides if paper else [],
                                                         "paper_cell" if paper else "grid")))
    for i, spec in enumerate(cfg.cells):
        if any(spec.name == c.name for c in cells):
            raise ConfigFieldError(f"cells[{i}].name", f"'{spec.name}' is also a grid cell's name", where)
        cells.append(Cell(spec.name, {}, build(spec.name, list(cfg.fixed) + spec.synth_overrides, None,
                                               spec.experiment_overrides, f"cells[{i}]"), spec))
    if cfg.only:
        unknown = sorted(set(cfg.only) - {c.name for c in cells})
        if unknown:
            raise ConfigFieldError("only", f"{unknown} are not cells of this map (cells: "
                                   f"{', '.join(c.name for c in cells)})", where)
        cells = [c for c in cells if c.name in cfg.only]
    return cells


def _check_synth(preset: str, overrides: list[str], field_of: str, where: str) -> None:
    """The knobs must make a valid corpus: refused before the first cell runs, blamed on the config's field."""
    try:
        load_synth_config(preset, overrides)
    except SemidError as e:
        problem = str(e).removeprefix("--set ")  # blame_overrides speaks of the command line; here it is the file
        raise ConfigFieldError(field_of, f"{problem} (fix the knob's value)", where) from None


# -- aggregation ---------------------------------------------------------------------------------------------
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


def _score(entry: CellEntry | None) -> int | None:
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
            s = [_score(e) for e in entries]
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
    names = [_label(c["knobs"]) for c in grid if (row["cells"].get(c["name"]) or {}).get("verdict") == verdict]
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
            f"{f['knob']} from {_fmt(e['low'])} to {_fmt(e['high'])} {verb} it {direction}{est}{also}. "
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


# -- figures and markdown -----------------------------------------------------------------------------------
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
            s = _score(e)
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
            scores = [s for s in (_score(r["cells"].get(c["name"])) for r in rows) if s is not None]
            if scores:
                m[i, j] = float(np.mean(scores))
                rep, con = sum(s > 0 for s in scores), sum(s < 0 for s in scores)
                ax.text(j, i, f"{rep}R {con}C\n/{len(scores)}", ha="center", va="center", fontsize=7)
        ax.imshow(np.ma.masked_invalid(m), cmap="RdYlGn", vmin=-1, vmax=1, origin="lower", aspect="auto")
        ax.set_title(f"({fid})", fontsize=9)
        ax.set_xticks(range(len(v1)), [_fmt(v) for v in v1], fontsize=7)
        ax.set_xlabel(k1, fontsize=7)
        ax.set_yticks(range(len(v2)), [_fmt(v) for v in v2] if k2 else [""], fontsize=7)
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


# -- the run ----------------------------------------------------------------------------------------------------
def run_regimes(name_or_path: str, out: Path | None, overrides: list[str], log: Callable[[str], None] = print) -> Path:
    """Run every cell of a regimes config into ``<out>/cells/<cell>/`` (default ``runs/experiment-<name>``) and
    write ``<out>/report.json`` (one findings block per cell) and ``<out>/regimes.md`` (regime table, map,
    flips). Returns regimes.md."""
    path, cfg = load_regimes_config(name_or_path, overrides)
    cells = plan_cells(path, cfg)
    out = Path(out) if out is not None else Path("runs") / f"experiment-{cfg.name}"
    n_fits = sum(len(Experiment(c.config, out).jobs(Path("sids"))) for c in cells)
    shape = f"{' x '.join(str(len(v)) for v in cfg.grid.values())} grid" + (f" + {len(cfg.cells)} extra" if cfg.cells else "")
    log(f"regimes {cfg.name}: {len(cells)} cells ({shape}{'; only: ' + ', '.join(cfg.only) if cfg.only else ''}), "
        f"{n_fits} ranker fits -> {out}")
    t0 = time.perf_counter()
    done: list[RegimeCell] = []
    for i, cell in enumerate(cells, 1):
        cell_out = out / "cells" / cell.name
        eta = ""
        if done:
            per = (time.perf_counter() - t0) / len(done)
            eta = f", ~{per * (len(cells) - len(done)) / 60:.0f} min left at {per / 60:.1f} min a cell"
        log(f"cell {i}/{len(cells)} {cell.name}: running{eta}")
        t = time.perf_counter()
        Experiment(cell.config, cell_out, log=lambda m, n=cell.name: log(f"  [{n}] {m}")).run()
        done.append(_cell_record(cell, cell_out, time.perf_counter() - t))
        log(f"cell {i}/{len(cells)} {cell.name}: done in {done[-1]['wall_s'] / 60:.1f} min "
            f"({_verdict_counts(done[-1]['findings'])})")
    return write_regimes_report(cfg, out, done, time.perf_counter() - t0)


def _verdict_counts(findings: list[Finding]) -> str:
    n = {v: sum(1 for f in findings if f["verdict"] == v) for v in ("reproduces", "contradicted", "inconclusive")}
    return ", ".join(f"{k} {v}" for k, v in n.items())


def _fit_seconds(cell_out: Path) -> float:
    """Wall seconds of every ranker fit of a cell, as each fit recorded them: the cell's cost even when this
    run reused them (this run's own wall time is then near 0)."""
    files = list((cell_out / "runs").glob("*/*/*/results.json")) + list((cell_out / "stability").glob("*/results.json"))
    return float(sum(read_json(f).get("wall_seconds") or 0.0 for f in files))


def _cell_record(cell: Cell, cell_out: Path, wall_s: float) -> RegimeCell:
    report = read_json(cell_out / "report.json")
    corpus = Experiment(cell.config, cell_out, log=lambda m: None).corpus()  # up to date: only finds its path
    gt = Corpus(corpus).meta.get("ground_truth", {})
    rec = {"name": cell.name, "label": _label(cell.knobs) if cell.in_grid else cell.name, "knobs": cell.knobs,
           "in_grid": cell.in_grid, "synth_overrides": cell.config.corpus.synth_overrides,
           "experiment_overrides": cell.spec.experiment_overrides if cell.spec else [],
           "seeds": cell.config.seeds, "dir": str(cell_out), "wall_s": wall_s, "fit_s": _fit_seconds(cell_out),
           "regime": gt.get("regime", {}), "oracle": {k: v for k, v in gt.items() if k.startswith("auc_")},
           "findings": report["findings"]}
    if cell.spec is not None:
        rec["note"] = cell.spec.note
        if cell.spec.target:
            rec["calibration"] = calibration_of(rec, cell.spec.target)
    return rec


def write_regimes_report(cfg: RegimesConfig, out: Path, cells: list[RegimeCell], wall_s: float) -> Path:
    grid = [c for c in cells if c["in_grid"]]
    table = regime_table(cells)
    # a part of the map with no grid cell (e.g. only=[movielens-1m]) has no knob to move: the table alone
    flips = [flip_of(r, grid, cfg.knobs) for r in table] if grid else []
    para = paragraph(table, flips, grid, cfg.knobs)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    if grid:
        plot_map(table, grid, cfg.knobs, figs / "regime_map.png")
    plot_table(table, cells, figs / "regime_table.png")
    md = out / "regimes.md"
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(cfg, cells, table, flips, para, wall_s))
    write_json(out / "report.json", {"name": cfg.name, "grid": cfg.grid, "fixed": cfg.fixed,
                                     "paper_cell": cfg.paper_cell, "cells": cells, "table": table, "flips": flips,
                                     "paragraph": para, "wall_s": wall_s})
    return md
