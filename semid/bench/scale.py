"""``semid bench scale --items 1M,3M,10M``: every stage from corpus to ranker at several corpus sizes, each stage a
child process, with its wall time, peak memory and throughput, and the growth exponent of each stage.

For each size N the corpus is the ``--preset`` (``large``: 10M items, 1M users, 5M impressions a day, 20 days)
scaled by N / its items: initial items, new items per day, users and impressions per day all by the same
factor, days unchanged, so impressions per item and per user stay the preset's (a growth exponent then
measures the code, not a denser corpus). A corpus under ``--corpora`` generated with the same parameters is
reused. The stages, as a user runs them:

* ``generate``: ``semid data synth`` (reported separately: not part of the targets);
* ``validate``: ``semid data validate``, the data gate's one scan of every value (later commands read its stamp);
* ``sids_train``: ``semid sids train --config <rqvae config>`` for ``--rqvae-steps`` steps (its all-items health
  encodes every item);
* ``sids_assign``: ``semid sids assign``;
* ``spm_fit``: SentencePiece over the SIDs of the training days' impressions (``SpmTokenizer.fit`` alone, in a
  child of this module);
* ``tokens_<rep>``: ``semid tokens build --representation <rep> --days <training days>``;
* ``rank_fit_<rep>``: ``semid rank fit`` on ``--train-days`` and the day after, one process, ``--threads``
  threads, CSV logging, ``trainer.num_bootstraps=--bootstraps``.

Measurements: wall time from the parent; peak RSS from ``os.wait4`` of the child (its own ``ru_maxrss``, or its
children's: the kernel's high-water mark of resident memory, file-backed pages included); throughput per stage
(items/s, impressions/s, ranker training samples/s from results.json). A watchdog samples the child's process
tree every 0.5 s and kills it past ``--max-rss-gb`` (the stage is then recorded as exceeded, so a bench on a
shared machine cannot take all of its memory). The growth exponent of a stage is the least-squares slope of
log(wall) and of log(peak RSS) against log(N) over the sizes it ran at (peak RSS includes the interpreter and
its libraries, ~0.3-0.6 GB, so at small N it understates growth).

``--reference small`` also runs the ranker stages on the ``small`` preset unscaled, the corpus the ranker's
throughput target compares with. Results go to ``scale.json`` after every stage (a rerun with the same
settings skips the stages already measured; ``--fresh`` measures everything again) and ``scale.md``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from semid.core.errors import SemidError
from semid.bench.records import ChildRun, ScaleHealth, ScaleRanker
from semid.core.records import JsonObject

_MARK = "SEMID_BENCH_RESULT "
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
TARGET_CACHE_MINUTES = 20  # issue 19: corpus -> token caches of 10M items on 2 cores, 24 GB
TARGET_STAGE_GB = 8
TARGET_THROUGHPUT_RATIO = 0.8  # ranker samples/s on the large corpus vs the small one
TARGET_EXPONENT = 1.1
# the stages of the "corpus -> token caches" target (generation and the gate's scan are reported apart)
CACHE_STAGES = ("sids_train", "sids_assign", "spm_fit", "tokens_")


def parse_size(text: str) -> int:
    """``1M`` -> 1,000,000; ``2k``, ``1.5M``, ``10_000`` as written."""
    m = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise SemidError(f"--items: {text!r} is not a size (write e.g. 1M, 3M, 10M or 2k)")
    n = float(m.group(1).replace("_", "")) * _UNITS[m.group(2).lower()]
    if n < 1 or n != int(n):
        raise SemidError(f"--items: {text!r} is not a whole number of items >= 1")
    return int(n)


def size_label(n: int) -> str:
    for unit, f in (("M", 1_000_000), ("k", 1_000)):
        if n >= f and n % (f // 10) == 0:
            v = n / f
            return f"{v:g}{unit}"
    return str(n)


@dataclass
class ScaleBenchConfig:
    items: list[int]
    out: Path = Path("runs/bench-scale")
    corpora: Path | None = None  # default: <out>/corpora
    preset: str = "large"
    preset_overrides: list[str] = field(default_factory=list)
    reference: str | None = "small"  # preset run unscaled for the ranker's throughput reference; None: none
    rqvae_config: str = "small"
    rqvae_steps: int = 300
    rqvae_overrides: list[str] = field(default_factory=list)
    representations: list[str] = field(default_factory=lambda: ["hash_8k", "spm_8k"])
    train_days: list[int] = field(default_factory=lambda: [0, 1])
    threads: int = 1
    bootstraps: int = 0
    rank_overrides: list[str] = field(default_factory=list)
    stages: list[str] | None = None  # subset of the stage kinds; None: all
    max_rss_gb: float = 16.0
    delete_corpora: bool = False  # remove each corpus this run generated once its stages are measured
    fresh: bool = False

    def __post_init__(self) -> None:
        if not self.items:
            raise SemidError("--items: give at least one size, e.g. --items 1M,3M")
        if len(set(self.items)) != len(self.items):
            raise SemidError(f"--items: sizes repeat ({', '.join(size_label(n) for n in self.items)})")
        bad = [s for s in self.stages or [] if s not in STAGE_KINDS]
        if bad:
            raise SemidError(f"--stages: unknown stage(s) {bad}; stages: {', '.join(STAGE_KINDS)}")
        if not self.train_days or min(self.train_days) < 0 or sorted(set(self.train_days)) != self.train_days:
            raise SemidError("--train-days: give increasing days >= 0, e.g. 0,1")
        if self.rqvae_steps < 1 or self.threads < 1 or self.bootstraps < 0 or self.max_rss_gb <= 0:
            raise SemidError("--rqvae-steps and --threads must be >= 1, --bootstraps >= 0, --max-rss-gb > 0")


STAGE_KINDS = ("generate", "validate", "sids_train", "sids_assign", "spm_fit", "tokens", "rank_fit")


# -- corpora ------------------------------------------------------------------------------------------------


def scaled_overrides(preset: str, overrides: list[str], n_items: int) -> list[str]:
    """Synthetic-generator overrides that scale ``preset`` to ``n_items`` items (module docstring)."""
    from semid.datamodules import load_synth_config

    base = load_synth_config(preset, overrides)
    if n_items == base.n_items:
        return list(overrides)
    f = n_items / base.n_items
    new = max(1, round(base.n_new_items_per_day * f)) if base.n_new_items_per_day else 0
    initial = n_items - new * (base.n_days - 1)
    if initial < 1:
        raise SemidError(f"--items {size_label(n_items)}: too few for {base.n_days} days of the {preset} preset "
                         f"(new items alone take {new * (base.n_days - 1):,}); give more items")
    out = list(overrides) + [f"n_initial_items={initial}", f"n_new_items_per_day={new}",
                             f"n_users={max(1, round(base.n_users * f))}",
                             f"impressions_per_day={max(1, round(base.impressions_per_day * f))}"]
    cfg = load_synth_config(preset, out)
    if cfg.n_items != n_items:  # a regime knob (items_per_row) decides the catalogue instead
        raise SemidError(f"--preset {preset}: its items_per_row sets the catalogue size, so it cannot be scaled to "
                         f"{n_items:,} items (use a preset without items_per_row)")
    return out


def _same_corpus(path: Path, params: JsonObject) -> bool:
    try:
        meta = json.loads((path / "corpus.json").read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("generator") or {}).get("params") == json.loads(json.dumps(params))


# -- children -----------------------------------------------------------------------------------------------


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (0 once gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def run_child(cmd: list[str], log: Path, max_rss_bytes: int, env: dict[str, str] | None = None,
              timeout_s: float | None = None) -> ChildRun:
    """Run ``cmd`` to completion; its wall time, peak RSS (``os.wait4``), exit code and output tail. A watchdog
    kills its process group past ``max_rss_bytes`` of the tree's resident memory or after ``timeout_s``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                             start_new_session=True)  # its own group: the watchdog can stop the whole tree
        state = {"tree_peak": 0, "killed": False, "timed_out": False}
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                rss = _tree_rss(p.pid)
                state["tree_peak"] = max(state["tree_peak"], rss)
                late = timeout_s is not None and time.perf_counter() - t0 > timeout_s
                if (rss > max_rss_bytes or late) and not (state["killed"] or state["timed_out"]):
                    state["killed" if rss > max_rss_bytes else "timed_out"] = True
                    try:
                        os.killpg(p.pid, signal.SIGKILL)  # the child's own session: only what it started
                    except OSError:
                        pass

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        watcher.join()
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    text = log.read_text(errors="replace")
    tail = [line for line in text.strip().splitlines() if line.strip()][-3:]
    return {"rc": p.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
            "tree_peak_rss_mb": state["tree_peak"] / 2**20, "killed_over_max_rss": state["killed"],
            "timed_out": state["timed_out"],
            "tail": tail, "output": text, "command": _shown(cmd)}


