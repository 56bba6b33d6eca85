"""`bioscale study launch`: create a study once, then submit one job array whose tasks each run a worker.

Built on submitit: `SlurmExecutor` on a cluster (the sbatch script is submitit's own, rendered
from the same parameters for `--dry-run`), `LocalExecutor` for real subprocesses on this machine.
Every job runs one worker that pulls trials from the storage until the study's global budget is
met (`_workers.work`), so jobs may start late, die, or be added by another launch, and the study
still ends with exactly its budget. Each job is a `submitit.helpers.Checkpointable`: on Slurm's
pre-timeout or preemption signal (USR2) the worker saves its population at the end of the
minibatch in progress, fails and re-queues its trials, and submitit requeues the job; the
restarted job (or any other) resumes those trials from their checkpoint. The worker, not
submitit, decides whether a signal was the wall time's (counted against `--max-timeouts`) or a
preemption (never counted). Before anything is created, Slurm checks the job array
(`sbatch --test-only`), so a request it would refuse is one line.
"""

from __future__ import annotations

import math
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import submitit

from bioscale import resume
from bioscale.contract import ARCHITECTURE
from bioscale.errors import UsageError, first_line
from bioscale.spec import LaunchSpec, StudySpec
from bioscale.storages import hide_password

from ._plan import Plan

JOB_NAME = "bioscale"


@dataclass
class Launched:
    """What a launch submitted: the study, its job ids, where the logs go, and how to follow it."""

    study_name: str
    job_ids: list[str]
    log_dir: Path
    status_command: list[str]
    jobs: list[Any]  # submitit Job objects

    def summary(self) -> str:
        """The lines `bioscale study launch` prints."""
        ids = self.job_ids
        shown = ids[0].rsplit("_", 1)[0] + f"_[0-{len(ids) - 1}]" if len(ids) > 1 and "_" in ids[0] else ", ".join(ids)
        return "\n".join([f"study {self.study_name}: submitted {len(ids)} job(s): {shown}",
                          f"logs: {self.log_dir}",
                          f"follow it: {shlex.join(self.status_command)}"])

    def wait(self) -> list[int | None]:
        """Block until every job has ended; returns how many trials each worker ran (None for a job that failed, said on stderr)."""
        ran: list[int | None] = []
        for job in self.jobs:
            try:
                ran.append(job.result())
            except Exception as error:  # submitit's UncompletedJobError / FailedJobError: the job's log has the rest
                first = first_line(error)
                print(f"bioscale: job {job.job_id} did not finish: {first} (log: {job.paths.stderr})", file=sys.stderr, flush=True)
                ran.append(None)
        return ran


# Slurm may send a job's wall-time signal up to this long before the `--signal` delay asks.
SIGNAL_SLACK_S = 60
# submitit's own count of timeouts: never the one that stops a job. It calls every signal in a job shorter than
# 10 minutes (or in a longer job's last 20 % or 10 minutes) a timeout, preemptions included; the worker counts its own.
SUBMITIT_MAX_TIMEOUTS = 10_000


