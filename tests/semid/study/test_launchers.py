"""`semid experiment --launcher submitit`: every fit and the RQ-VAE training is a submitit job (here submitit's
local executor); the report is the local launcher's, number for number; a fit killed inside its job resumes
from its checkpoint on the rerun, and a finished experiment submits nothing again. The SLURM side is checked
by the job script submitit would hand to sbatch."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from semid.cli import main
from semid.core.config import ConfigFieldError
from semid.study.launchers import STOPPED, LauncherSpec, LocalLauncher, SubmititLauncher, Task, _Command
from semid.results.wandb_summary import MARKER
from tests.semid.results.test_wandb_summary import _logged, _table

# a reduced tiny study: two representations (one without SIDs, one with), one setting, no stability study;
# the RQ-VAE trains 40 steps and each fit 60 (5 days of 12), so a kill at step 50 stops only the fits, in day 4
GRID = ["representations=[hash_8k,spm_64]", "ranker_variants=[]", "settings=[without_history]",
        "stability.enabled=false", "report_bootstraps=100", "rqvae_overrides=[train.steps=40]"]
SUBMITIT = ["--launcher", "submitit", "--cluster", "local", "--max-jobs", "2"]


def _experiment(out: Path, capsys: pytest.CaptureFixture, *flags: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["experiment", "--preset", "tiny", "--out", str(out), *[x for s in GRID for x in ("--set", s)], *flags])
    said = capsys.readouterr()
    return rc, said.out, said.err


def _numbers(out: Path) -> tuple[dict, list]:
    """Every AUC (estimate and interval, per slice) and every finding's estimate, interval and verdict."""
    r = json.loads((out / "report.json").read_text())
    aucs = {(st, n): row["auc"] for st, arms in r["summary"].items() for n, row in arms.items()}
    return aucs, [(f["id"], f["setting"], f["metric"], f["estimate"], f["ci_low"], f["ci_high"], f["verdict"])
                  for f in r["findings"]]


@pytest.mark.slow  # four experiments on the tiny corpus (~4 min on 2 busy cores)
def test_submitit_jobs_give_the_local_report_and_resume_like_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    local, sub = tmp_path / "local", tmp_path / "sub"
    rc, said, _ = _experiment(local, capsys)
    assert rc == 0, said

    # every fit's command kills itself at step 50: the jobs end with the fits' exit status, the experiment fails
    with monkeypatch.context() as m:
        m.setenv("SEMID_TEST_KILL_AT_STEP", "50")
        rc, said, err = _experiment(sub, capsys, *SUBMITIT, "--set", "wandb_summary=true")
    assert rc == 2 and "2 ranker fit(s) failed" in err and "exit -9" in err, err
    jobs = sorted((sub / "submitit").glob("*_result.pkl"))
    assert len(jobs) == 3  # the RQ-VAE training and two fits, each a submitit job
    assert (sub / "runs" / "spm_64" / "without_history" / "seed0" / "checkpoints" / "last.ckpt").exists()

    # the rerun resumes each fit from its last day checkpoint, as a local rerun does, and gives the local report
    rc, said, err = _experiment(sub, capsys, *SUBMITIT, "--set", "wandb_summary=true")
    assert rc == 0, err
    assert "rqvae (main): reusing" in said
    for rep in ("hash_8k", "spm_64"):
        assert "resuming" in (sub / "runs" / rep / "without_history" / "seed0" / "fit.log").read_text()
    assert len(list((sub / "submitit").glob("*_result.pkl"))) == 5  # two more jobs, the fits
    assert _numbers(sub) == _numbers(local)

    # the summary run holds the report's numbers
    run_dir = Path(json.loads((sub / MARKER).read_text())["run_dir"])
    run, row, _ = _logged(run_dir)
    assert (run["run_group"], run["job_type"]) == ("tiny", "summary")
    report = json.loads((sub / "report.json").read_text())
    assert {(r["representation"], r["auc_new"]) for r in _table(run_dir, row, "ranking")} == \
        {(n, a["auc"]["new"]["estimate"]) for n, a in report["summary"]["without_history"].items()}
    assert [f["verdict"] for f in _table(run_dir, row, "findings")] == [f["verdict"] for f in report["findings"]]

    # a finished experiment: every stage reused, no job submitted, the summary not logged again
    rc, said, err = _experiment(sub, capsys, *SUBMITIT, "--set", "wandb_summary=true")
    assert rc == 0, err
    assert said.count("(reused)") == 2 and "report: reusing" in said and "wandb summary: reusing" in said
    assert len(list((sub / "submitit").glob("*_result.pkl"))) == 5


