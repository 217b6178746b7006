"""``semid bench lookups``: embedding-lookup throughput of the project's TorchRec path against its peers.

For each representation's table layout and several table sizes, forward and forward+backward+update
throughput of:

* ``torchrec_fast``: the project's path. The tables of an ``EmbeddingBagCollection`` sharded by
  ``DistributedModelParallel`` on a 1-process group with FBGEMM's fused EXACT_ROWWISE_ADAGRAD, planned
  and initialised by the very code ``semid rank fit`` uses (``semid.rankers.strategy.TorchRecStrategy``), whose
  forward takes the world-size-1 fast path (``semid.rankers.local_lookup``: DMP's FBGEMM kernels called
  directly, no input/output distribution);
* ``torchrec_dmp``: the same sharded module with the fast path off (``sharding.local_lookup=false``):
  DMP's full forward; ``torchrec_dmp_tw`` is that with ``table_wise`` sharding forced (not run by default);
* ``fbgemm_tbe``: FBGEMM's ``SplitTableBatchedEmbeddingBagsCodegen`` called directly (same optimizer);
* ``eb_sgd`` / ``eb_adagrad`` / ``eb_sparseadam``: ``torch.nn.EmbeddingBag(sparse=True)`` with
  ``torch.optim.SGD`` / ``Adagrad`` / ``SparseAdam`` -- what a user would otherwise write;
* ``ceiling``: the same rows moved by plain torch ops (``index_select`` for the forward, plus
  ``index_add_`` of a gradient for training) -- the memory-bandwidth ceiling of this access pattern.

Effective GB/s uses one byte model for every contender: 4 bytes x dim x lookups, once for the forward
(rows read) and three times for training (read in the forward, read and written by the update). GB/s
ratios therefore equal lookups/s ratios; optimizer state traffic is not counted.

Layouts (one "sample" = one item's bag(s)): ``hash`` 1 table, 1 lookup; ``unigram`` L tables, 1 lookup
each; ``bigram`` L/2 tables, 1 lookup each; ``spm`` 1 table, a bag of its measured lookups per item
(from a real token cache with ``--corpus/--sids``, else lengths uniform in 1..L, mean (L+1)/2 = 2.5 for
L = 4); ``history`` 1 table, a bag of H items (hash rows). ``--rows`` is the layout's total row count,
split evenly over its tables.
"""
from __future__ import annotations

import gc
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from semid.bench.dmp2 import run_dmp2_rounds
from semid.bench.timing import interleaved, machine, markdown_table, median, ratio
from semid.bench.names import CONTENDERS, DEFAULT_CONTENDERS, DISTRIBUTIONS, LAYOUTS
from semid.bench.workloads import (DMP, Batch, Built, Layout, LookupBenchConfig, build_torchrec, cycle, grads,
                                   make_batches, make_layout)
from semid.core.errors import SemidError
from semid.bench.records import LookupBench, LookupTarget, Throughput
from semid.core.records import JsonObject

# torchrec, fbgemm_gpu, torch.distributed and semid's embeddings, rankers and corpus code are imported inside the
# functions that use them: every `semid` command imports this module (semid.bench.cli builds its choices from
# it), and torchrec alone takes seconds to import

# the config, layouts and batches live in workloads.py (shared with dmp2.py); re-exported here as part of
# this benchmark's API (semid.bench.cli and the tests import them from here)
__all__ = ["CONTENDERS", "DEFAULT_CONTENDERS", "DISTRIBUTIONS", "DMP", "LAYOUTS", "REFERENCE", "TARGETS",
           "LookupBenchConfig", "bench_config", "check_targets", "render_markdown", "run_lookup_bench",
           "spm_lengths_from", "stream_bandwidth"]

REFERENCE = "torchrec_fast"  # the project's path: every ratio is its speed over another contender's

# -- contenders ----------------------------------------------------------------------------------------


