"""submitit's requeue convention for a `Requeueable` task: a `Checkpointable` that submitit pickles, state and all, to run again."""

from __future__ import annotations

from typing import Any

import submitit

from .base import Requeueable


class Checkpointed(submitit.helpers.Checkpointable):
    """`task` as submitit requeues it: on the stop signal submitit pickles this object (the task's state included) and reruns it."""

    def __init__(self, task: Requeueable) -> None:
        self.task = task

    def __call__(self, *args: Any) -> Any:
        """Run the task."""
        return self.task(*args)