class Worker(submitit.helpers.Checkpointable):
    """One array task: a worker that pulls trials until the budget is met; requeued (and resumed) when preempted or timed out.

    A preempted job is always requeued; one that reached its wall time at most `launch.max_timeouts`
    times. A signal counts as the wall time's only when it comes within `signal_delay_s` (plus
    SIGNAL_SLACK_S) of the job's end.
    """

    def __init__(self, plan: Plan, launch: LaunchSpec) -> None:
        self.plan, self.launch = plan, launch
        self.timeouts_left = launch.max_timeouts

    def is_timeout(self, elapsed_s: float) -> bool:
        """Whether a signal `elapsed_s` seconds into the job is its wall-time signal (else: a preemption)."""
        return elapsed_s >= self.launch.time * 60 - self.launch.signal_delay_s - SIGNAL_SLACK_S

    def __call__(self, index: int) -> int:
        """Run the worker; on the scheduler's USR2, save, re-queue the trials, then hand over to submitit's requeue."""
        from bioscale.devices import resolve_devices

        from ._workers import work

        submitit_handler = signal.getsignal(signal.SIGUSR2)
        started = time.monotonic()
        signalled_at: list[float] = []

        def stop_soon(signum: int, frame: Any) -> None:
            signalled_at.append(time.monotonic() - started)
            print(f"bioscale: signal {signal.Signals(signum).name}: saving at the next minibatch, then requeueing",
                  file=sys.stderr, flush=True)
            resume.request_stop()

        signal.signal(signal.SIGUSR2, stop_soon)
        device = resolve_devices("auto")[0]
        threads = self.launch.cpus_per_job
        try:
            ran = work(self.plan, index, device, threads if device == "cpu" else None, progress=False)
            if self.plan.stage == ARCHITECTURE:  # as `study run` does at its end: any job that sees the budget met records it
                import optuna

                from bioscale.storages import open_storage

                from ._prepare import record_winner

                record_winner(optuna.load_study(study_name=self.plan.study_name, storage=open_storage(self.plan.storage)))
            return ran
        except resume.Preempted as stopped:
            print(f"bioscale: {stopped}; its trials are re-queued", file=sys.stderr, flush=True)
            if signalled_at and self.is_timeout(signalled_at[0]):
                if self.timeouts_left <= 0:
                    raise RuntimeError(f"the job reached its wall time ({self.launch.time} min) more often than --max-timeouts "
                                       f"{self.launch.max_timeouts} allows: not requeued (its trials wait for the other jobs or "
                                       "the next launch)") from None
                self.timeouts_left -= 1
                print(f"bioscale: wall time reached; requeued ({self.timeouts_left} more timeout(s) allowed)", file=sys.stderr,
                      flush=True)
            else:
                print("bioscale: preempted (not counted as a timeout); requeued", file=sys.stderr, flush=True)
            signal.signal(signal.SIGUSR2, submitit_handler)
            if callable(submitit_handler):  # submitit: checkpoint() pickles this worker -> requeue this job -> exit
                submitit_handler(signal.SIGUSR2, None)
            raise


def slurm_parameters(launch: LaunchSpec) -> dict[str, Any]:
    """The SlurmExecutor parameters (sbatch's own names) of a launch: what is submitted and what --dry-run shows."""
    params: dict[str, Any] = {"job_name": JOB_NAME, "time": math.ceil(launch.time), "gpus_per_node": launch.gpus(),
                              "cpus_per_task": launch.cpus_per_job, "signal_delay_s": launch.signal_delay_s,
                              "array_parallelism": launch.max_parallel or launch.jobs}
    for key, value in (("partition", launch.partition), ("account", launch.account), ("qos", launch.qos)):
        if value:
            params[key] = value
    if launch.mem_gb:
        params["mem"] = f"{int(launch.mem_gb)}GB" if launch.mem_gb == int(launch.mem_gb) else f"{int(launch.mem_gb * 1024)}MB"
    if launch.setup:
        params["setup"] = list(launch.setup)
    if launch.slurm_options:
        params["additional_parameters"] = launch.sbatch_options()
    return params


