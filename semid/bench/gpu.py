"""``semid bench gpu`` (``scripts/gpu-check.sh``): the checks that need a CUDA device, prepared to run in one go,
under 8 minutes, whenever a GPU machine is lent:

1. ``lookups``: ``semid bench lookups --device cuda``: FBGEMM TBE in device memory against ``nn.EmbeddingBag``
   (+ SGD and + Adagrad) and the TorchRec fast path, 1M-row tables, Zipf ids, batch 16,384 (``torch.cuda
   .synchronize`` around each timing);
2. ``rank_fit``: one ``semid rank fit`` of the small study's SPM-8K on the GPU (``trainer.accelerator=cuda``: the
   TorchRec strategy's process group is NCCL), on a ``small`` corpus generated here (or ``--corpus``) with SIDs from
   a briefly trained RQ-VAE (300 steps: the ranker's speed does not depend on how well the SIDs were learned);
3. ``plan``: ``semid plan --representation all`` for this machine's topology (its GPU count and HBM).

Each check is a child process with what is left of ``--budget-s`` as its time limit (one that runs out is
recorded as timed out and the later checks still run, each with its own minimum); ``gpu.json`` and ``gpu.md``
hold the device, every figure and each check's command. Without CUDA it refuses with one line (exit 2) before
doing anything.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from semid.bench.scale import run_child
from semid.bench.timing import machine, markdown_table
from semid.core.errors import SemidError
from semid.bench.records import GpuCheck, GpuDevice
from semid.core.records import JsonObject

_MIN_CHECK_S = 60.0  # every check gets at least this long, even when an earlier one overran
_LOOKUP_ARGS = ["--rows", "1048576", "--layouts", "hash,unigram,spm,history", "--distributions", "zipf",
                "--contenders", "torchrec_fast,fbgemm_tbe,eb_sgd,eb_adagrad", "--batch", "16384",
                "--rounds", "3", "--iters", "10", "--warmup", "3"]


@dataclass
class GpuCheckConfig:
    out: Path = Path("runs/bench-gpu")
    corpus: Path | None = None
    budget_s: float = 450.0
    rqvae_steps: int = 300


def require_cuda() -> GpuDevice:
    """The CUDA device this machine has, or a one-line refusal."""
    if not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None else
               f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no CUDA device")
        raise SemidError(f"bench gpu needs a CUDA GPU: {why} (run it on a GPU machine, with the CUDA install "
                         "`TORCH_CUDA=cu126 bash scripts/install.sh cuda`)")
    p = torch.cuda.get_device_properties(0)
    return {"name": p.name, "count": torch.cuda.device_count(), "memory_gb": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}", "torch": torch.__version__, "cuda": torch.version.cuda,
            "nccl": ".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None}


def _semid(*args: str) -> list[str]:
    return [sys.executable, "-m", "semid.cli", *args]


def run_gpu_check(cfg: GpuCheckConfig, log: Callable[[str], None] = print) -> GpuCheck:
    device = require_cuda()
    out = cfg.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    res: GpuCheck = {"benchmark": "gpu", "device": device, "machine": machine(), "checks": {}}
    t0 = time.perf_counter()

    def check(name: str, cmd: list[str]) -> JsonObject:
        left = max(cfg.budget_s - (time.perf_counter() - t0), _MIN_CHECK_S)
        log(f"{name}: {' '.join(cmd[2:])} (limit {left:.0f} s)")
        r = run_child(cmd, out / "logs" / f"{name}.log", max_rss_bytes=1 << 62, timeout_s=left)
        rec: JsonObject = {k: v for k, v in r.items() if k != "output"}
        rec["ok"] = r["rc"] == 0
        if not rec["ok"]:
            rec["failed"] = "timed out" if r["timed_out"] else f"exit {r['rc']}: {' | '.join(r['tail'])[:300]}"
        res["checks"][name] = rec
        log(f"{name}: " + (f"{r['wall_s']:.0f} s" if rec["ok"] else f"FAILED ({rec['failed']})"))
        return rec

    lk = check("lookups", _semid("bench", "lookups", "--device", "cuda", *_LOOKUP_ARGS, "--out", str(out / "lookups")))
    if lk["ok"]:
        lk["results"] = _lookup_rows(json.loads((out / "lookups" / "lookups.json").read_text()))

    corpus, sids, rqvae = cfg.corpus, out / "work" / "sids.parquet", out / "work" / "rqvae"
    ready = True
    if corpus is None:
        corpus = out / "work" / "small"
        if not (corpus / "corpus.json").exists():
            ready = check("corpus", _semid("data", "synth", "--preset", "small", "--out", str(corpus),
                                           "--overwrite"))["ok"]
    if ready:
        ready = check("sids", _semid("sids", "train", "--corpus", str(corpus), "--config", "small", "--out",
                                     str(rqvae), "--overwrite", "--no-resume", "--set",
                                     f"train.steps={cfg.rqvae_steps}", "--set", "run.logger=csv"))["ok"]
        ready = ready and check("assign", _semid("sids", "assign", "--model", str(rqvae), "--corpus", str(corpus),
                                                 "--out", str(sids), "--overwrite"))["ok"]
    if ready:
        run = out / "work" / "rank-spm_8k"
        rf = check("rank_fit", _semid("rank", "fit", "--representation", "spm_8k", "--corpus", str(corpus), "--sids",
                                      str(sids), "--out", str(run), "--no-resume", "--set", "trainer.accelerator=cuda",
                                      "--set", "trainer.devices=1", "--set", "trainer.loggers=[csv]",
                                      "--set", "data.train_days=[0,1,2]", "--set", "data.eval_day=3"))
        if rf["ok"]:
            r = json.loads((run / "results.json").read_text())
            m = (r.get("metrics") or {}).get("ctr", {}).get("overall", {})
            rf.update(train_samples_per_s=r["train_samples_per_s"], ctr_auc=m.get("auc"),
                      sharding_plan=r.get("sharding_plan"), fit_wall_s=r["wall_seconds"])
    pl = check("plan", _semid("plan", "--representation", "all", "--nodes", "1", "--gpus-per-node",
                              str(device["count"]), "--hbm-gb", str(device["memory_gb"]), "--json",
                              str(out / "plan.json")))
    if pl["ok"]:
        pl["plan"] = json.loads((out / "plan.json").read_text())
    res["wall_s"] = time.perf_counter() - t0
    res["ok"] = all(c["ok"] for c in res["checks"].values())
    return res


def _lookup_rows(lookups: JsonObject) -> list[JsonObject]:
    """Per layout: training M lookups/s of each contender and TBE / nn.EmbeddingBag+Adagrad."""
    rows: list[JsonObject] = []
    for r in lookups.get("results", []):
        train = r.get("train", {})
        row = {"layout": r["layout"], "rows": r["rows"], "distribution": r["distribution"],
               "lookups_per_sample": r["lookups_per_sample"],
               **{f"{n}_mlookups_per_s": v["lookups_per_s"] / 1e6 for n, v in train.items()}}
        if "fbgemm_tbe" in train and "eb_adagrad" in train:
            row["tbe_over_eb_adagrad"] = train["fbgemm_tbe"]["lookups_per_s"] / train["eb_adagrad"]["lookups_per_s"]
        rows.append(row)
    return rows


def render_markdown(res: GpuCheck) -> str:
    d = res["device"]
    lines = [f"Device: {d['count']} x {d['name']} ({d['memory_gb']} GB, sm {d['capability']}), torch {d['torch']}, "
             f"CUDA {d['cuda']}, NCCL {d['nccl']}; all checks {res['wall_s']:.0f} s", ""]
    rows = [[n, "ok" if c["ok"] else f"failed: {c['failed']}", f"{c['wall_s']:.0f}", c["command"]]
            for n, c in res["checks"].items()]
    lines += [markdown_table(["check", "result", "wall s", "command"], rows), ""]
    lk = res["checks"].get("lookups", {})
    if lk.get("results"):
        names = [k[:-len("_mlookups_per_s")] for k in lk["results"][0] if k.endswith("_mlookups_per_s")]
        rows = [[r["layout"], f"{r['rows']:,}", r["lookups_per_sample"]] +
                [f"{r.get(f'{n}_mlookups_per_s', 0):.1f}" for n in names] +
                [f"{r['tbe_over_eb_adagrad']:.2f}" if "tbe_over_eb_adagrad" in r else "-"] for r in lk["results"]]
        lines += ["Lookups on the GPU, training (M lookups/s):", "",
                  markdown_table(["layout", "rows", "lookups/sample", *names, "TBE / EB+Adagrad"], rows), ""]
    rf = res["checks"].get("rank_fit", {})
    if rf.get("ok"):
        lines.append(f"`semid rank fit` spm_8k on the GPU (NCCL, 1 process): {rf['train_samples_per_s']:,.0f} "
                     f"samples/s, CTR AUC {rf['ctr_auc']:.4f}, fit {rf['fit_wall_s']:.0f} s")
    return "\n".join(lines)
