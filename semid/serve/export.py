"""``semid export RUN --out MODEL_DIR [--int8]``: a trained run as one self-contained artifact (``artifact.py``).

Readable top to bottom: the run's record -> its token cache and SIDs -> the frozen encoder -> the checkpoint's
weights as full tensors -> (int8) -> the parts, written into a temporary directory that is renamed into place.

The sharded checkpoint (a ``torch.distributed.checkpoint`` directory that every rank wrote its shards into) is
read with ``dcp.load(..., no_dist=True)`` into full-size plain tensors allocated from its metadata: DCP gathers
every shard of a table into the one tensor, whatever the sharding plan or world size of the run.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from semid.core.artifacts import atomic_path
from semid.core.errors import FingerprintMismatch, SemidError
from semid.core.ids import locate
from semid.serve.artifact import (PART_FILES, RANKER_FORMAT, CONTEXT_FEATURES, FeatureSchema, KnownItems, RankerPayload,
                                  build_model, load_artifact, schema_dict, seal_manifest, table_dicts)
from semid.serve.quant import FP32, INT8, quantize

if TYPE_CHECKING:
    from semid.rqvae import FrozenRqvae, SidTable

_LOOP_STATE = "lightning_state.pt"  # written next to the shards by semid.rankers.strategy.TorchRecStrategy


def export_run(run_dir: str | Path, out: str | Path, *, int8: bool = False, rqvae: str | Path | None = None,
               overwrite: bool = False) -> Path:
    """Write ``out``: the finished run ``run_dir`` as an artifact (``load_artifact`` reads it). ``rqvae``: the
    frozen RQ-VAE that made the run's SIDs (default: the ``rqvae.pt`` next to the run's SID table)."""
    from semid.datamodules import CONTEXT_DIM, Corpus
    from semid.embeddings import embedding_bag_configs
    from semid.rankers import prepare_tokens, rank_config_from_dict, read_results
    from semid.rqvae import read_sid_table

    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "results.json").exists():
        raise SemidError(f"{run_dir}: no results.json (train it first with `semid rank fit`)")
    prev = read_results(run_dir)
    if prev.get("metrics") is None:
        raise SemidError(f"{run_dir}: the run has not finished (rerun `semid rank fit` to complete it)")
    if prev.get("representation_kind") == "mch":
        # an item's row lives in the checkpoint's MCH buffers (sorted raw ids -> rows), which the exported
        # scorer does not map yet: refuse up front instead of failing on the table shapes later
        raise SemidError(f"{run_dir}: field 'representation.kind': managed-collision (mch) runs cannot be exported "
                         "yet (export a hash, SID or Dense Input run)")
    if out.exists() and not overwrite:
        raise SemidError(f"{out} already exists (pass --overwrite to replace it, or choose another --out)")
    cfg = rank_config_from_dict(prev["config"], where=str(run_dir / "results.json"))
    corpus = Corpus(prev["corpus"])
    if corpus.fingerprint != prev["corpus_fingerprint"]:
        raise FingerprintMismatch(f"{corpus.path} changed since the run was trained (fingerprint {corpus.fingerprint}, "
                                  f"run used {prev['corpus_fingerprint']})")
    sids_path = Path(prev["sids"]) if prev.get("sids") else None
    sids = read_sid_table(sids_path) if sids_path is not None else None
    if sids is not None and sids.fingerprint != prev["sids_fingerprint"]:
        raise FingerprintMismatch(f"{sids_path} changed since the run was trained (fingerprint {sids.fingerprint}, "
                                  f"run used {prev['sids_fingerprint']})")
    rep, cache = prepare_tokens(cfg, corpus, sids, sids_path, prev["train_days"], run_dir / "cache")
    if cache is not None and cache.fingerprint != prev["token_cache_fingerprint"]:
        raise FingerprintMismatch(f"{run_dir}: the token cache no longer matches the one the run was trained with")
    if int8 and cache is None:
        raise SemidError("--int8 quantizes embedding tables, and the Dense Input representation has none "
                         "(export it without --int8)")
    needs_sids = cache is not None and cache.tokenizer.needs_sids
    if needs_sids and getattr(sids, "collision_suffix", False):
        raise SemidError(f"{sids_path} has a collision-suffix level: a new item's suffix depends on the items that "
                         "already share its SID, which the exported encoder does not compute yet (export a run on "
                         "SIDs without the suffix)")
    encoder = _encoder(rqvae, sids_path, sids) if needs_sids else None

    state = read_ranker_state(run_dir / "checkpoints" / "last.ckpt", prev["fingerprint"])
    tables = embedding_bag_configs(cache, cfg.ranker.embedding_dim, cfg.roles) if cache is not None else None
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    payload: RankerPayload = {
        "format": RANKER_FORMAT, "version": 1, "ranker": dataclasses.asdict(cfg.ranker), "context_dim": CONTEXT_DIM,
        "content_dim": items.dim if cache is None else None, "tables": table_dicts(tables) if tables else [],
        "quantization": INT8 if int8 else FP32, "state_dict": state, "run_fingerprint": prev["fingerprint"],
        "token_cache_fingerprint": cache.fingerprint if cache is not None else None}
    model = build_model({**payload, "quantization": FP32}, tables, where=str(run_dir / "checkpoints" / "last.ckpt"))
    if int8:
        assert model.ebc is not None
        model.ebc = quantize(model.ebc)  # type: ignore[assignment]
    payload["state_dict"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    ids = cache.item_id if cache is not None else items.item_id
    pos, found = locate(items.item_id, ids)
    if not found.all():
        raise SemidError(f"{run_dir}: the token cache holds items that {corpus.path} does not have")
    known = KnownItems(ids.astype(np.int64), items.first_day[pos].astype(np.int32),
                       items.embedding[pos] if cache is None else None)
    schema = FeatureSchema(
        representation=rep.name, kind=rep.kind, representation_config=dataclasses.asdict(rep), roles=list(cfg.roles),
        tasks=["ctr", "engaged"], embedding_dim=cfg.ranker.embedding_dim, use_history=cfg.ranker.use_history,
        history_length=cfg.data.history_length, history_pooling=cfg.ranker.history_pooling, context_dim=CONTEXT_DIM,
        context_features=list(CONTEXT_FEATURES), default_day=int(prev["eval_day"]),
        needs_content=cache is None or needs_sids, content_dim=(encoder.input_dim if encoder is not None else
                                                                items.dim if cache is None else None),
        levels=cache.space.levels if cache is not None and cache.space is not None else None,
        quantization=payload["quantization"], run_fingerprint=prev["fingerprint"])
    metrics = prev["metrics"]["ctr"]
    body = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {"run": str(run_dir.resolve()), "run_fingerprint": prev["fingerprint"], "representation": rep.name,
                   "setting": prev["setting"], "train_days": prev["train_days"], "eval_day": prev["eval_day"],
                   "corpus_fingerprint": prev["corpus_fingerprint"], "sids_fingerprint": prev.get("sids_fingerprint"),
                   "ctr_auc": {s: metrics[s].get("auc") for s in ("overall", "new")}},
        "links": {"token_cache_fingerprint": payload["token_cache_fingerprint"], "items_fingerprint": known.fingerprint,
                  "rqvae_fingerprint": encoder.fingerprint if encoder is not None else None,
                  "sid_space_fingerprint": cache.space.fingerprint if cache is not None and cache.space else None},
        "quantization": payload["quantization"],
        "items": len(known.item_id),
        "tables": {t.name: [t.num_embeddings, t.embedding_dim] for t in tables or []},
    }
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        torch.save(payload, tmp / PART_FILES["ranker"])
        if cache is not None:
            cache.save(tmp / PART_FILES["tokens"])
        known.save(tmp / PART_FILES["items"])
        if encoder is not None:
            assert encoder.path is not None
            shutil.copyfile(encoder.path, tmp / PART_FILES["encoder"])
        (tmp / PART_FILES["schema"]).write_text(json.dumps(schema_dict(schema), indent=2, sort_keys=True) + "\n")
        seal_manifest(body, tmp)
        load_artifact(tmp)  # what a server will do: refuse now rather than there
    return out


def _encoder(rqvae: str | Path | None, sids_path: Path | None, sids: "SidTable | None") -> "FrozenRqvae":
    """The frozen RQ-VAE that made the run's SIDs: ``rqvae`` or the ``rqvae.pt`` next to the SID table."""
    from semid.rqvae import load_frozen

    assert sids is not None and sids_path is not None
    path = Path(rqvae) if rqvae is not None else sids_path.parent
    if rqvae is None and not (path / "rqvae.pt").exists():
        raise SemidError(f"{sids_path.parent} holds no rqvae.pt: pass --rqvae with the RQ-VAE (run directory or "
                         f"rqvae.pt) that made {sids_path}, so that new items get their SIDs from it")
    encoder = load_frozen(path)
    if encoder.fingerprint != sids.rqvae_fingerprint:
        raise FingerprintMismatch(f"{encoder.path}: RQ-VAE {encoder.fingerprint} did not make {sids_path} (made by "
                                  f"{sids.rqvae_fingerprint}); pass --rqvae with the model that did")
    return encoder


