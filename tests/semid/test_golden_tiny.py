"""Golden AUCs of the tiny study: a changed library version or code path that moves a number fails CI.

``semid experiment --preset tiny`` runs once per session (the shared ``tiny_study`` fixture) and
every representation x setting's CTR AUC overall and CTR/1D ('new' items) in report.json's
``summary`` (``summary[setting][representation]["auc"][slice]["estimate"]``, the numbers the
report's tables show) is compared with tests/semid/golden/tiny_report_aucs.json.

Tolerance: 0.002 absolute AUC, because of what was measured (tiny preset, constraints.txt versions):
  - the same machine, run twice (CLI and in-process): every AUC bit-identical (max |diff| 0);
  - torch/oneDNN/MKL held to AVX2 kernels (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
    MKL_ENABLE_INSTRUCTIONS=AVX2) instead of this machine's AVX-512, i.e. another CPU with the same
    libraries: max |diff| 7.7e-7 (threads are fixed by the preset, so only kernel rounding differs).
So machines differ by rounding, ~1e-6; 0.002 leaves three orders of magnitude for that. What the test
must catch is larger: unpinned installs moved the README's numbers by 0.005-0.014 (issue 15: hash 8K
CTR/1D 0.4404 vs 0.4352, Dense Input CTR/1D 0.6163 vs 0.6303), and a tiny-study AUC's bootstrap CI
half-width is ~0.02; 0.002 is below any difference the report would call real.

Regenerate the golden file (after a deliberate change of code or of constraints.txt, on the
locked versions from `bash scripts/install.sh`), then commit it with the change that moved it:
    python -m tests.semid.test_golden_tiny --write                  # runs the tiny study (~2 min on 2 idle cores)
    python -m tests.semid.test_golden_tiny --write --report R.json  # from an existing report.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.semid.tiny_study import TinyStudy, run_tiny_study, tiny_study  # noqa: F401  (fixture, by name)

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden" / "tiny_report_aucs.json"
TOLERANCE = 0.002  # absolute AUC; see the module docstring for why
METRICS = ("overall", "new")  # report.json summary keys: CTR AUC overall, CTR/1D
# the libraries whose versions decide the numbers, recorded in the golden file so a failure can say
# whether the installed stack differs from the one that made it
_LIBS = ("torch", "torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu", "torchmetrics", "lightning", "numpy",
         "pyarrow", "sentencepiece")

AUCs = dict[str, dict[str, dict[str, float | None]]]  # setting -> representation -> metric -> AUC (None: undefined)


def report_aucs(report: dict) -> AUCs:
    """The AUCs the golden file pins, from a report.json's ``summary``."""
    return {setting: {rep: {m: row["auc"][m]["estimate"] for m in METRICS} for rep, row in sorted(reps.items())}
            for setting, reps in sorted(report["summary"].items())}


def library_versions() -> dict[str, str]:
    found = {}
    for name in _LIBS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # fbgemm-gpu-cpu on CPU installs, fbgemm-gpu on CUDA ones
    return found


def differences(got: AUCs, golden: AUCs, tolerance: float) -> list[str]:
    """One line per AUC that is missing, extra, or off by more than ``tolerance``."""
    out = []
    for setting in sorted(set(got) | set(golden)):
        g, w = got.get(setting, {}), golden.get(setting, {})
        for rep in sorted(set(g) | set(w)):
            if rep not in g or rep not in w:
                out.append(f"{setting}/{rep}: {'missing from the run' if rep in w else 'not in the golden file'}")
                continue
            for m in METRICS:
                a, b = g[rep][m], w[rep][m]
                if a is None or b is None:  # an AUC the report calls undefined (a slice with one class)
                    if a is not b:
                        out.append(f"{setting}/{rep}/{m}: {a} vs golden {b}")
                    continue
                d = a - b
                if not abs(d) <= tolerance:  # `not <=` so a NaN counts as off
                    out.append(f"{setting}/{rep}/{m}: {a:.4f} vs golden {b:.4f} (diff {d:+.4f}, tolerance {tolerance})")
    return out


def test_tiny_study_aucs_match_golden(tiny_study: TinyStudy) -> None:  # noqa: F811  (the imported fixture)
    assert tiny_study.rc == 0, tiny_study.printed
    got = report_aucs(json.loads((tiny_study.out / "report.json").read_text()))
    golden = json.loads(GOLDEN.read_text())
    off = differences(got, golden["aucs"], TOLERANCE)
    if off:
        now = library_versions()
        moved = [f"{k} {golden['versions'].get(k)} -> {v}" for k, v in now.items() if golden["versions"].get(k) != v]
        hint = (f"installed libraries differ from the golden run's: {', '.join(moved)}; install with "
                "`bash scripts/install.sh` (constraints.txt)" if moved else
                "same library versions as the golden run: the code changed the numbers; if intended, regenerate "
                "with `python -m tests.semid.test_golden_tiny --write` and commit the golden file")
        pytest.fail(f"{len(off)} tiny-study AUC(s) moved beyond {TOLERANCE}:\n  " + "\n  ".join(off) + f"\n{hint}")


def test_differences_flags_a_moved_missing_or_nan_auc() -> None:
    golden = {"s": {"a": {"overall": 0.7, "new": 0.6}, "b": {"overall": 0.7, "new": 0.6}}}
    assert differences(golden, golden, TOLERANCE) == []
    within = {"s": {"a": {"overall": 0.7 + TOLERANCE / 2, "new": 0.6}, "b": {"overall": 0.7, "new": 0.6}}}
    assert differences(within, golden, TOLERANCE) == []
    moved = {"s": {"a": {"overall": 0.7, "new": 0.6 + 2 * TOLERANCE}, "c": {"overall": 0.7, "new": float("nan")}}}
    off = differences(moved, golden, TOLERANCE)
    assert len(off) == 3
    assert off[0].startswith("s/a/new: 0.6040 vs golden 0.6000")
    assert "s/b: missing from the run" in off and "s/c: not in the golden file" in off
    undefined = {"s": {"a": {"overall": 0.7, "new": None}, "b": {"overall": 0.7, "new": 0.6}}}
    assert differences(undefined, undefined, TOLERANCE) == []
    assert differences(undefined, golden, TOLERANCE) == ["s/a/new: None vs golden 0.6"]


def write_golden(report: Path) -> None:
    data = {
        "generated_by": "python -m tests.semid.test_golden_tiny --write",
        "preset": "tiny",
        "versions": library_versions(),
        "aucs": report_aucs(json.loads(report.read_text())),
    }
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} from {report}")


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.semid.test_golden_tiny", description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", required=True, help="write the golden file")
    ap.add_argument("--report", type=Path, help="take the AUCs from this report.json instead of running the study")
    args = ap.parse_args(argv)
    if args.report is not None:
        write_golden(args.report)
        return 0
    os.environ.setdefault("WANDB_MODE", "offline")  # as tests/conftest.py does for the suite
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory() as tmp:
        study = run_tiny_study(Path(tmp) / "exp")
        if study.rc != 0:
            print(study.printed, file=sys.stderr)
            return study.rc
        write_golden(study.out / "report.json")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
