"""SPM-SID: a SentencePiece (BPE) vocabulary learned over the SIDs of impressed items.

Each (level, code) pair is one private-use character, so a SID is an L-character string and a piece
is a run of consecutive levels. Training input is a TSV of ``sid<TAB>impressions``, so pieces that
are frequent *by impressions* merge; rare codes stay single characters (unigrams). The vocabulary is
the embedding table: row = piece id, row 0 = ``<unk>``.

Small vocabularies. SentencePiece needs every character it keeps to have a row
("Vocabulary size is smaller than required_chars") and only accepts ``character_coverage`` in
[0.98, 1], far too little to drop the thousands of rare symbols a table of, say, 8*K rows must drop.
So the trainer picks the alphabet itself: the ``vocab_size - 1`` symbols with the most impressions
are kept, training lines are split at the dropped ones (a piece never spans a symbol without a row),
and the dropped and never-impressed symbols map to the ``<unk>`` row, with a ``TokenizerWarning``.
When the vocabulary has room for all L*K symbols, symbols never seen in training are added as
single characters so that new items with unseen codes still get their own unigram rows.
SentencePiece encodes a run of consecutive row-less symbols as ONE ``<unk>`` token, so very small
vocabularies show slightly fewer lookups per item than L.

Scale. SentencePiece holds every training line in memory, and its trainer's time grows with their number.
Up to ``MAX_TRAINING_SIDS`` distinct impressed SIDs (every corpus up to ~1M items) each is one line weighted by
its impressions, as above. Beyond that the lines are a bounded impression-weighted sample: ``MAX_TRAINING_SIDS``
draws with replacement, each SID drawn with probability impressions / total impressions, from a generator
seeded by ``SAMPLE_SEED`` (so the same SIDs and impressions always give the same sample and the same model);
each drawn SID is one line weighted by how often it was drawn, an unbiased estimate of its impression weight.
The head is kept almost whole (a SID with 1/1000 of the impressions is drawn ~1000 times) and the tail is
sampled. The alphabet (which symbols get a row) is still chosen from the exact impression counts, and a kept
symbol no drawn SID carries gets a one-character line, so it keeps its row.
"""
from __future__ import annotations

import io
import json
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from semid.embeddings.tokenizer import (ConfigError, Jagged, SidSpace, TableSpec, Tokenizer, TokenizerWarning,
                                  check_levels, require)
from semid.core.errors import FingerprintMismatch, SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_of
from semid.rqvae import SidTable

# Supplementary private-use planes 15 and 16 (U+F0000..U+FFFFD, U+100000..U+10FFFD).
_PLANE = 0xFFFFE - 0xF0000
MAX_SYMBOLS = 2 * _PLANE
MODEL_TYPES = ("bpe", "unigram")
# above this many distinct impressed SIDs the training lines are an impression-weighted sample (module docstring)
MAX_TRAINING_SIDS = 1_000_000
SAMPLE_SEED = 20_481
# distinct SIDs per SentencePiece encode call: bounds the Python lists of pieces (~100 B per SID) at any scale
_ENCODE_BATCH = 262_144