def read_ranker_state(ckpt: Path, run_fingerprint: str) -> dict[str, torch.Tensor]:
    """The ranker's weights (``MultitaskRanker.state_dict()`` keys) as full plain tensors, from the run's checkpoint:
    a DCP directory (sharded tables) or a Lightning file (Dense Input). Refuses another run's checkpoint."""
    if not ckpt.exists():
        raise SemidError(f"{ckpt} does not exist (the run has no checkpoint to export)")
    if ckpt.is_dir():
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        if not (ckpt / _LOOP_STATE).exists():
            raise SemidError(f"{ckpt} is not a semid sharded checkpoint (no {_LOOP_STATE})")
        loop = torch.load(ckpt / _LOOP_STATE, map_location="cpu", weights_only=False)
        _check_run(ckpt, loop.get("semid_run_fingerprint"), run_fingerprint)
        meta = FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
        # DCP flattens {"model": dmp.state_dict()} to "model.<key>"; the ranker's keys are "model.<param>" inside it
        full = {k[len("model."):]: torch.empty(v.size, dtype=v.properties.dtype) for k, v in meta.items()
                if k.startswith("model.model.") and isinstance(v, TensorStorageMetadata)}
        state = {"model": full}
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.filterwarnings("ignore", message=".*load in a single process", category=UserWarning)
            dcp.load(state, checkpoint_id=str(ckpt), no_dist=True)
        weights = state["model"]
    else:
        loaded = torch.load(ckpt, map_location="cpu", weights_only=False)
        _check_run(ckpt, loaded.get("semid_run_fingerprint"), run_fingerprint)
        weights = loaded["state_dict"]
    return {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}


def _check_run(ckpt: Path, found: str | None, expected: str) -> None:
    if found != expected:
        raise FingerprintMismatch(f"{ckpt} belongs to another run (fingerprint {found}, results.json {expected}); "
                                  "export the run whose checkpoint it is")
