"""``semid sids bench``: the RQ-VAE against residual k-means and ResidualVQ on the same embeddings, same L and K.

* residual k-means, semid (``quantizer: rqkmeans``, plain and balanced): what ``semid sids train --quantizer
  rqkmeans`` trains, through the same export and float64 encoding as the RQ-VAE
* residual k-means: faiss ``ResidualQuantizer`` with beam size 1 (greedy residual encoding)
* ``vector_quantize_pytorch.ResidualVQ``: EMA codebooks, k-means init, dead-code expiry

Every method fits on the same impression-weighted item sample the RQ-VAE trains on and is measured on
all items of the corpus: reconstruction error in the input space (||x - x̂|| / ||x||), per-level
utilisation, unique-SID fraction, fit time and encoding throughput. The peers quantize the input
space directly; the RQ-VAE reconstructs through its decoder.
"""
from __future__ import annotations

import importlib
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from semid.datamodules import open_corpus
from semid.rqvae.data import impression_counts, split_items
from semid.core.errors import SemidError
from semid.rqvae.records import QuantizerBench, QuantizerBenchRow
from semid.rqvae.config import RqvaeConfig, cpu_threads
from semid.rqvae.health import codes_summary, relative_error

_PEER_FIT_ITEMS = 65536  # faiss trains each level's k-means on at most 256 points per code anyway


def _measure(name: str, encode: Callable[[np.ndarray], np.ndarray], decode: Callable[[np.ndarray], np.ndarray],
             x: np.ndarray, k: int, fit_seconds: float, note: str) -> QuantizerBenchRow:
    encode(x[: min(len(x), 1024)])  # warm-up: first calls pay for allocation and thread start
    t0 = time.perf_counter()
    codes = encode(x)
    enc = time.perf_counter() - t0
    x_hat = decode(codes)
    return {"method": name, "relative_error": relative_error(x, x_hat), "fit_seconds": round(fit_seconds, 2),
            "encode_items_per_s": round(len(x) / max(enc, 1e-9)), "note": note,
            **codes_summary(np.asarray(codes, np.int64), k)}


def _bench_semid(corpus: Path, cfg: RqvaeConfig, x: np.ndarray) -> QuantizerBenchRow:
    """A quantizer trained by ``semid sids train`` (either kind), measured through its frozen export."""
    from semid.rqvae.train import train_quantizer

    with tempfile.TemporaryDirectory(prefix="semid-bench-") as tmp:
        r = train_quantizer(corpus, cfg, Path(tmp) / "run", quiet=True)
        m = r.model
        bs = cfg.run.encode_batch_size
        if cfg.quantizer == "rqvae":
            name = "RQ-VAE (semid)"
            note = f"MLP {x.shape[1]}-{cfg.model.hidden_dim}-{cfg.model.latent_dim}, {cfg.train.steps} steps"
        else:
            rk, q = cfg.rqkmeans, r.health["quantizer"]
            name = "residual k-means, balanced (semid)" if rk.balanced else "residual k-means (semid)"
            note = f"{q['kmeans']}, {rk.fit_items:,} draws, {rk.dim_steps} dim steps x {rk.iters} iters"
            if rk.balanced:
                note += f", cap {q['balance']['cap']} (+{rk.balance_slack:.0%}) of {r.health['train']['fit_items']:,}"
        return _measure(name, lambda a: m.encode(a, bs), lambda c: m.reconstruct(c, bs), x, cfg.model.codebook_size,
                        r.fit_seconds, note + ", float64 encode")


def _bench_faiss(fit: np.ndarray, x: np.ndarray, levels: int, k: int) -> QuantizerBenchRow:
    import faiss

    nbits = int(math.log2(k))
    if 2 ** nbits != k:
        return {"method": "residual k-means (faiss)", "skipped": f"faiss needs K to be a power of 2, got {k}"}
    rq = faiss.ResidualQuantizer(x.shape[1], levels, nbits)
    rq.max_beam_size = 1
    t0 = time.perf_counter()
    rq.train(np.ascontiguousarray(fit))
    fit_s = time.perf_counter() - t0

    def encode(a: np.ndarray) -> np.ndarray:
        packed = rq.compute_codes(np.ascontiguousarray(a, dtype=np.float32))
        return _unpack(packed, levels, nbits)

    def decode(codes: np.ndarray) -> np.ndarray:
        return rq.decode(_pack(codes, nbits, rq.code_size))

    return _measure("residual k-means (faiss)", encode, decode, x, k, fit_s, "ResidualQuantizer, beam 1")


def _unpack(packed: np.ndarray, levels: int, nbits: int) -> np.ndarray:
    """faiss packs codes little-endian, nbits each, into code_size bytes per vector."""
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : levels * nbits].reshape(len(packed), levels, nbits)
    return (bits.astype(np.int64) << np.arange(nbits)).sum(-1)


def _pack(codes: np.ndarray, nbits: int, code_size: int) -> np.ndarray:
    bits = ((codes[:, :, None] >> np.arange(nbits)) & 1).astype(np.uint8).reshape(len(codes), -1)
    pad = code_size * 8 - bits.shape[1]
    bits = np.pad(bits, ((0, 0), (0, pad)))
    return np.packbits(bits, axis=1, bitorder="little")


