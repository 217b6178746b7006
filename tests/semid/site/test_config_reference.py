"""The configuration reference: keys, defaults and valid values come from the dataclasses and their checks."""
from __future__ import annotations

from dataclasses import dataclass, field

from semid.core.config import require, require_int, require_positive
from semid.site.config_reference import config_page, config_rows


@dataclass
class _Inner:
    rate: float = 0.5  # how often
    mode: str = "fast"  # fast | slow

    def __post_init__(self) -> None:
        require_positive(self.rate, "rate", maximum=1.0)
        require(self.mode in ("fast", "slow"), "mode", f"must be 'fast' or 'slow' (got {self.mode!r})")


@dataclass
class _Outer:
    # the number of steps
    steps: int = 10
    inner: _Inner = field(default_factory=_Inner)
    tags: list[str] = field(default_factory=list)
    free: int = 3

    def __post_init__(self) -> None:
        require_int(self.steps, "steps", minimum=2)


def test_rows_carry_defaults_checks_and_comments() -> None:
    rows = {r.key: r for r in config_rows(_Outer)}
    assert list(rows) == ["steps", "inner.rate", "inner.mode", "tags", "free"]
    assert rows["steps"].default == "10" and rows["steps"].valid == "must be an integer >= 2"
    assert rows["steps"].about == "the number of steps"
    assert rows["inner.rate"].valid == "must be a finite number > 0 and <= 1" and rows["inner.rate"].about == "how often"
    assert rows["inner.mode"].valid == "must be 'fast' or 'slow'" and rows["inner.mode"].default == '"fast"'
    assert rows["free"].valid == "not checked when the config is read"


def test_a_new_bound_reaches_the_row() -> None:
    """The rows are probed, not written: tightening a check changes what the page says."""
    @dataclass
    class Tighter(_Outer):
        def __post_init__(self) -> None:
            super().__post_init__()
            require_int(self.free, "free", minimum=0)

    assert {r.key: r.valid for r in config_rows(Tighter)}["free"] == "must be an integer >= 0"


def test_the_page_holds_every_config_family_and_the_real_bounds() -> None:
    page = config_page()
    for title in ("RqvaeConfig", "RankFitConfig", "SynthConfig", "ExperimentConfig", "`kind: spm`", "`kind: hybrid`"):
        assert title in page
    # bounds from four rooms' checks, in their own words
    assert "| `model.levels` | `int` | `8` | model.levels must be >= 1 | L: codes per item |" in page
    assert "| `ranker.depth_multiplier` | `float` | `1.0` | must be a finite number > 0; must be >= 1 |" in page
    assert "target_ctr must be within (0, 1)" in page
    assert "| `report_bootstraps` | `int` | `500` | must be an integer >= 100 |" in page
