"""A fitted item tokenizer as one object, from in-memory arrays: fit, tokenize, save, load.

``SidTokenizer.fit(representation, item_ids, sids, codebook_size, impressions)`` fits any representation
(hash, n-gram, prefix-n-gram, SPM over impression-weighted SIDs, random-SID, hybrid) on arrays, with no semid
corpus on disk; it wraps the same tokenizers the token cache uses (``registry.build_tokenizer``), so its rows
are the cache's rows. ``save``/``load`` (and ``to_bytes``/``from_bytes``) keep the learned state (the
SentencePiece model, random-SID code frequencies) and the fingerprints: the SID space it was fitted in, and
for SPM the SID table and impressions it learned from.

>>> import numpy as np
>>> from semid.embeddings import NgramConfig, SidTokenizer
>>> tok = SidTokenizer.fit(NgramConfig(n=2), item_ids=np.arange(3), sids=np.array([[0, 1], [1, 1], [3, 2]]),
...                        codebook_size=4)
>>> [(t.name, t.num_rows) for t in tok.tables], tok.tokenize([7], [[3, 2]])[0].values.tolist()
([('ngram_0', 16)], [14])
"""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semid.core.artifacts import atomic_path
from semid.core.errors import DataError, SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_of
from semid.embeddings.random_sid import RandomSidTokenizer
from semid.embeddings.registry import RepresentationConfig, build_tokenizer, parse_representation
from semid.embeddings.sid_errors import IdDtypeError, SidSpaceError
from semid.embeddings.tokenizer import Jagged, SidSpace, TableSpec, Tokenizer
from semid.rqvae import SidTable

if TYPE_CHECKING:
    from semid.embeddings.token_cache import TokenCache

_FORMAT = "semid.sid_tokenizer"
_VERSION = 1


def integer_ids(item_ids: object, argument: str) -> np.ndarray:
    """``item_ids`` as int64 [N], refusing floats and other non-integer dtypes (``IdDtypeError``).

    >>> integer_ids([3, 1], "item_ids").tolist()
    [3, 1]
    """
    arr = np.asarray(item_ids.detach().cpu().numpy() if hasattr(item_ids, "detach") else item_ids)  # type: ignore[attr-defined]
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise IdDtypeError(f"argument '{argument}' has dtype {arr.dtype}; item ids must be integers "
                           "(pass an int64 array or tensor)")
    if arr.ndim != 1:
        raise SemidError(f"argument '{argument}' must be 1-d (one id per item), got shape {arr.shape}")
    return arr.astype(np.int64)


def sid_table(item_ids: object, sids: object, codebook_size: int, space_fingerprint: str | None = None) -> SidTable:
    """A ``SidTable`` from arrays: ``item_ids`` [N] (any order, unique), ``sids`` [N, L] codes in [0, K).

    ``space_fingerprint`` names the quantizer the SIDs came from (e.g. a ``FrozenRqvae``'s ``fingerprint``);
    without it the space is named by the arrays' content.

    >>> t = sid_table([5, 2], [[1, 0], [0, 3]], codebook_size=4)
    >>> t.item_id.tolist(), t.codes.tolist(), t.levels
    ([2, 5], [[0, 3], [1, 0]], 2)
    """
    ids = integer_ids(item_ids, "item_ids")
    codes = np.asarray(sids.detach().cpu().numpy() if hasattr(sids, "detach") else sids)  # type: ignore[attr-defined]
    if codes.ndim != 2 or len(codes) != len(ids):
        raise SidSpaceError(f"argument 'sids' must be [N, L] with N = len(item_ids) = {len(ids)}, got shape "
                            f"{codes.shape}")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise IdDtypeError(f"argument 'sids' has dtype {codes.dtype}; SID codes must be integers")
    if not isinstance(codebook_size, (int, np.integer)) or codebook_size < 1:
        raise SidSpaceError(f"argument 'codebook_size' must be a positive int (K), got {codebook_size!r}")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise SidSpaceError(f"argument 'sids' has codes {int(codes.min())}..{int(codes.max())} outside "
                            f"[0, codebook_size={codebook_size}) (pass the K the quantizer used)")
    order = np.argsort(ids, kind="stable")
    ids, codes = ids[order], codes[order].astype(np.int32)
    if len(ids) and (np.diff(ids) == 0).any():
        raise SemidError(f"argument 'item_ids' must be unique, e.g. {int(ids[:-1][np.diff(ids) == 0][0])} "
                         "appears twice")
    fp = space_fingerprint or fingerprint_of(["in-memory-sids", fingerprint_bytes(ids, codes)])
    return SidTable(ids, codes, int(codebook_size), fp)