def _bench_residual_vq(cfg: RqvaeConfig, sampler: Callable[[int], np.ndarray], x: np.ndarray) -> QuantizerBenchRow:
    from vector_quantize_pytorch import ResidualVQ

    levels, k = cfg.model.levels, cfg.model.codebook_size
    torch.manual_seed(cfg.train.seed)
    rvq = ResidualVQ(dim=x.shape[1], num_quantizers=levels, codebook_size=k, kmeans_init=True,
                     kmeans_iters=cfg.train.kmeans_iters, threshold_ema_dead_code=2, decay=0.99)
    rvq.train()
    t0 = time.perf_counter()
    with torch.no_grad():  # EMA codebooks learn without gradients
        rvq(torch.from_numpy(sampler(cfg.train.kmeans_init_items))[None])  # k-means init on the first batch
        for _ in range(cfg.train.steps - 1):
            rvq(torch.from_numpy(sampler(cfg.train.batch_size))[None])
    fit_s = time.perf_counter() - t0
    rvq.eval()
    bs = cfg.run.encode_batch_size

    @torch.no_grad()
    def encode(a: np.ndarray) -> np.ndarray:
        out = [rvq(torch.from_numpy(a[s:s + bs])[None])[1][0] for s in range(0, len(a), bs)]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def decode(codes: np.ndarray) -> np.ndarray:
        return rvq.get_output_from_indices(torch.from_numpy(codes)[None])[0].numpy()

    return _measure("ResidualVQ (vector-quantize-pytorch)", encode, decode, x, k, fit_s,
                    f"EMA decay 0.99, k-means init, dead-code expiry (threshold 2), {cfg.train.steps} steps")


def bench_peers(corpus_path: str | Path, cfg: RqvaeConfig) -> QuantizerBench:
    for module in ("faiss", "vector_quantize_pytorch"):
        # imported before cpu_threads so that the thread setting reaches faiss too
        try:
            importlib.import_module(module)
        except ImportError:
            raise SemidError(f"`semid sids bench` needs {module} (install the bench extra: "
                             "pip install -e '.[bench]')") from None
    with cpu_threads(cfg.run.threads):
        return _bench(corpus_path, cfg)


def _bench(corpus_path: str | Path, cfg: RqvaeConfig) -> QuantizerBench:
    corpus = open_corpus(corpus_path)
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    x = items.embedding
    t = cfg.train
    sample = split_items(impression_counts(corpus, items, t.min_day, t.max_day), t.holdout_items, t.seed)
    rng = np.random.default_rng(t.seed)
    cum = np.cumsum(sample.train_weights)

    def sampler(n: int) -> np.ndarray:  # the RQ-VAE's training distribution: items by impressions
        pick = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(cum) - 1)
        return x[sample.train_rows[pick]]

    rqk = replace(cfg, quantizer="rqkmeans")
    rows = [_bench_semid(Path(corpus_path), replace(cfg, quantizer="rqvae"), x),
            _bench_semid(Path(corpus_path), rqk, x),
            _bench_semid(Path(corpus_path), replace(rqk, rqkmeans=replace(rqk.rqkmeans, balanced=True)), x),
            _bench_faiss(sampler(_PEER_FIT_ITEMS), x, cfg.model.levels, cfg.model.codebook_size),
            _bench_residual_vq(cfg, sampler, x)]
    return {"corpus": str(corpus_path), "corpus_fingerprint": corpus.fingerprint, "items": len(x), "dim": items.dim,
            "levels": cfg.model.levels, "codebook_size": cfg.model.codebook_size,
            "torch_threads": torch.get_num_threads(), "rows": rows}


def render_bench(result: QuantizerBench) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Quantizers — {result['items']:,} items, dim {result['dim']}, L={result['levels']}, "
                    f"K={result['codebook_size']}")
    for col in ("method", "rel. error", "utilisation per level", "unique SIDs", "largest collision", "fit s",
                "encode items/s"):
        t.add_column(col, justify="right" if col != "method" else "left")
    for r in result["rows"]:
        if "skipped" in r:
            t.add_row(r["method"], r["skipped"], "", "", "", "", "")
            continue
        t.add_row(r["method"], f"{r['relative_error']:.4f}", " ".join(f"{u:.1%}" for u in r["utilisation_per_level"]),
                  f"{r['unique_sid_fraction']:.2%}", f"{r['largest_collision_group']:,}", f"{r['fit_seconds']:.1f}",
                  f"{r['encode_items_per_s']:,}")
    Console().print(t)


def markdown_table(result: QuantizerBench) -> str:
    lines = ["| method | rel. error ‖x−x̂‖/‖x‖ | utilisation per level | unique SIDs | largest collision | "
             "fit s | encode items/s |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['method']} | skipped: {r['skipped']} | | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['relative_error']:.4f} | "
                     f"{' / '.join(f'{u:.1%}' for u in r['utilisation_per_level'])} | {r['unique_sid_fraction']:.2%} | "
                     f"{r['largest_collision_group']} | {r['fit_seconds']:.1f} | {r['encode_items_per_s']:,} |")
    return "\n".join(lines)
