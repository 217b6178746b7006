"""The tiny study (`semid experiment --preset tiny`), run once per test session and shared.

It is the slowest thing in the suite (~2 minutes on 2 idle cores), and both the end-to-end test
(tests/semid/test_experiment.py) and the golden-AUC test (tests/semid/test_golden_tiny.py) need a
full run, so they share one: each test module imports the ``tiny_study`` fixture by name.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from semid.cli import main


@dataclass(frozen=True)
class TinyStudy:
    out: Path  # the experiment's --out: report.json, report.md, figures/, runs/
    rc: int  # main()'s exit status
    printed: str  # what the run printed to stdout


def run_tiny_study(out: Path) -> TinyStudy:
    """Run `semid experiment --preset tiny --out <out>` in-process, capturing stdout.

    Ranker fits run as subprocesses whose output goes to their own logs; what the parent prints
    (stage lines, each fit's AUCs, `report: <path>`) goes through ``sys.stdout`` and is captured here.
    A session fixture cannot use ``capsys`` (function-scoped), hence ``redirect_stdout``.
    """
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["experiment", "--preset", "tiny", "--out", str(out)])
    return TinyStudy(out=out, rc=rc, printed=buf.getvalue())


_RUN = pytest.StashKey[TinyStudy]()


@pytest.fixture(scope="session")
def tiny_study(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyStudy:
    # pytest makes one fixture definition per module that imports this function, each with its own
    # session cache; the run is kept on the session's config so that both modules get the same one
    stash = request.config.stash
    if _RUN not in stash:
        stash[_RUN] = run_tiny_study(tmp_path_factory.mktemp("tiny_study") / "exp")
    return stash[_RUN]