def test_a_job_ends_when_the_experiment_is_gone(tmp_path: Path) -> None:
    # a stand-in for an experiment killed with -9: a process that ends after 1 s
    experiment = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    job = _Command([sys.executable, "-c", "import time; time.sleep(60)"], str(tmp_path / "job.log"), {}, (),
                   watch=(socket.gethostname(), experiment.pid))
    t = time.perf_counter()
    rc = job()
    experiment.wait()
    assert rc == STOPPED and time.perf_counter() - t < 20  # not the command's 60 s


def test_a_job_sees_its_environment_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTER_PORT", "12345")  # set by an in-process run: a fit must not inherit it
    log = tmp_path / "job.log"
    code = "import os; print(os.environ.get('MASTER_PORT'), os.environ['OMP_NUM_THREADS'], os.environ['SEMID_PARENT_PID'])"
    rc = _Command([sys.executable, "-c", code], str(log), {"OMP_NUM_THREADS": "3"}, ("MASTER_PORT",))()
    assert rc == 0 and log.read_text().split() == ["None", "3", str(os.getpid())]


def test_the_slurm_job_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `--launcher submitit --partition gpu --gpus-per-job 2 --time-limit 90` hands sbatch (submitit's SLURM
    executor only looks for srun on the PATH until it submits)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    spec = LauncherSpec(kind="submitit", cluster="slurm", partition="gpu", gpus_per_job=2, time_limit_min=90,
                        mem_gb=32, slurm_args={"account": "proj", "qos": "high"})
    launcher = SubmititLauncher(spec, tmp_path / "jobs", "semid-small")
    ex = launcher.executor()
    ex.update_parameters(**launcher.parameters(Task("fit x", ["rank", "fit"], tmp_path / "fit.log", threads=4, gpus=2)))
    script = ex._executor._make_submission_file_text("python -m submitit.core._submit", "1")
    for line in ("--partition=gpu", "--gpus-per-node=2", "--ntasks-per-node=2", "--time=90", "--cpus-per-task=4",
                 "--mem=32GB", "--job-name=semid-small", "--account=proj", "--qos=high", "--nodes=1"):
        assert f"#SBATCH {line}\n" in script, script
    assert "--signal=USR2@" in script  # submitit's time-limit signal: the job requeues and the fit resumes


def test_launcher_errors_come_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "exp"
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    cases = [(["--gpus-per-job", "-1"], "semid: error: --gpus-per-job -1: must be an integer >= 0 (got -1)"),
             (["--launcher", "submitit", "--cluster", "slurm"], "semid: error: --cluster slurm: slurm, but there is no "
                                                                 "srun on this machine's PATH"),
             (["--set", "launcher.kind=pbs"], "semid: error: --set launcher.kind=pbs: 'pbs' unknown (valid: local, "
                                              "submitit)"),
             (["--set", "launcher.slurm_args=[a]"], "semid: error: --set launcher.slurm_args=[a]: must be a mapping")]
    for flags, said in cases:
        rc, _, err = _experiment(out, capsys, *flags)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith(said), err
    assert not out.exists()


def test_submitit_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed: the import fails
    with pytest.raises(ConfigFieldError, match=r"submitit is not installed \(pip install .*\[cluster\]"):
        LauncherSpec(kind="submitit")
    LauncherSpec(kind="local")  # the local launcher never needs it