def _tbe_inputs(b: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.concatenate(b.lengths)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return torch.from_numpy(np.concatenate(b.values)).to(device), torch.from_numpy(offsets).to(device)


def _build_tbe(layout: Layout, batches: list[Batch], cfg: LookupBenchConfig, device: torch.device) -> Built:
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import ComputeDevice, \
        SplitTableBatchedEmbeddingBagsCodegen

    from semid.embeddings import fused_params

    cuda = device.type == "cuda"
    specs = [(r, cfg.dim, EmbeddingLocation.DEVICE if cuda else EmbeddingLocation.HOST,
              ComputeDevice.CUDA if cuda else ComputeDevice.CPU) for r in layout.table_rows]
    tbe = SplitTableBatchedEmbeddingBagsCodegen(specs, device=device, **fused_params("rowwise_adagrad", cfg.lr))
    inputs = [_tbe_inputs(b, device) for b in batches]
    nxt = cycle(inputs)
    grad = grads(batches, cfg.dim * len(specs), device)

    def fwd() -> object:
        with torch.no_grad():
            return tbe(*nxt())

    def train() -> object:
        out = tbe(*nxt())
        out.backward(grad)
        return out

    return Built(fwd, train)


def _build_embedding_bag(layout: Layout, batches: list[Batch], cfg: LookupBenchConfig, device: torch.device,
                         optimizer: str) -> Built:
    bags = nn.ModuleList([nn.EmbeddingBag(r, cfg.dim, mode="sum", sparse=True, include_last_offset=True)
                          for r in layout.table_rows]).to(device)
    params = list(bags.parameters())
    opt: torch.optim.Optimizer = {
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr),
        "adagrad": lambda: torch.optim.Adagrad(params, lr=cfg.lr),
        "sparseadam": lambda: torch.optim.SparseAdam(params, lr=cfg.lr),
    }[optimizer]()
    inputs = []
    for b in batches:
        per_table = []
        for v, ln in zip(b.values, b.lengths):
            off = np.zeros(len(ln) + 1, np.int64)
            np.cumsum(ln, out=off[1:])
            per_table.append((torch.from_numpy(v).to(device), torch.from_numpy(off).to(device)))
        inputs.append(per_table)
    nxt = cycle(inputs)
    grad = grads(batches, cfg.dim, device)

    def fwd() -> object:
        with torch.no_grad():
            return [bag(v, o) for bag, (v, o) in zip(bags, nxt())]

    def train() -> object:
        outs = [bag(v, o) for bag, (v, o) in zip(bags, nxt())]
        torch.autograd.backward(outs, [grad] * len(outs))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return outs

    return Built(fwd, train)


def _build_ceiling(layout: Layout, batches: list[Batch], cfg: LookupBenchConfig, device: torch.device) -> Built:
    """The same rows moved with plain torch ops: gather (forward), gather + scatter-add (training).

    Into preallocated buffers: a fresh [lookups, dim] output per call costs page faults, not bandwidth."""
    w = torch.empty(layout.total_rows, cfg.dim, device=device).uniform_(-0.01, 0.01)
    starts = np.concatenate([[0], np.cumsum(layout.table_rows)[:-1]])
    ids = [torch.from_numpy(np.concatenate([v + s for v, s in zip(b.values, starts)])).to(device) for b in batches]
    n_max = max(len(i) for i in ids)
    rows = torch.empty(n_max, cfg.dim, device=device)
    grad = torch.full((n_max, cfg.dim), 1e-6, device=device)
    nxt = cycle(ids)

    def fwd() -> object:
        i = nxt()
        return torch.index_select(w, 0, i, out=rows[:len(i)])

    def train() -> object:
        i = nxt()
        out = torch.index_select(w, 0, i, out=rows[:len(i)])
        w.index_add_(0, i, grad[:len(i)], alpha=-1.0)
        return out

    return Built(fwd, train)


def _build(name: str, layout: Layout, batches: list[Batch], cfg: LookupBenchConfig, device: torch.device) -> Built:
    if name == "torchrec_fast":
        return build_torchrec(layout, batches, cfg, device, None, local_lookup=True)
    if name == "torchrec_dmp":
        return build_torchrec(layout, batches, cfg, device, None)
    if name == "torchrec_dmp_tw":
        return build_torchrec(layout, batches, cfg, device, ["table_wise"])
    if name == "fbgemm_tbe":
        return _build_tbe(layout, batches, cfg, device)
    if name.startswith("eb_"):
        return _build_embedding_bag(layout, batches, cfg, device, name[3:])
    if name == "ceiling":
        return _build_ceiling(layout, batches, cfg, device)
    raise SemidError(f"unknown contender {name!r}")


