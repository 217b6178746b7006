"""The artifact chain corpus -> RQ-VAE -> SIDs -> token cache, broken on purpose, through the CLI: one line, exit 2."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semid.cli import main


def _assign(model, corpus: Path, out: Path) -> Path:  # noqa: ANN001
    assert main(["sids", "assign", "--model", str(model.out / "rqvae.pt"), "--corpus", str(corpus),
                 "--out", str(out)]) == 0
    return out


def _one_line_error(capsys: pytest.CaptureFixture, rc: int, expected: str) -> None:
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("semid: error: ") and expected in lines[0], out.err
    assert "Traceback" not in out.err


def test_sids_out_of_range_for_k_are_refused(tiny_model, tiny_corpus, tmp_path, capsys):
    path = _assign(tiny_model, tiny_corpus, tmp_path / "sids.parquet")
    t = pq.read_table(path)
    k = tiny_model.model.codebook_size
    codes = t["sid"].combine_chunks().flatten().to_numpy(zero_copy_only=False).copy()
    codes[7] = k  # one code beyond the codebook
    sid = pa.FixedSizeListArray.from_arrays(pa.array(codes, t.schema.field("sid").type.value_type),
                                           t.schema.field("sid").type.list_size)
    pq.write_table(t.set_column(t.column_names.index("sid"), "sid", sid), path)  # schema metadata kept
    capsys.readouterr()
    rc = main(["tokens", "build", "--representation", "bigram", "--corpus", str(tiny_corpus), "--sids", str(path),
               "--out", str(tmp_path / "bigram.npz")])
    _one_line_error(capsys, rc, f"sids.parquet: field 'sid': codes outside [0, {k})")
    assert not (tmp_path / "bigram.npz").exists()


def test_token_cache_or_spm_model_of_other_sids_is_refused(tiny_model, other_model, tiny_corpus, tmp_path, capsys):
    mine = _assign(tiny_model, tiny_corpus, tmp_path / "mine.parquet")
    other = _assign(other_model, tiny_corpus, tmp_path / "other.parquet")
    cache = tmp_path / "spm.npz"
    assert main(["tokens", "build", "--representation", "spm_64", "--corpus", str(tiny_corpus), "--sids", str(mine),
                 "--out", str(cache)]) == 0
    capsys.readouterr()
    rc = main(["tokens", "build", "--extend", str(cache), "--corpus", str(tiny_corpus),
               "--sids", str(other), "--out", str(tmp_path / "grown.npz")])
    _one_line_error(capsys, rc, "was built in SID space")
    assert not (tmp_path / "grown.npz").exists()


def test_sids_of_another_corpus_are_refused_by_the_ranker(tiny_model, tiny_corpus, tmp_path, capsys):
    from semid.datamodules.synth import generate, load_synth_config

    sids = _assign(tiny_model, tiny_corpus, tmp_path / "sids.parquet")
    other = generate(load_synth_config("tiny", ["n_days=3", "impressions_per_day=500", "dim=16", "seed=5"]),
                     tmp_path / "other")
    capsys.readouterr()
    rc = main(["rank", "fit", "--representation", "bigram", "--corpus", str(other), "--sids", str(sids),
               "--out", str(tmp_path / "run")])
    _one_line_error(capsys, rc, "SIDs were assigned on corpus")
    assert not (tmp_path / "run" / "results.json").exists()
