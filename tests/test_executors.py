"""The executor seam: an executor defined in this file (worker threads) is found by `--executor threads` and runs a
real study launch to its exact budget; the pool and inline executors hand back results as tasks finish; every
registered executor refuses what it cannot run in one line."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable

import pytest
import torch

from bioscale import defaults, executors
from bioscale.cli import main
from bioscale.errors import UsageError
from bioscale.spec import LaunchSpec, SlurmOptions

from test_launch import assert_exact_budget


class ThreadJob:
    """One worker thread's job."""

    def __init__(self, job_id: str, future: Future) -> None:
        self.job_id, self.future = job_id, future

    def result(self) -> Any:
        return self.future.result()


class Threads(executors.Executor):
    """Every task in a thread of this process: a whole executor in a dozen lines."""

    name = "threads"

    def map_array(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[executors.Job]:
        pool = ThreadPoolExecutor(max_workers=self.launch.jobs, thread_name_prefix="bioscale-job")
        jobs = [ThreadJob(f"thread-{i}", pool.submit(fn, *args)) for i, args in enumerate(zip(*iterables))]
        pool.shutdown(wait=False)
        return jobs


@pytest.fixture
def torch_threads_restored():
    """The worker threads set torch's (process-wide) thread count: give it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_an_executor_defined_in_a_test_file_is_found_by_name_and_runs_a_real_launch(tmp_path, capsys, torch_threads_restored):
    assert executors.get("threads") is Threads and "threads" in executors.names()
    url = f"journal:///{tmp_path / 's.log'}"
    code = main(["study", "launch", "--executor", "threads", "--jobs", "2", "--cpus-per-job", "1", "--rule", "bp", "--trials", "3",
                 "--epochs", "2", "--set", "batch_size=64", "--storage", url, "--study-name", "t", "--sampler", "random",
                 "--log-dir", str(tmp_path / "logs"), "--chance-patience", "0", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "submitted 2 job(s): thread-0, thread-1" in out and "done: the workers ran 3 trial(s)" in out
    assert len(assert_exact_budget(url, "t", 3)) == 3


def test_a_dry_run_through_any_executor_describes_its_jobs_and_creates_nothing(tmp_path, capsys):
    code = main(["study", "launch", "--executor", "threads", "--jobs", "4", "--rule", "fa", "--storage",
                 f"sqlite:///{tmp_path / 's.db'}", "--log-dir", str(tmp_path / "logs"), "--dry-run"])
    assert code == 0
    said = f"# threads executor: 4 worker(s), {defaults.LAUNCH['time']} min each, 0 GPU(s) each, logs in {tmp_path / 'logs'}"
    assert capsys.readouterr().out.strip() == said
    assert not list(tmp_path.iterdir())


def sleep_then_return(seconds: float, value: str) -> str:
    time.sleep(seconds)
    return value


def fail(message: str) -> None:
    raise RuntimeError(message)


def test_the_pool_hands_back_each_result_as_its_task_finishes():
    pool = executors.get("pool")(LaunchSpec(executor="pool", jobs=2))
    jobs = pool.map_array(sleep_then_return, [1.5, 0.0], ["slow", "fast"])
    assert [job.job_id for job in jobs] == ["0", "1"]
    finished = [value for _, value in pool.as_completed(jobs)]
    assert finished == ["fast", "slow"] and jobs[0].result() == "slow"
    (job,) = pool.map_array(fail, ["boom"])
    with pytest.raises(RuntimeError, match="boom"):
        job.result()


def test_an_empty_array_through_the_pool_is_no_jobs_and_no_warning(recwarn):
    """A campaign rerun with nothing left to evaluate submits an empty array."""
    import gc

    assert executors.get("pool")(LaunchSpec(executor="pool", jobs=2)).map_array(abs, []) == []
    gc.collect()
    assert not [w for w in recwarn if "cancelled" in str(w.message)]


def test_inline_runs_each_task_here_once_when_its_result_is_asked_for():
    pids: list[int] = []
    inline = executors.get("inline")(LaunchSpec(executor="inline"))
    jobs = inline.map_array(lambda n: pids.append(os.getpid()) or n * n, [2, 3])
    assert pids == []
    assert [value for _, value in inline.as_completed(jobs)] == [4, 9] and jobs[1].result() == 9
    assert pids == [os.getpid()] * 2


class DiesOnce(executors.Requeueable):
    """Killed by SIGKILL on attempt 0 (as by the out-of-memory killer); `lost` moves it on to the next attempt."""

    def __call__(self, attempt: int) -> str:
        if attempt == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return f"attempt {attempt}"

    def lost(self, pid: int, attempt: int) -> tuple[int]:
        return (attempt + 1,)


@pytest.mark.slow
def test_processes_run_a_killed_task_again_with_what_its_lost_hook_returns_and_stop_at_an_error(capfd):
    processes = executors.get("processes")(LaunchSpec(executor="processes", jobs=2))
    jobs = processes.map_array(DiesOnce(), [0, 5])
    killed = jobs[0].job_id
    assert sorted(value for _, value in processes.as_completed(jobs)) == ["attempt 1", "attempt 5"]
    assert jobs[0].job_id != killed and f"worker {killed} died (signal 9)" in capfd.readouterr().err
    with pytest.raises(RuntimeError, match=r"stopped with an error \(exit 1; its traceback is above\)"):
        list(processes.as_completed(processes.map_array(fail, ["boom"])))


def test_an_unknown_executor_or_two_with_one_name_are_refused():
    with pytest.raises(UsageError, match=r"^unknown executor 'ray'; choose one of: .*threads"):
        LaunchSpec(executor="ray").checked(None)
    with pytest.raises(TypeError, match="two executors named 'threads'"):
        type("Again", (executors.Executor,), {"name": "threads", "map_array": lambda self, fn, *items: []})


@pytest.mark.parametrize("name", ["inline", "local", "pool", "threads"])
def test_an_executor_on_this_machine_takes_any_storage_and_gives_no_gpu_by_default(name):
    launch = LaunchSpec(executor=name).checked("sqlite:///x.db")
    assert launch.gpus() == 0 and executors.get(name).on_this_machine


def test_slurm_options_are_their_own_checked_sub_spec():
    launch = LaunchSpec(slurm=SlurmOptions(partition="gpu", options=["constraint=a100"])).checked("postgresql://u:p@h/d")
    assert launch.slurm.options == ("constraint=a100",) and launch.slurm.sbatch_options() == {"constraint": "a100"}
    assert launch.gpus() == 1
    with pytest.raises(UsageError, match="--mem-gb must be positive"):
        LaunchSpec(slurm=SlurmOptions(mem_gb=0)).checked("postgresql://u:p@h/d")


@pytest.mark.parametrize("name", ["slurm", "local"])
def test_a_stop_signal_before_the_task_listens_waits_for_its_handler_instead_of_killing_the_job(name):
    """Slurm may signal a short job while its Python still imports; the job's Python starts with the signal blocked."""
    import shlex
    import subprocess
    import sys

    from bioscale.executors.submitit_jobs import blocking_python

    executor = executors.get(name)
    task = ("import os, signal, sys, time; from bioscale import executors; "
            f"os.kill(os.getpid(), signal.{executor.stop_signal.name}); time.sleep(0.2); heard = []; "
            f"executors.get({name!r}).listen(lambda signum, frame: heard.append(signum)); print(heard)")
    done = subprocess.run(f"{blocking_python(executor.stop_signal)} -c {shlex.quote(task)}", shell=True, capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, f"[{int(executor.stop_signal)}]"), done.stderr
    unblocked = subprocess.run([sys.executable, "-c", task], capture_output=True, text=True)
    assert unblocked.returncode == -executor.stop_signal  # what a job started without the block suffers
