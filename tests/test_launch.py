"""`bioscale study launch` and `study status`: refusals, the dry run's sbatch script, and real jobs through submitit's
local executor (worker subprocesses, a real wall time and USR2 signal) against a journal file and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from bioscale.contract import CONFIG, CURVE, END_REASON, PREEMPTED, RESUMED_FROM, read_end_reason
from bioscale.spec import LaunchSpec, StudySpec
from bioscale.study.launch import Worker, launch_study
from bioscale.study.status import format_status, study_status

from conftest import bioscale_process
from test_checkpoints import uninterrupted_curve
from test_worker_death import storage_of

PG = "postgresql://u:p@db-host/bioscale"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bioscale.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("args,message", [
    (["--executor", "pbs", "--storage", PG], "unknown executor 'pbs'"),
    (["--jobs", "0", "--storage", PG], "jobs must be a whole number >= 1"),
    (["--slurm-option", "constraint", "--storage", PG], "malformed --slurm-option 'constraint'"),
    (["--slurm-option", "=a100", "--storage", PG], "malformed --slurm-option"),
    (["--storage", "sqlite:///x.db"], "SQLite cannot be shared"),
    (["--time", "-5", "--storage", PG], "--time is each job's wall time in minutes and must be positive"),
    (["--storage", "journal:///tmp/not-shared/s.log"], "is not under a shared path"),
])
def test_bad_input_is_refused_in_one_line_before_anything_is_created(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "bioscale.cli", "study", "launch", "--rule", "bp", "--log-dir",
                           str(tmp_path / "logs"), *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not list(tmp_path.iterdir()), "nothing created: no storage, no log folder"


def test_a_journal_under_a_marked_shared_path_is_accepted(tmp_path, monkeypatch):
    journal = f"journal:///{tmp_path / 'shared' / 's.log'}"
    assert LaunchSpec(shared_paths=(str(tmp_path / "shared"),)).checked(journal).shared_paths
    monkeypatch.setenv("BIOSCALE_SHARED_PATHS", f"/nowhere:{tmp_path}")
    assert LaunchSpec().checked(journal).executor == "slurm"
    assert LaunchSpec(executor="local").checked("sqlite:///x.db").executor == "local"  # one machine: any storage


HOLD_LOCK = """
import sys, time
from bioscale.storages import parse_storage
from bioscale.study._lock import BudgetLock
lock = BudgetLock(parse_storage(sys.argv[1]), "s")
lock.acquire()
start = time.time()
time.sleep(1.5)
print(start, time.time(), flush=True)
lock.close()
"""


def test_the_budget_lock_of_a_journal_file_holds_for_workers_with_different_temporary_folders(tmp_path):
    """Cluster jobs often get a TMPDIR of their own: the lock must live beside the storage, not there."""
    url = f"journal:///{tmp_path / 's.log'}"
    holders = []
    for n in range(2):
        (tmp_path / f"tmp{n}").mkdir()
        holders.append(subprocess.Popen([sys.executable, "-c", HOLD_LOCK, url], stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "TMPDIR": str(tmp_path / f"tmp{n}")}))
    first, second = sorted(tuple(map(float, h.communicate(timeout=120)[0].split())) for h in holders)
    assert second[0] >= first[1], "both workers held the budget lock at once"
    assert [p.name for p in tmp_path.glob(".s.log.budget-*.lock")] and not list((tmp_path / "tmp0").iterdir())


def sbatch_flags(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, flags=re.M))


def test_the_dry_run_prints_the_sbatch_script_asked_for_and_submits_nothing(tmp_path):
    done = cli("study", "launch", "--rule", "dtp", "--schedule", "alternating", "--storage", PG, "--jobs", "8", "--max-parallel",
               "3", "--gpus-per-job", "2", "--cpus-per-job", "6", "--mem-gb", "32", "--time", "90.5", "--partition", "gpu",
               "--account", "lab", "--qos", "high", "--signal-delay", "120", "--slurm-option", "constraint=a100",
               "--slurm-option", "exclude=node[1-3]", "--setup", "module load cuda/12", "--setup", "source ~/venv/bin/activate",
               "--log-dir", str(tmp_path / "logs"), "--dry-run")
    assert done.returncode == 0, done.stderr
    script = done.stdout
    flags = sbatch_flags(script)
    assert flags["array"] == "0-7%3" and flags["gpus-per-node"] == "2" and flags["cpus-per-task"] == "6"
    assert flags["time"] == "91" and flags["mem"] == "32GB" and flags["signal"] == "USR2@120"
    assert (flags["partition"], flags["account"], flags["qos"]) == ("gpu", "lab", "high")
    assert flags["constraint"] == "a100" and flags["exclude"] == "'node[1-3]'"
    assert flags["output"].startswith(str(tmp_path / "logs"))
    setup = script.split("# setup\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert setup == ["module load cuda/12", "source ~/venv/bin/activate"]
    assert "-m submitit.core._submit" in script and script.startswith("#!/bin/bash")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert not (tmp_path / "logs").exists()


def test_only_a_signal_near_the_end_of_the_wall_time_counts_as_a_timeout():
    """submitit calls a signal in a job's last 20 % (or last 10 minutes) a timeout; a preemption there must not use one up."""
    worker = Worker(None, LaunchSpec(time=240, signal_delay_s=90, max_timeouts=0))
    assert not worker.is_timeout(60) and not worker.is_timeout(3.5 * 3600)
    assert worker.is_timeout(240 * 60 - 90 - 30) and worker.is_timeout(240 * 60)
    assert Worker(None, LaunchSpec(time=2, signal_delay_s=30)).is_timeout(45) is True


