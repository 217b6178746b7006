"""How ``semid experiment`` runs its jobs: every ranker fit (and, with submitit, every quantizer training) is
one ``semid`` command in a process of its own, and a launcher decides where that process runs.

``local`` (the default): subprocesses of the experiment, ``parallel`` at a time; quantizers train inside the
experiment's own process. ``submitit``: each command is a job submitted through submitit, to SLURM on a
cluster (partition, GPUs per job, time limit from the experiment config's ``launcher:`` block or the CLI's
flags) or to submitit's local executor. Either way the experiment waits for every job and a rerun resumes the
same way: a finished fit is reused by its fingerprint, an interrupted one resumes from its checkpoint. A SLURM
job that reaches its time limit is requeued with the same command (submitit's checkpointing), which resumes
from the fit's last day checkpoint.

A job dies with the experiment where it can see it: the command dies with the process that started it
(``semid.cli._die_with_parent``), and a submitit job on the experiment's own host ends within a second of the
experiment's death. On SLURM an interrupted experiment (Ctrl-C, SIGTERM) cancels its jobs; after a ``kill -9``
of the experiment, cancel them with ``scancel --name <launcher.job_name>`` before rerunning.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from semid.cli import PARENT_PID_ENV
from semid.core.config import require, require_int
from semid.core.errors import SemidError
from semid.study.warm_start import ForkedJob, available as warm_available

if TYPE_CHECKING:
    import submitit

KINDS = ("local", "submitit")
CLUSTERS = ("auto", "slurm", "local")
STOPPED = 143  # the exit status of a job the experiment stopped (as SIGTERM would end it)


@dataclass
class LauncherSpec:
    """The experiment config's ``launcher:`` block."""

    kind: str = "local"  # local | submitit
    cluster: str = "auto"  # submitit's executor: slurm, local, or auto (slurm where sbatch is found, else local)
    folder: str | None = None  # submitit's job files (pickles, logs); default <experiment>/submitit
    job_name: str | None = None  # SLURM job name; default semid-<experiment name>
    partition: str | None = None  # SLURM partition
    gpus_per_job: int = 0  # GPUs per fit job, one task per GPU (the fit's trainer.devices must match)
    cpus_per_job: int | None = None  # CPU cores per task; default the experiment's threads_per_fit
    mem_gb: float | None = None  # memory per job; default the partition's
    time_limit_min: int = 240  # per job; a fit that reaches it is requeued and resumes from its checkpoint
    max_jobs: int = 64  # jobs queued or running at once
    slurm_args: dict[str, Any] = field(default_factory=dict)  # any other sbatch option, e.g. {account: A, qos: high}
    # local: single-process jobs fork from one process that imported the stack once (semid.study.warm_start: ~6 s
    # less per job); false: a fresh interpreter per job, as submitit's are
    warm_start: bool = True

    def __post_init__(self) -> None:
        require(self.kind in KINDS, "kind", f"{self.kind!r} unknown (valid: {', '.join(KINDS)})")
        require(self.cluster in CLUSTERS, "cluster",
                f"{self.cluster!r} unknown (valid: {', '.join(CLUSTERS)})")
        require_int(self.gpus_per_job, "gpus_per_job", minimum=0)
        require(self.cpus_per_job is None or (isinstance(self.cpus_per_job, int) and self.cpus_per_job >= 1),
                "cpus_per_job", f"must be an integer >= 1 or null (got {self.cpus_per_job!r})")
        require(self.mem_gb is None or (isinstance(self.mem_gb, (int, float)) and self.mem_gb > 0),
                "mem_gb", f"must be a number > 0 or null (got {self.mem_gb!r})")
        require_int(self.time_limit_min, "time_limit_min")
        require_int(self.max_jobs, "max_jobs")
        require(isinstance(self.warm_start, bool), "warm_start", f"must be true or false (got {self.warm_start!r})")
        require(isinstance(self.slurm_args, dict), "slurm_args",
                f"must be a mapping of sbatch options, e.g. {{account: A}} (got {self.slurm_args!r})")
        if self.kind == "submitit":
            try:  # submitit is an optional extra ([cluster]): imported only where a submitit launcher needs it
                import submitit  # noqa: F401
            except ImportError:
                require(False, "kind", "submitit is not installed (pip install -c constraints.txt -e '.[cluster]', "
                                       "or use the local launcher)")
            # submitit's SLURM executor needs srun here; say so before any work, not at the first submission
            require(self.cluster != "slurm" or shutil.which("srun") is not None, "cluster",
                    "slurm, but there is no srun on this machine's PATH (run on a SLURM login node, or use "
                    "cluster: local)")


