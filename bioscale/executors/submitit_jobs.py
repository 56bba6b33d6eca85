"""submitit's executors: a Slurm job array (`slurm`) and real subprocesses on this machine (`local`).

Both run each task under submitit's job runner, which installs the USR2 handler that requeues a
job: a `Requeueable` task is submitted as a `Checkpointable`, so submitit pickles it with its
state and runs it again. submitit's own count of timeouts never stops a job (SUBMITIT_MAX_TIMEOUTS):
the task decides what counts. Before anything is created, Slurm checks the job array
(`sbatch --test-only`), so a request it would refuse is one line.
"""

from __future__ import annotations

import math
import shlex
import shutil
import signal
import subprocess
import sys
from abc import abstractmethod
from typing import Any, Callable, Iterable

from bioscale.errors import UsageError

from .base import Executor, Job, Requeueable

JOB_NAME = "bioscale"
# submitit's own count of timeouts: never the one that stops a job. It calls every signal in a job shorter than
# 10 minutes (or in a longer job's last 20 % or 10 minutes) a timeout, preemptions included; the task counts its own.
SUBMITIT_MAX_TIMEOUTS = 10_000


def blocking_python(stop_signal: signal.Signals) -> str:
    """The command that starts a job's Python with `stop_signal` blocked: a signal that comes early waits instead of killing it.

    Slurm sends the wall-time signal up to 30 s before its `--signal` delay (it checks time limits every 30 s), so
    in a short job it can come while Python still imports torch, before any handler exists, and USR2's default
    action kills the job unrequeued. A blocked signal stays pending through `exec` until the task unblocks it
    with its handler in place (`Executor.listen`). Portable where `env --block-signal` (coreutils 8.31) is not.
    """
    code = (f"import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.{stop_signal.name}}}); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


class SubmititExecutor(Executor):
    """A submitit executor over the launch: jobs logged under LOG_DIR/%j, requeued on USR2."""

    stop_signal = signal.SIGUSR2

    def map_array(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Job]:
        """Submit `fn(*items)` per item through submitit's `map_array` (a `Requeueable` task as a `Checkpointable`)."""
        from ._checkpointed import Checkpointed, Unblocked

        fn = Checkpointed(fn) if isinstance(fn, Requeueable) else Unblocked(fn, self.stop_signal)
        return self.submitit_executor().map_array(fn, *iterables)

    def submitit_executor(self) -> Any:
        """The submitit executor of this launch, its log folder created."""
        import submitit

        folder = self.launch.log_path()
        folder.mkdir(parents=True, exist_ok=True)
        executor = self.submitit_class()(folder=folder / "%j", max_num_timeout=SUBMITIT_MAX_TIMEOUTS,
                                         python=blocking_python(self.stop_signal))
        executor.update_parameters(**self.parameters())
        return executor

    @abstractmethod
    def submitit_class(self) -> type:
        """submitit's executor class."""

    @abstractmethod
    def parameters(self) -> dict[str, Any]:
        """The parameters of submitit's executor (its own names)."""

    def log_of(self, job: Job) -> str:
        """The job's stderr file."""
        return str(job.paths.stderr)


class SlurmJobs(SubmititExecutor):
    """One sbatch job array through submitit's `SlurmExecutor`; `LaunchSpec.slurm` holds Slurm's own options."""

    name = "slurm"
    on_this_machine = False
    gpus_per_job = 1

    def submitit_class(self) -> type:
        """submitit's SlurmExecutor."""
        import submitit

        return submitit.SlurmExecutor

    def parameters(self) -> dict[str, Any]:
        """The SlurmExecutor parameters (sbatch's own names) of the launch: what is submitted and what --dry-run shows."""
        launch, slurm = self.launch, self.launch.slurm
        params: dict[str, Any] = {"job_name": JOB_NAME, "time": math.ceil(launch.time), "gpus_per_node": launch.gpus(),
                                  "cpus_per_task": launch.cpus_per_job, "signal_delay_s": launch.signal_delay_s,
                                  "array_parallelism": slurm.max_parallel or launch.jobs}
        for key, value in (("partition", slurm.partition), ("account", slurm.account), ("qos", slurm.qos)):
            if value:
                params[key] = value
        if slurm.mem_gb:
            params["mem"] = f"{int(slurm.mem_gb)}GB" if slurm.mem_gb == int(slurm.mem_gb) else f"{int(slurm.mem_gb * 1024)}MB"
        if launch.setup:
            params["setup"] = list(launch.setup)
        if slurm.options:
            params["additional_parameters"] = slurm.sbatch_options()
        return params

    def dry_run(self) -> str:
        """The sbatch script submitit writes for this launch's job array (its own renderer, nothing submitted)."""
        from submitit.slurm.slurm import _make_sbatch_string  # noqa: PLC2701 - submitit's renderer; the executor needs srun

        folder = self.launch.log_path()
        command = " ".join([blocking_python(self.stop_signal), "-u -m submitit.core._submit", shlex.quote(str(folder / "%j"))])
        return _make_sbatch_string(command=command, folder=folder / "%j", map_count=self.launch.jobs, **self.parameters())

    def check(self) -> None:
        """UsageError where there is no Slurm, or when Slurm refuses this job array (GPUs the partition lacks, an unknown account, ...).

        `sbatch --test-only` validates the very script the launch submits and submits nothing.
        """
        if shutil.which("sbatch") is None:
            raise UsageError("no Slurm here (sbatch is not on PATH): run the launch on the cluster's login node, "
                             "or --executor local, or --dry-run to see the script")
        done = subprocess.run(["sbatch", "--test-only"], input=self.dry_run(), capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            return
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or [f"sbatch exited {done.returncode}"]
        reason = lines[-1].split("error: ", 1)[-1].removeprefix("Batch job submission failed: ")
        hint = ""
        gpus, partition = self.launch.gpus(), self.launch.slurm.partition
        if "gres" in reason.lower() and gpus:
            hint = (f"; this launch asks for {gpus} GPU(s) per job and partition {partition or '(the default)'} "
                    "has none to give: pass --gpus-per-job 0 on a CPU-only cluster, or a --partition with GPUs")
        raise UsageError(f"Slurm refuses these jobs: {reason}{hint}")


class LocalJobs(SubmititExecutor):
    """Real subprocesses on this machine through submitit's `LocalExecutor`, with a real wall time and USR2 before it."""

    name = "local"

    def submitit_class(self) -> type:
        """submitit's LocalExecutor."""
        import submitit

        return submitit.LocalExecutor

    def parameters(self) -> dict[str, Any]:
        """The LocalExecutor parameters of the launch."""
        launch = self.launch
        return {"timeout_min": launch.time, "gpus_per_node": launch.gpus(), "signal_delay_s": launch.signal_delay_s,
                "setup": list(launch.setup)}

    def dry_run(self) -> str:
        """The worker processes this launch would start, in one line (and its setup lines)."""
        launch = self.launch
        return (f"# local executor: {launch.jobs} worker process(es), {launch.time} min each (USR2 {launch.signal_delay_s} s "
                f"before), {launch.gpus()} GPU(s) each, logs in {launch.log_path()}" + "".join(f"\n{line}" for line in launch.setup))
