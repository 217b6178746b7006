"""The exported model directory: one self-contained, fingerprinted artifact that scores without the corpus.

``MODEL_DIR`` (written by ``semid export``, read by ``load_artifact``):

| file | part | holds |
| --- | --- | --- |
| ``manifest.json`` | | format, the source run, each part's file and content fingerprint, the artifact fingerprint |
| ``ranker.pt`` | ranker | ranker config, table configs, dense weights and tables as plain tensors (fp32, or int8 row-wise) |
| ``tokens.npz`` | tokens | the run's token cache: every known item's tokens and the fitted tokenizer (SPM model, n-gram layout, hash seed) |
| ``items.npz`` | items | known item ids, their first day (the candidate-age context feature), Dense Input: their content embeddings |
| ``rqvae.pt`` | encoder | the frozen Stage-1 RQ-VAE (SID representations): a new item's SID comes from it |
| ``schema.json`` | schema | the feature schema: roles, history cap and pooling, context features, default day, content dimension |

``load_artifact`` refuses an artifact whose parts do not belong together, in two steps: every file's content
fingerprint must equal the manifest's (and the manifest its own recorded fingerprint), and the parts must chain:
the ranker records the token cache and tables it was trained on, the token cache the SID space, which the encoder
must produce, the items the cache's ids, the schema the run. A part copied in from another export fails the second
check even when someone rewrote the manifest to match the file.

Loading uses ``semid.rankers.model`` (the plain ``nn.Module``), ``embeddings`` and ``semid.rqvae``; no Lightning, no
corpus, no training code (tested: Lightning is never imported).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch

from semid.core.config import from_dict
from semid.core.errors import DataError, FingerprintMismatch, SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_file, fingerprint_of
from semid.core.records import JsonObject
from semid.serve.records import TableDict

if TYPE_CHECKING:
    from torchrec import EmbeddingBagConfig

    from semid.embeddings import TokenCache
    from semid.rankers import MultitaskRanker
    from semid.rqvae import FrozenRqvae

FORMAT = "semid.serve"
VERSION = 1
MANIFEST = "manifest.json"
PART_FILES = {"ranker": "ranker.pt", "tokens": "tokens.npz", "items": "items.npz", "encoder": "rqvae.pt",
              "schema": "schema.json"}
RANKER_FORMAT = "semid.serve.ranker"
# the context features, in the ranker's input order (semid.datamodules.ranking.RankingDataModule.make_batch)
CONTEXT_FEATURES = ["log1p(history items) / 4", "1 if no watch item else 0", "log1p(max(day - first_day, 0)) / 3"]


@dataclass(frozen=True)
class FeatureSchema:
    """How a request becomes the ranker's input (``schema.json``)."""

    representation: str  # the conf/embeddings name, e.g. spm_8k
    kind: str  # hash | ngram | prefix_ngram | spm | hybrid | dense
    representation_config: dict[str, Any]
    roles: list[str]  # candidate, watch (, history): each a bag over the shared tables
    tasks: list[str]  # output columns, in the ranker's order
    embedding_dim: int
    use_history: bool
    history_length: int  # the last this many history items count (training's cap)
    history_pooling: str  # mean | sum
    context_dim: int
    context_features: list[str]
    default_day: int  # a request without a day is scored as of this day (the run's evaluation day)
    needs_content: bool  # an item unknown to the artifact needs its content embedding (SIDs, Dense Input)
    content_dim: int | None  # that embedding's dimension
    levels: int | None  # L of the SIDs (SID representations)
    quantization: str  # fp32 | int8
    run_fingerprint: str