@dataclass(frozen=True)
class Task:
    """One command of the study: ``semid <argv>`` in a process of its own, output to ``log``."""

    label: str  # e.g. "fit spm_8k/with_history/seed0", in failure messages
    argv: list[str]  # the arguments after ``semid``
    log: Path  # stdout and stderr of the command
    set_env: dict[str, str] = field(default_factory=dict)  # on top of the environment where the job runs
    unset_env: tuple[str, ...] = ()  # removed from it (e.g. inherited rendezvous variables)
    threads: int = 1  # CPU threads the command uses
    gpus: int = 0  # GPUs it uses (one process per GPU)
    forkable: bool = False  # one process that never re-launches itself: may fork from a warm process


class Launcher(Protocol):
    slots: int  # tasks the experiment runs at once
    in_process_quantizers: bool  # quantizers train inside the experiment's process (else: a Task each)

    def run(self, task: Task) -> int:
        """Run ``task`` to its end; its exit status (nonzero: the log's last line says why)."""
        ...

    def stop(self) -> None:
        """The experiment is stopping: end what runs, start nothing more."""
        ...


_Process = subprocess.Popen[bytes] | ForkedJob  # a job's process: terminate(), kill(), wait(timeout)


@dataclass(frozen=True)
class _Command:
    """The process a task runs in: where the job runs, with the task's environment changes. A submitit job
    pickles it; ``checkpoint`` makes it requeue at a SLURM time limit with the same command."""

    cmd: list[str]
    log: str
    set_env: dict[str, str]
    unset_env: tuple[str, ...]
    watch: tuple[str, int] | None = None  # (host, pid) of the experiment: on that host, end when it ends
    # the local launcher's record of running processes (never set for a submitit job: it is not pickled)
    running: "_Running | None" = field(default=None, compare=False)

    def __call__(self) -> int:
        env = _job_env(self.set_env, self.unset_env)
        # a multi-GPU SLURM job runs this once per task (each a rank of the fit): rank 0 writes the task's log
        rank = int(os.environ.get("SLURM_PROCID") or os.environ.get("SUBMITIT_LOCAL_GLOBALID") or 0)
        with open(self.log if rank == 0 else f"{self.log}.rank{rank}", "w") as logf:
            proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
            return _supervise(proc, self.running, self.watch)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission  # the optional extra, on the submitit job's node

        return DelayedSubmission(self, *args, **kwargs)


def _job_env(set_env: dict[str, str], unset_env: tuple[str, ...]) -> dict[str, str]:
    """This process's environment with a task's changes, naming this process as the job's parent."""
    env = {k: v for k, v in os.environ.items() if k not in unset_env}
    env.update(set_env)
    env[PARENT_PID_ENV] = str(os.getpid())  # the command dies with this process (semid.cli._die_with_parent)
    return env


