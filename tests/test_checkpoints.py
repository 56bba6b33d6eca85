"""Checkpoints in studies: where they live, removal when trials finish, a corrupt one refused, and a killed worker's
trial re-run from its last checkpoint, ending equal to an uninterrupted fit of the same configuration."""

from __future__ import annotations

import os
import signal
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from bioscale.contract import CHECKPOINT, CONFIG, CURVE, DATA_SEED, RESUMED_FROM, SEED
from bioscale.run_config import RunConfig
from bioscale.spec import StudySpec
from bioscale.storages import parse_storage
from bioscale.study import checkpoints, run_study
from bioscale.study._recipe import fit_configuration

from conftest import bioscale_process
from test_worker_death import storage_of, worker_pid

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def uninterrupted_curve(trial) -> dict[str, list[float]]:
    """The curve of the trial's configuration fitted in one go in this process (an independent computation)."""
    run = RunConfig.from_stored(trial.user_attrs[CONFIG], seeds=(trial.user_attrs[SEED],), data_seed=trial.user_attrs[DATA_SEED],
                                device="cpu", chance_patience=0)
    (result,) = fit_configuration(run, drop_stopped=True)
    return {"train": [r.train_error for r in result.history], "val": [r.val_error for r in result.history],
            "test": [r.test_error for r in result.history]}


def spec(tmp_path, **given) -> StudySpec:
    values = dict(rule="bp", trials=2, epochs=3, storage=f"sqlite:///{tmp_path / 's.db'}", devices="cpu",
                  overrides={"batch_size": "64"}, chance_patience=0, study_name="c")
    values.update(given)
    return StudySpec(**values)


def test_the_default_folder_is_beside_a_file_storage_or_in_the_working_folder(tmp_path):
    sqlite = parse_storage(f"sqlite:///{tmp_path / 'x.db'}")
    assert checkpoints.default_directory(sqlite) == tmp_path / "x.db.checkpoints"
    assert checkpoints.default_directory(parse_storage("postgresql://u:p@h/db")) == (
        checkpoints.Path.cwd() / checkpoints.DEFAULT_FOLDER)
    assert checkpoints.directory(str(tmp_path / "here"), sqlite) == tmp_path / "here"
    path = checkpoints.population_path(tmp_path, "tune:digits:fc:dtp parallel", [4, 2])
    assert path == tmp_path / "tune_digits_fc_dtp_parallel" / "trials-2-4.pt"


