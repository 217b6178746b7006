"""``semid experiment``: the paper's study end to end, from one config in ``conf/experiment/``.

corpus -> RQ-VAE -> SIDs -> (token caches, inside each fit) -> one ranker per representation x setting
x seed -> stability study (RQ-VAEs on early vs late days) -> report. Every stage is keyed by the
fingerprint of its inputs: a rerun skips what exists, a changed config value reruns exactly what it
affects. Ranker fits run as ``semid rank fit`` commands through the configured launcher (``semid.study.launchers``:
local subprocesses, ``parallel`` at a time, or submitit jobs, e.g. on SLURM). When the fits log to W&B, the
report's tables and figures go to a summary run in their group (``semid.results.wandb_summary``).
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, TypedDict, TypeVar

from semid.datamodules import Corpus, generate, load_synth_config, open_corpus, resolve_days
from semid.rankers import DEFAULT_RANKER, load_rank_config
from semid.rankers import is_up_to_date, read_results
from semid.embeddings import build_tokenizer
from semid.core import interrupt
from semid.core.dist_env import DIST_ENV
from semid.core.config import (CONF_DIR, ConfigFieldError, apply_overrides, blame_overrides, from_dict, load_layered,
                               require, require_int, require_positive)
from semid.core.errors import SemidError
from semid.core.fingerprint import ROOMS, code_fingerprint, fingerprint_of
from semid.core.numbers import sig
from semid.core.progress import bar
from semid.core.records import JsonObject
from semid.rankers.records import FitResults, SliceMetrics
from semid.study.records import QuantizerStudy, StabilityStudy, StudyVariant
from semid.core.run_lock import exclusive
from semid.results.analysis import stage1_analysis
from semid.core.artifacts import read_json, write_json
from semid.results import wandb_summary
from semid.study.launchers import LauncherSpec, Task, make_launcher, stopping
from semid.results.report import ReportSpec, report_fingerprint, report_is_current, write_report
from semid.rqvae import assign_sids, compare_tables, load_rqvae_config, read_sid_table, rqvae_fingerprint, train_rqvae

T = TypeVar("T")
SETTINGS = {"without_history": "ranker.use_history=false", "with_history": "ranker.use_history=true"}


@dataclass
class CorpusSpec:
    synth: str | None = "small"  # conf/data preset to generate, or
    path: str | None = None  # an existing corpus (e.g. from `semid data movielens`)
    # KEY=VALUE overrides of the synth preset (e.g. a regime cell's knobs); they key the corpus directory
    synth_overrides: list[str] = field(default_factory=list)


@dataclass
class StabilitySpec:
    enabled: bool = True
    early_days: list[int] = field(default_factory=lambda: [0, 9])  # [first, last] impression days
    late_days: list[int] = field(default_factory=lambda: [10, 18])
    representation: str = "spm_8k"


@dataclass
class QuantizerSpec:
    """A Stage-1 variant compared downstream with the main RQ-VAE (issue 18): its own SID table drives the
    ``quantizer_representations``, paired against the same representations on the main table."""

    name: str = "rqkmeans"  # labels the report's rows and the run directories
    rqvae: str | None = None  # conf/rqvae preset (e.g. small_rqkmeans); None: the experiment's own ``rqvae``
    overrides: list[str] = field(default_factory=list)  # KEY=VALUE on that preset
    collision_suffix: bool = False  # assign with the extra level that makes every SID unique

    def __post_init__(self) -> None:
        require(bool(self.name) and self.name.replace("_", "").replace("-", "").isalnum(), "quantizers.name",
                f"{self.name!r}: use letters, digits, '_' or '-' (it names run directories)")


@dataclass
class ExperimentConfig:
    name: str = "small"
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    rqvae: str = "small"
    rqvae_overrides: list[str] = field(default_factory=list)
    # conf/embeddings presets, each trained with the base ranker (conf/ranker/base.yaml)
    representations: list[str] = field(default_factory=lambda: ["hash_8k", "dense", "unigram", "bigram", "spm_8k"])
    # conf/ranker presets that change ranker settings (e.g. dense_2x: Dense Input, 2x depth); each names its
    # representation, and its row follows that representation's in the report
    ranker_variants: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=lambda: ["without_history", "with_history"])
    seeds: list[int] = field(default_factory=lambda: [0])
    ranker_overrides: list[str] = field(default_factory=list)
    reference: str = "hash_8k"
    stability: StabilitySpec = field(default_factory=StabilitySpec)
    # Stage-1 variants (other quantizers, the collision suffix), each driving quantizer_representations
    quantizers: list[QuantizerSpec] = field(default_factory=list)
    quantizer_representations: list[str] = field(default_factory=lambda: ["bigram", "spm_8k"])
    lookup_vocab_sizes: list[int] = field(default_factory=lambda: [256, 1024, 4096, 16384])
    # cold-start slices for sparse real data: items introduced at most k days (periods) before the evaluation day
    age_slices: list[int] = field(default_factory=list)
    # paired, item-clustered bootstrap replicates per comparison: the report's cost is O(replicates x impressions)
    report_bootstraps: int = 500
    equivalence_margin_pct: float = 1.0  # margin of the equivalence / at-least-as-good findings, % of the AUC
    parallel: int = 2
    threads_per_fit: int = 1
    launcher: LauncherSpec = field(default_factory=LauncherSpec)  # where fits run: local subprocesses or submitit
    # a W&B run in the fits' group holding the report's tables and figures: auto = when the fits log to W&B
    wandb_summary: bool | str = "auto"

    def __post_init__(self) -> None:
        bad = sorted(set(self.settings) - set(SETTINGS))
        require(not bad, "settings", f"{bad} unknown (valid: {', '.join(SETTINGS)})")
        require(self.reference in self.representations, "reference",
                f"'{self.reference}' is not among the representations")
        require((self.corpus.synth is None) != (self.corpus.path is None), "corpus",
                "give exactly one of synth (a preset) or path (a corpus directory)")
        require_int(self.parallel, "parallel")
        require_int(self.threads_per_fit, "threads_per_fit")
        require_int(self.report_bootstraps, "report_bootstraps", minimum=100)
        for i, k in enumerate(self.age_slices):
            require_int(k, f"age_slices[{i}]", minimum=0)
        require_positive(self.equivalence_margin_pct, "equivalence_margin_pct")
        wandb_summary.check_setting(self.wandb_summary)
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds), "seeds",
                f"must be distinct and at least one (got {self.seeds})")
        names = [q.name for q in self.quantizers]
        require(len(set(names)) == len(names) and "rqvae" not in names, "quantizers",
                f"names must be distinct and not 'rqvae' (the main table's row), got {names}")
        if self.quantizers:
            bad = [r for r in self.quantizer_representations if r not in self.representations]
            require(not bad, "quantizer_representations",
                    f"{bad} are not among the representations (their main-table runs are the paired reference)")


def load_experiment_config(name_or_path: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """A preset of conf/experiment/ or a YAML file. A relative ``corpus.path`` resolves against the project
    root (the folder holding conf/) for a shipped preset, and against the file's own folder for any other
    file, never against the working directory."""
    path, data = load_layered(name_or_path, "experiment")  # a study may build on another (``base: small``)
    try:
        cfg = from_dict(ExperimentConfig, apply_overrides(data, overrides or []), where=str(path))
    except ConfigFieldError as e:
        raise blame_overrides(e, overrides or []) from None
    if cfg.corpus.path and not Path(cfg.corpus.path).is_absolute():
        shipped = path.resolve().parent == (CONF_DIR / "experiment").resolve()
        base = CONF_DIR.parent if shipped else path.resolve().parent
        cfg.corpus.path = str(base / cfg.corpus.path)
    return cfg


def _failure(log: str) -> str:
    """The line of a job's log that says why it failed: its ``semid: error`` line, else its last line."""
    lines = log.strip().splitlines()
    return next((l for l in reversed(lines) if l.startswith("semid: error")), lines[-1] if lines else "")


