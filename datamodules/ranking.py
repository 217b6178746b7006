"""Day-ordered ranking data: one training epoch per day, in order, evaluated on the following day.

* ``train_dataloader`` serves day ``train_days[current_epoch]`` (``reload_dataloaders_every_n_epochs=1``),
  shuffled within the day only; ``val_dataloader`` serves the day after it for the last
  ``rolling_eval_days`` training days (the final one is the paper's "day N+1").
* User history comes only from clicks on days strictly before the impression's day (no leakage):
  ``UserHistory.before(day)`` is rebuilt from the corpus, so a resumed run sees the same history.
* Each rank of a distributed run reads its own contiguous share of every day.

Memory (a 10M-item, 1M-user corpus on one machine): only Dense Input holds item embeddings, all of them, in
``data.dense_dtype`` (float32, or float16 for half the memory); ``setup`` prints that need and refuses with one
line before reading when the machine's available memory cannot hold it. Every other representation holds
per-item ids, first days and feature rows (O(items) integers), the token cache, one day's impressions at a time
(plus the evaluation days' frames) and each user's last ``history_length`` clicks (int32 item rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import os

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset

from semid.datamodules.batch import RankingBatch, SparseFeatures
from semid.datamodules.corpus import PRIOR_HISTORY_FILE, Corpus, Items, read_footer, to_int64
from semid.datamodules.stats import popularity_buckets
from semid.core.config import require, require_int, require_positive
from semid.core.errors import SemidError
from semid.core.ids import locate

CONTEXT_DIM = 3
DENSE_DTYPES = ("float32", "float16")
# left free beside Dense Input's embeddings for everything else a fit holds (model, a day's frames, the cache)
DENSE_HEADROOM_BYTES = 1 << 30


@dataclass
class RankingDataConfig:
    batch_size: int = 2048
    eval_batch_size: int = 8192
    history_length: int = 50
    shuffle_within_day: bool = True
    train_days: list[int] | None = None  # default: every day but the last
    eval_day: int | None = None  # default: the day after the last training day
    rolling_eval_days: int = 1  # also evaluate after each of the last k training days on the next day
    head_share: float = 0.5  # head = most impressed items making up this share of training impressions
    torso_share: float = 0.3
    seed: int = 0
    dense_dtype: str = "float32"  # Dense Input's in-memory embeddings: float32, or float16 (half the memory)

    def __post_init__(self) -> None:
        require(self.dense_dtype in DENSE_DTYPES, "dense_dtype",
                f"must be one of {', '.join(DENSE_DTYPES)} (got {self.dense_dtype!r})")
        require_int(self.batch_size, "batch_size")
        require_int(self.eval_batch_size, "eval_batch_size")
        require_int(self.history_length, "history_length", minimum=0)
        require_int(self.rolling_eval_days, "rolling_eval_days")  # the last training day is always evaluated
        require_positive(self.head_share, "head_share", maximum=1.0)
        require_positive(self.torso_share, "torso_share", allow_zero=True, maximum=1.0)
        require(self.head_share + self.torso_share <= 1, "torso_share",
                f"head_share + torso_share must be <= 1 (got {self.head_share} + {self.torso_share})")


class UserHistory:
    """Each user's last ``max_len`` clicked items (item rows, oldest first) from completed days.

    Rows are held as int32 [users, max_len] (1M users x 50: 200 MB); a day's clicks update only the users who
    clicked (their old rows and the day's clicks, O(clicks x max_len)), not every user's row."""

    def __init__(self, corpus: Corpus, items: Items, max_len: int) -> None:
        self.corpus, self.items, self.max_len = corpus, items, max_len
        self.users = np.zeros(0, np.int64)  # sorted user ids
        self.matrix = np.full((0, max_len), -1, np.int32)  # right-aligned: newest last
        self.length = np.zeros(0, np.int64)
        self.days_done = 0  # history holds clicks of days < days_done
        prior = corpus.path / PRIOR_HISTORY_FILE  # clicks from before day 0 (MIND's history column), oldest first
        if prior.exists():
            t = pq.read_table(prior, columns=["user_id", "item_id"])
            self._append(to_int64(t["user_id"], prior, "user_id"),
                         self.items.index_of(to_int64(t["item_id"], prior, "item_id")))

    def before(self, day: int) -> "UserHistory":
        if day < self.days_done:  # a restart (e.g. evaluating an earlier day): rebuild from scratch
            self.__init__(self.corpus, self.items, self.max_len)  # type: ignore[misc]
        for d in range(self.days_done, day):
            if d in self.corpus.day_files():
                t = self.corpus.read_day(d, ["user_id", "item_id", "click"])
                clicked = t["click"].to_numpy(zero_copy_only=False) == 1
                self._append(to_int64(t["user_id"], self.corpus.path, "user_id")[clicked],
                             self.items.index_of(to_int64(t["item_id"], self.corpus.path, "item_id")[clicked]))
            self.days_done = d + 1
        return self

    def _append(self, users: np.ndarray, rows: np.ndarray) -> None:
        if self.max_len == 0 or len(users) == 0:
            return
        merged = np.union1d(self.users, users)
        if len(merged) != len(self.users):
            m = np.full((len(merged), self.max_len), -1, np.int32)
            ln = np.zeros(len(merged), np.int64)
            pos = np.searchsorted(merged, self.users)
            m[pos], ln[pos] = self.matrix, self.length
            self.users, self.matrix, self.length = merged, m, ln
        u = np.searchsorted(self.users, users)
        touched, t_of = np.unique(u, return_inverse=True)  # the users who clicked, and which one each click is
        old_len = self.length[touched]
        # their old entries then the day's clicks in impression order; keep the last max_len of each
        old_u = np.repeat(np.arange(len(touched)), old_len)
        old_v = self.matrix[touched][np.arange(self.max_len)[None, :] >= self.max_len - old_len[:, None]]
        all_u = np.concatenate([old_u, t_of.reshape(-1)])
        all_v = np.concatenate([old_v, rows.astype(np.int32)])
        order = np.argsort(all_u, kind="stable")
        all_u, all_v = all_u[order], all_v[order]
        counts = np.bincount(all_u, minlength=len(touched))
        ends = np.cumsum(counts)
        rank_from_end = ends[all_u] - np.arange(len(all_u))  # 1 = newest
        keep = rank_from_end <= self.max_len
        block = np.full((len(touched), self.max_len), -1, np.int32)
        block[all_u[keep], self.max_len - rank_from_end[keep]] = all_v[keep]
        self.matrix[touched] = block
        self.length[touched] = np.minimum(counts, self.max_len)

    def of(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Jagged history (offsets [B+1], item rows int64) of each impression's user."""
        offsets = np.zeros(len(user_ids) + 1, np.int64)
        if not len(self.users):
            return offsets, np.zeros(0, np.int64)
        pos, known = locate(self.users, user_ids)
        lengths = np.where(known, self.length[pos], 0)
        np.cumsum(lengths, out=offsets[1:])
        # each user's last ``length`` cells, gathered flat: no [B, max_len] copy of a day's users' rows
        starts = pos * self.max_len + self.max_len - lengths
        return offsets, self.matrix.reshape(-1)[_ranges(starts, lengths)].astype(np.int64)


@dataclass
class DayFrame:
    """One day's impressions (this rank's share), as item rows and labels."""

    day: int
    user_id: np.ndarray
    cand: np.ndarray  # item rows
    watch: np.ndarray  # item rows, -1 = none
    labels: np.ndarray  # float32 [n, 2]
    hist_offsets: np.ndarray
    hist_rows: np.ndarray
    is_new: np.ndarray
    popularity: np.ndarray
    first_row: int = 0  # row of this rank's first impression in the whole day

    def __len__(self) -> int:
        return len(self.cand)


class _DayBatches(IterableDataset):
    def __init__(self, dm: "RankingDataModule", day: int, batch_size: int, shuffle: bool) -> None:
        self.dm, self.day, self.batch_size, self.shuffle = dm, day, batch_size, shuffle

    def __iter__(self) -> Iterator[RankingBatch]:
        frame = self.dm.day_frame(self.day)
        n = len(frame)
        order = np.random.default_rng([self.dm.cfg.seed, self.day]).permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            yield self.dm.make_batch(frame, order[start:start + self.batch_size])

    def __len__(self) -> int:
        n = self.dm.day_rows(self.day)
        return (n + self.batch_size - 1) // self.batch_size


def resolve_days(corpus: Corpus, cfg: RankingDataConfig) -> tuple[list[int], int]:
    """(training days, evaluation day) of ``cfg`` on ``corpus``, checked."""
    days = corpus.days()
    if len(days) < 2:
        raise SemidError(f"{corpus.path}: ranking needs at least 2 days (train, then evaluate); found {len(days)}")
    train_days = list(cfg.train_days) if cfg.train_days is not None else days[:-1]
    missing = sorted(set(train_days) - set(days))
    if missing:
        raise SemidError(f"data.train_days: days {missing} are not in the corpus (days {days[0]}..{days[-1]})")
    if train_days != sorted(train_days):
        raise SemidError("data.train_days must be in increasing order (sequential training)")
    eval_day = cfg.eval_day if cfg.eval_day is not None else train_days[-1] + 1
    if eval_day not in days:
        raise SemidError(f"data.eval_day {eval_day} is not in the corpus (days {days[0]}..{days[-1]})")
    if eval_day <= train_days[-1]:
        raise SemidError(f"data.eval_day {eval_day} must come after the last training day")
    return train_days, eval_day


class RankingDataModule(L.LightningDataModule):
    """``features``: how items become sparse table features (``semid.embeddings.CacheFeatures`` over a token
    cache), or ``None`` for the Dense Input representation (batches carry raw content embeddings)."""

    def __init__(self, corpus: str | Path, cfg: RankingDataConfig, features: SparseFeatures | None = None,
                 with_history: bool = True) -> None:
        super().__init__()
        self.corpus = Corpus(corpus)
        self.cfg, self.features = cfg, features
        self.with_history = with_history  # without it, no history bag is built (the setting ignores it)
        self.items: Items | None = None
        self.forced_eval_day: int | None = None  # `semid rank eval --day D`
        self._frames: dict[tuple[int, int, int], DayFrame] = {}

    # -- set-up --------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.items is not None:
            return
        dense = self.features is None
        if dense:
            check_dense_memory(self.corpus, self.cfg.dense_dtype)
        self.items = self.corpus.read_items(columns=["item_id", "embedding", "first_day"], embeddings=dense,
                                            embedding_dtype=np.dtype(self.cfg.dense_dtype))
        self.train_days, self.eval_day = resolve_days(self.corpus, self.cfg)
        self.feature_rows = self.features.rows_of(self.items.item_id) if self.features is not None else None
        self.history = UserHistory(self.corpus, self.items, self.cfg.history_length)
        # impressions per item over the training days before ``_counted_to`` (popularity buckets, in day order)
        self._counted = np.zeros(len(self.items), np.int64)
        self._counted_to = -1

    def eval_days(self) -> list[int]:
        k = self.cfg.rolling_eval_days
        rolling = [d + 1 for d in self.train_days[-k:] if d + 1 in self.corpus.day_files()]
        return sorted(set(rolling[:-1] + [self.eval_day]))

    def _dist(self) -> tuple[int, int]:
        t = getattr(self, "trainer", None)
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    # -- popularity buckets ----------------------------------------------------------------------
    def _counts(self, day: int) -> np.ndarray:
        """Impressions per item on ``day``."""
        ids = to_int64(self.corpus.read_day(day, ["item_id"])["item_id"], self.corpus.path, "item_id")
        return np.bincount(self.items.index_of(ids), minlength=len(self.items))

    def item_buckets(self, day: int) -> np.ndarray:
        """Head/torso/tail of every item by impressions on the training days before ``day``.

        Days are asked for in order, so one running count is kept (not one [items] array per day: 20 days of a
        10M-item corpus would be 1.6 GB); an earlier day than the last one counts again from the start."""
        if day < self._counted_to:
            self._counted, self._counted_to = np.zeros(len(self.items), np.int64), -1
        for d in self.train_days:
            if self._counted_to <= d < day:
                self._counted += self._counts(d)
        self._counted_to = max(self._counted_to, day)
        return popularity_buckets(self._counted, self.cfg.head_share, self.cfg.torso_share)

    # -- frames and batches ----------------------------------------------------------------------
    def day_rows(self, day: int) -> int:
        rank, world = self._dist()
        key = (day, rank, world)
        if key in self._frames:
            return len(self._frames[key])
        import pyarrow.parquet as pq

        n = sum(pq.ParquetFile(f).metadata.num_rows for f in self.corpus.day_files()[day])
        return n // world if world > 1 else n

    def day_frame(self, day: int) -> DayFrame:
        rank, world = self._dist()
        key = (day, rank, world)
        if key in self._frames:
            return self._frames[key]
        assert self.items is not None
        cols = ["user_id", "watch_item_id", "item_id", "click"] + \
            (["engaged"] if "engaged" in self._day_columns(day) else [])
        t = self.corpus.read_day_share(day, rank, world, cols)
        p = self.corpus.path
        users = to_int64(t["user_id"], p, "user_id")
        cand = self.items.index_of(to_int64(t["item_id"], p, "item_id"))
        if (cand < 0).any():
            raise SemidError(f"{p}: day {day} has impressions of items missing from items.parquet "
                             "(run `semid data validate`)")
        watch_ids = to_int64(t["watch_item_id"], p, "watch_item_id", nullable=True)
        watch = np.where(watch_ids >= 0, self.items.index_of(watch_ids), -1)
        click = to_int64(t["click"], p, "click").astype(np.float32)
        engaged = to_int64(t["engaged"], p, "engaged").astype(np.float32) if "engaged" in cols else click
        offsets, hist = self.history.before(day).of(users)
        first_row = rank * (self.day_rows(day) if world > 1 else 0)  # read_day_share: n // world rows per rank
        frame = DayFrame(day, users, cand, watch, np.stack([click, engaged], 1), offsets, hist,
                         self.items.first_day[cand] == day, self.item_buckets(day)[cand], first_row)
        # keep only the frame in use plus the evaluation days' frames (reused every evaluation)
        self._frames = {k: v for k, v in self._frames.items() if k[0] in self.eval_days()}
        self._frames[key] = frame
        return frame

    def _day_columns(self, day: int) -> list[str]:
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.corpus.day_files()[day][0]).schema_arrow.names

    def make_batch(self, f: DayFrame, idx: np.ndarray) -> RankingBatch:
        assert self.items is not None
        cand, watch = f.cand[idx], f.watch[idx]
        h_len = f.hist_offsets[idx + 1] - f.hist_offsets[idx]
        h_off = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(h_len, out=h_off[1:])
        # the items only when the history bag is built (the context feature needs the lengths alone): on a 10M-item
        # corpus this gather is ~1 ms of a batch's ~5 ms of building (random reads of a day's history rows)
        h_rows = f.hist_rows[_ranges(f.hist_offsets[idx], h_len)] if self.with_history else None
        age = np.maximum(f.day - self.items.first_day[cand], 0)
        context = np.stack([np.log1p(h_len) / 4.0, (watch < 0).astype(np.float64), np.log1p(age) / 3.0], 1)
        kjt, content = None, None
        if self.features is not None:
            fr = self.feature_rows
            kjt = self.features.kjt({"candidate": fr[cand], "watch": np.where(watch >= 0, fr[watch], -1)},
                                    (h_off, fr[h_rows]) if self.with_history else None)
        else:
            assert self.items.embedding is not None
            table = torch.from_numpy(self.items.embedding)

            def emb(rows: torch.Tensor) -> torch.Tensor:  # float16 storage (data.dense_dtype) computes in float32
                out = table[rows]
                return out if out.dtype == torch.float32 else out.float()

            watch_t = torch.from_numpy(watch)
            watch_emb = emb(watch_t.clamp(min=0)) * (watch_t >= 0).unsqueeze(1)
            content = {"candidate": emb(torch.from_numpy(cand)), "watch": watch_emb}
            if self.with_history:
                seg = torch.from_numpy(np.repeat(np.arange(len(idx)), h_len))
                hist = torch.zeros(len(idx), table.shape[1]).index_add_(0, seg, emb(torch.from_numpy(h_rows)))
                content["history"] = hist / torch.from_numpy(np.maximum(h_len, 1).astype(np.float32)).unsqueeze(1)
        return RankingBatch(kjt=kjt, content=content, context=torch.from_numpy(context.astype(np.float32)),
                            labels=torch.from_numpy(f.labels[idx]), is_new=torch.from_numpy(f.is_new[idx]),
                            popularity=torch.from_numpy(f.popularity[idx].astype(np.int8)),
                            history_items=torch.from_numpy(h_len.astype(np.float32)), day=f.day,
                            row=torch.from_numpy(f.first_row + idx.astype(np.int64)),
                            item_id=torch.from_numpy(self.items.item_id[cand]))

    # -- Lightning hooks ---------------------------------------------------------------------------
    def _loader(self, day: int, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(_DayBatches(self, day, batch_size, shuffle), batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        # resuming a run whose last day is done, Lightning still asks for a loader before it stops
        day = self.train_days[min(epoch, len(self.train_days) - 1)]
        return self._loader(day, self.cfg.batch_size, self.cfg.shuffle_within_day)

    def val_dataloader(self) -> DataLoader | list:
        if self.forced_eval_day is not None:
            return self._loader(self.forced_eval_day, self.cfg.eval_batch_size, False)
        epoch = self.trainer.current_epoch if self.trainer is not None else len(self.train_days) - 1
        day = self.train_days[min(epoch, len(self.train_days) - 1)] + 1
        day = self.eval_day if epoch >= len(self.train_days) - 1 else day
        if day not in self.eval_days():
            return []
        return self._loader(day, self.cfg.eval_batch_size, False)



def available_memory_bytes() -> int | None:
    """Memory this process may still take: the kernel's MemAvailable, capped by a cgroup limit when one is set
    (a container's), or None where neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as f_limit, open(used) as f_used:
                cap, cur = f_limit.read().strip(), int(f_used.read().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 1 << 60:  # "max", or v1's "no limit" (~2^63)
            found.append(max(int(cap) - cur, 0))
    return min(found) if found else None


def dense_memory_bytes(n_items: int, dim: int, dtype: str) -> int:
    """What Dense Input holds: every item's embedding."""
    return n_items * dim * np.dtype(dtype).itemsize


def check_dense_memory(corpus: Corpus, dtype: str) -> int:
    """Prints Dense Input's memory need (once, on the first process) and refuses with one line, before anything
    is read, when the available memory cannot hold it next to ``DENSE_HEADROOM_BYTES``. Returns the need."""
    _, n = read_footer(corpus.items_path)
    dim = corpus.embedding_dim()
    need = dense_memory_bytes(n, dim, dtype)
    free = available_memory_bytes()
    if int(os.environ.get("LOCAL_RANK") or os.environ.get("RANK") or 0) == 0:
        has = f", {free / 1e9:.2f} GB available" if free is not None else ""
        print(f"Dense Input holds every item's embedding in memory: {n:,} x {dim} {dtype} = {need / 1e9:.2f} GB "
              f"per process{has}", flush=True)
    if free is not None and need + DENSE_HEADROOM_BYTES > free:
        half = dense_memory_bytes(n, dim, "float16")
        fix = (f"set data.dense_dtype=float16 ({half / 1e9:.2f} GB)" if dtype != "float16" and
               half + DENSE_HEADROOM_BYTES <= free else "use a machine with more memory, or a representation with "
               "tables (e.g. --representation spm_8k), which holds no embeddings")
        raise SemidError(f"data.dense_dtype: Dense Input needs {need / 1e9:.2f} GB for {n:,} item embeddings "
                         f"(dim {dim}, {dtype}) plus {DENSE_HEADROOM_BYTES / 2**30:.0f} GiB for the rest of the fit, "
                         f"but {free / 1e9:.2f} GB of memory is available ({fix})")
    return need


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each (s, l), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return offs + np.arange(total)
