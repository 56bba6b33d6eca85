"""`bioscale study launch`: create a study once, then submit one job array whose tasks each run a worker.

The job array goes through the executor `--executor` names (`bioscale.executors`: `slurm` and
`local` through submitit, or any registered one). Every job runs one worker that pulls trials
from the storage until the study's global budget is met (`_workers.work`), so jobs may start
late, die, or be added by another launch, and the study still ends with exactly its budget.
Each worker is `Requeueable`: on the executor's stop signal (Slurm's pre-timeout or preemption
USR2) it saves its population at the end of the minibatch in progress, fails and re-queues its
trials, and the executor requeues the job; the restarted job (or any other) resumes those trials
from their checkpoint. The worker, not the executor, decides whether a signal was the wall
time's (counted against `--max-timeouts`) or a preemption (never counted). Before anything is
created the executor checks the job array (Slurm: `sbatch --test-only`), so a request it would
refuse is one line.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from bioscale import executors, resume
from bioscale.contract import ARCHITECTURE
from bioscale.errors import first_line
from bioscale.spec import LaunchSpec, StudySpec
from bioscale.storages import hide_password

from ._plan import Plan


@dataclass
class Launched:
    """What a launch submitted: the study, its job ids, where the logs go, and how to follow it."""

    study_name: str
    job_ids: list[str]
    log_dir: Path
    status_command: list[str]
    jobs: list[executors.Job]
    executor: executors.Executor

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
            except Exception as error:  # e.g. submitit's UncompletedJobError / FailedJobError: the job's log has the rest
                print(f"bioscale: job {job.job_id} did not finish: {first_line(error)} (log: {self.executor.log_of(job)})",
                      file=sys.stderr, flush=True)
                ran.append(None)
        return ran


# Slurm may send a job's wall-time signal up to this long before the `--signal` delay asks.
SIGNAL_SLACK_S = 60


class Worker(executors.Requeueable):
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
        """Run the worker; on the executor's stop signal, save, re-queue the trials, then hand over to the executor's requeue."""
        executor = executors.get(self.launch.executor)
        if executor.stop_signal is None:
            return self.work(index)
        started = time.monotonic()
        signalled_at: list[float] = []

        def stop_soon(signum: int, frame: Any) -> None:
            signalled_at.append(time.monotonic() - started)
            print(f"bioscale: signal {signal.Signals(signum).name}: saving at the next minibatch, then requeueing",
                  file=sys.stderr, flush=True)
            resume.request_stop()

        previous = executor.listen(stop_soon)
        try:
            return self.work(index)
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
            executor.requeue(previous)
            raise

    def work(self, index: int) -> int:
        """Pull trials until the budget is met (as `study run` does at its end, an architecture study's winner recorded); how many it ran."""
        from bioscale.devices import resolve_devices

        from ._workers import work

        device = resolve_devices("auto")[0]
        threads = self.launch.cpus_per_job
        ran = work(self.plan, index, device, threads if device == "cpu" else None, progress=False)
        if self.plan.spec.stage == ARCHITECTURE:  # any job that sees the budget met records it
            import optuna

            from bioscale.storages import open_storage

            from ._prepare import record_winner

            record_winner(optuna.load_study(study_name=self.plan.study_name, storage=open_storage(self.plan.storage)))
        return ran


def dry_run(spec: StudySpec, launch: LaunchSpec) -> str:
    """What a launch would submit, checked and shown; nothing is created or submitted."""
    spec = spec.checked()
    launch = launch.checked(spec.storage)
    return executors.get(launch.executor)(launch).dry_run()


def launch_study(spec: StudySpec, launch: LaunchSpec, *, say: Callable[[str], None] | None = None) -> Launched:
    """Create the study `spec` describes (or resume it), then submit `launch.jobs` workers as one job array.

    Bad input raises UsageError before anything is created or submitted. The study's checkpoints
    go to `spec.checkpoint_dir`, by default `LOG_DIR/checkpoints` (every job reaches the log folder).
    """
    import optuna

    from ._prepare import open_study, prepare

    spec = spec.checked()
    launch = launch.checked(spec.storage)
    executor = executors.get(launch.executor)(launch)
    executor.check()
    log_dir = launch.log_path()
    spec = replace(spec, workers=1, devices="auto", checkpoint_dir=spec.checkpoint_dir or str(log_dir / "checkpoints"))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        plan, storage, _ = prepare(spec)
        open_study(plan, storage)
    finally:
        optuna.logging.set_verbosity(verbosity)
    jobs = executor.map_array(Worker(plan, launch), list(range(launch.jobs)))
    status = ["bioscale", "study", "status", hide_password(plan.storage.url), plan.study_name]
    launched = Launched(plan.study_name, [str(j.job_id) for j in jobs], log_dir, status, jobs, executor)
    if say is not None:
        say(launched.summary())
    return launched
