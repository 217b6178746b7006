"""The frozen quantizer (``Quantizer``) and its export (``rqvae.pt``): weights + config + fingerprints in one
small file.

A ``Quantizer`` comes from ``semid.rqvae.fit_quantizer`` (arrays in memory), from ``semid sids train`` (a
corpus), or from ``Quantizer.load``; it encodes embeddings into SIDs, assigns a ``SidTable`` and saves itself::

    >>> import numpy as np, tempfile, os
    >>> from semid.rqvae import Quantizer, RqvaeConfig, fit_quantizer
    >>> emb = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    >>> q = fit_quantizer(emb, RqvaeConfig(quantizer="rqkmeans", levels=2, codebook_size=8, fit_items=2000,
    ...                                    holdout_items=0))
    >>> codes = q.encode(emb)  # int32 [500, 2]
    >>> path = q.save(os.path.join(tempfile.mkdtemp(), "rqvae.pt"))
    >>> bool((Quantizer.load(path).encode(emb) == codes).all())
    True
    >>> q.assign(np.arange(500), emb).levels
    2

The quantizer is the RQ-VAE (``Rqvae``) or residual k-means (``RqkmeansModel``), as the config's
``quantizer`` says; both encode and reconstruct through the same calls, so assignment, health and reports
do not care which. The file keeps its name for both kinds: it is the run directory's contract.

Encoding runs in float64: an item's SID then depends on its embedding only, not on which other items
share its batch (BLAS may block a float32 matmul differently per batch size and flip a near-tie).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict, overload

import numpy as np
import torch

from semid.core.artifacts import atomic_path
from semid.core.config import to_dict
from semid.core.errors import SemidError
from semid.core.fingerprint import code_record
from semid.core.records import JsonObject
from semid.rqvae.assign_arrays import assign_table
from semid.rqvae.inputs import as_item_ids
from semid.rqvae.config import RqvaeConfig, config_from_dict, rqvae_fingerprint
from semid.rqvae.model import Rqvae
from semid.rqvae.rqkmeans import RqkmeansModel
from semid.rqvae.sid_table import SidTable

# the code a quantizer depends on (semid.core is always included): recorded in the export and health.json; not
# part of the model fingerprint, which load recomputes from the config (an upgrade must not make exports unloadable)
STAGE1_ROOMS = ("datamodules", "rqvae")

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
class Quantizer:
    """A frozen quantizer of either kind (RQ-VAE or residual k-means): ``encode`` embeddings into SIDs,
    ``assign`` a ``SidTable``, ``save`` / ``load`` the export.

    >>> import tempfile, numpy as np, semid
    >>> emb = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    >>> q = semid.fit_quantizer(emb, semid.RqvaeConfig(quantizer="rqkmeans", levels=2, codebook_size=4,
    ...                                                  holdout_items=0))
    >>> path = q.save(tempfile.mkdtemp() + "/q.pt")
    >>> bool((semid.Quantizer.load(path).encode(emb) == q.encode(emb)).all()), q.assign(np.arange(256), emb).levels
    (True, 2)


    Fingerprints: ``fingerprint`` names the model (its kind, the config that decides it, the data and the seed;
    ``semid.rqvae.config.rqvae_fingerprint``), ``corpus_fingerprint`` the data it was trained on (a corpus's, or
    a hash of the arrays given to ``fit_quantizer``) and ``code`` the semid code that trained it."""

    model: Rqvae | RqkmeansModel  # float64, eval mode, no gradients
    config: RqvaeConfig
    fingerprint: str
    corpus_fingerprint: str
    dead_code_resets: list[int]
    path: Path | None = None
    code: dict[str, str] | None = None  # semid version and code fingerprint (None: an export older than the record)

    @classmethod
    def load(cls, path: str | Path) -> "Quantizer":
        """The quantizer saved at ``path`` (an export file, or a run directory holding ``rqvae.pt``)."""
        return load_frozen(path)

    @classmethod
    def from_trained(cls, model: Rqvae | RqkmeansModel, cfg: RqvaeConfig, data_fingerprint: str,
                     dead_code_resets: list[int]) -> "Quantizer":
        """Freeze a trained model as ``save`` then ``load`` would: a fresh model of ``cfg``'s kind gets the
        (float32) weights, then runs in float64; non-finite weights are refused."""
        frozen = build_model(cfg)
        frozen.load_state_dict({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        _check_finite(frozen.state_dict(), "the trained model")
        frozen = frozen.double().eval().requires_grad_(False)
        return cls(frozen, cfg, rqvae_fingerprint(cfg, data_fingerprint), data_fingerprint,
                   [int(n) for n in dead_code_resets], None, code_record(*STAGE1_ROOMS))

    def save(self, path: str | Path) -> Path:
        """Write the export (``rqvae.pt`` format, atomically) to ``path``, a file or a directory (then
        ``<path>/rqvae.pt``); returns the file. ``Quantizer.load`` reads it back with equal codes."""
        p = Path(path)
        p = p / EXPORT_FILE if p.is_dir() else p
        # the weights were trained in float32; float64 is only how encoding runs (exact both ways)
        export_frozen(p, self.model, self.config, self.corpus_fingerprint, self.dead_code_resets, dtype=torch.float32)
        return p

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

    @property
    def data_fingerprint(self) -> str:
        """What the quantizer was trained on (the field's historical name is ``corpus_fingerprint``)."""
        return self.corpus_fingerprint

    def _check_dim(self, embedding: np.ndarray, where: str) -> None:
        if embedding.ndim != 2 or embedding.shape[1] != self.input_dim:
            raise SemidError(f"{where}: embeddings have shape {tuple(embedding.shape)} but the model "
                             f"{self.path or ''} expects dimension {self.input_dim} (use the model trained on "
                             "embeddings of this kind)")

    @overload
    def encode(self, embedding: np.ndarray, batch_size: int = ..., where: str = ...) -> np.ndarray: ...

    @overload
    def encode(self, embedding: torch.Tensor, batch_size: int = ..., where: str = ...) -> torch.Tensor: ...

    @torch.no_grad()
    def encode(self, embedding: np.ndarray | torch.Tensor, batch_size: int = 1024,
               where: str = "input") -> np.ndarray | torch.Tensor:
        """SIDs [N, L] of embeddings [N, D]: int32 numpy for an array, int64 on the input's device for a
        tensor; the same for any ``batch_size``."""
        if isinstance(embedding, torch.Tensor):
            codes = self.encode(embedding.detach().cpu().numpy(), batch_size, where)
            return torch.from_numpy(codes).long().to(embedding.device)
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

    def assign(self, item_ids: np.ndarray | torch.Tensor, embeddings: np.ndarray | torch.Tensor, *,
               collision_suffix: bool = False, batch_size: int = 1024) -> SidTable:
        """The ``SidTable`` of items ``item_ids`` [N] with ``embeddings`` [N, D] (any order; the table is by
        id), by the rule of ``semid sids assign``: ``collision_suffix`` adds the level that numbers the items
        sharing a SID. The table's ``corpus_fingerprint`` hashes the ids and embeddings given."""
        return assign_table(self, as_item_ids(item_ids, "item_ids"), embeddings, collision_suffix=collision_suffix,
                            batch_size=batch_size)


# the historical name (it held RQ-VAEs only at first); other rooms and old scripts use it
FrozenRqvae = Quantizer


class FrozenExport(TypedDict):
    """What an export file holds (``torch.save``d; read back with ``weights_only=True``)."""

    format: str
    version: int
    state_dict: dict[str, torch.Tensor]
    config: JsonObject  # ``to_dict`` of the RqvaeConfig
    fingerprint: str
    corpus_fingerprint: str
    dead_code_resets: list[int]
    code: dict[str, str]  # code_record(*STAGE1_ROOMS) of the code that wrote it


def export_frozen(path: str | Path, model: Rqvae | RqkmeansModel, cfg: RqvaeConfig, corpus_fingerprint: str,
                  dead_code_resets: list[int], *, dtype: torch.dtype | None = None) -> Path:
    """Write the export atomically; the fingerprint is recomputed here so it always matches ``cfg``. ``dtype``:
    the floating-point weights are written in it (None: as they are)."""
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    payload: FrozenExport = {
        "format": _FORMAT, "version": _VERSION,
        "state_dict": state,
        "config": to_dict(cfg),
        "fingerprint": rqvae_fingerprint(cfg, corpus_fingerprint),
        "corpus_fingerprint": corpus_fingerprint,
        "dead_code_resets": [int(n) for n in dead_code_resets],
        "code": code_record(*STAGE1_ROOMS),
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


def load_frozen(path: str | Path) -> Quantizer:
    """The quantizer exported at ``path`` (``Quantizer.load``); a damaged, truncated or foreign file, or one
    whose weights are not finite, is a one-line ``SemidError`` naming it."""
    p = resolve_model_path(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        raise SemidError(f"{p}: not a readable quantizer export, truncated or damaged "
                         f"({str(e).splitlines()[0][:120]}); train it again with `semid sids train --overwrite`, "
                         "or restore the file") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise SemidError(f"{p}: not a quantizer export written by `semid sids train`")
    missing = [k for k in ("config", "fingerprint", "corpus_fingerprint", "state_dict", "dead_code_resets")
               if k not in payload]
    if missing:
        raise SemidError(f"{p}: quantizer export lacks {', '.join(missing)} (damaged); train it again with "
                         "`semid sids train --overwrite`")
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
    except (RuntimeError, TypeError, AttributeError) as e:
        raise SemidError(f"{p}: weights do not fit its config ({str(e).splitlines()[0][:160]})") from None
    _check_finite(payload["state_dict"], str(p))
    model = model.double().eval().requires_grad_(False)
    return Quantizer(model, cfg, payload["fingerprint"], payload["corpus_fingerprint"],
                     list(payload["dead_code_resets"]), p, payload.get("code"))


def _check_finite(state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse NaN/inf weights: such a model gives every item the same SID (a diverged training run)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise SemidError(f"{where}: weights are not finite (NaN or inf in {', '.join(bad[:3])}): its training "
                         "diverged; train again on normalised embeddings or with a lower train.lr")


def with_input_dim(cfg: RqvaeConfig, dim: int) -> RqvaeConfig:
    """The config with ``model.input_dim`` fixed to the corpus dimension (part of the fingerprint)."""
    if cfg.model.input_dim is not None and cfg.model.input_dim != dim:
        raise SemidError(f"config model.input_dim={cfg.model.input_dim} but the corpus embeddings have "
                         f"dimension {dim} (remove model.input_dim or set it to {dim})")
    return replace(cfg, model=replace(cfg.model, input_dim=dim))