# -- process group -------------------------------------------------------------------------------------


class _OneProcessGroup:
    """A 1-process group (gloo on CPU, NCCL on GPU) for DMP, unless one exists; torn down on exit."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.owned = device, False

    def __enter__(self) -> "_OneProcessGroup":
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
            self.owned = True
        return self

    def __exit__(self, *exc: object) -> None:
        import torch.distributed as dist

        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


# -- the benchmark -------------------------------------------------------------------------------------


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _figures(seconds: float, lookups: int, batch: int, dim: int, passes: int) -> Throughput:
    return {"ms_per_batch": seconds * 1e3, "lookups_per_s": lookups / seconds, "samples_per_s": batch / seconds,
            "gb_per_s": passes * 4 * dim * lookups / seconds / 1e9}


def bench_config(layout: Layout, dist_name: str, cfg: LookupBenchConfig, device: torch.device) -> JsonObject:
    """All contenders on one (layout, rows, distribution), interleaved; figures are medians over rounds."""
    batches = make_batches(layout, dist_name, cfg)
    lookups = int(np.mean([b.lookups for b in batches]))
    built: dict[str, Built] = {}
    for name in cfg.contenders:
        built[name] = _build(name, layout, batches, cfg, device)
    res: JsonObject = {"layout": layout.name, "rows": layout.total_rows, "tables": len(layout.table_rows),
                       "table_rows": layout.table_rows, "distribution": dist_name,
                       "lookups_per_sample": lookups / cfg.batch, "lookups_per_batch": lookups}
    for b in built.values():
        res.update(b.info)
    for mode, passes in (("fwd", 1), ("train", 3)):
        times = interleaved({n: getattr(b, mode) for n, b in built.items()}, rounds=cfg.rounds, iters=cfg.iters,
                            warmup=cfg.warmup, sync=_sync(device), seed=cfg.seed)
        res[mode] = {n: _figures(median(t), lookups, cfg.batch, cfg.dim, passes) for n, t in times.items()}
        ref = REFERENCE if REFERENCE in times else next(iter(times))
        # speed of the reference / speed of each contender, per round, median over rounds
        res[f"{mode}_ratio_vs_ref"] = {n: ratio(times, ref, n) for n in times if n != ref}
        res[f"{mode}_reference"] = ref
        if DMP in times and ref != DMP:  # the plain DMP path against the same others, same rounds
            res[f"{mode}_ratio_dmp_vs"] = {n: ratio(times, DMP, n) for n in times if n not in (ref, DMP)}
    if cfg.dmp2 and DMP in built and device.type == "cpu":
        res["dmp2"] = run_dmp2_rounds(layout, dist_name, cfg, built[DMP].train, lookups)
    del built
    gc.collect()
    return res


def stream_bandwidth(device: torch.device, mb: int = 256, rounds: int = 5) -> float:
    """Plain ``copy_`` of a large buffer: the machine's streaming GB/s (read + write), for context."""
    n = mb * 2**20 // 4
    a, b = torch.ones(n, device=device), torch.empty(n, device=device)
    times = interleaved({"copy": lambda: b.copy_(a)}, rounds=rounds, iters=3, sync=_sync(device))
    return 2 * n * 4 / median(times["copy"]) / 1e9


def run_lookup_bench(cfg: LookupBenchConfig, *, log: Callable[[str], None] = print) -> LookupBench:
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, log)
    finally:
        torch.set_num_threads(threads)  # the caller's process keeps its own setting (tests run in one)


def _run(cfg: LookupBenchConfig, log: Callable[[str], None]) -> LookupBench:
    device = torch.device(cfg.device, 0) if cfg.device == "cuda" else torch.device("cpu")
    out: LookupBench = {"benchmark": "lookups", "machine": machine(),
                        "config": {k: v for k, v in asdict(cfg).items() if k != "spm_lengths"},
                        "spm_mean_lookups": float(np.mean(cfg.spm_lengths)) if cfg.spm_lengths
                        else (cfg.levels + 1) / 2, "stream_copy_gb_per_s": stream_bandwidth(device),
                        "results": []}
    with _OneProcessGroup(device):
        for rows in cfg.rows:
            for name in cfg.layouts:
                layout = make_layout(name, rows, cfg)
                for d in cfg.distributions:
                    r = bench_config(layout, d, cfg, device)
                    out["results"].append(r)
                    log(_one_line(r))
    out["targets"] = check_targets(out["results"])
    out["targets_dmp"] = check_targets(out["results"], ratios="train_ratio_dmp_vs")
    out["machine"]["load_avg_end"] = machine()["load_avg_start"]
    return out