def spec_for(storage: str, name: str, **given) -> StudySpec:
    values = dict(rule="bp", trials=5, epochs=3, storage=storage, study_name=name, overrides={"batch_size": "64"},
                  chance_patience=0, sampler="random")
    values.update(given)
    return StudySpec(**values)


def assert_exact_budget(url: str, name: str, budget: int) -> list:
    trials = optuna.load_study(study_name=name, storage=storage_of(url)).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == budget
    return trials


@pytest.mark.slow
def test_three_local_jobs_against_a_journal_file_meet_the_exact_budget(tmp_path):
    url = f"journal:///{tmp_path / 's.log'}"
    process = bioscale_process("study", "launch", "--executor", "local", "--jobs", "3", "--cpus-per-job", "1", "--rule", "bp",
                               "--trials", "5", "--epochs", "3", "--set", "batch_size=64", "--storage", url, "--study-name",
                               "j", "--log-dir", str(tmp_path / "logs"), "--sampler", "random", "--quiet")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert re.search(r"submitted 3 job\(s\): \d+, \d+, \d+", out) and f"logs: {tmp_path / 'logs'}" in out
    assert f"follow it: bioscale study status {tmp_path / 's.log'} j" in out
    ran = [int(n) for n in re.search(r"ran 5 trial\(s\) \(([\d, ]+)\)", out).group(1).split(", ")]
    assert len(ran) == 3 and sum(ran) == 5
    trials = assert_exact_budget(url, "j", 5)
    assert len(trials) == 5 and not (tmp_path / "logs" / "checkpoints" / "j").exists()
    (row,) = study_status(str(tmp_path / "s.log"), "j")
    assert row["finished"] == row["budget"] == 5 and row["counts"]["COMPLETE"] == 5 and not row["running"]
    assert format_status([row]).startswith("j: 5/5 finished (5 COMPLETE), done")


@pytest.mark.slow
@pytest.mark.postgres
def test_three_local_jobs_against_postgresql_meet_the_exact_budget(postgres_url, tmp_path):
    name = f"launch-{uuid.uuid4().hex[:8]}"
    launched = launch_study(spec_for(postgres_url, name), LaunchSpec(executor="local", jobs=3, cpus_per_job=1,
                                                                      log_dir=str(tmp_path / "logs")))
    assert sum(launched.wait()) == 5 and len(launched.job_ids) == 3
    assert_exact_budget(postgres_url, name, 5)
    (row,) = study_status(postgres_url, name)
    assert row["finished"] == 5 and not row["running"]


EPOCHS = 60  # batch 8: ~0.4 s each on one core, more than the first job's 20 s before USR2 can hold


