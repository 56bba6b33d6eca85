"""`processes`: plain worker processes on this machine, watched, as `bioscale study run --workers N` runs them.

Processes are spawned (no forked CUDA or database state). One killed by a signal (SIGKILL, the
out-of-memory killer) is a lost job: its `Requeueable` task's `lost` cleans up after it (a study
worker fails and re-queues its trials at once) and the task runs again in a new process, at most
RESTARTS_PER_JOB times a job on average. A task that exits with an error ends the wait with a
RuntimeError; the other processes are stopped.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from .base import Executor, Job, Requeueable

RESTARTS_PER_JOB = 3
POLL_S = 0.5


def _run(fn: Callable[..., Any], args: tuple, sender: Any) -> None:
    sender.send(fn(*args))


class ProcessJob:
    """One task in a spawned process; `result()` waits for the process and returns the task's value."""

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args = fn, args
        self.start()

    def start(self) -> None:
        """Start the task in a new process."""
        self._receiver, sender = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.get_context("spawn").Process(target=_run, args=(self.fn, self.args, sender),
                                                                    name="bioscale-worker")
        self.process.start()
        sender.close()

    @property
    def job_id(self) -> str:
        """The process id."""
        return str(self.process.pid)

    def result(self) -> Any:
        """The task's value; RuntimeError when its process did not end cleanly."""
        try:
            value = self._receiver.recv()
        except EOFError:  # the process ended without sending
            value = None
        self.process.join()
        if self.process.exitcode != 0:
            raise RuntimeError(f"worker {self.job_id} ended with exit code {self.process.exitcode}")
        return value

    def stop(self) -> None:
        """Terminate the process if it still runs, and wait for it."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()


class Processes(Executor):
    """Spawned processes on this machine, one per task; `as_completed` watches them and starts a killed one again."""

    name = "processes"

    def map_array(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Job]:
        """Start one process per task."""
        return [ProcessJob(fn, args) for args in zip(*iterables)]

    def as_completed(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        """Each job with its result as it ends; a killed one runs again (its task's `lost` first), an error ends it all."""
        pending, restarts = list(jobs), 0
        try:
            while pending:
                time.sleep(POLL_S)
                for job in [j for j in pending if not j.process.is_alive()]:
                    job.process.join()
                    code, pid = job.process.exitcode, job.process.pid
                    if code == 0:
                        pending.remove(job)
                        yield job, job.result()
                    elif code > 0:
                        raise RuntimeError(f"worker {pid} stopped with an error (exit {code}; its traceback is above); "
                                           "rerun the same command to resume")
                    else:
                        restarts += 1
                        if restarts > RESTARTS_PER_JOB * len(jobs):
                            raise RuntimeError(f"{restarts} worker processes died (the last by signal {-code}); "
                                               "rerun the same command to resume")
                        print(f"bioscale: worker {pid} died (signal {-code}); a new worker takes its task", file=sys.stderr,
                              flush=True)
                        if isinstance(job.fn, Requeueable):
                            job.args = job.fn.lost(pid, *job.args)
                        job.start()
        finally:
            for job in pending:
                job.stop()
