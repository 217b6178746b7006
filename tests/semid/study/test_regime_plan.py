"""The regime map's plan (semid/study/regimes/plan.py): presets are recognised, every cell's config is built before
any work, and a part of a map plans the same cells as the whole."""
from __future__ import annotations

import pytest

from semid.core.errors import SemidError
from semid.study.regimes.plan import is_regimes_config, load_regimes_config, plan_cells


def test_presets_are_recognised_and_plan_their_cells():
    assert is_regimes_config("regimes") and is_regimes_config("regimes_tiny")
    assert not is_regimes_config("tiny") and not is_regimes_config("no-such-preset")
    for preset in ("regimes", "regimes_tiny"):
        path, cfg = load_regimes_config(preset)
        cells = plan_cells(path, cfg)
        grid = [c for c in cells if c.in_grid]
        assert len(grid) == len(list(cfg.grid.values())[0]) * len(list(cfg.grid.values())[1])
        paper = [c for c in grid if c.knobs == cfg.paper_cell]
        assert len(paper) == 1 and paper[0].config.seeds == cfg.paper_seeds
        assert all(c.config.seeds == [0] for c in grid if c is not paper[0])
        # the cell's knobs are its corpus overrides, so they key its corpus directory
        for c in grid:
            assert all(f"{k}={v}" in c.config.corpus.synth_overrides for k, v in c.knobs.items())
    path, cfg = load_regimes_config("regimes")
    assert all(len(v) >= 3 for v in cfg.grid.values())


def test_part_of_a_map_plans_the_same_cells_as_the_whole():
    """A run of one knob value writes the cells a full run would (same names, same configs), so the full run
    into the same directory reuses them."""
    path, cfg = load_regimes_config("regimes_tiny")
    full = {c.name: c.config for c in plan_cells(path, cfg)}
    path, part = load_regimes_config("regimes_tiny", ["grid.items_per_row=[1.0]"])
    cells = plan_cells(path, part)
    assert [c.name for c in cells] == ["memorization_share-0.2__items_per_row-1",
                                       "memorization_share-0.8__items_per_row-1", "calibrated"]
    assert all(c.config == full[c.name] for c in cells)
    path, some = load_regimes_config("regimes_tiny", ["only=[calibrated]"])
    assert [c.name for c in plan_cells(path, some)] == ["calibrated"]
    with pytest.raises(SemidError, match=r"field 'only': \['nope'\] are not cells of this map"):
        plan_cells(*load_regimes_config("regimes_tiny", ["only=[nope]"]))


