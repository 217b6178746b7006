"""``semid bench import`` end to end at a tiny size: it generates the logs, imports each in a child process and
records rows/s and peak RSS. No timing or memory assertion (the figures live in BENCHMARKS.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from semid.cli import main


def test_bench_import_tiny(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "import", "--rows", "3k,6k", "--rows-per-day", "1500", "--items", "200", "--users", "300",
               "--out", str(out)])
    res = json.loads((out / "import.json").read_text())
    assert rc == 0, [r.get("tail") for r in res["runs"]]  # a failed import's last lines
    assert [(r["rows"], r["days"], r["rc"]) for r in res["runs"]] == [(3000, 2, 0), (6000, 4, 0)]
    for r in res["runs"]:
        assert r["n_impressions"] == r["rows"] and r["rows_per_s"] > 0
        assert r["peak_rss_mib"] > res["cli_baseline_rss_mib"] > 0
        assert r["command"].startswith("semid data import ") and "--label rating>=4" in r["command"]
    assert "| 6,000 | 4 |" in (out / "import.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["import.json", "import.md"]  # the logs are deleted


@pytest.mark.parametrize("args, message", [(["--rows-per-day", "0"], "--rows-per-day must be >= 1"),
                                           (["--items", "0"], "--items must be >= 1"),
                                           (["--max-rss-gb", "0"], "--max-rss-gb must be > 0")])
def test_bench_import_bad_input(args: list[str], message: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "import", *args, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_bench_import_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import doctest

    import semid.bench.import_bench as import_bench

    monkeypatch.setenv("SEMID_PROGRESS", "0")
    result = doctest.testmod(import_bench, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
