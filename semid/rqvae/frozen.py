"""The frozen quantizer export (``rqvae.pt``): weights + config + fingerprints in one small file.

The quantizer is the RQ-VAE (``Rqvae``) or residual k-means (``RqkmeansModel``), as the config's
``quantizer`` says; both encode and reconstruct through the same calls, so assignment, health and reports
do not care which. The file keeps its name for both kinds: it is the run directory's contract.

Encoding runs in float64: an item's SID then depends on its embedding only, not on which other items
share its batch (BLAS may block a float32 matmul differently per batch size and flip a near-tie).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch

from semid.core.artifacts import atomic_path
from semid.core.config import to_dict
from semid.core.errors import SemidError
from semid.core.records import JsonObject
from semid.rqvae.config import RqvaeConfig, config_from_dict, rqvae_fingerprint
from semid.rqvae.model import Rqvae
from semid.rqvae.rqkmeans import RqkmeansModel

EXPORT_FILE = "rqvae.pt"
_FORMAT = "semid.rqvae"
_VERSION = 2  # 2: the config names its quantizer (1 = RQ-VAE only; still read)


def build_model(cfg: RqvaeConfig) -> Rqvae | RqkmeansModel:
    """An untrained model of the kind and shape ``cfg`` names (``model.input_dim`` set)."""
    if cfg.quantizer == "rqkmeans":
        assert cfg.model.input_dim is not None
        return RqkmeansModel(cfg.model.levels, cfg.model.codebook_size, cfg.model.input_dim)
    return Rqvae(cfg.model)


@dataclass
class FrozenRqvae:
    """A frozen quantizer of either kind (the name is historical: RQ-VAE or residual k-means)."""

    model: Rqvae | RqkmeansModel  # float64, eval mode, no gradients
    config: RqvaeConfig
    fingerprint: str
    corpus_fingerprint: str
    dead_code_resets: list[int]
    path: Path | None = None

    @property
    def quantizer(self) -> str:
        return self.config.quantizer  # rqvae | rqkmeans

    @property
    def levels(self) -> int:
        return self.config.model.levels

    @property
    def codebook_size(self) -> int:
        return self.config.model.codebook_size

    @property
    def input_dim(self) -> int:
        assert self.config.model.input_dim is not None
        return self.config.model.input_dim

    def _check_dim(self, embedding: np.ndarray, where: str) -> None:
        if embedding.ndim != 2 or embedding.shape[1] != self.input_dim:
            raise SemidError(f"{where}: embeddings have shape {tuple(embedding.shape)} but the model "
                             f"{self.path or ''} expects dimension {self.input_dim} (use the model trained on "
                             "embeddings of this kind)")

    @torch.no_grad()
    def encode(self, embedding: np.ndarray, batch_size: int = 1024, where: str = "input") -> np.ndarray:
        """SIDs int32 [N, L] of embeddings [N, D]; the same for any ``batch_size``."""
        self._check_dim(embedding, where)
        out = np.empty((len(embedding), self.levels), dtype=np.int32)
        for s in range(0, len(embedding), max(1, batch_size)):
            x = torch.from_numpy(np.asarray(embedding[s:s + batch_size], dtype=np.float64))
            out[s:s + len(x)] = self.model.encode(x).numpy()
        return out

    @torch.no_grad()
    def reconstruct(self, codes: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """x̂ float32 [N, D] decoded from SIDs [N, L]."""
        out = np.empty((len(codes), self.input_dim), dtype=np.float32)
        for s in range(0, len(codes), max(1, batch_size)):
            c = torch.from_numpy(np.asarray(codes[s:s + batch_size], dtype=np.int64))
            out[s:s + len(c)] = self.model.reconstruct(c).numpy()
        return out



class FrozenExport(TypedDict):
    """What an export file holds (``torch.save``d; read back with ``weights_only=True``)."""

    format: str
    version: int
    state_dict: dict[str, torch.Tensor]
    config: JsonObject  # ``to_dict`` of the RqvaeConfig
    fingerprint: str
    corpus_fingerprint: str
    dead_code_resets: list[int]


def export_frozen(path: str | Path, model: Rqvae | RqkmeansModel, cfg: RqvaeConfig, corpus_fingerprint: str,
                  dead_code_resets: list[int]) -> Path:
    """Write the export atomically; the fingerprint is recomputed here so it always matches ``cfg``."""
    path = Path(path)
    payload: FrozenExport = {
        "format": _FORMAT, "version": _VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": to_dict(cfg),
        "fingerprint": rqvae_fingerprint(cfg, corpus_fingerprint),
        "corpus_fingerprint": corpus_fingerprint,
        "dead_code_resets": [int(n) for n in dead_code_resets],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def resolve_model_path(path: str | Path) -> Path:
    """A run directory (``<run>/rqvae.pt``) or the export file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / EXPORT_FILE
    if not p.exists():
        raise SemidError(f"quantizer model {p} does not exist (train one with `semid sids train`, then pass "
                         f"--model <run dir> or <run dir>/{EXPORT_FILE})")
    return p


def load_frozen(path: str | Path) -> FrozenRqvae:
    p = resolve_model_path(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        raise SemidError(f"{p}: not a readable quantizer export ({str(e).splitlines()[0][:120]}); "
                         "re-export it with `semid sids train`") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise SemidError(f"{p}: not a quantizer export written by `semid sids train`")
    if payload.get("version", 0) > _VERSION:
        raise SemidError(f"{p}: export version {payload['version']} is newer than this semid ({_VERSION}); "
                         "upgrade semid")
    cfg = config_from_dict(payload["config"], where=f"{p}: config")
    expected = rqvae_fingerprint(cfg, payload["corpus_fingerprint"])
    if payload["fingerprint"] != expected:
        raise SemidError(f"{p}: recorded fingerprint {payload['fingerprint']} does not match its config "
                         f"({expected}); the file was edited or damaged, re-export it")
    model = build_model(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise SemidError(f"{p}: weights do not fit its config ({str(e).splitlines()[0][:160]})") from None
    model = model.double().eval().requires_grad_(False)
    return FrozenRqvae(model, cfg, payload["fingerprint"], payload["corpus_fingerprint"],
                       list(payload["dead_code_resets"]), p)


def with_input_dim(cfg: RqvaeConfig, dim: int) -> RqvaeConfig:
    """The config with ``model.input_dim`` fixed to the corpus dimension (part of the fingerprint)."""
    if cfg.model.input_dim is not None and cfg.model.input_dim != dim:
        raise SemidError(f"config model.input_dim={cfg.model.input_dim} but the corpus embeddings have "
                         f"dimension {dim} (remove model.input_dim or set it to {dim})")
    return replace(cfg, model=replace(cfg.model, input_dim=dim))
