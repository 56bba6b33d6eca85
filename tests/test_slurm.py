"""`bioscale study launch` and `campaign --executor slurm` on a real Slurm: the budget, three ways a job is stopped and
requeued (USR2, a preempting job, the wall time), a SIGKILLed array task, and a GPU request on a GPU-less node.

Needs a Slurm whose node is up: `../shared/scripts/start-one-node-slurm` (as root, Debian 12) starts a one-node one,
as .ci/run does. Without one the tests skip, and fail when $BIOSCALE_REQUIRE_SLURM is set. The node has 2 CPUs and
no GPU; jobs take 1 CPU each, and a requeued job starts again about 31 s after it stopped (cred_expire=30).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from typing import Callable

import optuna
import pytest
from optuna.trial import TrialState

from bioscale.contract import CURVE, END_REASON, PREEMPTED, RESUMED_FROM, read_end_reason
from bioscale.spec import LaunchSpec
from bioscale.study.launch import Launched, launch_study

from conftest import bioscale_process
from test_checkpoints import uninterrupted_curve
from test_launch import assert_exact_budget, spec_for
from test_worker_death import storage_of, worker_pid

pytestmark = pytest.mark.slow

EPOCHS = 20  # DTP, batch 8 on digits: ~0.4-1 s an epoch on one core, long enough to be stopped mid-trial
PREEMPT_EPOCHS = 60  # on a quiet node 20 epochs (7 s) can end before a preempting job or a scancel reaches them
WALL_EPOCHS = 100  # 40 s or more: still running when a one-minute job's wall-time signal comes


def slurm_missing() -> str | None:
    """Why no Slurm job can run here (None: sbatch is there and a node is up)."""
    start = "start a one-node cluster with ../shared/scripts/start-one-node-slurm (as root, Debian 12)"
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return f"no Slurm here (sbatch is not on PATH): {start}"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return f"sinfo did not answer in 30 s: {start}"
    if done.returncode or not set(s.rstrip("*~#") for s in done.stdout.split()) & {"idle", "mixed", "allocated"}:
        return f"no Slurm node is up (sinfo: {(done.stderr or done.stdout).strip() or 'no nodes'}): {start}"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    """A Slurm to submit to; skips without one, or fails when $BIOSCALE_REQUIRE_SLURM is set."""
    reason = slurm_missing()
    if reason:
        if os.environ.get("BIOSCALE_REQUIRE_SLURM"):
            pytest.fail(f"BIOSCALE_REQUIRE_SLURM is set but {reason}")
        pytest.skip(reason)


def squeue(job: str = "") -> str:
    return subprocess.run(["squeue", "-h", "-o", "%i %P %T %r", *(["-j", job] if job else [])], capture_output=True,
                          text=True).stdout.strip()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` every second until it is true; an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (squeue: {squeue() or 'empty'})")


def running_trials(url: str, name: str, epochs: int) -> list:
    """The study's RUNNING trials that have reported at least `epochs` epochs."""
    try:
        study = optuna.load_study(study_name=name, storage=storage_of(url))
    except KeyError:
        return []
    return [t for t in study.get_trials(states=(TrialState.RUNNING,)) if len(t.intermediate_values) >= epochs]


def launch(url: str, name: str, tmp_path, *, jobs: int = 1, trials: int = 1, epochs: int = EPOCHS, **given) -> Launched:
    """A DTP study launched as a Slurm job array on the one node (1 CPU, no GPU a job)."""
    options = dict(executor="slurm", jobs=jobs, cpus_per_job=1, gpus_per_job=0, time=10, max_timeouts=0,
                   log_dir=str(tmp_path / "logs"), shared_paths=(str(tmp_path),))
    options.update(given)
    spec = spec_for(url, name, rule="dtp", trials=trials, epochs=epochs, overrides={"batch_size": "8"})
    return launch_study(spec, LaunchSpec(**options))


def array_id(launched: Launched) -> str:
    return launched.job_ids[0].split("_")[0]


