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

The package in four modules, read in this order: ``plan`` (the config and its cells, checked before any work),
``analysis`` (the regime table, which knob moves which finding, the calibration residuals), ``render`` (the
figures and regimes.md) and ``run`` (every cell as an ordinary experiment, then the aggregate report). Names load
on first use (PEP 562).

Example::

    >>> from semid.study.regimes import load_regimes_config, plan_cells
    >>> path, cfg = load_regimes_config("regimes_tiny")
    >>> [c.name for c in plan_cells(path, cfg)][0]
    'memorization_share-0.2__items_per_row-0.25'
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "CellSpec": "semid.study.regimes.plan", "RegimesConfig": "semid.study.regimes.plan", "Cell": "semid.study.regimes.plan",
    "cell_name": "semid.study.regimes.plan", "is_regimes_config": "semid.study.regimes.plan",
    "load_regimes_config": "semid.study.regimes.plan", "plan_cells": "semid.study.regimes.plan",
    "TARGETS": "semid.study.regimes.analysis", "VERDICT_SCORE": "semid.study.regimes.analysis",
    "row_key": "semid.study.regimes.analysis", "regime_table": "semid.study.regimes.analysis",
    "knob_effects": "semid.study.regimes.analysis", "flip_of": "semid.study.regimes.analysis",
    "paragraph": "semid.study.regimes.analysis", "calibration_of": "semid.study.regimes.analysis",
    "plot_table": "semid.study.regimes.render", "plot_map": "semid.study.regimes.render",
    "markdown": "semid.study.regimes.render",
    "run_regimes": "semid.study.regimes.run", "write_regimes_report": "semid.study.regimes.run",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