def _supervise(proc: _Process, running: "_Running | None", watch: tuple[str, int] | None = None) -> int:
    """Wait for a job's process; it is ended with the experiment (``watch``) and on an interrupt."""
    if running is not None:
        running.add(proc)
    try:
        if watch is None or watch[0] != socket.gethostname():
            return proc.wait()
        while True:
            try:
                return proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                if not _alive(watch[1]):  # the experiment is gone: no orphan keeps writing
                    proc.kill()
                    proc.wait()
                    return STOPPED
    except BaseException:
        proc.kill()  # interrupted (a cancelled job): the command goes with it
        proc.wait()
        raise
    finally:
        if running is not None:
            running.discard(proc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process took the number: ours is gone, but do not guess
    try:  # an exited process its parent has not reaped yet (a zombie) still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _command(task: Task) -> list[str]:
    return [sys.executable, "-m", "semid.cli", *task.argv]


class _Running:
    """The processes the local launcher runs now. ``stop()`` ends them and refuses new ones: an experiment
    stopped by SIGTERM used to wait for its running fits (and start the queued ones), which kept writing run
    directories after the experiment reported that it had stopped."""

    GRACE_S = 30.0  # SIGTERM lets a fit end as Ctrl-C does (position kept); SIGKILL after this

    def __init__(self) -> None:
        self._procs: set[_Process] = set()
        self._lock = threading.Lock()
        self.stopped = False

    def add(self, proc: _Process) -> None:
        with self._lock:
            self._procs.add(proc)
            late = self.stopped  # started while stop() ran: ended like the others
        if late:
            proc.terminate()

    def discard(self, proc: _Process) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            procs = list(self._procs)
        for p in procs:
            p.terminate()
        deadline = time.monotonic() + self.GRACE_S
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()


class LocalLauncher:
    """Subprocesses of the experiment, ``parallel`` at a time (each dies with the experiment, and ends when the
    experiment stops); with ``warm_start``, forkable tasks fork from a warm process instead (semid.study.warm_start)."""

    in_process_quantizers = True

    def __init__(self, parallel: int, warm_start: bool = True) -> None:
        self.slots = parallel
        self.warm_start = warm_start and warm_available()
        self._running = _Running()

    def run(self, task: Task) -> int:
        if self._running.stopped:
            return STOPPED  # the experiment is stopping: a queued task does not start
        if self.warm_start and task.forkable:
            job = ForkedJob(task.argv, str(task.log), _job_env(task.set_env, task.unset_env), task.threads)
            return _supervise(job, self._running)
        return _Command(_command(task), str(task.log), task.set_env, task.unset_env, running=self._running)()

    def stop(self) -> None:
        self._running.stop()


class SubmititLauncher:
    """Each task a submitit job; the experiment polls them and writes a job that ended without an exit status
    (node failure, cancelled, out of time without requeue) into the task's log as one line."""

    in_process_quantizers = False

    def __init__(self, spec: LauncherSpec, folder: Path, job_name: str) -> None:
        self.spec, self.folder, self.job_name = spec, folder, job_name
        self.slots = spec.max_jobs
        self._executor: submitit.AutoExecutor | None = None
        self._lock = threading.Lock()  # executor parameters are per submission, set under the lock
        self._jobs: set[submitit.Job[int]] = set()
        self._stopped = threading.Event()

    def executor(self) -> "submitit.AutoExecutor":
        import submitit  # the optional extra: the local launcher runs without it

        if self._executor is None:
            cluster = None if self.spec.cluster == "auto" else self.spec.cluster
            self._executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        return self._executor

    def parameters(self, task: Task) -> dict[str, Any]:
        """submitit's parameters for ``task`` (generic ones, translated per cluster, and SLURM's own)."""
        s = self.spec
        params: dict[str, Any] = {
            "name": self.job_name, "timeout_min": s.time_limit_min, "nodes": 1,
            # one process per GPU, as Lightning's SLURM environment expects of a multi-GPU fit
            "tasks_per_node": max(task.gpus, 1), "gpus_per_node": task.gpus,
            "cpus_per_task": s.cpus_per_job or task.threads, "stderr_to_stdout": True,
        }
        if s.mem_gb is not None:
            params["mem_gb"] = s.mem_gb
        if s.partition:
            params["slurm_partition"] = s.partition
        if s.slurm_args:
            params["slurm_additional_parameters"] = {k: str(v) for k, v in s.slurm_args.items()}
        return params

    def run(self, task: Task) -> int:
        if self._stopped.is_set():
            return STOPPED
        command = _Command(_command(task), str(task.log), task.set_env, task.unset_env,
                           watch=(socket.gethostname(), os.getpid()))
        with self._lock:
            ex = self.executor()
            ex.update_parameters(**self.parameters(task))
            try:
                job = ex.submit(command)
            except Exception as e:  # sbatch refused it (an unknown partition, account, ...): the config's fault
                why = next((l for l in str(e).strip().splitlines() if l.strip()), type(e).__name__)
                raise SemidError(f"launcher: submitit could not submit {task.label}: {why} (check the experiment "
                                 "config's launcher: block, e.g. launcher.partition)") from None
            self._jobs.add(job)
        poll = 1.0 if ex.cluster == "local" else 15.0  # sacct is asked at most this often per job
        try:
            while not job.done():
                if self._stopped.wait(poll):
                    return STOPPED
            try:
                return int(job.result())
            except Exception as e:  # submitit's FailedJobError / UncompletedJobError: the job, not the command
                why = next((line for line in reversed(str(e).strip().splitlines()) if line.strip()), type(e).__name__)
                with open(task.log, "a") as f:
                    f.write(f"\nsemid: error: {task.label}: submitit job {job.job_id} ended without an exit status: "
                            f"{why} (its submitit logs: {job.paths.stdout})\n")
                return 1
        finally:
            with self._lock:
                self._jobs.discard(job)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            for job in list(self._jobs):
                job.cancel(check=False)


@contextlib.contextmanager
def stopping(launcher: Launcher) -> Iterator[None]:
    """Stop ``launcher`` when the block ends by an exception (Ctrl-C, SIGTERM, a failed stage)."""
    try:
        yield
    except BaseException:
        launcher.stop()
        raise


def make_launcher(spec: LauncherSpec, out: Path, *, name: str, parallel: int) -> Launcher:
    """The launcher ``spec`` names, for the experiment in ``out`` (nothing is created until a job is submitted)."""
    if spec.kind == "local":
        return LocalLauncher(parallel, spec.warm_start)
    if spec.kind == "submitit":
        folder = Path(spec.folder) if spec.folder else out / "submitit"
        return SubmititLauncher(spec, folder, spec.job_name or f"semid-{name}")
    raise SemidError(f"launcher.kind: {spec.kind!r} unknown (valid: {', '.join(KINDS)})")