def _one_line(r: JsonObject) -> str:
    t = r["train"]
    parts = [f"{n} {v['lookups_per_s'] / 1e6:.2f}" for n, v in t.items()]
    return f"{r['layout']:8s} rows={r['rows']:>9,} {r['distribution']:7s} train M lookups/s: " + ", ".join(parts)


# -- targets -------------------------------------------------------------------------------------------

TARGETS = {
    "torchrec_within_1.2x_of_tbe": "TorchRec path within 1.2x of raw FBGEMM TBE (train)",
    "torchrec_5x_eb_adagrad": "TorchRec path >= 5x nn.EmbeddingBag + sparse Adagrad (train)",
    "torchrec_50pct_of_ceiling": "TorchRec path >= 50% of the gather + index_add_ ceiling (train)",
}


def check_targets(results: list[JsonObject], ratios: str = "train_ratio_vs_ref") -> dict[str, LookupTarget]:
    """Each target over every measured configuration (train mode): how many met, and the worst case.

    ``ratios``: ``train_ratio_vs_ref`` checks the project's path (the fast path), ``train_ratio_dmp_vs``
    the plain DMP path measured in the same rounds."""
    out: dict[str, LookupTarget] = {}
    checks = {
        "torchrec_within_1.2x_of_tbe": ("fbgemm_tbe", lambda x: x >= 1 / 1.2),
        "torchrec_5x_eb_adagrad": ("eb_adagrad", lambda x: x >= 5.0),
        "torchrec_50pct_of_ceiling": ("ceiling", lambda x: x >= 0.5),
    }
    for key, (other, ok) in checks.items():
        vals = [(r[ratios][other], f"{r['layout']}/{r['rows']}/{r['distribution']}")
                for r in results if other in r.get(ratios, {}) and r.get("train_reference") == REFERENCE]
        if not vals:
            continue
        met = [v for v, _ in vals if ok(v)]
        worst = min(vals)
        out[key] = {"description": TARGETS[key], "met": len(met), "of": len(vals), "worst_ratio": worst[0],
                    "worst_case": worst[1], "median_ratio": median([v for v, _ in vals])}
    return out


# -- report --------------------------------------------------------------------------------------------

_LABEL = {"torchrec_fast": "TorchRec fast path", "torchrec_dmp": "TorchRec DMP", "torchrec_dmp_tw": "DMP table_wise",
          "fbgemm_tbe": "FBGEMM TBE", "eb_sgd": "EB+SGD", "eb_adagrad": "EB+Adagrad", "eb_sparseadam": "EB+SparseAdam",
          "ceiling": "ceiling"}
_SHORT = {"torchrec_fast": "fast", "torchrec_dmp": "DMP"}


