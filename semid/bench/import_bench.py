"""``semid bench import --rows 2M,10M``: ``semid data import`` on generated CSV logs of several lengths, each import
a child process, with its rows/s and peak RSS, so that BENCHMARKS.md's "Importing a log" figures can be rerun.

The log (``write_log``): ``user,item,time,rating``, time-ordered, ``--items`` items with a Zipf(1.3) popularity,
users uniform over ``--users``, ratings uniform in 1..5, and an embeddings Parquet (``item_id``, ``embedding``) of
``--dim`` floats per item. Its days are ``rows / --rows-per-day``, so logs of different lengths have the same rows,
users and items *per day* and differ only in how many days they span: a bounded-memory import then shows a flat
peak RSS, and what still grows is per distinct user or item (the import's per-user and per-item state).

The import, as a user runs it::

    semid data import LOG.csv --embeddings EMB.parquet --user user --item item --time time --label 'rating>=4' \\
        --out CORPUS

Measurements: wall time from the parent (the import alone: the log is written before); peak RSS as the child
reports it at exit (VmHWM, the kernel's high-water mark of its own resident memory), and the same for
``semid data import --help`` (the command's baseline: the interpreter, the semid parser and what it imports);
rows/s = rows / wall; the machine's load average before and after (the machine may be shared). The corpus is checked (every row kept, as
the generator writes only known items) and deleted with the log unless ``--keep``.

Example::

    >>> import tempfile, pathlib, pyarrow.csv as pacsv
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> log, emb = write_log(d, rows=5, items=3, users=2, days=1)
    >>> pacsv.read_csv(log).column_names
    ['user', 'item', 'time', 'rating']
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from semid.bench.records import ChildRun
from semid.core.errors import SemidError
from semid.core.records import JsonObject

T0 = 1_573_257_600  # 2019-11-09 00:00 UTC
DAY = 86400
BLOCK = 1_000_000  # rows the generator holds at once


def write_log(out: Path, *, rows: int, items: int = 100_000, users: int = 1_000_000, days: int = 60,
              dim: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """``out/log.csv`` and ``out/emb.parquet`` (see the module docstring), written a block at a time."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(items, dim)).astype(np.float32)
    pq.write_table(pa.table({"item_id": pa.array(np.arange(items), pa.int64()),
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim)}),
                   out / "emb.parquet")
    span = days * DAY
    schema = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("time", pa.int64()), ("rating", pa.int8())])
    with pacsv.CSVWriter(out / "log.csv", schema) as w:
        for start in range(0, rows, BLOCK):
            n = min(BLOCK, rows - start)
            # time-ordered, as logs are: block k covers its share of the span
            t = T0 + (start + np.sort(rng.integers(0, n, n))) * span // rows
            item = np.minimum(rng.zipf(1.3, n) - 1, items - 1)  # a popularity skew
            w.write_table(pa.table({"user": rng.integers(0, users, n), "item": item, "time": t,
                                    "rating": rng.integers(1, 6, n).astype(np.int8)}, schema=schema))
    return out / "log.csv", out / "emb.parquet"


@dataclass
class ImportBenchConfig:
    """What ``semid bench import`` measures; ``work`` holds the generated logs (default: under ``out``)."""

    out: Path
    rows: list[int] = field(default_factory=lambda: [2_000_000, 10_000_000])
    rows_per_day: int = 166_667
    items: int = 100_000
    users: int = 1_000_000
    dim: int = 32
    work: Path | None = None
    keep: bool = False
    max_rss_gb: float = 8.0

    def check(self) -> None:
        """Every setting, before any work: a SemidError naming the flag otherwise.

        >>> ImportBenchConfig(Path("runs/b"), rows_per_day=0).check()
        Traceback (most recent call last):
        ...
        semid.core.errors.SemidError: --rows-per-day must be >= 1 (got 0)
        """
        for flag, v in (("--rows-per-day", self.rows_per_day), ("--items", self.items), ("--users", self.users),
                        ("--dim", self.dim)):
            if v < 1:
                raise SemidError(f"{flag} must be >= 1 (got {v})")
        if not self.rows or min(self.rows) < 1:
            raise SemidError("--rows: give one or more log lengths >= 1, e.g. --rows 2M,10M")
        if self.max_rss_gb <= 0:
            raise SemidError(f"--max-rss-gb must be > 0 (got {self.max_rss_gb})")


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def import_command(log: Path, emb: Path, corpus: Path) -> list[str]:
    """The child's command: ``semid data import`` as a user runs it (see the module docstring).

    >>> import_command(Path("log.csv"), Path("emb.parquet"), Path("corpus"))[3:6]
    ['data', 'import', 'log.csv']
    """
    return [sys.executable, "-m", "semid.cli", "data", "import", str(log), "--embeddings", str(emb), "--user", "user",
            "--item", "item", "--time", "time", "--label", "rating>=4", "--out", str(corpus)]


# The child reports its own peak: ``os.wait4``'s ru_maxrss cannot be used, since Linux carries the parent's
# high-water mark into a child across exec (a child of a 1.5 GB pytest process "peaked" at 1.5 GB). VmHWM in
# /proc/self/status belongs to the exec'd process alone; this wrapper writes it at exit, then runs the command.
_HWM = ("import atexit, runpy, sys\n"
        "out = sys.argv.pop(1)\n"
        "def hwm():\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "    open(out, 'w').write(line.split()[1])  # KiB\n"
        "atexit.register(hwm)\n"
        "sys.argv = [sys.argv[0], *sys.argv[3:]]  # drop '-m semid.cli'\n"
        "runpy.run_module('semid.cli', run_name='__main__', alter_sys=True)\n")


