"""The examples run as a user runs them (issue 30 item 3), from a folder that also holds a user's own
``embeddings.py`` and ``datamodules/`` package (item 6): semid imports everything under ``semid``, so neither
shadows it. SEMID_EXAMPLES_QUICK=1 halves the toy log."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHADOW = "raise ImportError('the user\\'s own {name} was imported instead of semid\\'s')\n"


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("user_project")
    for f in EXAMPLES.glob("*.py"):
        shutil.copy(f, d / f.name)
    (d / "embeddings.py").write_text(SHADOW.format(name="embeddings.py"))
    (d / "rankers.py").write_text(SHADOW.format(name="rankers.py"))
    (d / "datamodules").mkdir()
    (d / "datamodules" / "__init__.py").write_text(SHADOW.format(name="datamodules/"))
    return d


def _run(folder: Path, script: str) -> str:
    env = {**os.environ, "SEMID_EXAMPLES_QUICK": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, script], cwd=folder, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


def test_the_shadows_would_break_a_top_level_import(user_folder: Path) -> None:
    """The fixture can fail: importing the user's `embeddings` from there raises."""
    out = subprocess.run([sys.executable, "-c", "import embeddings"], cwd=user_folder, capture_output=True, text=True)
    assert out.returncode != 0 and "instead of semid's" in out.stderr


@pytest.mark.slow
def test_dlrm_example_trains_torchrec_dlrm_hashed_and_with_semantic_ids(user_folder: Path) -> None:
    out = _run(user_folder, "dlrm_semantic_ids.py")
    rows = re.findall(r"(hash 4K rows|SPM-SID 1K rows): held-out day AUC ([\d.]+), new items ([\d.]+) \((\d+) new-item",
                      out)
    assert [r[0] for r in rows] == ["hash 4K rows", "SPM-SID 1K rows"], out
    for _, overall, new, _ in rows:
        assert 0.55 < float(overall) < 1 and 0 < float(new) < 1, out
    assert int(rows[0][3]) == 0 and int(rows[1][3]) > 0, out  # hashing needs no content; new items' SIDs come from it


@pytest.mark.slow
def test_lightning_example_trains_a_user_lightning_module(user_folder: Path) -> None:
    out = _run(user_folder, "lightning_ranker.py")
    m = re.search(r"held-out day AUC ([\d.]+); lookups encoded from content: (\d+), fallbacks: (\d+)", out)
    assert m and float(m.group(1)) > 0.55 and int(m.group(2)) > 0 and int(m.group(3)) == 0, out


@pytest.mark.slow
def test_serving_example_scores_a_new_item_from_its_content(user_folder: Path) -> None:
    out = _run(user_folder, "serve_new_item.py")
    sids = re.findall(r"item (\d+): SID \[([\d, ]+)\], pieces \{'spm': \[\[([\d, ]+)\]\]\}", out)
    probs = re.findall(r"click probability ([\d.]+)", out)
    assert len(sids) == 2 and sids[0] == sids[1] and len(probs) == 2, out  # same item, same SID and pieces
    assert all(0 < float(p) < 1 for p in probs), out