def symbol_codepoints(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Codepoint of each (level l, code c) pair: private-use character number l*K + c. [N, L] uint32."""
    idx = np.arange(codes.shape[1], dtype=np.int64)[None, :] * codebook_size + codes.astype(np.int64)
    return _codepoint(idx)


def _codepoint(symbol: np.ndarray) -> np.ndarray:
    """Private-use codepoint of symbol number l*K + c (plane 15, then plane 16)."""
    return np.where(symbol < _PLANE, 0xF0000 + symbol, 0x100000 + symbol - _PLANE).astype(np.uint32)


def unique_sids(codes: np.ndarray, codebook_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows of ``codes`` [U, L] in lexicographic order, inverse [N]): ``np.unique(codes, axis=0,
    return_inverse=True)``, but on one int64 key per SID when L * bits(K) <= 63 (a 10M-item table: ~1 s instead
    of the ~20 s np.unique takes to sort rows as opaque bytes). Codes are in [0, K), so the key keeps the order."""
    codes = np.asarray(codes)
    levels = codes.shape[1]
    bits = max(1, int(codebook_size - 1).bit_length())
    if levels == 0 or levels * bits > 63:
        uniq, inverse = np.unique(codes, axis=0, return_inverse=True)
        return uniq, inverse.reshape(-1)
    key = np.zeros(len(codes), np.int64)
    for level in range(levels):
        key = (key << bits) | codes[:, level].astype(np.int64)
    ukey, inverse = np.unique(key, return_inverse=True)
    uniq = np.empty((len(ukey), levels), codes.dtype)
    for level in reversed(range(levels)):
        uniq[:, level] = ukey & ((1 << bits) - 1)
        ukey = ukey >> bits
    return uniq, inverse.reshape(-1)


def sid_strings(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """One L-character string per SID (numpy UCS-4 strings are exactly codepoint arrays)."""
    n, levels = codes.shape
    if n == 0:
        return np.zeros(0, dtype=f"<U{max(levels, 1)}")
    cp = np.ascontiguousarray(symbol_codepoints(codes, codebook_size))
    return cp.view(f"<U{levels}").reshape(n)


@dataclass
class SpmConfig:
    """SPM-SID: SentencePiece (BPE) learned on impression-weighted SIDs; one table of ``vocab_size`` rows whose
    rows are variable-length pieces (frequent code runs merge, rare ones fall back to single codes).

    >>> from semid.embeddings import SpmConfig
    >>> SpmConfig(vocab_size=1024).vocab_size
    1024
    """

    kind: str = "spm"
    name: str = "spm"  # table name
    vocab_size: int = 8192  # table rows (an upper bound: a small corpus may support fewer pieces)
    model_type: str = "bpe"  # unigram refuses vocabularies above its seed-piece count
    character_coverage: float = 1.0  # SentencePiece's own knob, [0.98, 1]; the alphabet cap is ours
    max_piece_length: int | None = None  # default L (a piece is at most a whole SID)
    include_unseen_symbols: bool = True  # unseen (level, code) pairs get their own row when there is room
    num_threads: int = 2

    def __post_init__(self) -> None:
        require(self.vocab_size >= 2, f"vocab_size must be >= 2 (one row is <unk>), got {self.vocab_size}")
        require(self.model_type in MODEL_TYPES, f"model_type must be one of {', '.join(MODEL_TYPES)}")
        require(0.98 <= self.character_coverage <= 1.0,
                f"character_coverage must be in [0.98, 1] (SentencePiece's range), got {self.character_coverage}; "
                "a small vocab_size already drops rare symbols to <unk>")
        require(self.max_piece_length is None or self.max_piece_length >= 1, "max_piece_length must be >= 1")


@dataclass(frozen=True)
class SpmModel:
    """A trained vocabulary and what it was trained from (the chain SIDs -> SPM -> token cache)."""

    proto: bytes
    space_fingerprint: str  # the SID space (frozen RQ-VAE, L, K)
    sid_table_fingerprint: str  # the SID table content it was trained on
    training_fingerprint: str  # the impressed items and their impression counts
    requested_vocab_size: int
    dropped_symbols: int  # seen in training but rare: no row of their own
    unseen_symbols: int  # never impressed and not added: no row of their own

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(["spm", fingerprint_bytes(self.proto), self.space_fingerprint,
                               self.sid_table_fingerprint, self.training_fingerprint])

    def meta(self) -> dict[str, object]:
        d = {k: v for k, v in asdict(self).items() if k != "proto"}
        d["fingerprint"] = self.fingerprint
        return d

    @staticmethod
    def from_state(proto: bytes, meta: dict[str, object]) -> "SpmModel":
        fields = {k: meta[k] for k in ("space_fingerprint", "sid_table_fingerprint", "training_fingerprint",
                                       "requested_vocab_size", "dropped_symbols", "unseen_symbols")}
        model = SpmModel(proto=proto, **fields)  # type: ignore[arg-type]
        if model.fingerprint != meta.get("fingerprint"):
            raise FingerprintMismatch(f"SPM model has fingerprint {model.fingerprint} but records "
                                      f"{meta.get('fingerprint')} (the cache was edited or damaged; rebuild it)")
        return model


def _symbol_weights(codes: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    levels = codes.shape[1]
    idx = (np.arange(levels)[None, :] * k + codes).reshape(-1)
    return np.bincount(idx, weights=np.repeat(counts, levels).astype(np.float64), minlength=levels * k)


def train_spm(cfg: SpmConfig, sids: SidTable, item_ids: np.ndarray, impressions: np.ndarray) -> SpmModel:
    """Learn the vocabulary on the SIDs of ``item_ids`` with impressions > 0, weighted by impressions."""
    item_ids = np.asarray(item_ids, np.int64)
    impressions = np.asarray(impressions)
    if impressions.shape != item_ids.shape:
        raise SemidError(f"impressions ({impressions.shape}) must align with item ids ({item_ids.shape})")
    if impressions.size and impressions.min() < 0:
        raise SemidError("impression counts must be >= 0")
    seen = impressions > 0
    if not seen.any():
        raise SemidError("SPM-SID needs impressed items to learn from, but every impression count is 0 "
                         "(check the corpus days given)")
    k, levels = sids.codebook_size, sids.levels
    n_symbols = levels * k
    if n_symbols > MAX_SYMBOLS:
        raise SemidError(f"L*K = {n_symbols} SID symbols exceed the {MAX_SYMBOLS} private-use characters")
    ids, counts = item_ids[seen], impressions[seen].astype(np.int64)
    uniq, inverse = unique_sids(sids.lookup(ids), k)
    weight = np.bincount(inverse, weights=counts.astype(np.float64)).astype(np.int64)

    sym_w = _symbol_weights(uniq, weight, k)
    room = cfg.vocab_size - 1  # row 0 is <unk>
    order = np.lexsort((np.arange(n_symbols), -sym_w))  # most impressed first, ties by symbol number
    n_seen = int((sym_w > 0).sum())
    keep = np.zeros(n_symbols, bool)
    keep[order[:min(room, n_seen)]] = True
    dropped = n_seen - int(keep.sum())
    add_unseen = cfg.include_unseen_symbols and n_symbols <= room
    unseen = 0 if add_unseen else n_symbols - n_seen

    train_sids, train_weight = sample_training_sids(uniq, weight)
    lines = _training_lines(train_sids, train_weight, keep, k)
    if len(train_sids) < len(uniq):  # only a sample can leave a kept symbol out
        lines += _lost_symbol_lines(lines, keep)
    if add_unseen:
        # a one-character line per unseen symbol: it enters the alphabet but adds no pair to merge
        lines += [(chr(int(cp)), 1) for cp in _codepoint(np.flatnonzero(sym_w == 0))]
    if dropped or unseen:
        used = np.zeros(n_symbols, bool)  # symbols some item of the SID table has (impressed or not)
        for level in range(levels):  # a level at a time: no [N, L] int64 temporary
            used[level * k + sids.codes[:, level].astype(np.int64)] = True
        unseen_used = int((used & (sym_w == 0)).sum())
        warnings.warn(
            f"SPM-SID '{cfg.name}': vocab_size={cfg.vocab_size} leaves {dropped + unseen} of the L*K = {n_symbols} "
            f"SID symbols without a row of their own; they map to the <unk> row ({dropped} impressed but too rare "
            f"to fit, {unseen} never impressed, of which {unseen_used} occur in SIDs of never-impressed items). "
            f"Use vocab_size > {n_symbols} to give every symbol a row", TokenizerWarning, stacklevel=3)
    proto = _train(cfg, lines, max_len=cfg.max_piece_length or levels)
    return SpmModel(proto=proto, space_fingerprint=sids.space_fingerprint, sid_table_fingerprint=sids.fingerprint,
                    training_fingerprint=fingerprint_bytes(ids, counts), requested_vocab_size=cfg.vocab_size,
                    dropped_symbols=dropped, unseen_symbols=unseen)


def sample_training_sids(uniq: np.ndarray, weight: np.ndarray,
                         max_sids: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The SIDs [U', L] and line weights [U'] SentencePiece trains on: all of them, by impressions, up to
    ``max_sids`` (default ``MAX_TRAINING_SIDS``); else the distinct SIDs of ``max_sids`` draws by impression
    share (seeded: deterministic), weighted by their draw counts (module docstring). Keeps ``uniq``'s order."""
    max_sids = MAX_TRAINING_SIDS if max_sids is None else max_sids
    if len(uniq) <= max_sids:
        return uniq, weight
    rng = np.random.default_rng(SAMPLE_SEED)
    cum = np.cumsum(weight.astype(np.float64))
    pick = np.minimum(np.searchsorted(cum, rng.random(max_sids) * cum[-1], side="right"), len(cum) - 1)
    drawn, times = np.unique(pick, return_counts=True)
    return uniq[drawn], times.astype(np.int64)


def _lost_symbol_lines(lines: list[tuple[str, int]], keep: np.ndarray) -> list[tuple[str, int]]:
    """One-character lines (count 1) for kept symbols no training line carries (only a sample can lose one):
    a symbol SentencePiece never sees gets no row."""
    if not lines:
        return []
    seen = np.zeros(len(keep), bool)
    text = np.frombuffer("".join(t for t, _ in lines).encode("utf-32-le"), np.uint32).astype(np.int64)
    symbol = np.where(text >= 0x100000, text - 0x100000 + _PLANE, text - 0xF0000)
    seen[symbol] = True
    return [(chr(int(cp)), 1) for cp in _codepoint(np.flatnonzero(keep & ~seen))]


def _training_lines(uniq: np.ndarray, weight: np.ndarray, keep: np.ndarray, k: int) -> list[tuple[str, int]]:
    """(text, count) per training line; SIDs with a dropped symbol are split around it."""
    strings = sid_strings(uniq, k)
    idx = np.arange(uniq.shape[1])[None, :] * k + uniq
    whole = keep[idx].all(axis=1)
    lines = [(s, int(w)) for s, w in zip(strings[whole].tolist(), weight[whole].tolist())]
    for s, w, ok in zip(strings[~whole].tolist(), weight[~whole].tolist(), keep[idx[~whole]]):
        start = 0
        for j in range(len(ok) + 1):  # cut at every dropped symbol
            if j == len(ok) or not ok[j]:
                if j > start:
                    lines.append((s[start:j], int(w)))
                start = j + 1
    return lines


def _train(cfg: SpmConfig, lines: list[tuple[str, int]], max_len: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="semid-spm-") as d:
        tsv = Path(d) / "sids.tsv"
        tsv.write_text("".join(f"{s}\t{w}\n" for s, w in lines), encoding="utf-8")
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                input=str(tsv), input_format="tsv", model_writer=out, model_type=cfg.model_type,
                vocab_size=cfg.vocab_size, hard_vocab_limit=False,  # vocab_size is a cap: rows = pieces learned
                character_coverage=cfg.character_coverage, max_sentencepiece_length=max_len,
                # a SID is one "word": no whitespace/script/number splitting, no normalisation
                add_dummy_prefix=False, split_by_whitespace=False, split_by_unicode_script=False,
                split_by_number=False, split_digits=False, remove_extra_whitespaces=False,
                normalization_rule_name="identity", byte_fallback=False,
                unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, input_sentence_size=0,
                num_threads=cfg.num_threads, minloglevel=2)
        except RuntimeError as e:
            msg = str(e).split("] ")[-1]
            raise SemidError(f"SentencePiece could not train '{cfg.name}' with vocab_size={cfg.vocab_size}: "
                             f"{msg}") from None
    return out.getvalue()


class SpmTokenizer(Tokenizer):
    def __init__(self, cfg: SpmConfig) -> None:
        self.cfg = cfg
        self.model: SpmModel | None = None
        self.space: SidSpace | None = None
        self._sp: spm.SentencePieceProcessor | None = None

    def fit(self, space: SidSpace | None, sids: SidTable | None, item_ids: np.ndarray,
            impressions: np.ndarray | None) -> None:
        if space is None or sids is None:
            raise ConfigError(f"SPM-SID '{self.cfg.name}' needs a SID table")
        if impressions is None:
            raise SemidError(f"SPM-SID '{self.cfg.name}' learns its vocabulary from impressions: pass per-item "
                             "impression counts (e.g. `--corpus` on the command line)")
        self._set(space, train_spm(self.cfg, sids, item_ids, impressions))
        rows = self.processor.get_piece_size()
        if rows < self.cfg.vocab_size:
            warnings.warn(f"SPM-SID '{self.cfg.name}': the training SIDs support only {rows} pieces, so the table "
                          f"has {rows} rows, not vocab_size={self.cfg.vocab_size}", TokenizerWarning, stacklevel=2)

    def restore(self, space: SidSpace | None, state: dict[str, bytes]) -> None:
        if space is None or "model" not in state:
            raise SemidError(f"SPM-SID '{self.cfg.name}': the cache holds no SentencePiece model; rebuild it")
        self._set(space, SpmModel.from_state(state["model"], json.loads(state["meta"])))

    def _set(self, space: SidSpace, model: SpmModel) -> None:
        if model.space_fingerprint != space.fingerprint:
            raise FingerprintMismatch(f"SPM model '{self.cfg.name}' was learned in SID space "
                                      f"{model.space_fingerprint}, not {space.fingerprint} (the SIDs come from "
                                      "another RQ-VAE: retrain the vocabulary on these SIDs)")
        self.space, self.model = space, model
        self._sp = spm.SentencePieceProcessor(model_proto=model.proto)

    def state(self) -> dict[str, bytes]:
        assert self.model is not None
        return {"model": self.model.proto, "meta": json.dumps(self.model.meta()).encode()}

    def meta(self) -> dict[str, object]:
        assert self.model is not None and self._sp is not None
        return {**self.model.meta(), "vocab_size": self._sp.get_piece_size()}

    def tables(self) -> list[TableSpec]:
        assert self._sp is not None, "fit() first"
        return [TableSpec(self.cfg.name, self._sp.get_piece_size())]

    @property
    def processor(self) -> spm.SentencePieceProcessor:
        assert self._sp is not None, "fit() first"
        return self._sp

    def tokenize(self, item_ids: np.ndarray, codes: np.ndarray | None) -> list[Jagged]:
        assert self.space is not None and codes is not None
        check_levels(codes, self.space.codebook_size)
        require(codes.shape[1] == self.space.levels,
                f"SIDs have {codes.shape[1]} levels but the vocabulary was learned on {self.space.levels}")
        if len(codes) == 0:
            return [Jagged(np.zeros(1, np.int64), np.zeros(0, np.int64))]
        # encode each distinct SID once, a batch of SIDs at a time, then gather per item
        uniq, inverse = unique_sids(codes, self.space.codebook_size)
        strings = sid_strings(uniq, self.space.codebook_size)
        parts = []
        for s in range(0, len(strings), _ENCODE_BATCH):
            pieces = self.processor.encode(strings[s:s + _ENCODE_BATCH].tolist(), out_type=int,
                                           num_threads=self.cfg.num_threads)
            lengths = np.fromiter((len(p) for p in pieces), np.int64, count=len(pieces))
            values = np.fromiter((i for p in pieces for i in p), np.int64, count=int(lengths.sum()))
            parts.append(Jagged(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), values))
        return [Jagged.concat(parts).take(inverse)]