def _measured(cmd: list[str], hwm_file: Path) -> list[str]:
    """``cmd`` (``python -m semid.cli ...``) run through the wrapper that records its own peak RSS."""
    assert cmd[1:3] == ["-m", "semid.cli"], cmd
    return [cmd[0], "-c", _HWM, str(hwm_file), *cmd[1:]]


def _run_measured(cmd: list[str], log_file: Path, max_rss_bytes: int) -> ChildRun:
    from semid.bench.scale import run_child

    hwm = log_file.with_suffix(".hwm")
    hwm.unlink(missing_ok=True)
    child = run_child(_measured(cmd, hwm), log_file, max_rss_bytes)
    child["command"] = " ".join(cmd[1:]).replace("-m semid.cli", "semid", 1)
    if hwm.exists():
        child["peak_rss_mb"] = int(hwm.read_text()) / 1024
    return child


def run_import_bench(cfg: ImportBenchConfig, log: Callable[[str], None] = print) -> JsonObject:
    """Generate each log, import it in a child process, and return the record (``import.json``).

    >>> import tempfile
    >>> cfg = ImportBenchConfig(Path(tempfile.mkdtemp()), rows=[300], rows_per_day=100, items=20, users=10)
    >>> [(r["rows"], r["days"], r["rc"]) for r in run_import_bench(cfg, log=lambda _: None)["runs"]]
    [(300, 3, 0)]
    """
    cfg.check()
    work = Path(cfg.work) if cfg.work is not None else Path(cfg.out) / "work"
    # what the command costs before it reads a row (the semid parser and its imports), so the import's own share
    # of the peak can be told apart from the interpreter's
    base = _run_measured([sys.executable, "-m", "semid.cli", "data", "import", "--help"], work / "baseline.log",
                         int(cfg.max_rss_gb * 2**30))
    res: JsonObject = {"bench": "import", "rows_per_day": cfg.rows_per_day, "items": cfg.items, "users": cfg.users,
                       "dim": cfg.dim, "cli_baseline_rss_mib": round(base["peak_rss_mb"]), "runs": []}
    for rows in cfg.rows:
        days = max(1, round(rows / cfg.rows_per_day))
        folder = work / f"log-{rows}"
        t0 = time.perf_counter()
        log_path, emb = write_log(folder, rows=rows, items=cfg.items, users=cfg.users, days=days, dim=cfg.dim)
        gen_s = time.perf_counter() - t0
        corpus = folder / "corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        log(f"{rows:,} rows over {days} days ({log_path.stat().st_size / 2**20:.0f} MiB CSV, written in {gen_s:.0f} s): "
            "importing")
        load_before = _loadavg()
        child = _run_measured(import_command(log_path, emb, corpus), folder / "import.log", int(cfg.max_rss_gb * 2**30))
        run: JsonObject = {"rows": rows, "days": days, "csv_mib": round(log_path.stat().st_size / 2**20, 1),
                           "generate_s": round(gen_s, 1), "command": child["command"], "rc": child["rc"],
                           "wall_s": round(child["wall_s"], 1), "rows_per_s": round(rows / child["wall_s"]),
                           "peak_rss_mib": round(child["peak_rss_mb"]),
                           "peak_rss_above_baseline_mib": round(child["peak_rss_mb"] - base["peak_rss_mb"]),
                           "load_before": load_before,
                           "load_after": _loadavg(), "killed_over_max_rss": child["killed_over_max_rss"]}
        if child["rc"] == 0:
            meta = json.loads((corpus / "corpus.json").read_text())
            kept = meta["import"]["rows_kept"]
            if kept != rows:  # the generator writes only known items within the window: every row must stay
                raise SemidError(f"the import of {log_path} kept {kept:,} of {rows:,} rows: see {folder / 'import.log'}")
            run.update({"fingerprint": meta["fingerprint"], "n_impressions": meta["n_impressions"],
                        "items_kept": meta["import"]["items_kept"]})
        else:
            run["tail"] = child["tail"]
        res["runs"].append(run)
        log(f"  rc {run['rc']}: {run['wall_s']} s, {run['rows_per_s']:,} rows/s, peak RSS {run['peak_rss_mib']} MiB")
        if not cfg.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if not cfg.keep and cfg.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return res


def render_markdown(res: JsonObject) -> str:
    """The record as a Markdown table (``import.md``).

    >>> res = {"rows_per_day": 10, "items": 5, "users": 3, "cli_baseline_rss_mib": 270, "runs": [
    ...     {"rows": 20, "days": 2, "csv_mib": 0.1, "wall_s": 3.0, "rows_per_s": 7, "peak_rss_mib": 300,
    ...      "peak_rss_above_baseline_mib": 30, "load_before": [1.0], "load_after": [1.5], "rc": 0}]}
    >>> render_markdown(res).splitlines()[-1]
    '| 20 | 2 | 0.1 MiB | 3.0 s | 7 | 300 MiB | 30 MiB | 1.0 / 1.5 | 0 |'
    """
    lines = [f"`semid data import` of generated logs: {res['rows_per_day']:,} rows/day, {res['items']:,} items "
             f"(Zipf 1.3), {res['users']:,} users; one child process per import. The command's own baseline "
             f"(`semid data import --help`): {res['cli_baseline_rss_mib']} MiB peak RSS.", "",
             "| rows | days | CSV | wall | rows/s | peak RSS | above baseline | load avg (1 min) before / after | rc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        lb, la = (r.get("load_before") or [None])[0], (r.get("load_after") or [None])[0]
        lines.append(f"| {r['rows']:,} | {r['days']} | {r['csv_mib']} MiB | {r['wall_s']} s | {r['rows_per_s']:,} | "
                     f"{r['peak_rss_mib']} MiB | {r['peak_rss_above_baseline_mib']} MiB | {lb} / {la} | {r['rc']} |")
    return "\n".join(lines)