def _shown(cmd: list[str]) -> str:
    if cmd[1:3] == ["-m", "semid.cli"]:
        return " ".join(["semid", *cmd[3:]])
    return " ".join(["python", *cmd[1:]])


def _semid(*args: str) -> list[str]:
    return [sys.executable, "-m", "semid.cli", *args]


# -- the spm_fit stage, inside its child ---------------------------------------------------------------------
# This module is the spm_fit child's entry point too (python -m semid.bench.scale), so it imports no torch and no
# stage code at its top: the child loads only what its stage needs (its peak memory is the stage's), and the
# driver's few imports of semid.bench.timing (torch), the corpus and artifacts stay inside the functions using them.


def _child_spm_fit(a: JsonObject) -> JsonObject:
    import warnings

    from semid.datamodules import corpus_impressions, open_corpus
    from semid.embeddings import SidSpace, build_tokenizer, load_representation_config
    from semid.embeddings.spm import MAX_TRAINING_SIDS, unique_sids
    from semid.rqvae import read_sid_table

    corpus = open_corpus(a["corpus"])
    sids = read_sid_table(a["sids"])
    ids = corpus.read_item_ids()
    counts = corpus_impressions(corpus, ids, a["train_days"])
    seen = counts > 0
    distinct = len(unique_sids(sids.lookup(ids[seen]), sids.codebook_size)[0])
    tok = build_tokenizer(load_representation_config(a["representation"]))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok.fit(SidSpace.of(sids), sids, ids, counts)
    return {"fit_s": time.perf_counter() - t0, "impressed_items": int(seen.sum()), "distinct_sids": distinct,
            "training_sids": min(distinct, MAX_TRAINING_SIDS), "sampled": distinct > MAX_TRAINING_SIDS,
            "pieces": tok.tables()[0].num_rows}


