"""The artifact refuses parts that do not belong together: an edited file, an edited manifest, and a part copied
in from another export even when the manifest was rewritten to match it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from semid.cli import main
from semid.core.errors import FingerprintMismatch
from semid.serve import load_artifact
from semid.serve.artifact import MANIFEST, seal_manifest

from .conftest import one_line_error, run


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _reseal(model_dir: Path) -> None:
    """What someone 'fixing' a manifest by hand would do: record the files as they now are."""
    m = json.loads((model_dir / MANIFEST).read_text())
    body = {k: v for k, v in m.items() if k not in ("format", "version", "parts", "fingerprint")}
    seal_manifest(body, model_dir)


def _score_rc(model: Path, tmp_path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"item_id": pa.array([0], pa.int64())}), tmp_path / "r.parquet")
    return main(["score", str(model), "--requests", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "s.parquet")])


def test_an_intact_export_loads_with_every_part_fingerprinted(study):  # noqa: ANN001
    a = load_artifact(study.spm)
    assert set(a.manifest["parts"]) == {"ranker", "tokens", "items", "encoder", "schema"}
    assert a.encoder is not None and a.encoder.fingerprint == a.manifest["links"]["rqvae_fingerprint"]
    assert set(load_artifact(study.hash).manifest["parts"]) == {"ranker", "tokens", "items", "schema"}  # no SIDs


def test_an_edited_part_is_refused_in_one_line(study, tmp_path, capsys):  # noqa: ANN001
    model = _copy(study.spm, tmp_path / "m")
    with open(model / "items.npz", "r+b") as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 1]))
    capsys.readouterr()
    one_line_error(capsys, _score_rc(model, tmp_path), "items.npz: content fingerprint")


def test_an_edited_manifest_is_refused(study, tmp_path):  # noqa: ANN001
    model = _copy(study.spm, tmp_path / "m")
    m = json.loads((model / MANIFEST).read_text())
    m["source"]["eval_day"] = 0
    (model / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(FingerprintMismatch, match="does not match its recorded fingerprint"):
        load_artifact(model)


@pytest.mark.parametrize("part, expected", [
    ("ranker.pt", "ranker.pt comes from run"),  # the hash run's ranker in the SPM export
    ("tokens.npz", "ranker.pt was trained on token cache"),  # the hash run's tokens
])
def test_a_part_from_another_export_is_refused_even_with_a_resealed_manifest(study, tmp_path, capsys, part,
                                                                             expected):  # noqa: ANN001
    model = _copy(study.spm, tmp_path / "m")
    shutil.copy(study.hash / part, model / part)
    capsys.readouterr()
    one_line_error(capsys, _score_rc(model, tmp_path), f"{part}: content fingerprint")  # the manifest check
    _reseal(model)
    msg = one_line_error(capsys, _score_rc(model, tmp_path), "its parts come from different exports")
    assert expected in msg


def test_another_rqvae_is_refused(study, tmp_path, capsys):  # noqa: ANN001
    other = tmp_path / "rq-other"
    run("sids", "train", "--corpus", study.corpus, "--config", "tiny", "--out", other, "--seed", "1")
    model = _copy(study.spm, tmp_path / "m")
    shutil.copy(other / "rqvae.pt", model / "rqvae.pt")
    _reseal(model)
    capsys.readouterr()
    one_line_error(capsys, _score_rc(model, tmp_path), "rqvae.pt is RQ-VAE")
    # and with the manifest's record of the encoder rewritten too, the SID space no longer matches the tokens
    m = json.loads((model / MANIFEST).read_text())
    m["links"]["rqvae_fingerprint"] = _fingerprint(model / "rqvae.pt")
    (model / MANIFEST).write_text(json.dumps(m))
    _reseal(model)
    one_line_error(capsys, _score_rc(model, tmp_path), "tokens.npz was built in")


def _fingerprint(path: Path) -> str:
    from semid.rqvae import load_frozen

    return load_frozen(path).fingerprint