def test_removing_a_finished_populations_checkpoint_removes_those_sharing_a_trial(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for name in ("trials-1-2-3.pt", "trials-2.pt", "trials-4-5.pt", "trials-12.pt"):
        (folder / name).write_bytes(b"x")
    checkpoints.remove(folder / "trials-2.pt")  # trials 1-2-3 were re-run in another grouping: that file is of no use
    assert sorted(p.name for p in folder.iterdir()) == ["trials-12.pt", "trials-4-5.pt"]


def test_finished_trials_leave_no_checkpoint_unless_kept(tmp_path):
    study = run_study(spec(tmp_path), progress=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert not (tmp_path / "s.db.checkpoints").exists()
    assert all(t.user_attrs[CHECKPOINT].startswith(str(tmp_path / "s.db.checkpoints")) for t in trials)
    assert all(t.user_attrs[RESUMED_FROM] is None for t in trials)
    kept = run_study(spec(tmp_path, study_name="k", keep_checkpoints=True, checkpoint_dir=str(tmp_path / "ck")), progress=False)
    assert sorted(p.name for p in (tmp_path / "ck" / "k").iterdir()) == ["trials-0.pt", "trials-1.pt"]
    assert kept.get_trials()[0].user_attrs[CHECKPOINT] == str(tmp_path / "ck" / "k" / "trials-0.pt")


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 not a whole zip file"])
def test_a_corrupt_checkpoint_is_refused_in_one_line_and_the_trial_trains_afresh(damage, tmp_path, capfd):
    folder = tmp_path / "ck" / "c"
    folder.mkdir(parents=True)
    (folder / "trials-0.pt").write_bytes(damage)
    study = run_study(spec(tmp_path, trials=1, checkpoint_dir=str(tmp_path / "ck")), progress=False)
    (trial,) = study.get_trials()
    lines = [line for line in capfd.readouterr().err.splitlines() if "checkpoint" in line]
    assert len(lines) == 1 and "is unreadable" in lines[0] and "starts afresh" in lines[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs[RESUMED_FROM] is None
    assert trial.user_attrs[CURVE] == uninterrupted_curve(trial)
    assert not (folder / "trials-0.pt").exists()


EPOCHS = 16


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal"])
def test_a_sigkilled_workers_trial_resumes_from_its_last_checkpoint_and_ends_equal(storage, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}" if storage == "sqlite" else f"journal:///{tmp_path / 'w.log'}"
    name = f"kill-{uuid.uuid4().hex[:6]}"
    process = bioscale_process("study", "run", "--rule", "dtp", "--trials", "3", "--epochs", str(EPOCHS), "--workers", "2",
                               "--devices", "cpu", "--storage", url, "--study-name", name, "--set", "batch_size=32",
                               "--chance-patience", "0", "--quiet", "--sampler", "random")
    killed = None
    try:
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                running = optuna.load_study(study_name=name, storage=storage_of(url)).get_trials(states=(TrialState.RUNNING,))
            except KeyError:
                running = []
            for trial in running:
                done = len(trial.intermediate_values)
                if str(trial.user_attrs.get("worker", "")).endswith(f":{trial.number}") and 3 <= done < EPOCHS - 4:
                    os.kill(worker_pid(trial), signal.SIGKILL)
                    killed = trial
                    break
            time.sleep(0.05)
        assert killed is not None, "no worker was seen mid-trial"
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    trials = optuna.load_study(study_name=name, storage=storage_of(url)).get_trials()
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs[RESUMED_FROM] > 1, "the re-run resumed from an epoch-end checkpoint, not epoch 0"
    assert retry.user_attrs[RESUMED_FROM] <= len(killed.intermediate_values) + 1
    assert f"resume from their checkpoint after epoch {retry.user_attrs[RESUMED_FROM]}" in err
    assert retry.user_attrs[CHECKPOINT] == killed.user_attrs[CHECKPOINT]
    assert retry.user_attrs[CURVE] == uninterrupted_curve(retry)
    assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert not os.path.exists(retry.user_attrs[CHECKPOINT])


def test_a_journal_trial_of_another_machine_is_alive_while_its_heartbeat_is_fresh():
    from bioscale.contract import HEARTBEAT, WORKER
    from bioscale.study._workers import _worker_alive

    def trial(**attrs):
        return optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={WORKER: "elsewhere:42:-1", **attrs})  # create_trial numbers it -1

    assert _worker_alive(trial(**{HEARTBEAT: time.time() - 5}), check_pid=True, grace=60) is True
    assert _worker_alive(trial(**{HEARTBEAT: time.time() - 600}), check_pid=True, grace=60) is False
    assert _worker_alive(trial(), check_pid=True, grace=60) is True  # no beat recorded: cannot tell, trust it
    assert _worker_alive(trial(**{HEARTBEAT: time.time() - 600}), check_pid=False, grace=60) is True  # RDB: its own heartbeats


@pytest.mark.slow
def test_a_journal_trial_whose_worker_on_another_machine_went_silent_is_rerun(tmp_path):
    from bioscale.contract import HEARTBEAT, WORKER
    from bioscale.storages import open_storage

    url = f"journal:///{tmp_path / 'j.log'}"
    run_study(spec(tmp_path, trials=1, storage=url, study_name="j", sampler="random"), progress=False)
    study = optuna.load_study(study_name="j", storage=open_storage(url))
    lost = study.ask()
    lost.set_user_attr(WORKER, f"node-17:4242:{lost.number}")
    lost.set_user_attr(HEARTBEAT, time.time() - 3600)  # its job died with its node an hour ago
    study = run_study(spec(tmp_path, trials=2, storage=url, study_name="j", sampler="random"), progress=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].system_attrs["failed_trial"] == lost.number
    assert isinstance(trials[2].user_attrs[HEARTBEAT], float) and trials[2].user_attrs[HEARTBEAT] > time.time() - 600
