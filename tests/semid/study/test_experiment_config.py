"""Experiment configs: relative corpus paths resolve against a documented base (not the working
directory), a missing corpus is refused before anything is written, bad values name the --set."""
from __future__ import annotations

from pathlib import Path

import pytest

from semid.cli import main
from semid.core.config import CONF_DIR
from semid.core.errors import SemidError
from semid.study.experiment import load_experiment_config


def test_relative_corpus_paths_resolve_against_the_documented_base(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)  # a working directory that has nothing to do with the project
    shipped = load_experiment_config("movielens")
    assert shipped.corpus.path == str(CONF_DIR.parent / "corpora" / "ml-100k")
    own = tmp_path / "studies" / "mine.yaml"
    own.parent.mkdir()
    own.write_text("name: mine\ncorpus: {synth: null, path: data/c}\nrepresentations: [hash_8k]\n")
    assert load_experiment_config(str(own)).corpus.path == str(own.parent / "data" / "c")


def test_a_missing_corpus_is_refused_and_leaves_no_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "exp"
    rc = main(["experiment", "--preset", "movielens", "--out", str(out), "--set", f"corpus.path={tmp_path / 'none'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "field 'corpus.path': no corpus there" in err[0]
    assert not out.exists()


def test_bad_values_are_blamed_on_the_set_and_seeds_parse(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SemidError, match=r"^--set report_bootstraps=5: "):
        load_experiment_config("tiny", ["report_bootstraps=5"])
    assert main(["experiment", "--preset", "tiny", "--seeds", "0,x"]) == 2
    assert "--seeds 0,x: expected a comma list of integers" in capsys.readouterr().err
    assert load_experiment_config("tiny", ["seeds=[0, 1, 2]"]).seeds == [0, 1, 2]