def _child_main(stage: str, args_json: str) -> None:
    res = {"spm_fit": _child_spm_fit}[stage](json.loads(args_json))
    print(_MARK + json.dumps(res), flush=True)


def _marked(output: str) -> JsonObject:
    for line in output.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    return {}


# -- the driver ---------------------------------------------------------------------------------------------


class _Run:
    def __init__(self, cfg: ScaleBenchConfig, log: Callable[[str], None]) -> None:
        from semid.bench.timing import machine

        self.cfg, self.log = cfg, log
        self.out = cfg.out.resolve()
        self.corpora = (cfg.corpora or cfg.out / "corpora").resolve()
        self.json_path = self.out / "scale.json"
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                    if k not in ("out", "max_rss_gb", "delete_corpora", "fresh", "stages", "items", "reference",
                                 "representations")}  # what a measured stage depends on; stages are keyed by name
        self.res: JsonObject = {"benchmark": "scale", "settings": settings, "machine": machine(), "sizes": {}}
        if not cfg.fresh and self.json_path.exists():
            try:
                prev = json.loads(self.json_path.read_text())
            except ValueError:
                prev = {}
            if prev.get("settings") == json.loads(json.dumps(settings)):
                self.res["sizes"] = prev.get("sizes", {})  # measured stages are kept, not run again
        self.res["machine"]["load_avg_during"] = []

    def want(self, kind: str) -> bool:
        return self.cfg.stages is None or kind in self.cfg.stages

    def save(self) -> None:
        from semid.core.artifacts import write_json

        write_json(self.json_path, self.res)

    def stage(self, key: str, name: str, cmd: list[str], n_items: int,
              extract: Callable[[ChildRun], Mapping[str, object]] | None = None) -> JsonObject | None:
        entry = self.res["sizes"][key]
        done = entry["stages"].get(name)
        if done and done.get("ok"):
            self.log(f"[{key}] {name}: measured before ({done['wall_s']:.0f} s), kept")
            return done
        self.log(f"[{key}] {name}: {_shown(cmd)}")
        r = run_child(cmd, self.out / "logs" / key / f"{name}.log", int(self.cfg.max_rss_gb * 2**30),
                      env={"SEMID_PROGRESS": "0", "OMP_WAIT_POLICY": "PASSIVE"})
        load = _loadavg()
        self.res["machine"]["load_avg_during"].append(load)
        rec: JsonObject = {k: v for k, v in r.items() if k != "output"}
        rec["ok"] = r["rc"] == 0
        rec["load_avg"] = load
        if rec["ok"] and extract is not None:
            rec.update(extract(r))
        if not rec["ok"]:
            why = (f"exceeded --max-rss-gb {self.cfg.max_rss_gb:g}" if r["killed_over_max_rss"] else
                   f"exit {r['rc']}: {' | '.join(r['tail'])[:300]}")
            rec["failed"] = why
        rec["items_per_s"] = n_items / r["wall_s"] if rec["ok"] and r["wall_s"] > 0 else None
        entry["stages"][name] = rec
        self.save()
        self.log(f"[{key}] {name}: " + (f"{r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:,.0f} MB" if rec["ok"]
                                        else f"FAILED ({rec['failed']})"))
        return rec if rec["ok"] else None

    def size(self, key: str, preset: str, overrides: list[str], ranker_only: bool) -> None:
        from semid.datamodules import load_synth_config

        cfg = self.cfg
        synth = load_synth_config(preset, overrides)
        n = synth.n_items
        entry = self.res["sizes"].setdefault(key, {"items": n, "preset": preset, "overrides": overrides,
                                                   "impressions": synth.n_days * synth.impressions_per_day,
                                                   "users": synth.n_users, "days": synth.n_days, "stages": {}})
        corpus = self.corpora / key
        work = self.out / "work" / key
        generated = False
        if not _same_corpus(corpus, asdict(synth)):
            if corpus.exists():
                shutil.rmtree(corpus)
            cmd = _semid("data", "synth", "--preset", preset, "--out", str(corpus),
                         *[a for o in overrides for a in ("--set", o)])
            entry["stages"].pop("generate", None)
            entry["stages"].pop("validate", None)
            if self.stage(key, "generate", cmd, n, lambda r: {"impressions_per_s": entry["impressions"] / r["wall_s"]}) \
                    is None:
                return
            generated = True
        elif "generate" not in entry["stages"]:
            meta = json.loads((corpus / "corpus.json").read_text())
            entry["stages"]["generate"] = {"ok": True, "reused": True, "wall_s": meta.get("build_seconds"),
                                           "peak_rss_mb": None, "note": "reused: build_seconds from corpus.json"}
        try:
            self._stages(key, entry, corpus, work, n, ranker_only)
        finally:
            if generated and cfg.delete_corpora:
                shutil.rmtree(corpus, ignore_errors=True)
                self.log(f"[{key}] deleted {corpus}")

    def _stages(self, key: str, entry: JsonObject, corpus: Path, work: Path, n: int, ranker_only: bool) -> None:
        cfg = self.cfg
        days = cfg.train_days
        day_arg = ",".join(map(str, days))
        if self.want("validate") and self.stage(key, "validate", _semid("data", "validate", str(corpus)), n,
                                                lambda r: {"impressions_per_s": entry["impressions"] / r["wall_s"]}) \
                is None:
            return
        rqvae, sids = work / "rqvae", work / "sids.parquet"
        if self.want("sids_train"):
            sets = [f"train.steps={cfg.rqvae_steps}", "run.logger=csv", *cfg.rqvae_overrides]
            cmd = _semid("sids", "train", "--corpus", str(corpus), "--config", cfg.rqvae_config, "--out", str(rqvae),
                         "--overwrite", "--no-resume", *[a for o in sets for a in ("--set", o)])
            if self.stage(key, "sids_train", cmd, n, lambda r: _health(rqvae)) is None:
                return
        if self.want("sids_assign"):
            cmd = _semid("sids", "assign", "--model", str(rqvae), "--corpus", str(corpus), "--out", str(sids),
                         "--overwrite")
            if self.stage(key, "sids_assign", cmd, n) is None:
                return
        spm = [r for r in cfg.representations if "spm" in r]
        if self.want("spm_fit") and spm and not ranker_only:
            a = {"corpus": str(corpus), "sids": str(sids), "representation": spm[0], "train_days": days}
            cmd = [sys.executable, "-m", "semid.bench.scale", "spm_fit", json.dumps(a)]
            self.stage(key, "spm_fit", cmd, n, lambda r: _marked(r["output"]))
        for rep in cfg.representations if self.want("tokens") and not ranker_only else []:
            cmd = _semid("tokens", "build", "--representation", rep, "--corpus", str(corpus), "--sids", str(sids),
                         "--days", day_arg, "--out", str(work / f"tokens-{rep}.npz"))
            self.stage(key, f"tokens_{rep}", cmd, n)
        for rep in cfg.representations if self.want("rank_fit") else []:
            run = work / f"rank-{rep}"
            sets = [f"trainer.threads={cfg.threads}", "trainer.loggers=[csv]", f"data.train_days=[{day_arg}]",
                    f"data.eval_day={days[-1] + 1}", f"trainer.num_bootstraps={cfg.bootstraps}", *cfg.rank_overrides]
            cmd = _semid("rank", "fit", "--representation", rep, "--corpus", str(corpus), "--sids", str(sids),
                         "--out", str(run), "--no-resume", *[a for o in sets for a in ("--set", o)])
            self.stage(key, f"rank_fit_{rep}", cmd, n, lambda r, run=run: _ranker(run))


