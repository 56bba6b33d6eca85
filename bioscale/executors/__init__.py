"""Executors, one seam for every way bioscale runs work: `bioscale.executors.get("slurm")(launch).map_array(fn, items)`.

`slurm` and `local` (submitit: an sbatch job array, or real subprocesses here), `processes`
(watched worker processes, a killed one started again), `pool` (a joblib process pool) and
`inline` (this process). Every public module of this package is imported on the first look-up,
so a new executor module registers itself without being listed anywhere (`base`'s docstring
shows one).
"""

from .base import Executor, Job, Requeueable, get, names
from .pool import Inline, Pool
from .processes import Processes
from .submitit_jobs import LocalJobs, SlurmJobs

__all__ = ["Executor", "Inline", "Job", "LocalJobs", "Pool", "Processes", "Requeueable", "SlurmJobs", "get", "names"]
