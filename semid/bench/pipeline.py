"""``semid bench pipeline``: throughput and peak memory of each stage, each in its own child process.

Stages (in order; a later one uses what an earlier one wrote under ``--out``):

* ``synth``: ``semid.datamodules.synth.generate`` of a preset (impression rows/s);
* ``rqvae_encode``: a frozen RQ-VAE encoding every item (items/s, ``FrozenRqvae.encode``), then the SID
  table written by ``assign_sids`` (items/s end to end). Without ``--rqvae`` a briefly trained model of
  the preset's shape is used: encoding speed depends on the shapes, not on the training;
* ``tokens``: SPM token cache: fitting SentencePiece, tokenising every item (items/s), the whole
  ``build_token_cache`` (items/s), and ``build_kjt`` of ranker batches (samples/s);
* ``rank_fit``: ``semid rank fit`` as a user runs it, per representation x threads x processes
  (``train_samples_per_s`` from its results.json: batch building + step, validation excluded).

Peak memory is the child's ``ru_maxrss`` (its own or its children's, whichever is larger: ``semid rank
fit`` with 2 processes launches the second one itself).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NotRequired, TypedDict, Union

import numpy as np

from semid.bench.timing import machine, markdown_table, median
from semid.core.errors import SemidError
from semid.core.records import JsonObject

STAGES = ("synth", "rqvae_encode", "tokens", "rank_fit")
_MARK = "SEMID_BENCH_RESULT "


@dataclass
class PipelineBenchConfig:
    out: Path = Path("runs/bench")
    preset: str = "small"
    corpus: Path | None = None
    sids: Path | None = None
    rqvae: Path | None = None
    stages: list[str] | None = None
    representations: list[str] = field(default_factory=lambda: ["hash_8k", "spm_8k"])
    train_days: list[int] = field(default_factory=lambda: [0, 1, 2])
    threads: list[int] = field(default_factory=lambda: [1])
    devices: list[int] = field(default_factory=lambda: [1])
    overrides: list[str] = field(default_factory=list)
    rqvae_train_steps: int = 20  # only when no --rqvae is given: a model to time encoding with
    spm_representation: str = "spm_8k"
    kjt_batch: int = 2048

    def __post_init__(self) -> None:
        bad = [s for s in (self.stages or []) if s not in STAGES]
        if bad:
            raise SemidError(f"unknown stage(s) {bad}; stages: {', '.join(STAGES)}")
        if not self.train_days or min(self.train_days) < 0:
            raise SemidError("--train-days must list days >= 0")
        if min(self.threads, default=1) < 1 or min(self.devices, default=1) < 1:
            raise SemidError("--threads and --devices must be >= 1")


# -- stages (run inside the child) ---------------------------------------------------------------------
# Each stage imports its modules inside its function: a child loads only its own stage's code, so its time and
# peak memory are the stage's (the synth stage does not carry the RQ-VAE's or the ranker's imports).


class _SynthArgs(TypedDict):
    preset: str
    corpus: str


class _EncodeArgs(TypedDict):
    corpus: str
    rqvae: str | None  # a trained model, else one is trained briefly
    rqvae_config: str
    rqvae_train_steps: int
    rqvae_out: str
    sids_out: str


class _TokensArgs(TypedDict):
    corpus: str
    sids: str
    representation: str
    train_days: list[int]
    kjt_batch: int


class _RankFitArgs(TypedDict):
    representation: str
    corpus: str
    sids: str | None
    threads: int
    devices: int
    train_days: list[int]
    overrides: list[str]
    run_dir: str
    env: NotRequired[dict[str, str]]


# what a stage's child receives as JSON: exactly the dict the driver built
_StageArgs = Union[_SynthArgs, _EncodeArgs, _TokensArgs, _RankFitArgs]


def _stage_synth(a: _SynthArgs) -> JsonObject:
    from semid.datamodules import generate, load_synth_config

    cfg = load_synth_config(a["preset"])
    t0 = time.perf_counter()
    path = generate(cfg, a["corpus"], overwrite=True, preset=a["preset"])
    s = time.perf_counter() - t0
    rows = cfg.n_days * cfg.impressions_per_day
    return {"seconds": s, "impressions": rows, "items": cfg.n_items, "rows_per_s": rows / s,
            "items_per_s": cfg.n_items / s, "corpus": str(path)}


def _stage_rqvae_encode(a: _EncodeArgs) -> JsonObject:
    from semid.datamodules import open_corpus
    from semid.rqvae import assign_sids
    from semid.rqvae import load_frozen

    model_path = a.get("rqvae")
    trained = None
    if not model_path:
        from semid.rqvae import load_rqvae_config
        from semid.rqvae import train_rqvae

        cfg = load_rqvae_config(a["rqvae_config"], [f"train.steps={a['rqvae_train_steps']}",
                                                     "run.logger=csv"])
        t0 = time.perf_counter()
        r = train_rqvae(a["corpus"], cfg, a["rqvae_out"], overwrite=True, quiet=True)
        trained = {"steps": a["rqvae_train_steps"], "seconds": time.perf_counter() - t0}
        model_path = str(r.out)
    model = load_frozen(model_path)
    x = open_corpus(a["corpus"]).read_items(columns=["item_id", "embedding", "first_day"]).embedding
    model.encode(x[:1024])  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.encode(x)
        times.append(time.perf_counter() - t0)
    out: JsonObject = {"items": len(x), "dim": int(x.shape[1]), "levels": model.levels,
                       "codebook_size": model.codebook_size, "encode_items_per_s": len(x) / median(times),
                       "model": str(model_path), "briefly_trained": trained}
    if a.get("sids_out"):
        t0 = time.perf_counter()
        assign_sids(model_path, a["corpus"], a["sids_out"], overwrite=True)
        s = time.perf_counter() - t0
        out.update(assign_seconds=s, assign_items_per_s=len(x) / s, sids=a["sids_out"])
    return out


def _stage_tokens(a: _TokensArgs) -> JsonObject:
    from semid.datamodules import open_corpus, to_int64
    from semid.embeddings import build_kjt, build_token_cache, load_representation_config
    from semid.embeddings import build_tokenizer
    from semid.embeddings import SidSpace
    from semid.rqvae import read_sid_table

    corpus = open_corpus(a["corpus"])
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    counts = np.zeros(len(items), np.int64)
    for d in a["train_days"]:
        pos = items.index_of(to_int64(corpus.read_day(d, ["item_id"])["item_id"], corpus.path, "item_id"))
        counts += np.bincount(pos[pos >= 0], minlength=len(counts))
    sids = read_sid_table(a["sids"])
    rep = load_representation_config(a["representation"])
    codes = sids.lookup(items.item_id).astype(np.int32)
    n = len(items)

    tok = build_tokenizer(rep)
    t0 = time.perf_counter()
    tok.fit(SidSpace.of(sids), sids, items.item_id, counts)
    fit_s = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        tok.tokenize(items.item_id, codes)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    cache = build_token_cache(rep, sids, items.item_id, counts)
    build_s = time.perf_counter() - t0

    # KJT of ranker batches: candidate + watch + a history bag of up to 50 items per sample
    rng = np.random.default_rng(0)
    b, h = a["kjt_batch"], 50
    batches = []
    for _ in range(8):
        lengths = rng.integers(0, h + 1, b)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        batches.append(({"candidate": rng.integers(0, n, b), "watch": np.where(rng.random(b) < 0.2, -1,
                         rng.integers(0, n, b))}, (offsets, rng.integers(0, n, int(offsets[-1])))))
    build_kjt(cache, *batches[0][:1], history=batches[0][1])
    kjt_times = []
    for roles, hist in batches:
        t0 = time.perf_counter()
        build_kjt(cache, roles, history=hist)
        kjt_times.append(time.perf_counter() - t0)
    kjt_nh = []
    for roles, _ in batches:
        t0 = time.perf_counter()
        build_kjt(cache, roles)
        kjt_nh.append(time.perf_counter() - t0)
    lpi = cache.lookups_per_item()
    return {"representation": rep.name, "items": n, "spm_fit_seconds": fit_s,
            "tokenize_items_per_s": n / median(times), "cache_build_items_per_s": n / build_s,
            "cache_build_seconds": build_s, "lookups_per_item": float(lpi.mean()),
            "kjt_batch": b, "kjt_samples_per_s_with_history": b / median(kjt_times),
            "kjt_samples_per_s_without_history": b / median(kjt_nh)}


def _stage_rank_fit(a: _RankFitArgs) -> JsonObject:
    out = Path(a["run_dir"])
    shutil.rmtree(out, ignore_errors=True)
    days = a["train_days"]
    cmd = [sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", a["representation"],
           "--corpus", a["corpus"], "--out", str(out), "--no-resume",
           "--set", f"trainer.threads={a['threads']}", "--set", "trainer.loggers=[csv]",
           "--set", f"data.train_days=[{','.join(map(str, days))}]", "--set", f"data.eval_day={max(days) + 1}",
           "--set", f"trainer.devices={a['devices']}"]
    if a.get("sids"):
        cmd += ["--sids", a["sids"]]
    if a["devices"] > 1:  # row-wise families need equal per-rank batches; table_wise is what 2 CPUs want
        cmd += ["--set", "sharding.sharding_types=[table_wise]"]
    for o in a.get("overrides", []):
        cmd += ["--set", o]
    env = {**os.environ, **a.get("env", {})}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"failed": f"exit {p.returncode}: {tail[0][:300]}", "command": " ".join(cmd)}
    r = json.loads((out / "results.json").read_text())
    m = (r.get("metrics") or {}).get("ctr", {}).get("overall", {})
    return {"train_samples_per_s": r["train_samples_per_s"], "wall_seconds": wall,
            "fit_wall_seconds": r["wall_seconds"], "world_size": r["world_size"], "ctr_auc": m.get("auc"),
            "command": " ".join(["semid"] + cmd[3:])}


_STAGE_FNS = {"synth": _stage_synth, "rqvae_encode": _stage_rqvae_encode, "tokens": _stage_tokens,
              "rank_fit": _stage_rank_fit}


def _child_main(stage: str, args_json: str) -> None:
    res = _STAGE_FNS[stage](json.loads(args_json))
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res["peak_rss_mb"] = max(self_kb, kids_kb) / 1024  # Linux reports KiB
    print(_MARK + json.dumps(res), flush=True)


def run_stage(stage: str, args: _StageArgs, env: dict[str, str] | None = None) -> JsonObject:
    """Run one stage in a fresh Python process; its result plus the child's peak RSS."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "semid.bench.pipeline", stage, json.dumps(args)],
                       capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    for line in p.stdout.splitlines():
        if line.startswith(_MARK):
            res = json.loads(line[len(_MARK):])
            res["process_wall_seconds"] = wall
            return res
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    raise SemidError(f"pipeline stage {stage} failed (exit {p.returncode}): {' | '.join(tail)[:400]}")


