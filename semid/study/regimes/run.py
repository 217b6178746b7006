"""The run of a regime map: every cell as an ordinary experiment into ``<out>/cells/<cell>/``, then the aggregate
report (report.json, regimes.md, the figures).

Example (the map in miniature; ~4 min on 2 cores)::

    from pathlib import Path
    from semid.study.regimes.run import run_regimes
    md = run_regimes("regimes_tiny", Path("runs/regimes-tiny"), [])
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from semid.core.artifacts import atomic_path, read_json, write_json
from semid.datamodules import Corpus
from semid.results.records import Finding
from semid.study.experiment import Experiment
from semid.study.records import RegimeCell
from semid.study.regimes.analysis import calibration_of, flip_of, knobs_label, paragraph, regime_table
from semid.study.regimes.plan import Cell, RegimesConfig, load_regimes_config, plan_cells
from semid.study.regimes.render import markdown, plot_map, plot_table


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
    rec = {"name": cell.name, "label": knobs_label(cell.knobs) if cell.in_grid else cell.name, "knobs": cell.knobs,
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
