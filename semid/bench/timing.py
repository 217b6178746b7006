"""Interleaved timing: every comparison is a ratio measured in one run.

The machines this project runs on are shared, so absolute times drift by 2x within minutes. Each
round runs every contender once (in a shuffled order, so none always goes first after a pause) and
the ratio of two contenders is taken per round, then the median over rounds: a slow minute slows
both sides of a ratio alike.
"""
from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Callable

import torch


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, iters: int, warmup: int = 2,
                sync: Callable[[], None] | None = None, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per call of each function, one entry per round (``iters`` calls averaged)."""
    sync = sync or (lambda: None)
    for fn in fns.values():  # first calls pay for allocation, thread start and kernel selection
        for _ in range(warmup):
            fn()
    sync()
    out: dict[str, list[float]] = {name: [] for name in fns}
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            sync()
            out[name].append((time.perf_counter() - t0) / iters)
    return out


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of speed(a) / speed(b) (= time(b) / time(a) in the same round)."""
    return median([tb / ta for ta, tb in zip(times[a], times[b]) if ta > 0])


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_avg_start": _loadavg(),
    }
    try:
        info["fbgemm_gpu"] = next((version(n) for n in ("fbgemm-gpu-cpu", "fbgemm-gpu", "fbgemm_gpu")
                                   if _has_dist(n)), None)
        info["torchrec"] = version("torchrec")
    except Exception:  # noqa: BLE001 - informational only
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _has_dist(name: str) -> bool:
    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