# -- driver --------------------------------------------------------------------------------------------


def run_pipeline_bench(cfg: PipelineBenchConfig, log: Callable[[str], None] = print) -> JsonObject:
    stages = cfg.stages or list(STAGES)
    out = cfg.out.resolve()
    work = out / "pipeline-work"
    work.mkdir(parents=True, exist_ok=True)
    corpus = cfg.corpus.resolve() if cfg.corpus else work / f"corpus-{cfg.preset}"
    sids = cfg.sids.resolve() if cfg.sids else None
    res: JsonObject = {"benchmark": "pipeline", "machine": machine(),
                       "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
                       "stages": {}}
    if "synth" in stages:
        r = run_stage("synth", {"preset": cfg.preset, "corpus": str(work / f"corpus-{cfg.preset}")})
        res["stages"]["synth"] = r
        log(f"synth: {r['rows_per_s']:,.0f} impression rows/s, peak {r['peak_rss_mb']:,.0f} MB")
        if cfg.corpus is None:
            corpus = Path(r["corpus"])
    if not corpus.exists():
        raise SemidError(f"corpus {corpus} does not exist: pass --corpus or include the synth stage")
    if "rqvae_encode" in stages:
        a = {"corpus": str(corpus), "rqvae": str(cfg.rqvae) if cfg.rqvae else None, "rqvae_config": cfg.preset,
             "rqvae_train_steps": cfg.rqvae_train_steps, "rqvae_out": str(work / "rqvae"),
             "sids_out": str(work / "sids.parquet")}  # timed always; used when no --sids is given
        r = run_stage("rqvae_encode", a)
        res["stages"]["rqvae_encode"] = r
        log(f"rqvae_encode: {r['encode_items_per_s']:,.0f} items/s, peak {r['peak_rss_mb']:,.0f} MB")
        if sids is None:
            sids = Path(r["sids"])
    needs_sids = "tokens" in stages or ("rank_fit" in stages and any(_reads_sids(r) for r in cfg.representations))
    if sids is None and needs_sids:
        raise SemidError("the tokens and SID-based rank_fit stages need SIDs: pass --sids (or --rqvae, or include "
                         "the rqvae_encode stage)")
    if "tokens" in stages:
        r = run_stage("tokens", {"corpus": str(corpus), "sids": str(sids), "representation": cfg.spm_representation,
                                 "train_days": cfg.train_days, "kjt_batch": cfg.kjt_batch})
        res["stages"]["tokens"] = r
        log(f"tokens: tokenise {r['tokenize_items_per_s']:,.0f} items/s, cache build "
            f"{r['cache_build_items_per_s']:,.0f} items/s, build_kjt {r['kjt_samples_per_s_with_history']:,.0f} "
            f"samples/s (with history), peak {r['peak_rss_mb']:,.0f} MB")
    if "rank_fit" in stages:
        runs = []
        for rep in cfg.representations:
            for devices in cfg.devices:
                for threads in cfg.threads:
                    a = {"representation": rep, "corpus": str(corpus), "sids": str(sids) if sids else None,
                         "threads": threads, "devices": devices, "train_days": cfg.train_days,
                         "overrides": cfg.overrides, "run_dir": str(work / f"rank-{rep}-d{devices}-t{threads}")}
                    r = run_stage("rank_fit", a)
                    r.update(representation=rep, devices=devices, threads=threads)
                    runs.append(r)
                    log(f"rank_fit {rep} devices={devices} threads={threads}: " + (
                        r["failed"] if "failed" in r else
                        f"{r['train_samples_per_s']:,.0f} samples/s, peak {r['peak_rss_mb']:,.0f} MB"))
        res["stages"]["rank_fit"] = runs
    res["machine"]["load_avg_end"] = machine()["load_avg_start"]
    return res


