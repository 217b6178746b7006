"""The plan of a regime map: its config (``conf/experiment/regimes*.yaml``) and every cell's experiment config,
built and checked before the first cell runs.

Example::

    >>> from semid.study.regimes.plan import cell_name
    >>> cell_name({"memorization_share": 0.5, "items_per_row": 6.1})
    'memorization_share-0.5__items_per_row-6.1'
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semid.core.config import (ConfigFieldError, apply_overrides, blame_overrides, from_dict, load_yaml, require,
                               resolve_conf)
from semid.core.errors import SemidError
from semid.datamodules import load_synth_config
from semid.study.experiment import ExperimentConfig
from semid.study.regimes.analysis import TARGETS, format_value


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


def cell_name(knobs: dict[str, float]) -> str:
    """``memorization_share-0.5__items_per_row-6.1``: a directory name that reads back as the knobs."""
    return "__".join(f"{k}-{format_value(v)}" for k, v in knobs.items())


def is_regimes_config(name_or_path: str) -> bool:
    """A conf/experiment preset (or YAML file) that describes a regime grid (a top-level ``grid:`` key)."""
    try:
        return "grid" in load_yaml(resolve_conf(name_or_path, "experiment"))
    except SemidError:
        return False  # not a preset at all: the ordinary experiment path reports that


def load_regimes_config(name_or_path: str, overrides: list[str] | None = None) -> tuple[Path, RegimesConfig]:
    """A regimes preset (or YAML file) with ``--set`` overrides, checked field by field: (its path, the config).

    >>> load_regimes_config("regimes_tiny", ["grid.items_per_row=[1.0]"])[1].grid["items_per_row"]
    [1.0]
    """
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

