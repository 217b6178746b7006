"""The report's and the Stage-1 analysis's code fingerprint (``code_fingerprint(*ROOMS)``) covers the study and the
results as part of the "app" room: a change in semid/study or semid/results reruns them, a change in a lower
room's folder is counted once, under that room."""
from __future__ import annotations

from pathlib import Path

import semid.core.fingerprint as fp
from semid.core.layers import LAYERS


def test_the_app_room_holds_the_study_and_the_results_and_no_lower_room() -> None:
    top = fp._room_dir("app")
    app = {f.relative_to(top).as_posix() for f in fp._room_files("app")}
    for f in ("cli.py", "study/experiment.py", "study/regimes/run.py", "study/records.py", "results/report.py",
              "results/findings.py", "results/records.py"):
        assert f in app, f
    # semid/core and semid/rqvae live inside semid/ but are their own rooms: their files are theirs only
    assert not any(f.startswith(("core/", "rqvae/")) for f in app)
    lower = {r.name: {f.resolve() for f in fp._room_files(r.name)} for r in LAYERS if r.name != "app"}
    assert all(not ({(top / f).resolve() for f in app} & files) for files in lower.values())


def test_a_change_in_the_results_changes_the_reports_code_fingerprint(tmp_path: Path, monkeypatch) -> None:
    folders = {r.name: tmp_path / r.folder for r in LAYERS}
    for d in ("semid/core", "semid/rqvae", "semid/study", "semid/results", "datamodules", "embeddings", "rankers"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
        (tmp_path / d / "mod.py").write_text(f"# {d}\n")
    monkeypatch.setattr(fp, "_room_dir", lambda room: folders[room])
    monkeypatch.setattr(fp, "_CODE", {})
    before = fp.code_fingerprint(*fp.ROOMS)
    fit = fp.code_fingerprint("datamodules", "rqvae", "embeddings", "rankers")
    (tmp_path / "semid/results/mod.py").write_text("# changed\n")
    monkeypatch.setattr(fp, "_CODE", {})
    assert fp.code_fingerprint(*fp.ROOMS) != before  # the report reruns
    assert fp.code_fingerprint("datamodules", "rqvae", "embeddings", "rankers") == fit  # the fits do not
