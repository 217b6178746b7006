"""``SemanticIdCollection``: Semantic IDs in front of any TorchRec ``EmbeddingBagCollection``.

Modelled on TorchRec's ``ManagedCollisionCollection``: a plain ``nn.Module`` that takes a ``KeyedJaggedTensor``
of raw item ids (feature names of the user's choosing: candidate, context item, history, ...) and returns the
``KeyedJaggedTensor`` of the representation's pieces (row ids), for an ordinary ``EmbeddingBagCollection``
built from ``embedding_bag_configs(dim)``. Every representation goes through it: random hashing of item ids
(the baseline), unigram / any n-gram, prefix-n-gram, SPM, the random-SID control, hybrids.

State. The item -> pieces mapping is a CSR in registered buffers (``item_id`` [N] sorted, ``offsets`` [G, N+1]
into ``values`` [nnz], G = 1 table group with ``pooling="item"``, one per table with ``pooling="table"``), next
to the fitted tokenizer's bytes (``tokenizer_state``): ``state_dict``, ``torch.save`` and DCP carry it, and
``load_state_dict`` accepts a mapping of another size (the buffers are resized). It runs on CPU and CUDA
tensors alike (searchsorted, repeat_interleave), with one host sync per call (whether any id is unknown).

Pooling. ``"item"``: one output feature per input feature; the representation's tables are laid end to end in
one table (table t's rows start after tables 0..t-1), so an item's bag holds all its pieces and SUM pooling
gives the paper's item embedding (the sum of its pieces' embeddings) in one lookup call. ``"table"``: one
feature per (input feature, table), keys ``f"{feature}__{table}"`` as semid's ranker uses; the model sums them.

Unseen items. An id the mapping does not hold (a negative id is padding: an empty bag, as in the token cache)
gets its pieces, in order of preference:
1. hashing and random-SID: from its id (the tokenizer needs nothing else);
2. with its content embedding in ``forward(kjt, content={feature: [n_ids, D]})``: its SID from the frozen
   quantizer (``quantizer=``: a ``FrozenRqvae`` or any callable content [B, D] -> codes [B, L]), its pieces
   from the tokenizer, exactly as if it had been in the mapping;
3. otherwise one of ``fallback_rows`` reserved rows at the end of the first table, by a seeded hash of its id
   (``fallback_rows=0``: an ``UnknownItemError`` instead). Never an empty bag, so never a silent zero vector.
``stats()`` counts ids looked up, unseen, encoded from content and sent to the fallback rows (tensors, for
``LightningModule.log_dict``); the counters are non-persistent buffers, per process.

>>> import numpy as np, torch
>>> from torchrec import EmbeddingBagCollection, KeyedJaggedTensor
>>> from semid.embeddings import NgramConfig, SemanticIdCollection
>>> sid = SemanticIdCollection.from_sids(NgramConfig(n=2), item_ids=[10, 11], sids=[[0, 1, 2, 3], [0, 1, 3, 3]],
...                                      codebook_size=4, features=["candidate", "history"], fallback_rows=8)
>>> ebc = EmbeddingBagCollection(tables=sid.embedding_bag_configs(dim=8))
>>> kjt = KeyedJaggedTensor.from_lengths_sync(["candidate", "history"], torch.tensor([10, 11, 10, 99]),
...                                           torch.tensor([1, 1, 2, 0]))
>>> out = sid(kjt)
>>> out.keys(), out["candidate"].values().tolist(), out["history"].lengths().tolist()
(['candidate', 'history'], [1, 27, 1, 31], [3, 0])
>>> ebc(out)["candidate"].shape, sid.rows_of([10]), int(sid.stats()["fallback"])
(torch.Size([2, 8]), {'ngram': [[1, 27]]}, 1)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from semid.core.artifacts import atomic_path
from semid.core.errors import DataError, SemidError
from semid.datamodules import feature_key
from semid.embeddings._hash import hash_to_rows
from semid.embeddings.registry import RepresentationConfig
from semid.embeddings.sid_errors import (ContentDimError, DeviceMismatchError, IdDtypeError, SidSpaceError,
                                         UnknownFeatureError, UnknownItemError)
from semid.embeddings.sid_tokenizer import SidTokenizer, integer_ids
from semid.embeddings.tokenizer import Jagged
from semid.embeddings.token_cache import TokenCache, tokenize_in_chunks
from semid.rqvae import SidTable

POOLINGS = ("item", "table")
_FORMAT = "semid.sid_collection"
_VERSION = 1
_FALLBACK_SEED = 0x5EED  # the fallback rows' hash function, fixed: a saved module keeps its rows


@runtime_checkable
class EncodesContent(Protocol):
    """A frozen quantizer with ``encode(content [N, D] ndarray) -> codes [N, L]`` (``FrozenRqvae``)."""

    levels: int
    codebook_size: int

    def encode(self, embedding: np.ndarray) -> np.ndarray: ...


Quantizer = Union[EncodesContent, Callable[[Tensor], Tensor]]


class SemanticIdCollection(nn.Module):
    """Raw item-id ``KeyedJaggedTensor`` -> SID-piece ``KeyedJaggedTensor`` for one representation.

    Build with ``from_sids`` (arrays; fits the tokenizer), ``from_tokenizer`` (a fitted ``SidTokenizer``),
    ``from_token_cache`` (semid's token cache: identical bags) or ``load``. Arguments common to all:

    * ``features``: the input KJT keys it accepts (any names; every feature shares the representation's tables;
      for separate tables per role, use two modules with different ``prefix``es);
    * ``prefix``: put before every output feature and table name (two representations side by side);
    * ``pooling``: ``"item"`` (one feature per input feature, all pieces in one bag) or ``"table"``;
    * ``fallback_rows``: rows reserved for unseen items without content (0 refuses them);
    * ``quantizer``/``content_dim``: how unseen items' content becomes SIDs (module docstring).

    >>> import numpy as np
    >>> from semid.embeddings import HashConfig, SemanticIdCollection
    >>> m = SemanticIdCollection.from_sids(HashConfig(rows=100), item_ids=np.arange(5), features=["item"],
    ...                                    fallback_rows=0, pooling="table")
    >>> [(c.name, c.num_embeddings, c.feature_names) for c in m.embedding_bag_configs(16)]
    [('hash', 100, ['item__hash'])]
    """

    item_id: Tensor
    row_lookup: Tensor
    offsets: Tensor
    values: Tensor
    tokenizer_state: Tensor

    def __init__(self, tokenizer: SidTokenizer, item_ids: object, jagged: list[Jagged], *,
                 features: Sequence[str], prefix: str = "", pooling: str = "item", fallback_rows: int = 256,
                 quantizer: Quantizer | None = None, content_dim: int | None = None,
                 device: torch.device | str | None = None) -> None:
        """Low-level: ``jagged`` is one CSR per tokenizer table over ``item_ids`` (sorted, unique), as
        ``tokenizer.tokenize`` returns. Prefer the ``from_*`` constructors."""
        super().__init__()
        if pooling not in POOLINGS:
            raise SemidError(f"argument 'pooling' is {pooling!r}; choose one of {', '.join(POOLINGS)}")
        if isinstance(features, str) or not features or len(set(features)) != len(features) \
                or not all(isinstance(f, str) and f for f in features):
            raise SemidError(f"argument 'features' must list distinct non-empty KJT keys, e.g. ['candidate', "
                             f"'history'], got {features!r}")
        if not isinstance(fallback_rows, int) or fallback_rows < 0:
            raise SemidError(f"argument 'fallback_rows' must be an int >= 0, got {fallback_rows!r}")
        self.features = list(features)
        self.prefix = prefix
        self.pooling = pooling
        self.fallback_rows = fallback_rows
        self._bind(tokenizer)
        self.quantizer: Quantizer | None = None
        self.content_dim: int | None = None
        self.set_quantizer(quantizer, content_dim)
        ids = integer_ids(item_ids, "item_ids")
        if len(ids) and (np.diff(ids) <= 0).any():
            raise SemidError("argument 'item_ids' must be sorted ascending and unique (use from_sids)")
        offsets, values = self._layout(jagged, len(ids))
        dev = torch.device(device) if device is not None else None
        self.register_buffer("item_id", torch.from_numpy(ids).to(dev))
        self.register_buffer("offsets", torch.from_numpy(offsets).to(dev))
        self.register_buffer("values", torch.from_numpy(values).to(dev))
        self.register_buffer("tokenizer_state", torch.from_numpy(np.frombuffer(tokenizer.to_bytes(), np.uint8).copy()))
        self.register_buffer("row_lookup", self._row_lookup(ids).to(dev), persistent=False)
        for name in ("n_ids", "n_unseen", "n_content", "n_fallback"):
            self.register_buffer(name, torch.zeros((), dtype=torch.int64, device=dev), persistent=False)

    # --- constructors -----------------------------------------------------------------------------------

    @classmethod
    def from_sids(cls, representation: RepresentationConfig, item_ids: object, sids: SidTable | object | None = None,
                  codebook_size: int | None = None, impressions: object | None = None, *,
                  features: Sequence[str], **options: object) -> "SemanticIdCollection":
        """Fit ``representation`` (``SpmConfig(vocab_size=1024)``, ``HashConfig(rows=4096)``, ...) on items
        ``item_ids`` with SIDs ``sids`` [N, L] in [0, ``codebook_size``) and, for SPM, per-item ``impressions``;
        then map those items. ``options``: the class's keyword arguments (``prefix``, ``pooling``, ...).

        >>> import numpy as np
        >>> from semid.embeddings import SemanticIdCollection, SpmConfig
        >>> rng = np.random.default_rng(0)
        >>> m = SemanticIdCollection.from_sids(SpmConfig(vocab_size=64), np.arange(300), rng.integers(0, 8, (300, 3)),
        ...                                    8, impressions=rng.integers(1, 50, 300), features=["item"])
        >>> m.num_items, m.embedding_bag_configs(4)[0].num_embeddings <= 64 + 256
        (300, True)
        """
        q = options.get("quantizer")
        fp = getattr(q, "fingerprint", None) if q is not None and not isinstance(sids, SidTable) else None
        tok = SidTokenizer.fit(representation, item_ids, sids, codebook_size, impressions,
                               space_fingerprint=fp if isinstance(fp, str) else None)
        return cls.from_tokenizer(tok, item_ids, sids, features=features, **options)  # type: ignore[arg-type]

    @classmethod
    def from_tokenizer(cls, tokenizer: SidTokenizer, item_ids: object, sids: SidTable | object | None = None, *,
                       features: Sequence[str], **options: object) -> "SemanticIdCollection":
        """Map items ``item_ids`` (SIDs ``sids`` [N, L], not needed for hashing) with a fitted tokenizer.

        >>> from semid.embeddings import HashConfig, SemanticIdCollection, SidTokenizer
        >>> SemanticIdCollection.from_tokenizer(SidTokenizer.fit(HashConfig(rows=8)), [4, 2], features=["i"]).num_items
        2
        """
        ids = integer_ids(item_ids, "item_ids")
        order = np.argsort(ids, kind="stable")
        codes = None
        if tokenizer.needs_content:  # hashing and random SIDs map an item from its id alone
            if sids is None:
                raise SemidError(f"representation '{tokenizer.name}' ({tokenizer.kind}) tokenises SIDs: pass "
                                 "sids=[N, L] for the items")
            if isinstance(sids, SidTable):
                if (sids.levels, sids.codebook_size) != (tokenizer.levels, tokenizer.codebook_size):
                    raise SidSpaceError(f"argument 'sids' is a SID table of L={sids.levels}, K={sids.codebook_size} "
                                        f"but the tokenizer was fitted on L={tokenizer.levels}, "
                                        f"K={tokenizer.codebook_size} (use SIDs from the same quantizer)")
                codes = sids.lookup(ids[order])
            else:
                arr = np.asarray(sids.detach().cpu().numpy() if hasattr(sids, "detach") else sids)  # type: ignore[attr-defined]
                codes = tokenizer.check_sids(arr, "sids")
                if len(codes) != len(ids):
                    raise SidSpaceError(f"argument 'sids' has {len(codes)} rows for {len(ids)} item ids")
                codes = codes[order]
        ids = ids[order]
        if len(ids) and (np.diff(ids) == 0).any():
            raise SemidError(f"argument 'item_ids' must be unique, e.g. {int(ids[:-1][np.diff(ids) == 0][0])} "
                             "appears twice")
        jagged = tokenize_in_chunks(tokenizer.tokenizer, ids, codes)
        return cls(tokenizer, ids, jagged, features=features, **options)  # type: ignore[arg-type]

    @classmethod
    def from_token_cache(cls, cache: TokenCache, *, features: Sequence[str], **options: object) -> "SemanticIdCollection":
        """The items and pieces of semid's token cache, as they are (its bags, bit for bit).

        >>> import numpy as np
        >>> from semid.embeddings import HashConfig, SemanticIdCollection, build_token_cache
        >>> cache = build_token_cache(HashConfig(rows=16), None, np.arange(4), None)
        >>> SemanticIdCollection.from_token_cache(cache, features=["candidate"]).num_items
        4
        """
        if not cache.tables:
            raise SemidError(f"token cache '{cache.name}' ({cache.kind}) has no tables: feed the raw content "
                             "embedding to the model instead")
        return cls(SidTokenizer.of_cache(cache), cache.item_id, cache.jagged, features=features,
                   **options)  # type: ignore[arg-type]

    def set_quantizer(self, quantizer: Quantizer | None, content_dim: int | None = None) -> None:
        """Use ``quantizer`` for unseen items that come with content (a ``FrozenRqvae`` or a callable content
        [B, D] -> codes [B, L]); its L and K must be the tokenizer's. ``content_dim``: D, when the quantizer
        does not say (a ``FrozenRqvae`` does)."""
        if quantizer is not None:
            if self.tokenizer.needs_content:
                for attr, want in (("levels", self.tokenizer.levels), ("codebook_size", self.tokenizer.codebook_size)):
                    have = getattr(quantizer, attr, None)
                    if have is not None and have != want:
                        raise SidSpaceError(f"argument 'quantizer' has {attr}={have} but the tokenizer was fitted "
                                            f"on {attr}={want} (use the quantizer the SIDs came from)")
            if not (isinstance(quantizer, EncodesContent) or callable(quantizer)):
                raise SemidError("argument 'quantizer' must be a FrozenRqvae or a callable content -> codes")
            dim = getattr(quantizer, "input_dim", None)
            if isinstance(dim, int) and content_dim is not None and content_dim != dim:
                raise ContentDimError(f"argument 'content_dim' is {content_dim} but the quantizer takes "
                                      f"dimension {dim} (leave content_dim out)")
            content_dim = dim if isinstance(dim, int) else content_dim
        self.quantizer, self.content_dim = quantizer, content_dim

    # --- what it maps to ----------------------------------------------------------------------------------

    def _bind(self, tokenizer: SidTokenizer) -> None:
        """Derive the table layout from a tokenizer (at construction and after ``load_state_dict``)."""
        self.tokenizer = tokenizer
        tables = tokenizer.tables
        if not tables:
            raise SemidError(f"representation '{tokenizer.name}' ({tokenizer.kind}) has no tables")
        rows = [t.num_rows for t in tables]
        if self.pooling == "item":
            self._table_starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
            self.table_names = [self.prefix + tokenizer.name]
            self.table_rows = [int(sum(rows)) + self.fallback_rows]
            self._out = {f: [self.prefix + f] for f in self.features}
        else:
            self._table_starts = np.zeros(len(rows), np.int64)
            self.table_names = [self.prefix + t.name for t in tables]
            self.table_rows = [r + (self.fallback_rows if i == 0 else 0) for i, r in enumerate(rows)]
            self._out = {f: [feature_key(self.prefix + f, t.name) for t in tables] for f in self.features}
        self._fallback_start = self.table_rows[0] - self.fallback_rows  # in group 0

    def _row_lookup(self, ids: np.ndarray) -> Tensor:
        """Row of each id in [min id, max id] (-1: none), when that span is at most 4N (or 64k) entries; else
        empty and ids are found by binary search. A gather is ~4x faster than torch.searchsorted here (4,096
        ids in 50k items), and with a history of 50 items a batch looks up ~100k ids."""
        n = len(ids)
        self._id_base = int(ids[0]) if n else 0
        span = int(ids[-1]) - self._id_base + 1 if n else 0
        if n == 0 or span > max(4 * n, 1 << 16):
            return torch.zeros(0, dtype=torch.int64)
        lut = np.full(span, -1, np.int64)
        lut[ids - self._id_base] = np.arange(n)
        return torch.from_numpy(lut)

    @property
    def groups(self) -> int:
        """Output features per input feature (1 with ``pooling="item"``, the number of tables otherwise)."""
        return len(self.table_names)

    @property
    def num_items(self) -> int:
        return int(self.item_id.numel())

    def feature_names(self, feature: str | None = None) -> list[str]:
        """The output KJT keys of one input feature (all of them, group-major, without an argument).

        >>> from semid.embeddings import HashConfig, SemanticIdCollection
        >>> SemanticIdCollection.from_sids(HashConfig(), [1], features=["a", "b"], prefix="s_").feature_names("b")
        ['s_b']
        """
        if feature is None:
            return [self._out[f][g] for g in range(self.groups) for f in self.features]
        if feature not in self._out:
            raise UnknownFeatureError(f"argument 'feature': {feature!r} is not configured (features: "
                                      f"{', '.join(self.features)})")
        return list(self._out[feature])

    def embedding_bag_configs(self, dim: int, *, pooling: PoolingType = PoolingType.SUM) -> list[EmbeddingBagConfig]:
        """The ``EmbeddingBagConfig``s of the tables this module's output indexes (fallback rows included), for
        ``EmbeddingBagCollection(tables=...)`` or TorchRec's models (``DLRM``, ``DeepFM``).

        >>> from semid.embeddings import NgramConfig, SemanticIdCollection
        >>> m = SemanticIdCollection.from_sids(NgramConfig(), [1], [[0, 1]], 4, features=["c"], pooling="table",
        ...                                    fallback_rows=2)
        >>> [(c.name, c.num_embeddings, c.feature_names) for c in m.embedding_bag_configs(8)]
        [('ngram_0', 6, ['c__ngram_0']), ('ngram_1', 4, ['c__ngram_1'])]
        """
        if not isinstance(dim, int) or dim < 1:
            raise SemidError(f"argument 'dim' must be a positive int, got {dim!r}")
        return [EmbeddingBagConfig(name=name, embedding_dim=dim, num_embeddings=rows, pooling=pooling,
                                   feature_names=[self._out[f][g] for f in self.features])
                for g, (name, rows) in enumerate(zip(self.table_names, self.table_rows))]

    def rows_of(self, item_ids: object, content: Tensor | np.ndarray | None = None) -> dict[str, list[list[int]]]:
        """Table name -> the rows each item of ``item_ids`` gets (an unseen item: from ``content`` [N, D] when
        given, else its fallback row). Counts nothing in ``stats()``.

        >>> from semid.embeddings import NgramConfig, SemanticIdCollection
        >>> m = SemanticIdCollection.from_sids(NgramConfig(), [7], [[1, 2]], 4, features=["c"], pooling="table")
        >>> m.rows_of([7])
        {'ngram_0': [[1]], 'ngram_1': [[2]]}
        """
        ids = torch.from_numpy(integer_ids(item_ids, "item_ids")).to(self.item_id.device)
        lengths = torch.ones_like(ids)
        flat_content = None
        if content is not None:
            c = torch.as_tensor(content).to(self.item_id.device)
            if c.dim() != 2 or c.shape[0] != len(ids):
                raise ContentDimError(f"argument 'content' has shape {tuple(c.shape)}; expected [{len(ids)}, D], one "
                                      "content embedding per item id")
            flat_content = (c, torch.ones(len(ids), dtype=torch.bool, device=c.device))
        values, out_lengths = self._remap(ids, lengths, flat_content, count=False)
        per_group = out_lengths.view(self.groups, -1).cpu().numpy()
        vals = values.cpu().numpy()
        out, pos = {}, 0
        for g, name in enumerate(self.table_names):
            rows = []
            for n in per_group[g]:
                rows.append(vals[pos:pos + n].tolist())
                pos += n
            out[name] = rows
        return out

    # --- the remap ----------------------------------------------------------------------------------------

    def forward(self, features: KeyedJaggedTensor, content: Mapping[str, Tensor] | None = None) -> KeyedJaggedTensor:
        """SID-piece KJT of ``features`` (raw item ids); ``content[feature]``: [n ids of that feature, D] content
        embeddings aligned with that feature's ids, read for unseen ids only."""
        keys = features.keys()
        unknown = [k for k in keys if k not in self._out]
        if unknown:
            raise UnknownFeatureError(f"argument 'features': KJT key {unknown[0]!r} is not configured (configured: "
                                      f"{', '.join(self.features)}; add it to features= when building the module)")
        if features.variable_stride_per_key():
            raise SemidError("argument 'features': variable batch sizes per key are not supported; give every "
                             "key the same batch size")
        if features.weights_or_none() is not None:
            raise SemidError("argument 'features': weighted KJTs are not supported (a piece's weight is not its "
                             "item's); pass ids without weights")
        values = features.values()
        if values.dtype not in (torch.int32, torch.int64):
            raise IdDtypeError(f"argument 'features': ids have dtype {values.dtype}; pass int64 (or int32) item "
                               "ids")
        if values.device != self.item_id.device:
            raise DeviceMismatchError(f"argument 'features' is on {values.device} but the module's buffers are "
                                      f"on {self.item_id.device} (call module.to({str(values.device)!r}))")
        flat_content = self._flat_content(features, content) if content else None
        new_values, new_lengths = self._remap(values, features.lengths(), flat_content, count=True)
        out_keys = [self._out[k][g] for g in range(self.groups) for k in keys]
        return KeyedJaggedTensor(keys=out_keys, values=new_values, lengths=new_lengths.to(features.lengths().dtype),
                                 stride=features.stride())

    def _flat_content(self, features: KeyedJaggedTensor, content: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(content [nnz, D] aligned with ``features.values()``, whether each row was given [nnz])."""
        extra = [k for k in content if k not in features.keys()]
        if extra:
            raise UnknownFeatureError(f"argument 'content': key {extra[0]!r} is not a key of the KJT given "
                                      f"({', '.join(features.keys())})")
        dims = {int(v.shape[-1]) for v in content.values()}
        dim = self.content_dim or next(iter(dims))
        per_key = features.length_per_key()
        dev = features.values().device
        parts, given = [], []
        for key, n in zip(features.keys(), per_key):
            c = content.get(key)
            given.append(torch.full((n,), c is not None, device=dev))
            if c is None:
                parts.append(torch.zeros((n, dim), device=dev))
                continue
            if c.dim() != 2 or c.shape[0] != n or c.shape[1] != dim:
                raise ContentDimError(f"argument 'content[{key!r}]' has shape {tuple(c.shape)}; expected [{n}, {dim}] "
                                      f"(one content embedding of dimension {dim} per id of feature {key!r})")
            parts.append(c.to(device=dev, dtype=torch.float32))
        return torch.cat(parts), torch.cat(given)

    def _remap(self, ids: Tensor, lengths: Tensor, content: tuple[Tensor, Tensor] | None,
               count: bool) -> tuple[Tensor, Tensor]:
        """(values, lengths [G * n_bags]) of the output, group-major: bag b of group g is entry g * n_bags + b."""
        ids = ids.long()
        g, m = self.groups, ids.numel()
        n = self.item_id.numel()
        # index_select, not t[idx]: on CPU advanced indexing of 100k int64 ids took ~30x longer (measured)
        if n:
            span = self.row_lookup.numel()
            if span:
                rel = ids - self._id_base
                pos = self.row_lookup.index_select(0, rel.clamp(0, span - 1))
                found = (pos >= 0) & (rel >= 0) & (rel < span)
                pos = pos.clamp_(min=0)
            else:
                pos = torch.searchsorted(self.item_id, ids).clamp_(max=n - 1)
                found = self.item_id.index_select(0, pos) == ids
            at = pos if g == 1 else ((torch.arange(g, device=ids.device) * (n + 1)).unsqueeze(1) + pos).reshape(-1)
            flat = self.offsets.reshape(-1)
            start = flat.index_select(0, at).view(g, m)  # [G, M]
            # unknown and padding ids: empty so far
            length = (flat.index_select(0, at + 1).view(g, m) - start).masked_fill_(~found, 0)
        else:
            found = torch.zeros_like(ids, dtype=torch.bool)
            start = torch.zeros((g, m), dtype=torch.long, device=ids.device)
            length = torch.zeros_like(start)
        source = self.values
        unseen = ~found & (ids >= 0)
        n_unseen = int(unseen.sum())  # the one host sync: the unseen path runs on the host tokenizer
        if n_unseen:
            idx = unseen.nonzero().squeeze(1)
            extra_start, extra_len, extra_values, n_content, n_fallback = self._unseen(ids[idx], idx, content)
            start[:, idx] = extra_start + source.numel()
            length[:, idx] = extra_len
            source = torch.cat([source, extra_values])
        else:
            n_content = n_fallback = 0
        if count:
            self.n_ids += (ids >= 0).sum()
            self.n_unseen += n_unseen
            self.n_content += n_content
            self.n_fallback += n_fallback
        # CSR gather, all groups at once: output position j of entry e reads source[start[e] + j - out_start[e]]
        start, length = start.reshape(-1), length.reshape(-1)
        cum = torch.cumsum(length, 0)
        total = int(cum[-1]) if cum.numel() else 0
        out_start = cum - length
        gather = torch.repeat_interleave(start - out_start, length, output_size=total) + \
            torch.arange(total, device=ids.device)
        out_values = source.index_select(0, gather)
        # bag b of group g sums entries [g*M + bag_start[b], g*M + bag_end[b])
        bag_end = torch.cumsum(lengths.long(), 0)
        bag_ends = torch.cat([torch.zeros(1, dtype=torch.long, device=ids.device), bag_end])
        cum0 = torch.cat([torch.zeros(1, dtype=cum.dtype, device=ids.device), cum])
        edges = (torch.arange(g, device=ids.device) * m).unsqueeze(1) + bag_ends.unsqueeze(0)  # [G, bags + 1]
        at = cum0.index_select(0, edges.reshape(-1)).view(edges.shape)
        return out_values, (at[:, 1:] - at[:, :-1]).reshape(-1)

    def _unseen(self, ids: Tensor, where: Tensor, content: tuple[Tensor, Tensor] | None
                ) -> tuple[Tensor, Tensor, Tensor, int, int]:
        """Pieces of unseen ids [U'] (occurrences): (start [G, U'] into extra values, lengths [G, U'], extra
        values, how many came from content, how many went to the fallback rows)."""
        dev = ids.device
        uniq, inverse = torch.unique(ids, return_inverse=True)
        uids = uniq.cpu().numpy()
        u = len(uids)
        has_content = np.zeros(u, bool)
        codes = None
        tok = self.tokenizer
        if tok.needs_content and content is not None:
            rows, ok = content[0][where], content[1][where]  # [U', D], [U']
            first = torch.full((u,), -1, dtype=torch.long, device=dev)
            k = torch.arange(len(ids), device=dev)
            first.scatter_reduce_(0, inverse[ok], k[ok], reduce="amin", include_self=False)
            has_content = (first >= 0).cpu().numpy()
            if has_content.any():
                codes = self._encode(rows[first[first >= 0]])
        if tok.needs_content:
            fallback = ~has_content
            if fallback.any() and self.fallback_rows == 0:
                raise UnknownItemError(
                    f"argument 'features': item {int(uids[fallback][0])} is not in the mapping and came without "
                    "content (pass content={feature: [n, D]} and a quantizer, or build with fallback_rows > 0)")
            known = np.flatnonzero(has_content)
            jag = tok.tokenize(uids[known], codes) if len(known) else None
        else:
            fallback = np.zeros(u, bool)
            known = np.arange(u)
            jag = tok.tokenize(uids, None)
        # per group CSR over the U unique ids: the tokenised ones' pieces, the fallback row (group 0 only)
        keys, pieces = [], []
        if jag is not None:
            offsets, values = self._layout(jag, len(known))
            for g in range(self.groups):
                lens_g = np.diff(offsets[g])
                keys.append(np.repeat(g * u + known, lens_g))
                pieces.append(values[offsets[g][0]:offsets[g][-1]])
        fb = np.flatnonzero(fallback)
        keys.append(fb.astype(np.int64))  # group 0: key = r
        pieces.append(self._fallback_start + hash_to_rows(uids[fb], _FALLBACK_SEED, max(self.fallback_rows, 1)))
        key = np.concatenate(keys).astype(np.int64)
        order = np.argsort(key, kind="stable")  # a group's pieces of one item keep their order
        extra = np.concatenate(pieces).astype(np.int64)[order]
        lens = np.bincount(key, minlength=self.groups * u).reshape(self.groups, u)
        group_off = np.concatenate([[0], np.cumsum(lens.reshape(-1))])
        starts = torch.from_numpy(group_off[:-1].reshape(self.groups, u)).to(dev)[:, inverse]
        lengths = torch.from_numpy(lens).to(dev)[:, inverse]
        n_content = int(torch.from_numpy(has_content).to(dev)[inverse].sum())
        n_fallback = int(torch.from_numpy(fallback).to(dev)[inverse].sum())
        return starts, lengths, torch.from_numpy(extra).to(dev), n_content, n_fallback

    def _encode(self, content: Tensor) -> np.ndarray:
        """SIDs [U, L] of content rows [U, D] from the quantizer, checked against the tokenizer's L and K."""
        q = self.quantizer
        if q is None:
            raise SemidError("argument 'content' was given but the module has no quantizer (pass quantizer= a "
                             "FrozenRqvae or a callable content -> codes when building it, or set_quantizer)")
        if self.content_dim is not None and content.shape[1] != self.content_dim:
            raise ContentDimError(f"argument 'content' has dimension {content.shape[1]} but the quantizer takes "
                                  f"{self.content_dim} (pass the embeddings the quantizer was trained on)")
        if isinstance(q, EncodesContent):
            codes = np.asarray(q.encode(content.detach().cpu().double().numpy()))
        else:
            out = q(content)
            codes = out.detach().cpu().numpy() if isinstance(out, Tensor) else np.asarray(out)
        return self.tokenizer.check_sids(codes, "quantizer(content)")

    def _layout(self, jagged: list[Jagged], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-table CSRs over n items -> (offsets [G, n+1] into values, values), in this module's pooling."""
        if len(jagged) != len(self.tokenizer.tables) or any(len(j) != n for j in jagged):
            raise SemidError("one CSR per tokenizer table with one entry per item is required")
        if self.pooling == "table":
            sizes = np.array([len(j.values) for j in jagged], np.int64)
            base = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            offsets = np.stack([j.offsets + b for j, b in zip(jagged, base)]) if jagged else np.zeros((0, n + 1))
            values = np.concatenate([j.values for j in jagged]).astype(np.int64)
            return offsets.astype(np.int64), values
        # one group: item i's pieces of table 0, then of table 1, ..., each table's rows offset by its start
        item = np.concatenate([np.repeat(np.arange(n), j.lengths) for j in jagged])
        table = np.concatenate([np.full(len(j.values), t) for t, j in enumerate(jagged)])
        shifted = np.concatenate([j.values + s for j, s in zip(jagged, self._table_starts)])
        order = np.lexsort((table, item))  # stable: a table's pieces keep their order
        lengths = np.sum([j.lengths for j in jagged], axis=0) if n else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)[None, :]
        return offsets, shifted[order].astype(np.int64)

    # --- observability ------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Tensor]:
        """Counters since construction (or ``reset_stats``): ids looked up, unseen ids, unseen ids encoded from
        their content, unseen ids sent to the fallback rows. Tensors: ``self.log_dict(sid.stats())`` in a
        LightningModule logs them without a host sync.

        >>> from semid.embeddings import HashConfig, SemanticIdCollection
        >>> sorted(SemanticIdCollection.from_sids(HashConfig(), [1], features=["a"]).stats())
        ['content', 'fallback', 'ids', 'unseen']
        """
        return {"ids": self.n_ids.clone(), "unseen": self.n_unseen.clone(), "content": self.n_content.clone(),
                "fallback": self.n_fallback.clone()}

    def reset_stats(self) -> None:
        """Zero the ``stats()`` counters (e.g. at the start of an epoch)."""
        for t in (self.n_ids, self.n_unseen, self.n_content, self.n_fallback):
            t.zero_()

    # --- state --------------------------------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict: Mapping[str, object], prefix: str, local_metadata: dict[str, object],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # a mapping of another size (more items, another vocabulary) replaces ours: resize before copying
        for name in ("item_id", "offsets", "values", "tokenizer_state"):
            incoming = state_dict.get(prefix + name)
            mine = getattr(self, name)
            if isinstance(incoming, Tensor) and incoming.shape != mine.shape:
                setattr(self, name, torch.empty(incoming.shape, dtype=mine.dtype, device=mine.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,  # type: ignore[arg-type]
                                      error_msgs)
        self.row_lookup = self._row_lookup(self.item_id.cpu().numpy()).to(self.item_id.device)
        if prefix + "tokenizer_state" in state_dict:
            self._bind(SidTokenizer.from_bytes(self.tokenizer_state.cpu().numpy().tobytes(), "state_dict"))
            if self.offsets.shape[0] != self.groups:
                error_msgs.append(f"SemanticIdCollection: the state has {self.offsets.shape[0]} table groups, this "
                                  f"module's pooling={self.pooling!r} expects {self.groups} (build it with the same "
                                  "pooling)")

    def save(self, path: str | Path) -> Path:
        """Write the module (mapping, tokenizer, settings; not the quantizer) to ``path`` atomically.

        >>> import tempfile
        >>> from pathlib import Path
        >>> from semid.embeddings import HashConfig, SemanticIdCollection
        >>> m = SemanticIdCollection.from_sids(HashConfig(rows=8), [1, 2], features=["a"])
        >>> p = m.save(Path(tempfile.mkdtemp()) / "sid.pt")
        >>> SemanticIdCollection.load(p).rows_of([2]) == m.rows_of([2])
        True
        """
        path = Path(path)
        payload = {"format": _FORMAT, "version": _VERSION, "features": self.features, "prefix": self.prefix,
                   "pooling": self.pooling, "fallback_rows": self.fallback_rows, "content_dim": self.content_dim,
                   "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, quantizer: Quantizer | None = None,
             device: torch.device | str | None = None) -> "SemanticIdCollection":
        """A module ``save`` wrote; ``quantizer`` for unseen items with content (not saved with the module)."""
        path = Path(path)
        if not path.exists():
            raise DataError(path, None, "SID module file is missing", "write it with SemanticIdCollection.save")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for a damaged or foreign file
            raise DataError(path, None, f"not a saved SID module ({str(e).splitlines()[0][:100]})",
                            "write it with SemanticIdCollection.save") from None
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT or payload.get("version", 0) > _VERSION:
            raise DataError(path, None, f"not a {_FORMAT} file of version <= {_VERSION}",
                            "write it with this semid's SemanticIdCollection.save")
        sd = payload["state_dict"]
        tok = SidTokenizer.from_bytes(sd["tokenizer_state"].numpy().tobytes(), str(path))
        jagged = [Jagged(np.zeros(1, np.int64), np.zeros(0, np.int64)) for _ in tok.tables]  # replaced below
        module = cls(tok, np.zeros(0, np.int64), jagged, features=payload["features"], prefix=payload["prefix"],
                     pooling=payload["pooling"], fallback_rows=payload["fallback_rows"], quantizer=quantizer,
                     content_dim=payload["content_dim"])
        module.load_state_dict(sd)
        return module.to(device) if device is not None else module
