"""Many worker processes on one PostgreSQL study: an exact global budget, and a killed worker's trial re-run.

Needs a server: set BIOSCALE_TEST_POSTGRES_URL (`.ci/run` does; see docs/studies.md).
"""

import signal
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from conftest import bioscale_process

pytestmark = pytest.mark.postgres

# Heartbeats every second; a trial silent for 3 s counts as dead.
FAST_HEARTBEAT = {"BIOSCALE_HEARTBEAT_INTERVAL": "1", "BIOSCALE_GRACE_PERIOD": "3"}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def worker_pid(trial):
    return int(trial.user_attrs["worker"].split(":")[-2])


def wait_all(processes, timeout=240):
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        results.append((process.returncode, out, err))
    return results


def test_four_workers_finish_exactly_the_global_budget(postgres_url):
    name, budget = unique("budget"), 12
    args = ["study", "run", "--rule", "bp", "--trials", str(budget), "--epochs", "2", "--storage", postgres_url,
            "--study-name", name, "--set", "batch_size=64", "--set", "forward_lr=1e-3", "--quiet"]
    workers = [bioscale_process(*args, env=FAST_HEARTBEAT) for _ in range(4)]
    for code, _, err in wait_all(workers):
        assert code == 0, err
    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(budget))  # none lost, none duplicated, none extra
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t._trial_id for t in trials}) == budget
    assert len({worker_pid(t) for t in trials}) >= 2, "the workers did not share the study"


def test_a_killed_workers_trial_is_failed_and_rerun_by_another(postgres_url):
    name, budget, epochs = unique("kill"), 6, 12
    args = ["study", "run", "--rule", "bp", "--trials", str(budget), "--epochs", str(epochs), "--storage", postgres_url,
            "--study-name", name, "--set", "batch_size=32", "--set", "forward_lr=1e-3", "--chance-patience", "0",
            "--quiet"]
    workers = [bioscale_process(*args, env=FAST_HEARTBEAT) for _ in range(3)]
    victim = workers[0]
    try:
        deadline, killed = time.monotonic() + 120, None
        while killed is None:
            assert time.monotonic() < deadline, "the victim never ran a trial"
            assert victim.poll() is None, victim.communicate()[1]
            try:
                running = optuna.load_study(study_name=name, storage=postgres_url).get_trials(states=(TrialState.RUNNING,))
            except KeyError:  # not created yet
                running = []
            for trial in running:
                if trial.user_attrs.get("worker", "").endswith(f":{trial.number}") and worker_pid(trial) == victim.pid \
                        and len(trial.intermediate_values) < epochs - 2:
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    killed = trial
                    break
            time.sleep(0.1)
        for code, _, err in wait_all(workers[1:]):
            assert code == 0, err
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["seed"] == killed.user_attrs["seed"] and worker_pid(retry) != victim.pid
    assert len(retry.user_attrs["curve"]["val"]) == epochs
    assert sum(t.state == TrialState.COMPLETE for t in trials) == budget
    assert len(trials) == budget + 1 and not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