@pytest.mark.slow
def test_a_job_timed_out_mid_trial_is_requeued_and_its_trial_resumes_equal_to_an_uninterrupted_run(tmp_path, one_torch_thread):
    """A real wall time: the local executor sends USR2 10 s before 30 s; the worker saves, re-queues and submitit requeues.

    A loaded machine spends more of each 30 s starting Python, so it may take several requeues: allow plenty."""
    url = f"journal:///{tmp_path / 's.log'}"
    spec = spec_for(url, "t", rule="dtp", trials=1, epochs=EPOCHS, overrides={"batch_size": "8"})
    launched = launch_study(spec, LaunchSpec(executor="local", jobs=1, cpus_per_job=1, time=0.5, signal_delay_s=10,
                                             max_timeouts=20, log_dir=str(tmp_path / "logs")))
    launched.wait()
    trials = assert_exact_budget(url, "t", 1)
    preempted = [t for t in trials if t.state == TrialState.FAIL]
    assert preempted and all(read_end_reason(t.user_attrs[END_REASON]) == PREEMPTED for t in preempted)
    (last,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert last.user_attrs[RESUMED_FROM] is not None and last.user_attrs[RESUMED_FROM] < EPOCHS
    assert last.params == preempted[0].params
    assert last.user_attrs[CURVE] == uninterrupted_curve(last)
    assert sorted(last.intermediate_values) == list(range(1, EPOCHS + 1))
    log = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.err"))
    assert "USR2" in log and "preempted at" in log and "resume from their checkpoint" in log


@pytest.mark.slow
def test_status_shows_each_running_trial_with_its_epoch_heartbeat_and_the_time_left(tmp_path):
    from bioscale.contract import SECONDS, TRIALS, WORKER, worker_id
    from bioscale.storages import open_storage
    from bioscale.study import run_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec_for(url, "st", trials=2, epochs=4, devices="cpu"), progress=False)
    storage = open_storage(url)
    study = optuna.load_study(study_name="st", storage=storage)
    study.set_user_attr(TRIALS, 4)
    trial = study.ask()
    trial.set_user_attr(WORKER, f"{worker_id()}:{trial.number}")
    trial.report(0.5, 1)
    trial.report(0.4, 2)
    storage.record_heartbeat(trial._trial_id)
    (row,) = study_status(url, "s*")
    assert (row["budget"], row["finished"], row["counts"]["COMPLETE"], row["counts"]["RUNNING"]) == (4, 2, 2, 1)
    (running,) = row["running"]
    assert running["trial"] == 2 and (running["epoch"], running["epochs"]) == (2, 4) and running["worker"] == worker_id()
    assert 0 <= running["heartbeat_age_s"] < 60
    seconds = [t.user_attrs[SECONDS] for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert row["eta_s"] == round(sum(seconds) / 2 * (1 + 0.5), 1)  # one trial not started, half of one left, one worker
    text = format_status([row])
    assert text.startswith("st: 2/4 finished (2 COMPLETE, 1 RUNNING), about ")
    assert f"  trial 2: epoch 2/4 on {worker_id()}, heartbeat " in text
    done = cli("study", "status", str(tmp_path / "s.db"), "nothing*")
    assert done.returncode == 0 and done.stdout.strip() == "no studies match"


@pytest.mark.postgres
def test_status_on_postgresql_ages_a_running_trials_heartbeat(postgres_url):
    """PostgreSQL hands back its clock with a time zone and its stored heartbeats without one: status compares them."""
    from bioscale.storages import open_storage

    name = f"status-{uuid.uuid4().hex[:8]}"
    storage = open_storage(postgres_url)
    study = optuna.create_study(study_name=name, storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    done = cli("study", "status", postgres_url, name)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^  trial {trial.number}: epoch 0/None on None, heartbeat \d+ s ago$", done.stdout, flags=re.M), done.stdout
    (row,) = study_status(postgres_url, name)
    assert 0 <= row["running"][0]["heartbeat_age_s"] < 60


@pytest.mark.slow
def test_a_campaign_runs_its_studies_and_evaluations_as_local_jobs(tmp_path):
    url = f"journal:///{tmp_path / 'c.log'}"
    args = ["campaign", "--dataset", "digits", "--arch", "fc", "--rules", "bp", "--trials", "2", "--epochs", "2", "--seeds", "0",
            "--storage", url, "--executor", "local", "--jobs", "2", "--cpus-per-job", "1", "--out", str(tmp_path / "out"),
            "--log-dir", str(tmp_path / "logs"), "--format", "png"]
    process = bioscale_process(*args, "--no-wait")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "run the same command again to evaluate and report" in out and "--no-wait" not in out.splitlines()[-1]
    process = bioscale_process(*args)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "evaluated tune:digits:fc:bp: test error" in out and (tmp_path / "out" / "report.md").is_file()
    trials = assert_exact_budget(url, "tune:digits:fc:bp", 2 + 1)  # and the default-settings trial
    assert len(trials) == 3


@pytest.mark.slow
def test_an_architecture_study_launched_as_jobs_records_its_winner(tmp_path):
    from bioscale.contract import StudyInfo

    url = f"journal:///{tmp_path / 'a.log'}"
    spec = StudySpec(stage="architecture", arch="fc", trials=2, epochs=1, storage=url, study_name="arch", chance_patience=0,
                     sampler="random", overrides={"batch_size": "64", "depth": "1", "width": "16:32"})
    launched = launch_study(spec, LaunchSpec(executor="local", jobs=2, cpus_per_job=1, log_dir=str(tmp_path / "logs")))
    launched.wait()
    trials = assert_exact_budget(url, "arch", 2)
    winner = StudyInfo.from_attrs(optuna.load_study(study_name="arch", storage=storage_of(url)).user_attrs).winner
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (t.value, t.number))
    assert winner == best.user_attrs[CONFIG]["arch"]