def _health(run: Path) -> ScaleHealth:
    h = json.loads((run / "health.json").read_text())
    t = h["train"]
    return {"steps": t["steps"], "fit_s": t["fit_seconds"], "impressed_items": t["impressed_items"],
            "relative_error": h["all_items"].get("relative_error"),
            "unique_sid_fraction": h["all_items"].get("unique_sid_fraction")}


def _ranker(run: Path) -> ScaleRanker:
    r = json.loads((run / "results.json").read_text())
    m = (r.get("metrics") or {}).get("ctr", {}).get("overall", {})
    return {"train_samples_per_s": r["train_samples_per_s"], "fit_wall_s": r["wall_seconds"], "ctr_auc": m.get("auc"),
            "lookups_per_item": r.get("lookups_per_item")}


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def growth_exponent(items: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(items); None below two sizes."""
    pts = [(n, v) for n, v in zip(items, values) if v is not None and v > 0]
    if len({n for n, _ in pts}) < 2:
        return None
    x, y = np.log([n for n, _ in pts]), np.log([v for _, v in pts])
    return float(np.polyfit(x, y, 1)[0])


def _stage_names(entries: list[JsonObject]) -> list[str]:
    """The stages of ``entries`` in pipeline order (scale.json's keys come back sorted)."""
    names = {s for e in entries for s in e["stages"]}
    return sorted(names, key=lambda s: (next(i for i, k in enumerate(STAGE_KINDS) if s.startswith(k)), s))


def summarise(res: JsonObject, items: list[int], reference: str | None) -> JsonObject:
    """Growth exponents per stage (over the scaled sizes) and the issue's targets at the largest size."""
    keys = [size_label(n) for n in items]
    sizes = {k: res["sizes"][k] for k in keys if k in res["sizes"]}
    names = _stage_names(list(sizes.values()))
    exponents = {}
    for name in names:
        ok = [(e["items"], e["stages"][name]) for e in sizes.values() if (e["stages"].get(name) or {}).get("ok")
              and not e["stages"][name].get("reused")]
        exponents[name] = {"time": growth_exponent([n for n, _ in ok], [s["wall_s"] for _, s in ok]),
                           "memory": growth_exponent([n for n, _ in ok], [s["peak_rss_mb"] for _, s in ok]),
                           "sizes": [size_label(n) for n, _ in ok]}
    targets: JsonObject = {}
    if sizes:
        top_key = max(sizes, key=lambda k: sizes[k]["items"])
        top = sizes[top_key]["stages"]
        cache = [s for s in top if s.startswith(CACHE_STAGES)]
        if cache:
            total = sum(top[s]["wall_s"] for s in cache if top[s].get("ok"))
            complete = all(top[s].get("ok") for s in cache)
            targets["cache_minutes"] = {"size": top_key, "stages": cache, "minutes": total / 60,
                                        "complete": complete, "target": TARGET_CACHE_MINUTES,
                                        "met": complete and total / 60 <= TARGET_CACHE_MINUTES}
        peaks = {s: top[s]["peak_rss_mb"] / 1024 for s in top if top[s].get("peak_rss_mb") is not None}
        over = {s: gb for s, gb in peaks.items() if gb > TARGET_STAGE_GB}
        exceeded = [s for s in top if top[s].get("killed_over_max_rss")]
        targets["stage_memory_gb"] = {"size": top_key, "target": TARGET_STAGE_GB, "largest": max(peaks.values(),
                                      default=None), "over": over, "killed": exceeded,
                                      "met": not over and not exceeded}
        ref = res["sizes"].get(f"reference-{reference}") if reference else None
        if ref:
            ratios = {}
            for s, r in top.items():
                base = (ref["stages"].get(s) or {}).get("train_samples_per_s")
                if s.startswith("rank_fit_") and r.get("train_samples_per_s") and base:
                    ratios[s[len("rank_fit_"):]] = r["train_samples_per_s"] / base
            if ratios:
                targets["ranker_throughput_ratio"] = {"size": top_key, "reference": reference, "ratios": ratios,
                                                      "target": TARGET_THROUGHPUT_RATIO,
                                                      "met": min(ratios.values()) >= TARGET_THROUGHPUT_RATIO}
        worst = {s: max(v for v in (e["time"], e["memory"]) if v is not None) for s, e in exponents.items()
                 if s not in ("generate",) and (e["time"] is not None or e["memory"] is not None)}
        if worst:
            targets["growth_exponent"] = {"target": TARGET_EXPONENT, "worst": worst,
                                          "over": {s: v for s, v in worst.items() if v > TARGET_EXPONENT},
                                          "met": max(worst.values()) <= TARGET_EXPONENT}
    return {"exponents": exponents, "targets": targets}


def run_scale_bench(cfg: ScaleBenchConfig, log: Callable[[str], None] = print) -> JsonObject:
    run = _Run(cfg, log)
    for n in cfg.items:
        run.size(size_label(n), cfg.preset, scaled_overrides(cfg.preset, cfg.preset_overrides, n), ranker_only=False)
    if cfg.reference:
        run.size(f"reference-{cfg.reference}", cfg.reference, [], ranker_only=True)
    run.res.update(summarise(run.res, cfg.items, cfg.reference))
    run.res["machine"]["load_avg_end"] = _loadavg()
    run.save()
    return run.res


def render_markdown(res: JsonObject) -> str:
    from semid.bench.timing import markdown_table

    keys = sorted(res["sizes"], key=lambda k: (k.startswith("reference-"), res["sizes"][k]["items"]))
    names = _stage_names(list(res["sizes"].values()))
    header = ["stage"] + [f"{k} ({res['sizes'][k]['items']:,} items)" for k in keys] + ["exponent time / memory"]
    rows = []
    for name in names:
        row: list[object] = [name]
        for k in keys:
            s = res["sizes"][k]["stages"].get(name)
            row.append(_cell(s))
        e = res.get("exponents", {}).get(name) or {}
        row.append(" / ".join("-" if e.get(x) is None else f"{e[x]:.2f}" for x in ("time", "memory")))
        rows.append(row)
    lines = [markdown_table(header, rows), ""]
    t = res.get("targets", {})
    if t:
        trows: list[list[object]] = []
        if "cache_minutes" in t:
            c = t["cache_minutes"]
            trows.append([f"corpus -> token caches <= {c['target']} min ({c['size']})",
                          f"{c['minutes']:.1f} min" + ("" if c["complete"] else " (incomplete)"), _met(c["met"])])
        if "stage_memory_gb" in t:
            m = t["stage_memory_gb"]
            worst = "-" if m["largest"] is None else f"largest {m['largest']:.2f} GB"
            extra = (f"; over: {', '.join(m['over'])}" if m["over"] else "") + \
                (f"; killed: {', '.join(m['killed'])}" if m["killed"] else "")
            trows.append([f"peak RSS <= {m['target']} GB every stage ({m['size']})", worst + extra, _met(m["met"])])
        if "ranker_throughput_ratio" in t:
            r = t["ranker_throughput_ratio"]
            trows.append([f"ranker samples/s within 20% of {r['reference']} ({r['size']})",
                          ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items()), _met(r["met"])])
        if "growth_exponent" in t:
            g = t["growth_exponent"]
            over = ", ".join(f"{k} {v:.2f}" for k, v in g["over"].items()) or "none over"
            trows.append([f"growth exponent <= {g['target']} (time and memory)",
                          f"worst {max(g['worst'].values()):.2f}; {over}", _met(g["met"])])
        lines += [markdown_table(["target", "measured", "met"], trows), ""]
    m = res["machine"]
    loads = [x for x in m.get("load_avg_during", []) if x]
    lines.append(f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gb')} GB; load average (1 min) "
                 f"after each stage {min(x[0] for x in loads):.1f}-{max(x[0] for x in loads):.1f}" if loads else
                 f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gb')} GB")
    return "\n".join(lines)


def _cell(s: JsonObject | None) -> str:
    if not s:
        return ""
    if not s.get("ok"):
        return f"failed: {s.get('failed', '')[:80]}"
    if s.get("reused"):
        return f"{s['wall_s']:.0f} s (reused corpus)" if s.get("wall_s") else "reused"
    rate = (f"{s['train_samples_per_s']:,.0f} samples/s" if s.get("train_samples_per_s") else
            f"{s['impressions_per_s']:,.0f} imp/s" if s.get("impressions_per_s") else
            f"{s['items_per_s']:,.0f} items/s" if s.get("items_per_s") else "")
    return f"{s['wall_s']:.1f} s, {s['peak_rss_mb']:,.0f} MB" + (f", {rate}" if rate else "")


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
