"""Representation configs (``conf/embeddings/*.yaml``) -> tokenizers: the one place kinds are named.

Every file has a ``kind``; the other keys are that kind's config dataclass fields. ``name`` defaults to
the file name and names the table(s). ``kind: hybrid`` lists ``parts``, each a representation config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from semid.embeddings.hashing import HashConfig, HashTokenizer
from semid.embeddings.hybrid import HybridConfig, HybridTokenizer
from semid.embeddings.mch import MchConfig, MchTokenizer
from semid.embeddings.ngram import NgramConfig, NgramTokenizer, PrefixNgramConfig, PrefixNgramTokenizer
from semid.embeddings.random_sid import RandomSidConfig, RandomSidTokenizer
from semid.embeddings.spm import SpmConfig, SpmTokenizer
from semid.embeddings.tokenizer import Jagged, TableSpec, Tokenizer
from semid.core.config import from_dict, load_yaml, resolve_conf
from semid.core.errors import SemidError


@dataclass
class DenseConfig:
    """Dense Input: no table. The ranker projects the raw content embedding instead (see DenseTokenizer)."""

    kind: str = "dense"
    name: str = "dense"


class DenseTokenizer(Tokenizer):
    """No tables, no tokens: a dense cache only maps item ids to rows (aligned with ``cache.item_id``)."""

    needs_sids = False

    def __init__(self, cfg: DenseConfig) -> None:
        self.cfg = cfg

    def tables(self) -> list[TableSpec]:
        return []

    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        return []


RepresentationConfig = Union[HashConfig, NgramConfig, PrefixNgramConfig, SpmConfig, HybridConfig, DenseConfig,
                             RandomSidConfig, MchConfig]

# kind -> (config dataclass, tokenizer factory)
KINDS: dict[str, tuple[type, Callable[..., Tokenizer]]] = {
    "hash": (HashConfig, HashTokenizer),
    "ngram": (NgramConfig, NgramTokenizer),
    "prefix_ngram": (PrefixNgramConfig, PrefixNgramTokenizer),
    "spm": (SpmConfig, SpmTokenizer),
    "hybrid": (HybridConfig, None),  # type: ignore[dict-item]  # built from its parts below
    "dense": (DenseConfig, DenseTokenizer),
    "random_sid": (RandomSidConfig, None),  # type: ignore[dict-item]  # built around its base below
    "mch": (MchConfig, MchTokenizer),
}


def parse_representation(data: dict[str, Any], where: str, default_name: str | None = None) -> RepresentationConfig:
    """A config dataclass from a mapping (a YAML file's content or one hybrid part)."""
    if not isinstance(data, dict):
        raise SemidError(f"{where}: expected a mapping with a 'kind' key, got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise SemidError(f"{where}: field 'kind' is {kind!r}; valid kinds: {', '.join(KINDS)}")
    data = dict(data)
    if default_name and "name" not in data:
        data["name"] = default_name
    if kind == "hybrid":
        parts = data.pop("parts", None)
        if not isinstance(parts, list) or not parts:
            raise SemidError(f"{where}: field 'parts' must list the representations to combine")
        if any(isinstance(p, dict) and p.get("kind") in ("hybrid", "dense") for p in parts):
            raise SemidError(f"{where}: field 'parts' may not contain hybrid or dense representations")
        # TorchRec manages collisions for every table of a collection or none: an mch part would need a
        # second collection beside the other parts' tables
        if any(isinstance(p, dict) and p.get("kind") == "mch" for p in parts):
            raise SemidError(f"{where}: field 'parts' may not contain an mch representation (managed-collision "
                             "tables train on their own: use kind: mch alone)")
        data["parts"] = [parse_representation(p, f"{where}.parts[{i}]") for i, p in enumerate(parts)]
    if kind == "random_sid":
        base = data.pop("base", None)
        if isinstance(base, str):  # a preset name: its YAML, under this representation's name
            base_path = resolve_conf(base, "embeddings")
            base = load_yaml(base_path)
        if not isinstance(base, dict) or base.get("kind") not in ("ngram", "prefix_ngram", "spm"):
            raise SemidError(f"{where}: field 'base' must name an ngram, prefix_ngram or spm representation "
                             "(e.g. base: bigram)")
        data["base"] = parse_representation({**base, "name": data.get("name", "random_sid")}, f"{where}.base")
    return from_dict(KINDS[kind][0], data, where=where)


def load_representation_config(name_or_path: str | Path) -> RepresentationConfig:
    """A preset name from ``conf/embeddings/`` (e.g. ``spm_8k``) or a path to a YAML file."""
    path = resolve_conf(name_or_path, "embeddings")
    return parse_representation(load_yaml(path), str(path), default_name=path.stem)


def build_tokenizer(cfg: RepresentationConfig) -> Tokenizer:
    if isinstance(cfg, HybridConfig):
        return HybridTokenizer(cfg, [build_tokenizer(p) for p in cfg.parts])
    if isinstance(cfg, RandomSidConfig):
        assert cfg.base is not None
        return RandomSidTokenizer(cfg, build_tokenizer(cfg.base))
    return KINDS[cfg.kind][1](cfg)