@dataclass
class KnownItems:
    """The items the artifact knows, aligned with the token cache (``items.npz``)."""

    item_id: np.ndarray  # int64 [N], sorted
    first_day: np.ndarray  # int32 [N]
    embedding: np.ndarray | None  # float32 [N, D] (Dense Input only)

    @property
    def fingerprint(self) -> str:
        arrays = [self.item_id, self.first_day] + ([self.embedding] if self.embedding is not None else [])
        return fingerprint_bytes(*arrays)

    def save(self, path: Path) -> None:
        arrays = {"item_id": self.item_id, "first_day": self.first_day}
        if self.embedding is not None:
            arrays["embedding"] = self.embedding
        with open(path, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
            np.savez(f, **arrays)

    @staticmethod
    def load(path: Path) -> "KnownItems":
        with np.load(path, allow_pickle=False) as z:
            return KnownItems(z["item_id"], z["first_day"], z["embedding"] if "embedding" in z.files else None)


@dataclass
class Artifact:
    path: Path
    manifest: JsonObject
    schema: FeatureSchema
    model: "MultitaskRanker"  # eval mode, no gradients, CPU
    cache: "TokenCache | None"  # None for Dense Input
    items: KnownItems
    encoder: "FrozenRqvae | None"  # SID representations only

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def name(self) -> str:
        return f"{self.schema.representation} ({self.schema.quantization})"


# -- manifest ------------------------------------------------------------------------------------------------


def manifest_fingerprint(manifest: JsonObject) -> str:
    return fingerprint_of({k: v for k, v in manifest.items() if k != "fingerprint"})


def seal_manifest(body: JsonObject, directory: Path) -> JsonObject:
    """``body`` plus each present part's file fingerprint and the artifact fingerprint, written to the manifest."""
    parts = {name: {"file": f, "fingerprint": fingerprint_file(directory / f), "bytes": (directory / f).stat().st_size}
             for name, f in PART_FILES.items() if (directory / f).exists()}
    manifest = {**body, "format": FORMAT, "version": VERSION, "parts": parts}
    manifest["fingerprint"] = manifest_fingerprint(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(model_dir: Path) -> JsonObject:
    path = model_dir / MANIFEST
    if not model_dir.is_dir():
        raise SemidError(f"{model_dir}: no such model directory (make one with `semid export RUN --out {model_dir}`)")
    if not path.exists():
        raise DataError(path, None, "file is missing (not a directory written by `semid export`)",
                        "export the run again with `semid export`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, None, f"not valid JSON ({e})", "export the run again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(path, "format", f"is {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                        f"not {FORMAT!r}", "export the run again with `semid export`")
    if int(manifest.get("version", 0)) > VERSION:
        raise DataError(path, "version", f"{manifest['version']} is newer than this semid ({VERSION})", "upgrade semid")
    if manifest.get("fingerprint") != manifest_fingerprint(manifest):
        raise FingerprintMismatch(f"{path}: its content does not match its recorded fingerprint "
                                  f"{manifest.get('fingerprint')} (edited or damaged; export the run again)")
    return manifest


def _verify_files(model_dir: Path, manifest: JsonObject) -> None:
    for name, part in manifest["parts"].items():
        path = model_dir / part["file"]
        if not path.exists():
            raise DataError(path, None, f"the artifact's {name} part is missing", "export the run again")
        found = fingerprint_file(path)
        if found != part["fingerprint"]:
            raise FingerprintMismatch(
                f"{path}: content fingerprint {found} does not match the manifest's {part['fingerprint']} (the file "
                "was edited, damaged or copied from another export; export the run again)")
    for name in ("ranker", "items", "schema"):
        if name not in manifest["parts"]:
            raise DataError(model_dir / MANIFEST, "parts", f"lists no {name} part", "export the run again")


def _link(model_dir: Path, ok: bool, what: str) -> None:
    if not ok:
        raise FingerprintMismatch(f"{model_dir}: its parts come from different exports: {what} (export the whole "
                                  "directory again with `semid export`; never mix files of two exports)")


# -- loading -------------------------------------------------------------------------------------------------


def load_artifact(model_dir: str | Path) -> Artifact:
    """Read and check an exported model directory (both fingerprint checks above), ready to score."""
    from semid.embeddings import TokenCache, embedding_bag_configs

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    _verify_files(model_dir, manifest)
    parts = manifest["parts"]
    schema = from_dict(FeatureSchema, json.loads((model_dir / PART_FILES["schema"]).read_text()),
                       where=str(model_dir / PART_FILES["schema"]))
    _link(model_dir, schema.run_fingerprint == manifest["source"]["run_fingerprint"],
          f"schema.json describes run {schema.run_fingerprint}, the manifest run {manifest['source']['run_fingerprint']}")
    items = KnownItems.load(model_dir / PART_FILES["items"])
    _link(model_dir, items.fingerprint == manifest["links"]["items_fingerprint"],
          f"items.npz holds items {items.fingerprint}, the export recorded {manifest['links']['items_fingerprint']}")
    payload = _read_ranker(model_dir / PART_FILES["ranker"])
    _link(model_dir, payload["run_fingerprint"] == schema.run_fingerprint,
          f"ranker.pt comes from run {payload['run_fingerprint']}, schema.json from run {schema.run_fingerprint}")
    _link(model_dir, payload["quantization"] == schema.quantization,
          f"ranker.pt is {payload['quantization']}, schema.json says {schema.quantization}")

    cache = None
    tables = None
    if schema.kind != "dense":
        if "tokens" not in parts:
            raise DataError(model_dir / MANIFEST, "parts", "lists no tokens part", "export the run again")
        cache = TokenCache.load(model_dir / PART_FILES["tokens"])
        _link(model_dir, payload["token_cache_fingerprint"] == cache.fingerprint,
              f"ranker.pt was trained on token cache {payload['token_cache_fingerprint']}, tokens.npz is "
              f"{cache.fingerprint}")
        _link(model_dir, np.array_equal(items.item_id, cache.item_id),
              "items.npz and tokens.npz hold different items")
        tables = embedding_bag_configs(cache, schema.embedding_dim, schema.roles)
        recorded = [(t["name"], t["num_embeddings"], t["embedding_dim"]) for t in payload["tables"]]
        _link(model_dir, recorded == [(t.name, t.num_embeddings, t.embedding_dim) for t in tables],
              f"ranker.pt has tables {recorded}, tokens.npz makes "
              f"{[(t.name, t.num_embeddings, t.embedding_dim) for t in tables]}")
    else:
        _link(model_dir, items.embedding is not None and items.embedding.shape[1] == payload["content_dim"],
              "the Dense Input ranker's content dimension does not match items.npz's embeddings")

    encoder = None
    if "encoder" in parts:
        from semid.rqvae import SidTable, load_frozen

        encoder = load_frozen(model_dir / PART_FILES["encoder"])
        _link(model_dir, encoder.fingerprint == manifest["links"]["rqvae_fingerprint"],
              f"rqvae.pt is RQ-VAE {encoder.fingerprint}, the export recorded {manifest['links']['rqvae_fingerprint']}")
        if cache is not None and cache.space is not None:
            empty = SidTable(np.zeros(0, np.int64), np.zeros((0, encoder.levels), np.int32), encoder.codebook_size,
                             encoder.fingerprint)
            _link(model_dir, empty.space_fingerprint == cache.space.fingerprint,
                  f"rqvae.pt makes SIDs in space {empty.space_fingerprint}, tokens.npz was built in "
                  f"{cache.space.fingerprint}")
    elif schema.needs_content and schema.kind != "dense":
        raise DataError(model_dir / MANIFEST, "parts", "lists no encoder part, but the representation is built from "
                        "SIDs", "export the run again (with --rqvae)")
    model = build_model(payload, tables, where=str(model_dir / PART_FILES["ranker"]))
    return Artifact(model_dir, manifest, schema, model, cache, items, encoder)



class RankerPayload(TypedDict):
    """``ranker.pt`` (``semid export``; read back with ``weights_only=True``)."""

    format: str
    version: int
    ranker: JsonObject  # the RankerConfig as a dict
    context_dim: int
    content_dim: int | None  # Dense Input only
    tables: list[TableDict]
    quantization: str  # fp32 | int8
    state_dict: dict[str, torch.Tensor]
    run_fingerprint: str
    token_cache_fingerprint: str | None


def _read_ranker(path: Path) -> RankerPayload:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        raise DataError(path, None, f"not a readable ranker export ({str(e).splitlines()[0][:120]})",
                        "export the run again") from None
    if not isinstance(payload, dict) or payload.get("format") != RANKER_FORMAT:
        raise DataError(path, "format", "not a ranker written by `semid export`", "export the run again")
    return payload


def build_model(payload: RankerPayload, tables: "list[EmbeddingBagConfig] | None", where: str) -> "MultitaskRanker":
    """The ranker of ``ranker.pt`` on the CPU, in eval mode: float tables (TorchRec ``EmbeddingBagCollection``) or
    int8 row-wise ones (``torchrec.quant.EmbeddingBagCollection``)."""
    from semid.rankers import MultitaskRanker, RankerConfig
    from semid.serve.quant import INT8, empty_int8

    cfg = from_dict(RankerConfig, payload["ranker"], where=f"{where}: ranker")
    # tables built on meta cost nothing: the exported tensors replace them (assign=True) or are copied into the
    # int8 kernel's buffers
    model = MultitaskRanker(cfg, tables=tables, content_dim=payload["content_dim"], context_dim=payload["context_dim"],
                            device="meta")
    state = payload["state_dict"]
    try:
        if payload["quantization"] == INT8:
            assert tables is not None
            model.ebc = empty_int8(tables)  # type: ignore[assignment]
            model.load_state_dict(state, strict=True)
        else:
            model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise DataError(where, "state_dict", f"weights do not fit the ranker config ({str(e).splitlines()[0][:160]})",
                        "export the run again") from None
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        raise DataError(where, "state_dict", "some weights are missing", "export the run again")
    return model.eval().requires_grad_(False)


def table_dicts(tables: "list[EmbeddingBagConfig]") -> list[TableDict]:
    """JSON-able table configs recorded in ``ranker.pt`` (checked against the token cache on load)."""
    return [{"name": t.name, "num_embeddings": t.num_embeddings, "embedding_dim": t.embedding_dim,
             "feature_names": list(t.feature_names)} for t in tables]


def schema_dict(schema: FeatureSchema) -> JsonObject:
    return dataclasses.asdict(schema)
