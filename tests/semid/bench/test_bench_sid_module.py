"""``semid bench sid-module`` end to end at a tiny size: both contenders train, agree on their bags (the bench
refuses otherwise), and the record holds the overhead. No timing assertion (the target lives in BENCHMARKS.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from semid.cli import main


def test_bench_sid_module_tiny(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "sid-module", "--items", "3000", "--representation", "bigram", "--batch", "64",
               "--history", "3", "--rounds", "2", "--iters", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "sid_module.json").read_text())
    assert set(res["ms"]) == {"cache", "module", "remap", "build_kjt"} and all(v > 0 for v in res["ms"].values())
    assert res["tables"] == [["bigram_0", 65536], ["bigram_1", 65536]]
    # 64 candidates and ~58 watch items (10% have none) + 192 history items, 2 bigram pieces each
    assert 2 * (64 + 50 + 192) <= res["pieces_per_batch"] <= 2 * (64 + 64 + 192)
    assert res["step_overhead"] > -1 and res["remap_share_of_step"] > 0 and res["meets_target"] == (res["step_overhead"] <= 0.10)
    assert "remap overhead on a training step" in (out / "sid_module.md").read_text()


@pytest.mark.parametrize("args, message", [(["--items", "0"], "--items must be >= 1"),
                                           (["--representation", "nope"], "nope"),
                                           (["--representation", "dense"], "has no SID pieces")])
def test_bench_sid_module_bad_input(args: list[str], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sid-module", *args, "--out", str(tmp_path / "b")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
