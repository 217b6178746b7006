"""A tiny study built with semid's own commands (corpus -> RQ-VAE -> SIDs -> ranker fits -> exports), once per
session, for the serving tests."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from semid.cli import main

# small, fast fits (what tests/rankers uses)
FIT = ["--set", "data.batch_size=256", "--set", "trainer.num_bootstraps=20", "--set", "trainer.loggers=[csv]",
       "--set", "ranker.hidden=[64,32]", "--set", "ranker.embedding_dim=16", "--set", "trainer.threads=1"]


def run(*argv: str | Path) -> None:
    rc = main([str(a) for a in argv])
    assert rc == 0, argv


@dataclass
class Study:
    root: Path
    corpus: Path
    rqvae: Path
    sids: Path
    spm_run: Path
    hash_run: Path
    spm: Path  # exports
    spm_int8: Path
    hash: Path

    def results(self, run_dir: Path) -> dict:
        return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("serve")
    corpus, rq = root / "corpus", root / "rq"
    sids = rq / "sids.parquet"  # next to rqvae.pt: `semid export` finds the encoder there by default
    run("data", "synth", "--preset", "tiny", "--out", corpus)
    run("sids", "train", "--corpus", corpus, "--config", "tiny", "--out", rq)
    run("sids", "assign", "--model", rq, "--corpus", corpus, "--out", sids)
    run("rank", "fit", "--representation", "spm_64", "--corpus", corpus, "--sids", sids, "--out", root / "spm-run", *FIT)
    run("rank", "fit", "--representation", "hash_8k", "--corpus", corpus, "--out", root / "hash-run", *FIT)
    run("export", root / "spm-run", "--out", root / "spm")
    run("export", root / "spm-run", "--out", root / "spm-int8", "--int8")
    run("export", root / "hash-run", "--out", root / "hash")
    return Study(root, corpus, rq, sids, root / "spm-run", root / "hash-run", root / "spm", root / "spm-int8",
                 root / "hash")


def one_line_error(capsys: pytest.CaptureFixture, rc: int, expected: str) -> str:
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("semid: error: ") and expected in lines[0], out.err
    assert "Traceback" not in out.err
    return lines[0]
