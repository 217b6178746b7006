"""The regime map's rendering (semid/study/regimes/render.py) on hand-made cells: regimes.md's cell and regime tables
and the two figures."""
from __future__ import annotations

from PIL import Image

from semid.study.regimes.analysis import flip_of, paragraph, regime_table
from semid.study.regimes.plan import load_regimes_config
from semid.study.regimes.render import markdown, plot_map, plot_table
from tests.semid.study.test_regime_analysis import make_grid


def _measured(cells: list[dict]) -> list[dict]:
    """The fields the cell table reads, as run's _cell_record fills them."""
    return [dict(c, seeds=[0], regime={"items": 2048, "items_per_row": c["knobs"]["items_per_row"]},
                 oracle={"auc_oracle_content_only": 0.61}, fit_s=120.0, wall_s=30.0) for c in cells]


def test_markdown_has_a_row_per_cell_and_a_verdict_per_finding_and_cell():
    grid = _measured(make_grid())
    knobs = ["memorization_share", "items_per_row"]
    table = regime_table(grid)
    flips = [flip_of(r, grid, knobs) for r in table]
    _, cfg = load_regimes_config("regimes_tiny", ["grid={memorization_share: [0.2, 0.8], items_per_row: [1.0, 8.0]}"])
    text = markdown(cfg, grid, table, flips, paragraph(table, flips, grid, knobs), wall_s=600.0)
    assert "| m=0.2, i=1.0 | 1 | 2,048 | 1 | " in text  # label, seeds, items, items/row
    # (a) row: contradicted where memorisation is low, reproduces where high; estimate [95% interval]
    assert ("| a | Dense Input (1x depth) is worse than random hashing with 8K rows | without history | CTR AUC | "
            "**C** 3 [2.5, 3.5] | **C** 4 [3.5, 4.5] | **R** -2 [-2.5, -1.5] | **R** -1 [-1.5, -0.5] |") in text
    assert "- **(a)** memorization_share flips 1 and moves 0 of its 1 judged rows." in text
    assert "4 cells in 10.0 min this run; their ranker fits took 8.0 fit-minutes" in text


def test_the_figures_are_drawn_a_row_per_findings_row(tmp_path):
    grid = make_grid()
    table = regime_table(grid)
    both = Image.open(plot_table(table, grid, tmp_path / "table.png")).size
    one = Image.open(plot_table(table[:1], grid, tmp_path / "table1.png")).size
    assert both[1] > one[1] and both[0] == one[0] == 770  # 7 inches at 110 dpi: wide enough for the row labels
    fig = Image.open(plot_map(table, grid, ["memorization_share", "items_per_row"], tmp_path / "map.png"))
    assert fig.size[0] > fig.size[1]  # two finding ids side by side