def test_stop_ends_the_running_tasks_and_starts_no_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import semid.study.launchers as launchers

    # a command that would run for a minute: stop() must end it, not wait for it
    monkeypatch.setattr(launchers, "_command", lambda task: [sys.executable, "-c", "import time; time.sleep(60)"])
    launcher = launchers.LocalLauncher(2)
    assert stop_while_running(launcher, Task("a", [], tmp_path / "a.log")) != 0
    assert launcher.run(Task("b", [], tmp_path / "b.log")) == STOPPED  # queued after the stop: never started
    assert not (tmp_path / "b.log").exists()


def stop_while_running(launcher: LocalLauncher, task: Task, within_s: float = 20) -> int:
    """``task``'s exit status when ``launcher.stop()`` comes while it runs (it must end it, not wait for it)."""
    import threading

    rcs: list[int] = []
    worker = threading.Thread(target=lambda: rcs.append(launcher.run(task)))
    worker.start()
    for _ in range(1200):
        if launcher._running._procs:
            break
        time.sleep(0.05)
    assert launcher._running._procs, "the task's process never started"
    t = time.perf_counter()
    launcher.stop()
    worker.join(timeout=2 * within_s)
    assert not worker.is_alive() and time.perf_counter() - t < within_s and rcs
    return rcs[0]


def test_an_interrupted_experiment_stops_its_fits_and_starts_no_more(tmp_path: Path, tiny_corpus: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The experiment's side of a SIGTERM (the CLI turns it into KeyboardInterrupt, tests/rankers/test_interrupt):
    the running fit ends and the queued one never starts, instead of the pool waiting for both."""
    import signal
    import threading

    import semid.study.launchers as launchers
    from semid.study.experiment import Experiment, load_experiment_config

    # fresh interpreters (the stand-in command replaces theirs; forked fits run `semid` itself: test_warm_start)
    monkeypatch.setattr(launchers, "_command", lambda task: [sys.executable, "-c", "import time; time.sleep(60)"])
    cfg = load_experiment_config("tiny", ["representations=[hash_8k,hash_large]", "ranker_variants=[]",
                                          "settings=[without_history]", "parallel=1", "launcher.warm_start=false"])
    exp = Experiment(cfg, tmp_path / "exp", log=lambda m: None)
    jobs = exp.jobs(tmp_path / "no-sids")  # hash arms read no SID table
    running = exp.launcher._running

    def interrupt_once_a_fit_runs() -> None:
        for _ in range(600):
            if running._procs:
                os.kill(os.getpid(), signal.SIGINT)  # a real signal wakes the waiting main thread, as SIGTERM would
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_once_a_fit_runs, daemon=True).start()
    t = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        exp.run_fits(jobs, tiny_corpus)
    assert time.perf_counter() - t < 30  # not the fit's 60 s
    assert not running._procs
    assert [(j.out / "fit.log").exists() for j in jobs] == [True, False]  # parallel=1: the second never started


def test_a_second_process_in_a_run_directory_is_one_line(tmp_path: Path, tiny_corpus: Path) -> None:
    from semid.core.errors import SemidError
    from semid.core.run_lock import LOCK_NAME, exclusive

    run = tmp_path / "run"
    with exclusive(run, "semid rank fit"):
        with pytest.raises(SemidError, match=f"{run}: another semid rank fit \\(pid {os.getpid()}\\)"):
            with exclusive(run, "semid rank fit"):
                pass
        # the CLI: exit 2, one line, before any work (nothing but the lock in the directory)
        p = subprocess.run([sys.executable, "-m", "semid.cli", "rank", "fit", "--config", "base", "--corpus",
                            str(tiny_corpus), "--out", str(run), "--representation", "hash_8k"],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 2, p.stderr[-2000:]
        assert p.stderr.strip().count("\n") == 0 and "another semid rank fit" in p.stderr
        assert sorted(x.name for x in run.iterdir()) == [LOCK_NAME]
    with exclusive(run, "semid rank fit"):  # released when its holder ends
        pass
