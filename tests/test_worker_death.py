"""A local worker killed mid-trial is replaced within the same command, on every kind of storage.

`bioscale study run --workers 2` runs as a real child process; the test takes a worker's pid from
its RUNNING trial, SIGKILLs it, and checks that the command still ends with exactly its budget
finished, exit 0, the killed trial's parameters re-run once and no other trial harmed.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from conftest import bioscale_process

pytestmark = pytest.mark.slow  # spawns processes

BUDGET, EPOCHS = 4, 12


def worker_pid(trial) -> int:
    return int(trial.user_attrs["worker"].split(":")[-2])


def storage_of(url: str):
    """What optuna.load_study takes for a bioscale storage URL (journal files need an object)."""
    if url.startswith("journal:///"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url[len("journal://"):]))
    return url


def kill_a_worker_mid_trial(process, url: str, name: str, timeout: float = 180):
    """SIGKILL the worker of the first RUNNING trial with epochs still to go; returns that trial."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            running = optuna.load_study(study_name=name, storage=storage_of(url)).get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            running = []
        for trial in running:
            epochs_done = len(trial.intermediate_values)
            if str(trial.user_attrs.get("worker", "")).endswith(f":{trial.number}") and 1 <= epochs_done < EPOCHS - 3:
                os.kill(worker_pid(trial), signal.SIGKILL)
                return trial
        time.sleep(0.05)
    raise AssertionError("no worker was seen mid-trial")


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    if request.param == "journal":
        return f"journal:///{tmp_path / 'w.log'}"
    return request.getfixturevalue("postgres_url")


def run_and_kill_a_worker(storage_url: str, name: str, *extra: str):
    """`study run --workers 2` with one worker SIGKILLed mid-trial; returns (the killed trial, stderr, every trial)."""
    process = bioscale_process("study", "run", "--rule", "bp", "--trials", str(BUDGET), "--epochs", str(EPOCHS),
                               "--workers", "2", "--devices", "cpu", "--storage", storage_url, "--study-name", name,
                               "--set", "batch_size=32", "--chance-patience", "0", "--quiet", *extra)
    try:
        killed = kill_a_worker_mid_trial(process, storage_url, name)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    trials = optuna.load_study(study_name=name, storage=storage_of(storage_url)).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return killed, err, trials


def test_a_killed_worker_is_replaced_and_its_trial_rerun_in_the_same_command(storage_url):
    killed, err, trials = run_and_kill_a_worker(storage_url, f"death-{uuid.uuid4().hex[:8]}")
    assert f"worker {worker_pid(killed)} died" in err
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed.number], "only the killed trial failed"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["seed"] == killed.user_attrs["seed"] and worker_pid(retry) != worker_pid(killed)
    assert len(retry.user_attrs["curve"]["val"]) == EPOCHS
    assert sum(t.state == TrialState.COMPLETE for t in trials) == BUDGET and len(trials) == BUDGET + 1


def test_a_killed_workers_whole_population_is_requeued_and_rerun(storage_url):
    killed, _, trials = run_and_kill_a_worker(storage_url, f"death-pop-{uuid.uuid4().hex[:8]}", "--population", "2")
    lost = killed.user_attrs["population"]
    assert len(lost) == 2 and killed.number in lost
    failed = sorted(t.number for t in trials if t.state == TrialState.FAIL)
    assert failed == sorted(lost), "the killed worker's population failed, nothing else"
    for number in lost:
        (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert retry.state == TrialState.COMPLETE and retry.params == trials[number].params
        assert retry.user_attrs["seed"] == trials[number].user_attrs["seed"]
        assert len(retry.user_attrs["curve"]["val"]) == EPOCHS
    assert sum(t.state == TrialState.COMPLETE for t in trials) == BUDGET and len(trials) == BUDGET + 2