def render_markdown(res: LookupBench) -> str:
    out = []
    cfg = res["config"]
    names = [n for n in CONTENDERS if n in cfg["contenders"]]
    stream = res.get("stream_copy_gb_per_s")
    ref = REFERENCE if REFERENCE in names else DMP if DMP in names else None
    ratio_cols = [n for n in ("fbgemm_tbe", "eb_adagrad", "ceiling", DMP, "torchrec_dmp_tw", "eb_sgd")
                  if n in names and n != ref]
    dmp_cols = [n for n in ("fbgemm_tbe", "eb_adagrad", "ceiling") if n in names] if ref == REFERENCE and DMP in names else []
    for mode, title in (("train", "forward + backward + update"), ("fwd", "forward only")):
        header = ["layout", "rows", "ids", "lookups/sample"] + [_LABEL[n] for n in names]
        if ref:
            header += [f"{_SHORT[ref]} / {_LABEL[n]}" for n in ratio_cols] + [f"DMP / {_LABEL[n]}" for n in dmp_cols]
            header += [f"{_SHORT[ref]} GB/s"] + (["% of copy"] if stream else [])
        rows = []
        for r in res["results"]:
            fig = r[mode]
            row = [r["layout"], f"{r['rows']:,}", r["distribution"], round(r["lookups_per_sample"], 2)]
            row += [round(fig[n]["lookups_per_s"] / 1e6, 2) for n in names]
            if ref:
                gbps = fig[ref]["gb_per_s"]
                row += [f"{r[f'{mode}_ratio_vs_ref'][n]:.2f}x" for n in ratio_cols]
                row += [f"{r[f'{mode}_ratio_dmp_vs'][n]:.2f}x" for n in dmp_cols] + [round(gbps, 2)]
                row += [f"{100 * gbps / stream:.0f}%"] if stream else []
            rows.append(row)
        who = f"the {_LABEL[ref]}" if ref else "the first contender"
        out.append(f"**{title}**: M lookups/s, batch {cfg['batch']}, dim {cfg['dim']}, {cfg['threads'] or 'default'} "
                   f"thread(s), {cfg['device']}. Ratios: speed of {who} (or of DMP where the column says so) / speed "
                   "of the other, median of per-round ratios (> 1: faster).\n")
        out.append(markdown_table(header, rows))
        out.append("")
    if stream:
        out.append(f"Streaming copy on this machine: {stream:.1f} GB/s (read + write, plain `copy_` of 256 MiB). "
                   f"SPM bag lengths: {cfg['spm_source']}.\n")
    if any("dmp2" in r for r in res["results"]):
        rows = [[r["layout"], f"{r['rows']:,}", r["distribution"], round(r["dmp2"]["train"]["lookups_per_s"] / 1e6, 2),
                 f"{r['dmp2']['train_ratio_vs_dmp1']:.2f}x"] for r in res["results"] if "dmp2" in r]
        out.append("**DMP on 2 processes** (gloo, table_wise, one thread each, same global batch; against the "
                   "1-process DMP path)\n")
        out.append(markdown_table(["layout", "rows", "ids", "train M lookups/s", "2 proc / 1 proc"], rows))
        out.append("")
    rows = [[_LABEL[path], v["description"], f"{v['met']}/{v['of']}", f"{v['worst_ratio']:.2f} ({v['worst_case']})",
             f"{v['median_ratio']:.2f}"]
            for path, key in ((REFERENCE, "targets"), (DMP, "targets_dmp")) for v in res.get(key, {}).values()]
    if rows:
        out.append(markdown_table(["path", "target (train)", "configurations met", "worst ratio (case)", "median ratio"],
                                  rows))
    return "\n".join(out)


def spm_lengths_from(corpus: Path, sids: Path, representation: str) -> tuple[list[int], str]:
    """SPM lookups per impression on a real corpus: the token cache's per-item lengths, impression weighted."""
    from semid.datamodules import open_corpus, to_int64
    from semid.embeddings import build_token_cache, load_representation_config
    from semid.rqvae import read_sid_table

    c = open_corpus(corpus)
    items = c.read_items(columns=["item_id", "embedding", "first_day"])
    counts = np.zeros(len(items.item_id), np.int64)
    for d in c.days():
        pos = items.index_of(to_int64(c.read_day(d, ["item_id"])["item_id"], c.path, "item_id"))
        counts += np.bincount(pos[pos >= 0], minlength=len(counts))
    rep = load_representation_config(representation)
    if rep.kind != "spm":
        raise SemidError(f"--spm-representation {representation} is a {rep.kind} representation, not spm")
    table = read_sid_table(sids)
    cache = build_token_cache(rep, table, items.item_id, counts)
    per_item = cache.lookups_per_item()[cache.rows_of(items.item_id)]
    rng = np.random.default_rng(0)
    p = counts / max(counts.sum(), 1)
    sample = rng.choice(per_item, 65536, p=p) if counts.sum() else per_item
    return [int(x) for x in sample], (f"{rep.name} token cache on {corpus}: {per_item.mean():.2f} lookups per item, "
                                      f"{np.average(per_item, weights=np.maximum(counts, 1e-12)):.2f} per impression")
