"""Artifacts record the code that made them: a room's source digest changes with any of its files, and a
finished fit made by other code is not up to date."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import semid.core.fingerprint as fp


def _tree(root: Path) -> None:
    for d in ("semid/core", "semid/rqvae", "semid/bench", "datamodules", "embeddings", "rankers"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "mod.py").write_text(f"# {d}\n")


def test_digest_follows_the_rooms_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path)
    folders = {r.name: r.folder for r in fp.LAYERS}
    monkeypatch.setattr(fp, "_room_dir", lambda room: tmp_path / folders[room])
    monkeypatch.setattr(fp, "_CODE", {})
    a = fp.code_fingerprint("datamodules")
    assert fp.code_fingerprint("datamodules") == a == fp.code_fingerprint("core", "datamodules")
    (tmp_path / "rankers" / "mod.py").write_text("# changed\n")  # another room: same digest
    monkeypatch.setattr(fp, "_CODE", {})
    assert fp.code_fingerprint("datamodules") == a
    (tmp_path / "semid/core/mod.py").write_text("# changed\n")  # core is in every stage's code
    monkeypatch.setattr(fp, "_CODE", {})
    b = fp.code_fingerprint("datamodules")
    assert b != a
    (tmp_path / "semid/bench/mod.py").write_text("# changed\n")  # the app room covers semid/ minus its rooms
    monkeypatch.setattr(fp, "_CODE", {})
    assert fp.code_fingerprint("datamodules") == b and fp.code_fingerprint("app") != fp.code_fingerprint()
    with pytest.raises(ValueError, match="unknown rooms"):
        fp.code_fingerprint("nope")


def test_a_fit_made_by_other_code_is_not_up_to_date(signal_corpus: Path, tmp_path: Path) -> None:
    from semid.rankers.config import load_rank_config
    from semid.rankers.fit import fit, is_up_to_date
    from semid.datamodules import Corpus
    from tests.rankers.conftest import FAST

    cfg = load_rank_config(representation="hash_8k", overrides=FAST)
    res = fit(cfg, signal_corpus, tmp_path / "r")
    assert res["code_fingerprint"] == fp.code_fingerprint("datamodules", "rqvae", "embeddings", "rankers")
    corpus_fp = Corpus(signal_corpus).fingerprint
    assert is_up_to_date(tmp_path / "r", cfg, corpus_fp, None)
    done = tmp_path / "r" / "results.json"
    done.write_text(json.dumps({**json.loads(done.read_text()), "code_fingerprint": "older-code"}))
    assert not is_up_to_date(tmp_path / "r", cfg, corpus_fp, None)
