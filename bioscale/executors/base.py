"""The executor seam: submit a job array of tasks, wait for each, show what would be submitted, requeue on preemption.

An executor is built from a `LaunchSpec` (how many jobs, their wall time, CPUs, GPUs, log
folder; Slurm's own options in `LaunchSpec.slurm`) and follows submitit's shape:

- `map_array(fn, *iterables)` submits one task per item, `fn(*items)`, and returns its jobs at once;
- a job's `result()` waits for its task and returns what it returned (raising when it failed);
  `as_completed(jobs)` waits for them all, each with its result as it ends;
- `dry_run()` says what would be submitted, creating and submitting nothing;
- `check()` refuses, as one UsageError, what this executor cannot run here, before anything is created;
- requeue on preemption: an executor whose jobs are warned before they are stopped names that
  signal (`stop_signal`). A task that saves on it hands the signal back to the handler the
  executor's runtime installed before the task ran (`requeue`), which runs the job again with the
  task's state as it was then (submitit's `Checkpointable`). An executor that sees a job's process
  die unwarned (`processes`) calls the task's `lost` and runs it again; otherwise a worker lost
  with its job leaves its trials to be re-queued by the others.

Adding one (Ray, Dask, ...) is one module in this package (or anywhere, imported before use):

    class DaskExecutor(Executor):
        name = "dask"

        def map_array(self, fn, *iterables): ...

`--executor dask` then finds it; `get(name)` looks it up. `on_this_machine = False` makes a
launch refuse storages other nodes cannot reach.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Protocol, Sequence

from bioscale._modules import import_public_modules
from bioscale.errors import UsageError

if TYPE_CHECKING:
    from bioscale.spec import LaunchSpec

_REGISTRY: dict[str, type[Executor]] = {}
_loaded = False


class Job(Protocol):
    """One submitted task (submitit's `Job` is one): its id, and `result()`, which waits and returns the task's value."""

    @property
    def job_id(self) -> str: ...

    def result(self) -> Any: ...


class Requeueable(ABC):
    """A task that saves when its job is told to stop (`Executor.stop_signal`) and may then run again with its state.

    It takes the signal with `Executor.listen`, which also unblocks it: a job may start with it blocked."""

    @abstractmethod
    def __call__(self, *args: Any) -> Any:
        """Run the task."""

    def lost(self, pid: int, *args: Any) -> tuple:
        """Its job's process `pid` died unwarned (SIGKILL, out of memory): clean up after it; the arguments to run it again with."""
        return args


class Executor(ABC):
    """Runs a job array: one task per item, each in a job of the launch's size (see the module's docstring)."""

    name: ClassVar[str] = ""  # what `--executor` calls it; a class without a name of its own is a base
    # True: the jobs run on this machine and end with the command that submitted them (it waits; any storage
    # reaches them). False: they run on other nodes (the storage must be shared by every node; the command may return).
    on_this_machine: ClassVar[bool] = True
    gpus_per_job: ClassVar[int] = 0  # each job's GPUs when the launch gives none
    stop_signal: ClassVar[signal.Signals | None] = None  # the signal that warns a job before it is stopped

    def __init__(self, launch: LaunchSpec) -> None:
        self.launch = launch

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = vars(cls).get("name")
        if not name:
            return
        known = _REGISTRY.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"two executors named {name!r}: {known.__module__}.{known.__qualname__} and "
                            f"{cls.__module__}.{cls.__qualname__}")
        _REGISTRY[name] = cls

    @abstractmethod
    def map_array(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Job]:
        """Submit `fn(*items)` for each item of the zipped `iterables` as one job array; returns its jobs in order."""

    def check(self) -> None:
        """Raise UsageError when this executor cannot run the launch here (nothing is created before this)."""

    def dry_run(self) -> str:
        """What `map_array` would submit, in words or as the scheduler's script; nothing is created."""
        launch = self.launch
        return (f"# {self.name} executor: {launch.jobs} worker(s), {launch.time} min each, {launch.gpus()} GPU(s) each, "
                f"logs in {launch.log_path()}")

    def log_of(self, job: Job) -> str:
        """Where a job's errors are written (said when it fails)."""
        return str(self.launch.log_path())

    def as_completed(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        """Each job with its result, as they finish (here: in order); a failed job's exception is raised."""
        for job in jobs:
            yield job, job.result()

    @classmethod
    def listen(cls, handler: Callable[[int, Any], None]) -> Any:
        """In a job: call `handler` on the stop signal, which a job may hold blocked until now (it then arrives at once); the handler it replaces."""
        if cls.stop_signal is None:
            return None
        previous = signal.signal(cls.stop_signal, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {cls.stop_signal})
        return previous

    @classmethod
    def requeue(cls, previous: Any) -> None:
        """In a job told to stop: hand the stop signal to the executor runtime's own handler `previous`, which requeues the job."""
        if cls.stop_signal is None:
            return
        signal.signal(cls.stop_signal, previous)
        if callable(previous):
            previous(cls.stop_signal, None)


def names() -> list[str]:
    """Every registered executor name."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[Executor]:
    """The executor class registered as `name`; an unknown name raises UsageError listing the known ones."""
    _load_all()
    if name not in _REGISTRY:
        raise UsageError(f"unknown executor {name!r}; choose one of: {', '.join(names())}")
    return _REGISTRY[name]


def _load_all() -> None:
    """Import every public module of this package once; each registers its executors by defining them."""
    global _loaded
    if not _loaded:
        import_public_modules(__package__)
        _loaded = True