def wait_for_jobs(launched: Launched, timeout: float = 420) -> list[int | None]:
    """Wait (bounded) until Slurm lists none of the launch's jobs, then collect what each worker ran."""
    wait_until(lambda: not squeue(array_id(launched)), timeout, f"the jobs of {array_id(launched)} ending")
    return launched.wait()


def logs(tmp_path) -> str:
    return "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*.err"))


def status(url: str, name: str, *extra: str) -> str:
    """`bioscale study status URL NAME ...`'s output (it must succeed)."""
    done = subprocess.run([sys.executable, "-m", "bioscale.cli", "study", "status", url, name, *extra], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_resumed_bit_for_bit(url: str, name: str, budget: int, *, epochs: int = EPOCHS, compare: bool = True) -> list:
    """Budget exact, nothing running; every preempted trial's re-run resumed from its checkpoint, the first equal to an uninterrupted run."""
    trials = assert_exact_budget(url, name, budget)
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(read_end_reason(t.user_attrs[END_REASON]) == PREEMPTED for t in stopped)
    reruns = [t for t in trials if t.state == TrialState.COMPLETE and any(t.params == s.params for s in stopped)]
    # A trial the signal caught in its first epoch resumes from that epoch's mid-epoch checkpoint (resumed_from 0).
    assert reruns and all(t.user_attrs[RESUMED_FROM] is not None for t in reruns)
    assert max(t.user_attrs[RESUMED_FROM] for t in reruns) > 1
    assert all(sorted(t.intermediate_values) == list(range(1, epochs + 1)) for t in reruns)
    if compare:
        deepest = max(reruns, key=lambda t: t.user_attrs[RESUMED_FROM])
        assert deepest.user_attrs[CURVE] == uninterrupted_curve(deepest)
    return reruns


def test_a_gpu_request_on_the_gpu_less_node_is_refused_in_one_line_before_anything_is_created(slurm, tmp_path):
    done = subprocess.run([sys.executable, "-m", "bioscale.cli", "study", "launch", "--rule", "bp", "--storage",
                           f"journal:///{tmp_path / 's.log'}", "--shared-path", str(tmp_path), "--log-dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "Invalid generic resource" in line and "--gpus-per-job 0" in line
    assert not list(tmp_path.iterdir()), "nothing created: no storage, no log folder"


@pytest.mark.postgres
def test_a_launch_on_postgresql_meets_its_budget_and_usr2_requeues_and_resumes_bit_for_bit(slurm, postgres_url, tmp_path,
                                                                                             one_torch_thread):
    """Two array tasks, four trials; both tasks get USR2 mid-trial (with --max-timeouts 0: a preemption is no timeout)."""
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    launched = launch(postgres_url, name, tmp_path, jobs=2, trials=4, epochs=PREEMPT_EPOCHS)
    wait_until(lambda: len(running_trials(postgres_url, name, 2)) == 2, 300, "two trials past epoch 2")
    assert re.search(rf"^  trial \d+: epoch \d+/{PREEMPT_EPOCHS} on \S+, heartbeat \d+ s ago$", status(postgres_url, name),
                     flags=re.M)
    subprocess.run(["scancel", "--signal=USR2", array_id(launched)], check=True)
    # What each job returns counts only its last run's trials (a trial finished before the signal is not in it),
    # so the budget is checked in the storage below.
    assert None not in wait_for_jobs(launched)
    assert_resumed_bit_for_bit(postgres_url, name, 4, epochs=PREEMPT_EPOCHS)
    (row,) = json.loads(status(postgres_url, name, "--json"))
    assert (row["finished"], row["budget"], row["counts"]["COMPLETE"], row["running"]) == (4, 4, 4, [])
    assert "preempted (not counted as a timeout); requeued" in logs(tmp_path)


def test_a_job_preempted_by_a_higher_priority_partition_is_requeued_and_resumes_bit_for_bit(slurm, tmp_path, one_torch_thread):
    url = f"journal:///{tmp_path / 's.log'}"
    launched = launch(url, "p", tmp_path, epochs=PREEMPT_EPOCHS)
    wait_until(lambda: running_trials(url, "p", 2), 300, "a trial past epoch 2")
    assert re.search(rf"^  trial 0: epoch \d+/{PREEMPT_EPOCHS} on \S+, heartbeat \d+ s ago$", status(url, "p"), flags=re.M)
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", "2", "-o", "/dev/null", "--wrap", "sleep 5"],
                            capture_output=True, text=True, check=True).stdout.strip()
    wait_until(lambda: not squeue(urgent), 300, f"the urgent job {urgent} ending")
    wait_for_jobs(launched)
    assert_resumed_bit_for_bit(url, "p", 1, epochs=PREEMPT_EPOCHS)
    assert "preempted (not counted as a timeout); requeued" in logs(tmp_path)


def test_a_job_at_its_wall_time_is_requeued_and_its_trial_resumes(slurm, tmp_path):
    """A one-minute job with USR2 20 s before its end: the signal comes mid-trial and the job is requeued as a timeout.

    Once requeued, the job gets 10 minutes (as root; otherwise it takes more one-minute rounds) to finish the trial."""
    url = f"journal:///{tmp_path / 's.log'}"
    launched = launch(url, "w", tmp_path, epochs=WALL_EPOCHS, time=1, signal_delay_s=20, max_timeouts=30)
    wait_until(lambda: "wall time reached; requeued" in logs(tmp_path), 300, "a wall-time requeue")
    subprocess.run(["scontrol", "update", f"JobId={array_id(launched)}", "TimeLimit=10"], capture_output=True)
    wait_for_jobs(launched, timeout=600)
    assert_resumed_bit_for_bit(url, "w", 1, epochs=WALL_EPOCHS, compare=False)  # the USR2 tests compare with a fresh run


def test_a_sigkilled_array_task_s_trial_is_rerun_from_its_checkpoint_by_the_surviving_task(slurm, tmp_path, one_torch_thread):
    url = f"journal:///{tmp_path / 's.log'}"
    launched = launch(url, "k", tmp_path, jobs=2, trials=2)
    both = wait_until(lambda: (lambda t: t if len(t) == 2 else None)(running_trials(url, "k", 3)), 300, "two trials past epoch 3")
    killed = both[0]
    os.kill(worker_pid(killed), signal.SIGKILL)  # as the out-of-memory killer would: no signal handler runs
    ran = wait_for_jobs(launched)
    assert sorted(ran, key=lambda r: r is None) == [2, None]  # the survivor ran its own trial and the lost one
    trials = assert_exact_budget(url, "k", 2)
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in lost] == [killed.number]
    (rerun,) = [t for t in trials if t.state == TrialState.COMPLETE and t.params == killed.params]
    assert rerun.user_attrs[RESUMED_FROM] and rerun.user_attrs[CURVE] == uninterrupted_curve(rerun)


def test_a_campaign_tunes_evaluates_and_reports_with_slurm_jobs(slurm, tmp_path):
    url = f"journal:///{tmp_path / 'c.log'}"
    args = ["campaign", "--dataset", "digits", "--arch", "fc", "--rules", "bp", "--trials", "2", "--epochs", "2", "--seeds", "0",
            "--storage", url, "--executor", "slurm", "--jobs", "2", "--cpus-per-job", "1", "--gpus-per-job", "0",
            "--shared-path", str(tmp_path), "--out", str(tmp_path / "out"), "--log-dir", str(tmp_path / "logs"), "--format", "png"]
    out, err = bioscale_process(*args, "--no-wait").communicate(timeout=300)
    assert "run the same command again to evaluate and report" in out, err
    process = bioscale_process(*args)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "evaluated tune:digits:fc:bp: test error" in out and (tmp_path / "out" / "report.md").is_file()
    assert len(assert_exact_budget(url, "tune:digits:fc:bp", 2 + 1)) == 3  # and the default-settings trial