def render_markdown(res: JsonObject) -> str:
    st = res["stages"]
    rows: list[list[object]] = []
    if "synth" in st:
        r = st["synth"]
        rows.append(["synthetic corpus (`generate`)", f"{r['rows_per_s']:,.0f} impression rows/s ({r['impressions']:,} "
                     f"rows, {r['items']:,} items in {r['seconds']:.1f} s)", f"{r['peak_rss_mb']:,.0f}"])
    if "rqvae_encode" in st:
        r = st["rqvae_encode"]
        rows.append([f"RQ-VAE encoding (L={r['levels']}, K={r['codebook_size']}, dim {r['dim']}, float64)",
                     f"{r['encode_items_per_s']:,.0f} items/s", f"{r['peak_rss_mb']:,.0f}"])
        if "assign_items_per_s" in r:
            rows.append(["`assign_sids` end to end (read, encode, write)", f"{r['assign_items_per_s']:,.0f} items/s",
                         ""])
    if "tokens" in st:
        r = st["tokens"]
        rows.append([f"SPM fit ({r['representation']}, SentencePiece BPE)", f"{r['spm_fit_seconds']:.2f} s", ""])
        rows.append(["SPM tokenisation of every item", f"{r['tokenize_items_per_s']:,.0f} items/s", ""])
        rows.append(["token cache build (fit + tokenise)", f"{r['cache_build_items_per_s']:,.0f} items/s "
                     f"({r['lookups_per_item']:.2f} lookups/item)", f"{r['peak_rss_mb']:,.0f}"])
        rows.append([f"`build_kjt`, batch {r['kjt_batch']}, candidate + watch + history (<= 50 items)",
                     f"{r['kjt_samples_per_s_with_history']:,.0f} samples/s", ""])
        rows.append([f"`build_kjt`, batch {r['kjt_batch']}, candidate + watch",
                     f"{r['kjt_samples_per_s_without_history']:,.0f} samples/s", ""])
    for r in st.get("rank_fit", []):
        what = f"`semid rank fit` {r['representation']}, {r['devices']} process(es) x {r['threads']} thread(s)"
        if "failed" in r:
            rows.append([what, f"failed: {r['failed']}", ""])
        else:
            rows.append([what, f"{r['train_samples_per_s']:,.0f} samples/s (run {r['wall_seconds']:.0f} s, "
                         f"AUC {r['ctr_auc']:.3f})" if r.get("ctr_auc") is not None else
                         f"{r['train_samples_per_s']:,.0f} samples/s", f"{r['peak_rss_mb']:,.0f}"])
    return markdown_table(["stage", "throughput", "peak RSS MB"], rows)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])


def _reads_sids(representation: str) -> bool:
    """Whether a representation's tokenizer reads the SID table (asked of the tokenizer, not guessed from its name)."""
    from semid.embeddings import build_tokenizer, load_representation_config  # the tokenizers load torch: only here

    return build_tokenizer(load_representation_config(representation)).needs_sids