class _Variant(TypedDict):
    """A Stage-1 variant of the quantizer study while it trains: its model and SID table directories."""

    name: str
    model: Path
    sids: Path
    collision_suffix: bool


@dataclass
class FitJob:
    """One ranker fit of the study. ``name`` labels its row and run directory: the representation's name,
    or the ranker variant's (dense, dense_1.5x and dense_2x share one representation)."""

    name: str
    ranker: str  # conf/ranker preset
    representation: str | None  # conf/embeddings preset; None: the one the ranker preset names
    setting: str
    seed: int
    sids: Path  # the SID table, for representations that read SIDs
    out: Path
    tag: str = "main"

    @property
    def label(self) -> str:
        return f"{self.name}/{self.setting}/seed{self.seed}" + ("" if self.tag == "main" else f"/{self.tag}")


class Experiment:
    def __init__(self, cfg: ExperimentConfig, out: Path, *, log: Callable[[str], None] = print) -> None:
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.timings: dict[str, float] = {}
        self._sid_fingerprints: dict[Path, str] = {}  # each SID table is read and hashed once per experiment
        self.launcher = make_launcher(cfg.launcher, self.out, name=cfg.name, parallel=cfg.parallel)

    # -- stages ----------------------------------------------------------------------------------------
    def corpus(self) -> Path:
        if self.cfg.corpus.path:
            path = Path(self.cfg.corpus.path)
            if not (path / "items.parquet").exists():
                raise SemidError(f"{path}: field 'corpus.path': no corpus there (make it first, e.g. `semid data "
                                 f"movielens ... --out {path}`, or set --set corpus.path=DIR)")
            return path
        synth = load_synth_config(self.cfg.corpus.synth, self.cfg.corpus.synth_overrides)  # type: ignore[arg-type]
        fp = fingerprint_of(asdict(synth))
        path = self.out / f"corpus-{self.cfg.corpus.synth}-{fp}"
        meta = Corpus(path).meta if path.exists() else {}
        if meta.get("generator", {}).get("params") == asdict(synth) and \
                meta.get("code_fingerprint") == code_fingerprint("datamodules"):
            self.log(f"corpus: reusing {path}")
            return path
        self._stage("corpus", lambda: generate(synth, path, overwrite=True, preset=self.cfg.corpus.synth))
        return path

    def rqvae(self, corpus: Path, days: list[int] | None = None, tag: str = "main",
              quantizer: QuantizerSpec | None = None, as_job: bool = False) -> Path:
        """Train (or reuse) an RQ-VAE; ``as_job``: through the launcher even where quantizers train in-process
        (one that trains beside the fits runs as its own process, stopped with them)."""
        preset, overrides = self.cfg.rqvae, list(self.cfg.rqvae_overrides)
        if quantizer is not None:
            preset, overrides = quantizer.rqvae or preset, overrides + list(quantizer.overrides)
        if days is not None:
            overrides += [f"train.min_day={days[0]}", f"train.max_day={days[1]}"]
        cfg = load_rqvae_config(preset, overrides)
        # the run directory is keyed by the quantizer and the Stage-1 code: other code trains a new one
        fp = fingerprint_of([rqvae_fingerprint(cfg, Corpus(corpus).fingerprint), code_fingerprint("datamodules", "rqvae")])
        out = self.out / f"rqvae-{tag}-{fp}"
        if (out / "rqvae.pt").exists():
            self.log(f"rqvae ({tag}): reusing {out}")
            return out
        if self.launcher.in_process_quantizers and not as_job:
            res = self._stage(f"rqvae ({tag})", lambda: train_rqvae(corpus, cfg, out, overwrite=True, quiet=True))
            resumed = res.resumed_from_step
        else:  # a job like a fit: `semid sids train` loads the same config from the same preset and overrides
            resumed = self._stage(f"rqvae ({tag})", lambda: self._rqvae_job(tag, corpus, preset, overrides, out,
                                                                             forkable=cfg.run.devices == 1))
        if resumed is not None:
            self.log(f"rqvae ({tag}): resumed an interrupted training at step {resumed}")
        return out

    def _rqvae_job(self, tag: str, corpus: Path, preset: str, overrides: list[str], out: Path,
                   forkable: bool) -> int | None:
        """Train through the launcher; the step an interrupted training resumed from, if it did."""
        log = self.out / f"{out.name}.log"
        argv = ["sids", "train", "--corpus", str(corpus), "--config", preset, "--out", str(out), "--overwrite",
                *[x for o in overrides for x in ("--set", o)]]
        rc = self.launcher.run(Task(f"rqvae ({tag})", argv, log, set_env=self._job_env(), unset_env=DIST_ENV,
                                    threads=self.cfg.threads_per_fit, forkable=forkable))
        said = log.read_text() if log.exists() else ""
        if rc != 0:
            raise SemidError(f"rqvae ({tag}): exit {rc}: {_failure(said)} (see {log})")
        m = re.search(r"resuming \S+ from step (\d+)", said)
        return int(m.group(1)) if m else None

    def sids(self, model: Path, corpus: Path, collision_suffix: bool = False) -> Path:
        path = model / ("sids-suffix.parquet" if collision_suffix else "sids.parquet")
        if path.exists():
            try:
                self._sid_fingerprints[path] = read_sid_table(path).fingerprint
                self.log(f"sids: reusing {path}")
                return path
            except SemidError:
                pass
        self._stage(f"sids ({model.name}{', collision suffix' if collision_suffix else ''})",
                    lambda: assign_sids(model, corpus, path, overwrite=True, collision_suffix=collision_suffix))
        return path

    def _stage(self, name: str, fn: Callable[[], T]) -> T:
        interrupt.at(f"experiment {self.out}: {name}")
        self.log(f"{name}: running")
        t = time.perf_counter()
        out = fn()
        self.timings[name] = time.perf_counter() - t
        self.log(f"{name}: done in {self.timings[name]:.1f}s")
        return out

    # -- ranker fits -----------------------------------------------------------------------------------------
    def jobs(self, sids: Path) -> list[FitJob]:
        """Representations with the base ranker, each followed by the ranker variants built on it."""
        by_rep: dict[str, list[str]] = {}
        for v in self.cfg.ranker_variants:
            by_rep.setdefault(load_rank_config(v).representation.name, []).append(v)
        arms: list[tuple[str, str, str | None]] = []  # (row name, ranker preset, representation preset)
        for rep in self.cfg.representations:
            arms.append((rep, DEFAULT_RANKER, rep))
            arms += [(v, v, None) for v in by_rep.pop(rep, [])]
        arms += [(v, v, None) for vs in by_rep.values() for v in vs]  # variants of an unlisted representation
        return [FitJob(name, ranker, rep, setting, seed, sids, self.out / "runs" / name / setting / f"seed{seed}")
                for name, ranker, rep in arms for setting in self.cfg.settings for seed in self.cfg.seeds]

    def run_fits(self, jobs: list[FitJob], corpus: Path) -> list[FitResults]:
        corpus_fp = Corpus(corpus).fingerprint
        interrupt.at(f"experiment {self.out}: ranker fits (finished fits are kept)")
        results: list[FitResults] = []
        failures: list[str] = []
        t = time.perf_counter()
        # stopping() is left first on an interrupt: submitted jobs are cancelled before the pool waits for them
        with bar("ranker fits", total=len(jobs), unit="fit") as pb, ThreadPoolExecutor(self.launcher.slots) as pool, \
                stopping(self.launcher):
            futures = {pool.submit(self._fit_subprocess, j, corpus, corpus_fp): j for j in jobs}
            try:
                for fut in as_completed(futures):
                    job = futures[fut]
                    rc, tail = fut.result()
                    pb.update(1)
                    if rc != 0:
                        failures.append(f"{job.label}: exit {rc}: {tail}")
                        self.log(f"fit {job.label}: FAILED ({tail})")
                        continue
                    r = read_results(job.out)
                    # the ranker config names the row: dense, dense_1.5x and dense_2x share one representation
                    r.update(name=job.name, seed=job.seed, tag=job.tag, run_dir=str(job.out),
                             skipped=tail == "reused")
                    results.append(r)
                    m = (r.get("metrics") or {}).get("ctr", {})
                    self.log(f"fit {job.label}: CTR AUC {_auc_text(m.get('overall', {}))}, "
                             f"CTR/1D {_auc_text(m.get('new', {}))}" + (" (reused)" if r.get("skipped") else ""))
            except BaseException:
                for f in futures:  # queued fits never start (the launcher stops the running ones)
                    f.cancel()
                raise
        self.timings["ranker fits"] = self.timings.get("ranker fits", 0.0) + time.perf_counter() - t
        if failures:
            raise SemidError(f"{len(failures)} ranker fit(s) failed; first: {failures[0]} "
                             "(see the run directory's fit.log)")
        return results

    def _overrides(self, job: FitJob) -> list[str]:
        return list(self.cfg.ranker_overrides) + [SETTINGS[job.setting], f"trainer.seed={job.seed}",
                                                   f"data.seed={job.seed}", f"trainer.threads={self.cfg.threads_per_fit}",
                                                   f"trainer.wandb_group={self.cfg.name}", "trainer.progress_bar=false"]

    def _sids_fingerprint(self, path: Path) -> str:
        if path not in self._sid_fingerprints:
            self._sid_fingerprints[path] = read_sid_table(path).fingerprint
        return self._sid_fingerprints[path]

    def _fit_subprocess(self, job: FitJob, corpus: Path, corpus_fp: str) -> tuple[int, str]:
        cfg = load_rank_config(job.ranker, self._overrides(job), representation=job.representation)
        # the tokenizer says whether it reads SIDs (hash, MCH and Dense Input do not): a fit that does not is not
        # given the table, so it records none and stays up to date when the RQ-VAE changes
        needs_sids = build_tokenizer(cfg.representation).needs_sids
        if is_up_to_date(job.out, cfg, corpus_fp, self._sids_fingerprint(job.sids) if needs_sids else None):
            return 0, "reused"
        job.out.mkdir(parents=True, exist_ok=True)
        argv = ["rank", "fit", "--config", job.ranker, "--corpus", str(corpus), "--out", str(job.out),
                "--restart-if-changed"]
        if job.representation is not None:
            argv += ["--representation", job.representation]
        if needs_sids:
            argv += ["--sids", str(job.sids)]
        for o in self._overrides(job):
            argv += ["--set", o]
        # each fit is its own single-process job: inherited rendezvous variables (e.g. a MASTER_PORT that
        # Lightning set in this process) would make parallel fits bind the same port
        rc = self.launcher.run(Task(f"fit {job.label}", argv, job.out / "fit.log", set_env=self._job_env(),
                                    unset_env=DIST_ENV, threads=self.cfg.threads_per_fit,
                                    gpus=self.cfg.launcher.gpus_per_job,
                                    forkable=cfg.trainer.devices * cfg.trainer.num_nodes == 1))
        log = job.out / "fit.log"
        return rc, (_failure(log.read_text()) if log.exists() else "no fit.log") if rc != 0 else ""

    def _job_env(self) -> dict[str, str]:
        """What a job's process changes in its environment (the rest is where the job runs: a cluster node's own)."""
        return {"OMP_NUM_THREADS": str(self.cfg.threads_per_fit), "PYTHONWARNINGS": "ignore", "SEMID_PROGRESS": "0"}

    # -- the whole study ---------------------------------------------------------------------------------------
    def run(self) -> Path:
        t0 = time.perf_counter()
        corpus = self.corpus()  # before the out directory exists: a missing corpus leaves nothing behind
        open_corpus(corpus)  # the data gate, once, before any stage reads the corpus (the stamp serves the rest)
        with exclusive(self.out, "semid experiment"):  # a second experiment here would race this one's stages
            return self._run(corpus, t0)

    def _run(self, corpus: Path, t0: float) -> Path:
        # Stage-1 work the main fits do not need (the stability study's RQ-VAEs and SIDs, Table 1 and lookups)
        # runs beside the main RQ-VAE and the fits: each RQ-VAE trains on one core, and the serial stages left
        # the other idle for minutes of the main job (issue 19). The side RQ-VAEs train as launcher jobs, so
        # they are stopped with the fits on an interrupt.
        with ThreadPoolExecutor(1) as side:
            side_tables = side.submit(self.stability_tables, corpus) if self.cfg.stability.enabled else None
            try:
                model = self.rqvae(corpus)
                sids = self.sids(model, corpus)
                side_analysis = side.submit(self.analysis, corpus, sids)
                results = self.run_fits(self.jobs(sids), corpus)
            except BaseException:
                self.launcher.stop()  # the side RQ-VAE job ends with the experiment
                side.shutdown(wait=True, cancel_futures=True)  # a queued side stage never starts
                raise
            tables = side_tables.result() if side_tables is not None else None
            analysis, analysis_fp = side_analysis.result()
        stability = self.stability(corpus, tables) if tables is not None else None
        quantizers = self.quantizer_study(corpus, model, sids) if self.cfg.quantizers else None
        self.timings["total"] = time.perf_counter() - t0
        spec = ReportSpec(self.cfg.name, self.cfg.reference, self.cfg.settings,
                          self.cfg.representations + self.cfg.ranker_variants, tuple(self.cfg.age_slices),
                          self.cfg.report_bootstraps, self.cfg.equivalence_margin_pct)
        if report_is_current(self.out, report_fingerprint(spec, results, stability, analysis_fp, quantizers)):
            self.log(f"report: reusing {self.out / 'report.md'}")
            report = self.out / "report.md"
        else:
            report = self._stage("report", lambda: write_report(spec, self.out, corpus, model, results, stability,
                                                                analysis, analysis_fp, self.timings, quantizers))
        self.summary_run()
        return report

    def summary_run(self) -> None:
        """The report's tables and figures as a W&B run in the fits' project and group, when wanted."""
        fit = load_rank_config(DEFAULT_RANKER, list(self.cfg.ranker_overrides) + [f"trainer.wandb_group={self.cfg.name}"])
        if not wandb_summary.wanted(self.cfg.wandb_summary, fit.trainer.loggers):
            return
        if wandb_summary.is_logged(self.out):
            self.log(f"wandb summary: reusing {self.out / wandb_summary.MARKER}")
            return
        run_dir = self._stage("wandb summary", lambda: wandb_summary.log_summary(
            self.out, name=self.cfg.name, project=fit.trainer.wandb_project, group=fit.trainer.wandb_group,
            config=asdict(self.cfg)))
        self.log(f"wandb summary: {run_dir} (group {fit.trainer.wandb_group})")

    def analysis(self, corpus: Path, sids: Path) -> tuple[JsonObject, str]:
        """Table 1 with intervals and Figure 4's lookups, once per (SID table, corpus, training days)."""
        c = open_corpus(corpus)
        train_days = c.days()[:-1]
        fp = fingerprint_of(["analysis", self._sids_fingerprint(sids), c.fingerprint, train_days,
                             self.cfg.lookup_vocab_sizes, self.cfg.report_bootstraps, code_fingerprint(*ROOMS)])
        path = self.out / f"analysis-{fp}" / "analysis.json"
        if path.exists():
            self.log(f"analysis: reusing {path.parent}")
            return read_json(path), fp
        result = self._stage("analysis (Table 1, lookups)", lambda: stage1_analysis(
            c, read_sid_table(sids), train_days, self.cfg.lookup_vocab_sizes, self.cfg.report_bootstraps))
        write_json(path, result)
        return result, fp

    def stability_tables(self, corpus: Path) -> dict[str, Path]:
        """The stability study's SID tables: RQ-VAEs trained on the early and on the late days, as launcher jobs
        (they train beside the main fits)."""
        st = self.cfg.stability
        return {tag: self.sids(self.rqvae(corpus, days, tag, as_job=True), corpus)
                for tag, days in (("early", st.early_days), ("late", st.late_days))}

    def stability(self, corpus: Path, tables: dict[str, Path]) -> StabilityStudy:
        """Appendix A.2: the early and the late RQ-VAE's SID tables (``stability_tables``) each drive the same
        ranker."""
        st = self.cfg.stability
        jobs = [FitJob(st.representation, DEFAULT_RANKER, st.representation, "without_history", self.cfg.seeds[0],
                       tables[tag], self.out / "stability" / tag, tag=tag) for tag in ("early", "late")]
        results = self.run_fits(jobs, corpus)
        agreement = compare_tables(read_sid_table(tables["early"]), read_sid_table(tables["late"]))
        return {"representation": st.representation, "early_days": st.early_days, "late_days": st.late_days,
                "results": {r["tag"]: r for r in results}, "agreement": agreement}

    def with_training_days(self, q: QuantizerSpec, corpus: Path) -> QuantizerSpec:
        """``q`` with, for a behaviour-aware quantizer (``rqvae_cooc``), its co-engaged pairs limited to the
        rankers' training days (every day before the evaluation day): the evaluation day never shapes its SIDs."""
        # a probe for the kind: a behaviour-aware config is refused without its days, which are set below
        cfg = load_rqvae_config(q.rqvae or self.cfg.rqvae, [*self.cfg.rqvae_overrides, *q.overrides,
                                                             "cooccur.last_day=0"])
        if cfg.quantizer != "rqvae_cooc":
            return q
        data = load_rank_config(DEFAULT_RANKER, list(self.cfg.ranker_overrides)).data
        train_days, eval_day = resolve_days(Corpus(corpus), data)
        # with rolling evaluation the rankers are also judged on the day after each of the last k training days
        first_judged = min([d + 1 for d in train_days[-data.rolling_eval_days:]] + [eval_day])
        days = [d for d in train_days if d < first_judged]
        if not days:
            raise SemidError(f"{corpus}: quantizers '{q.name}': a behaviour-aware quantizer needs a training day "
                             "before the first evaluated day (lower data.rolling_eval_days)")
        return QuantizerSpec(q.name, q.rqvae, [*q.overrides, f"cooccur.first_day={days[0]}",
                                               f"cooccur.last_day={days[-1]}"], q.collision_suffix)

    def quantizer_study(self, corpus: Path, model: Path, sids: Path) -> QuantizerStudy:
        """Issue 18: each Stage-1 variant's SID table drives ``quantizer_representations`` in every setting and
        seed; the report pairs each run with the same representation on the main RQ-VAE's table."""
        variants = [_Variant(name="rqvae", model=model, sids=sids, collision_suffix=False)]
        for q in self.cfg.quantizers:
            q = self.with_training_days(q, corpus)
            # the suffix is an assignment option: a variant that only adds it reuses the main model
            q_model = model if (q.rqvae in (None, self.cfg.rqvae) and not q.overrides) else \
                self.rqvae(corpus, tag=q.name, quantizer=q)
            variants.append(_Variant(name=q.name, model=q_model, collision_suffix=q.collision_suffix,
                                     sids=self.sids(q_model, corpus, q.collision_suffix) if q.collision_suffix or
                                     q_model != model else sids))
        jobs = [FitJob(rep, DEFAULT_RANKER, rep, setting, seed, v["sids"],
                       self.out / "quantizers" / v["name"] / rep / setting / f"seed{seed}", tag=f"q-{v['name']}")
                for v in variants[1:] for rep in self.cfg.quantizer_representations
                for setting in self.cfg.settings for seed in self.cfg.seeds]
        results = self.run_fits(jobs, corpus)
        out: list[StudyVariant] = []
        for v in variants:
            health = read_json(v["model"] / "health.json")
            table = read_sid_table(v["sids"])
            kind = health.get("quantizer") or {}
            row: StudyVariant = {"name": v["name"], "model": str(v["model"]), "sids": str(v["sids"]),
                                 "quantizer": kind.get("kind", "rqvae"), "collision_suffix": v["collision_suffix"],
                                 "levels": int(table.codes.shape[1]),
                                 "health": {k: health.get(k) for k in ("all_items", "heldout")}}
            if "cooccur_weight" in kind:  # the report names each behaviour-aware row's lambda and its pairs
                row["cooccur"] = {"weight": float(kind["cooccur_weight"]), "days": kind.get("cooccur_days"),
                                  "pairs": kind.get("cooccur_pairs")}
            out.append(row)
        return {"representations": list(self.cfg.quantizer_representations), "variants": out,
                "results": results, "baseline": self.cfg.reference}


def _auc_text(slice_: SliceMetrics) -> str:
    """A run's slice AUC for the progress line, or why it has none (``undefined (3 items ...)``)."""
    if slice_.get("auc") is None and slice_.get("undefined"):
        return f"undefined ({slice_['undefined']})"
    return sig(slice_.get("auc"))