class SidTokenizer:
    """A representation's tokenizer, fitted: item ids (+ SIDs) -> row ids of its tables.

    Build with ``SidTokenizer.fit`` (arrays) or ``SidTokenizer.load`` (a file); ``TokenCache.tokenizer`` is the
    same tokenizer under the cache path (``SidTokenizer.of_cache``).

    >>> import numpy as np
    >>> from semid.embeddings import HashConfig, SidTokenizer
    >>> tok = SidTokenizer.fit(HashConfig(rows=8))
    >>> tok.needs_sids, tok.tables[0].num_rows
    (False, 8)
    """

    def __init__(self, config: RepresentationConfig, tokenizer: Tokenizer, space: SidSpace | None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.space = space

    # --- building -------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, representation: RepresentationConfig, item_ids: object | None = None,
            sids: SidTable | object | None = None, codebook_size: int | None = None,
            impressions: object | None = None, space_fingerprint: str | None = None) -> "SidTokenizer":
        """Fit ``representation`` on items ``item_ids`` with SIDs ``sids`` ([N, L] array or a ``SidTable``).

        ``impressions`` [N] (per-item impression counts, aligned with ``item_ids``) is what SPM learns its
        vocabulary from (impression-weighted SIDs); other kinds ignore it. Hashing needs no SIDs at all.

        >>> import numpy as np
        >>> from semid.embeddings import SidTokenizer, SpmConfig
        >>> rng = np.random.default_rng(0)
        >>> codes = rng.integers(0, 8, (200, 3))
        >>> tok = SidTokenizer.fit(SpmConfig(vocab_size=40), np.arange(200), codes, 8, impressions=np.ones(200))
        >>> tok.tables[0].num_rows <= 40
        True
        """
        if representation.kind in ("dense", "mch"):
            raise SemidError(f"argument 'representation' is of kind {representation.kind!r}, which has no "
                             "tokenizer (use hash, ngram, prefix_ngram, spm, random_sid or hybrid)")
        tokenizer = build_tokenizer(representation)
        ids = integer_ids(item_ids if item_ids is not None else [], "item_ids")
        if not tokenizer.needs_sids:
            tokenizer.fit(None, None, ids, None)
            return cls(representation, tokenizer, None)
        if sids is None:
            raise SemidError(f"representation '{representation.name}' ({representation.kind}) is built from SIDs: "
                             "pass sids=[N, L] codes and codebook_size=K (or a SidTable)")
        if isinstance(sids, SidTable):
            table = sids
            if codebook_size is not None and codebook_size != table.codebook_size:
                raise SidSpaceError(f"argument 'codebook_size' is {codebook_size} but the SID table has "
                                    f"K={table.codebook_size} (leave codebook_size out)")
            if item_ids is None:
                ids = table.item_id
        else:
            if codebook_size is None:
                raise SidSpaceError("argument 'codebook_size' is missing: pass K, the number of codes per level")
            table = sid_table(ids, sids, codebook_size, space_fingerprint)
            ids = table.item_id if item_ids is None else ids
        imp = None
        if impressions is not None:
            imp = np.asarray(impressions)
            if imp.shape != ids.shape:
                raise SemidError(f"argument 'impressions' has shape {imp.shape} but item_ids has {ids.shape}; "
                                 "pass one count per item, in the same order")
            order = np.argsort(ids, kind="stable")
            ids, imp = ids[order], imp[order]
        elif representation.kind == "spm" or (representation.kind == "random_sid"
                                              and getattr(representation, "base").kind == "spm"):
            raise SemidError(f"representation '{representation.name}' learns SentencePiece pieces from impression-"
                             "weighted SIDs: pass impressions=[N] (per-item impression counts; ones for equal weight)")
        space = SidSpace.of(table)
        tokenizer.fit(space, table, ids, imp)
        return cls(representation, tokenizer, space)

    @classmethod
    def of_cache(cls, cache: "TokenCache") -> "SidTokenizer":
        """The fitted tokenizer of a ``TokenCache`` (the cache path's rows, bit for bit).

        >>> import numpy as np
        >>> from semid.embeddings import HashConfig, SidTokenizer, build_token_cache
        >>> SidTokenizer.of_cache(build_token_cache(HashConfig(rows=4), None, np.arange(3), None)).tables[0].num_rows
        4
        """
        return cls(cache.config, cache.tokenizer, cache.space)

    # --- what it knows --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def tables(self) -> list[TableSpec]:
        return self.tokenizer.tables()

    @property
    def needs_sids(self) -> bool:
        """Whether tokenising an item reads its SID (hashing does not)."""
        return self.tokenizer.needs_sids

    @property
    def needs_content(self) -> bool:
        """Whether a new item needs its SID (hence its content embedding) to be tokenised. Random SIDs are a
        function of the item id, so the random-SID control does not."""
        return self.tokenizer.needs_sids and not isinstance(self.tokenizer, RandomSidTokenizer)

    @property
    def levels(self) -> int | None:
        return self.space.levels if self.space else None

    @property
    def codebook_size(self) -> int | None:
        return self.space.codebook_size if self.space else None

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(["sid-tokenizer", dataclasses.asdict(self.config),
                               self.space and self.space.fingerprint, self.tokenizer.meta()])

    # --- tokenising -----------------------------------------------------------------------------------

    def check_sids(self, codes: np.ndarray, argument: str) -> np.ndarray:
        """``codes`` as int32 [N, L], refusing an L or K other than the tokenizer's (``SidSpaceError``)."""
        assert self.space is not None
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.space.levels:
            raise SidSpaceError(f"argument '{argument}' has shape {codes.shape}, but the tokenizer was fitted on "
                                f"SIDs of L={self.space.levels} levels (use SIDs from the same quantizer)")
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise IdDtypeError(f"argument '{argument}' has dtype {codes.dtype}; SID codes must be integers")
        if codes.size and (codes.min() < 0 or codes.max() >= self.space.codebook_size):
            raise SidSpaceError(f"argument '{argument}' has codes {int(codes.min())}..{int(codes.max())} outside "
                                f"[0, K={self.space.codebook_size}) the tokenizer was fitted on (use SIDs from "
                                "the same quantizer)")
        return codes.astype(np.int32)

    def tokenize(self, item_ids: object, sids: SidTable | object | None = None) -> list[Jagged]:
        """One CSR per table for items ``item_ids`` (in that order) with SIDs ``sids`` ([N, L] or a SidTable
        holding them; hashing and random-SID need none)."""
        ids = integer_ids(item_ids, "item_ids")
        codes = None
        if self.needs_sids and not isinstance(self.tokenizer, RandomSidTokenizer):
            if sids is None:
                raise SemidError(f"representation '{self.name}' ({self.kind}) tokenises SIDs: pass sids=[N, L]")
            if isinstance(sids, SidTable):
                if sids.codebook_size != self.codebook_size or sids.levels != self.levels:
                    raise SidSpaceError(f"argument 'sids' is a SID table of L={sids.levels}, K={sids.codebook_size} "
                                        f"but the tokenizer was fitted on L={self.levels}, K={self.codebook_size}")
                codes = sids.lookup(ids)
            else:
                codes = self.check_sids(sids, "sids")  # type: ignore[arg-type]
            if len(codes) != len(ids):
                raise SidSpaceError(f"argument 'sids' has {len(codes)} rows for {len(ids)} item ids")
        return self.tokenizer.tokenize(ids, codes)

    # --- files ----------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Config, SID space and learned state as one ``.npz`` blob (no pickle)."""
        state = self.tokenizer.state()
        meta = {"format": _FORMAT, "version": _VERSION, "config": dataclasses.asdict(self.config),
                "space": dataclasses.asdict(self.space) if self.space else None, "state_keys": list(state),
                "fingerprint": self.fingerprint}
        buf = io.BytesIO()
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        arrays.update({f"state__{i}": np.frombuffer(v, np.uint8) for i, v in enumerate(state.values())})
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, where: str = "tokenizer") -> "SidTokenizer":
        """The tokenizer ``to_bytes`` wrote; ``where`` names the source in errors."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            meta = json.loads(data["meta"].tobytes())
        except Exception as e:  # numpy and json raise several types for foreign bytes
            raise DataError(where, None, f"not a saved SidTokenizer ({str(e)[:80]})", "save it with "
                            "SidTokenizer.save") from None
        if meta.get("format") != _FORMAT or meta.get("version", 0) > _VERSION:
            raise DataError(where, "meta", f"format {meta.get('format')} v{meta.get('version')} is not a "
                            f"{_FORMAT} v<={_VERSION}", "save it with this semid's SidTokenizer.save")
        config = parse_representation(meta["config"], f"{where}: config")
        space = SidSpace(**meta["space"]) if meta.get("space") else None
        tokenizer = build_tokenizer(config)
        tokenizer.restore(space, {k: data[f"state__{i}"].tobytes() for i, k in enumerate(meta["state_keys"])})
        out = cls(config, tokenizer, space)
        if out.fingerprint != meta["fingerprint"]:
            raise DataError(where, None, f"fingerprint {out.fingerprint} does not match the recorded "
                            f"{meta['fingerprint']} (edited or damaged)", "save it again")
        return out

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer to ``path`` atomically (``SidTokenizer.load`` reads it)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SidTokenizer":
        """A tokenizer ``save`` wrote.

        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> from semid.embeddings import HashConfig, SidTokenizer
        >>> p = SidTokenizer.fit(HashConfig(rows=16)).save(Path(tempfile.mkdtemp()) / "tok.npz")
        >>> SidTokenizer.load(p).tokenize([3])[0].values.tolist() == SidTokenizer.fit(HashConfig(rows=16)).tokenize([3])[0].values.tolist()
        True
        """
        path = Path(path)
        if not path.exists():
            raise DataError(path, None, "tokenizer file is missing", "write it with SidTokenizer.save")
        return cls.from_bytes(path.read_bytes(), str(path))

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        # pickling (torch.save of a whole module) goes through the portable bytes, not SentencePiece's objects
        return (SidTokenizer.from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        return f"SidTokenizer({self.kind} '{self.name}', tables={[(t.name, t.num_rows) for t in self.tables]})"
