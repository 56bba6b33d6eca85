"""How submitit runs a task: a `Requeueable` as a `Checkpointable` that submitit pickles, state and all, to run again;
any other task with its job's stop signal unblocked (see `submitit_jobs.blocking_python`)."""

from __future__ import annotations

import signal
from typing import Any, Callable

import submitit

from .base import Requeueable


class Checkpointed(submitit.helpers.Checkpointable):
    """`task` as submitit requeues it: on the stop signal submitit pickles this object (the task's state included) and reruns it.

    The task unblocks the stop signal itself once its own handler is in place (`Executor.listen`)."""

    def __init__(self, task: Requeueable) -> None:
        self.task = task

    def __call__(self, *args: Any) -> Any:
        """Run the task."""
        return self.task(*args)


class Unblocked:
    """A task without a handler of its own: the stop signal, held since the job started, goes to submitit's handler from now on."""

    def __init__(self, task: Callable[..., Any], stop_signal: signal.Signals) -> None:
        self.task, self.stop_signal = task, stop_signal

    def __call__(self, *args: Any) -> Any:
        """Unblock the stop signal, then run the task."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {self.stop_signal})
        return self.task(*args)
