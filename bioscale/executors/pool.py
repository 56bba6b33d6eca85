"""Executors in and beside this process: `pool` (a joblib process pool, the campaign's side-by-side studies) and `inline`.

Neither warns a job before stopping it: the pool's processes and this one end together.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

from .base import Executor, Job


class PoolJob:
    """One task of a pool's array; `result()` waits for it (results arrive in the order tasks finish)."""

    def __init__(self, index: int, arrivals: Arrivals) -> None:
        self.job_id, self.index, self.arrivals = str(index), index, arrivals

    def result(self) -> Any:
        """The task's value, once it has finished."""
        return self.arrivals.wait_for({self.index})[1]


class Arrivals:
    """The results of a pool's tasks, kept by task index in the order they finished."""

    def __init__(self, finishing: Iterator[tuple[int, Any]]) -> None:
        self._finishing, self._arrived = finishing, {}

    def wait_for(self, indices: set[int]) -> tuple[int, Any]:
        """(index, result) of the first of `indices` to finish, waiting for one when none has (a task's error is raised)."""
        while True:
            index = next((i for i in self._arrived if i in indices), None)
            if index is not None:
                return index, self._arrived[index]
            index, value = next(self._finishing)
            self._arrived[index] = value


def _indexed(index: int, fn: Callable[..., Any], args: tuple) -> tuple[int, Any]:
    return index, fn(*args)


class Pool(Executor):
    """`launch.jobs` joblib worker processes on this machine, each taking whole tasks in turn."""

    name = "pool"

    def map_array(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Job]:
        """Start the tasks in the pool (at most `launch.jobs` at once); their jobs, in order."""
        from joblib import Parallel, delayed

        items = list(zip(*iterables))
        if not items:  # a generator joblib never starts warns, when collected, that it cancelled its tasks
            return []
        tasks = (delayed(_indexed)(i, fn, args) for i, args in enumerate(items))
        arrivals = Arrivals(iter(Parallel(n_jobs=self.launch.jobs, return_as="generator_unordered")(tasks)))
        return [PoolJob(i, arrivals) for i in range(len(items))]

    def as_completed(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        """Each job with its result in the order the tasks finish."""
        by_index = {job.index: job for job in jobs}
        while by_index:
            index, value = jobs[0].arrivals.wait_for(set(by_index))
            yield by_index.pop(index), value


class InlineJob:
    """One task run in this process when its result is first asked for (as submitit's DebugExecutor does)."""

    def __init__(self, index: int, fn: Callable[..., Any], args: tuple) -> None:
        self.job_id, self._fn, self._args, self._done = str(index), fn, args, False

    def result(self) -> Any:
        """Run the task (once) and return its value."""
        if not self._done:
            self._value, self._done = self._fn(*self._args), True
        return self._value


class Inline(Executor):
    """Every task in this process, one after another, as their results are asked for."""

    name = "inline"

    def map_array(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Job]:
        """The tasks, run when each result is first asked for."""
        return [InlineJob(i, fn, args) for i, args in enumerate(zip(*iterables))]