def sbatch_script(launch: LaunchSpec) -> str:
    """The sbatch script submitit writes for this launch's job array (its own renderer, nothing submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string  # noqa: PLC2701 - submitit's renderer; the executor needs srun

    folder = Path(launch.log_dir).expanduser().resolve()
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder / "%j"))])
    return _make_sbatch_string(command=command, folder=folder / "%j", map_count=launch.jobs, **slurm_parameters(launch))


def dry_run(spec: StudySpec, launch: LaunchSpec) -> str:
    """What a launch would submit, checked and shown; nothing is created or submitted."""
    spec = spec.checked()
    launch = launch.checked(spec.storage)
    if launch.executor == "slurm":
        return sbatch_script(launch)
    return (f"# local executor: {launch.jobs} worker process(es), {launch.time} min each (USR2 {launch.signal_delay_s} s "
            f"before), {launch.gpus()} GPU(s) each, logs in {Path(launch.log_dir).expanduser().resolve()}"
            + "".join(f"\n{line}" for line in launch.setup))


def make_executor(launch: LaunchSpec) -> Any:
    """The submitit executor of a checked launch (its log folder created): SlurmExecutor or LocalExecutor."""
    log_dir = Path(launch.log_dir).expanduser().resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    if launch.executor == "slurm":
        executor = submitit.SlurmExecutor(folder=log_dir / "%j", max_num_timeout=SUBMITIT_MAX_TIMEOUTS)
        executor.update_parameters(**slurm_parameters(launch))
    else:
        executor = submitit.LocalExecutor(folder=log_dir / "%j", max_num_timeout=SUBMITIT_MAX_TIMEOUTS)
        executor.update_parameters(timeout_min=launch.time, gpus_per_node=launch.gpus(), signal_delay_s=launch.signal_delay_s,
                                   setup=list(launch.setup))
    return executor


def check_executor(launch: LaunchSpec) -> None:
    """UsageError when the launch asks for Slurm where there is none, or for jobs Slurm would refuse."""
    if launch.executor != "slurm":
        return
    if shutil.which("sbatch") is None:
        raise UsageError("no Slurm here (sbatch is not on PATH): run the launch on the cluster's login node, "
                         "or --executor local, or --dry-run to see the script")
    check_with_slurm(launch)


def check_with_slurm(launch: LaunchSpec) -> None:
    """UsageError when Slurm refuses this launch's job array (GPUs the partition lacks, an unknown account, ...).

    `sbatch --test-only` validates the very script `launch` submits and submits nothing, so a
    refusal comes before any study is created.
    """
    import subprocess

    done = subprocess.run(["sbatch", "--test-only"], input=sbatch_script(launch), capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        return
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or [f"sbatch exited {done.returncode}"]
    reason = lines[-1].split("error: ", 1)[-1].removeprefix("Batch job submission failed: ")
    hint = ""
    if "gres" in reason.lower() and launch.gpus():
        hint = (f"; this launch asks for {launch.gpus()} GPU(s) per job and partition {launch.partition or '(the default)'} "
                "has none to give: pass --gpus-per-job 0 on a CPU-only cluster, or a --partition with GPUs")
    raise UsageError(f"Slurm refuses these jobs: {reason}{hint}")


def launch_study(spec: StudySpec, launch: LaunchSpec, *, say: Callable[[str], None] | None = None) -> Launched:
    """Create the study `spec` describes (or resume it), then submit `launch.jobs` workers as one job array.

    Bad input raises UsageError before anything is created or submitted. The study's checkpoints
    go to `spec.checkpoint_dir`, by default `LOG_DIR/checkpoints` (every job reaches the log folder).
    """
    import optuna

    from ._prepare import open_study, prepare

    spec = spec.checked()
    launch = launch.checked(spec.storage)
    check_executor(launch)
    log_dir = Path(launch.log_dir).expanduser().resolve()
    spec = replace(spec, workers=1, devices="auto", checkpoint_dir=spec.checkpoint_dir or str(log_dir / "checkpoints"))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        plan, storage, _ = prepare(spec)
        open_study(plan, storage)
    finally:
        optuna.logging.set_verbosity(verbosity)
    executor = make_executor(launch)
    worker = Worker(plan, launch)
    jobs = executor.map_array(worker, list(range(launch.jobs)))
    status = ["bioscale", "study", "status", hide_password(plan.storage.url), plan.study_name]
    launched = Launched(plan.study_name, [str(j.job_id) for j in jobs], log_dir, status, jobs)
    if say is not None:
        say(launched.summary())
    return launched
