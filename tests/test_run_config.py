"""One run configuration: checked once, stored as a trial's config, read back whole, and how `fit` decides a member stops."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import optuna
import pytest

from bioscale.contract import CONFIG, DATA_SEED, DEVICE, SEED
from bioscale.errors import UsageError
from bioscale.history import EpochResult
from bioscale.resume import FitState
from bioscale.run_config import RunConfig
from bioscale.spec import StudySpec
from bioscale.study import run_study, train_command
from bioscale.train import LOSS_GROWTH_LIMIT, chance_level, stop_member


@pytest.mark.parametrize("change, message", [
    ({"rule": "nope"}, "unknown rule 'nope'"),
    ({"dataset": "svhn"}, "unknown dataset 'svhn'"),
    ({"activation": "sigmoid"}, "unknown activation 'sigmoid'; choose one of: tanh, relu"),
    ({"epochs": 0}, "epochs=0 is out of range"),
    ({"batch_size": 2.5}, "batch_size=2.5 is not a whole number"),
    ({"chance_patience": -1}, "chance_patience must be a whole number >= 0"),
    ({"seeds": ()}, "give one or more distinct whole-number seeds"),
    ({"seeds": (1, 1)}, "give one or more distinct whole-number seeds"),
    ({"seeds": ("a",)}, "seed must be a whole number"),
    ({"data_seed": 1.5}, "seed must be a whole number"),
    ({"rule": "dtp", "settings": {"schedule": "sideways"}}, "rule 'dtp' has no schedule 'sideways'"),
    ({"settings": {"schedule": "parallel"}}, "rule 'bp' has no schedule 'parallel'"),
])
def test_checked_refuses_each_bad_value_in_one_line(change, message):
    with pytest.raises(UsageError, match=message) as refused:
        replace(RunConfig(rule="bp"), **change).checked()
    assert "\n" not in str(refused.value)


def test_checked_is_idempotent_and_freezes_its_sequences():
    run = RunConfig(rule="dtp", settings={"schedule": "alternating"}, seeds=[3, 4], data_seed=7).checked()
    assert run.seeds == (3, 4) and run.minibatch_seed == 7 and run.schedule == "alternating"
    assert run.checked() == run and RunConfig(rule="bp", seeds=(5,)).minibatch_seed == 5
    with pytest.raises(AttributeError):
        run.epochs = 3  # frozen


def test_the_stored_form_is_flat_complete_and_reads_back_into_the_same_run():
    run = RunConfig(rule="dtp", settings={"schedule": "alternating", "forward_lr": 0.02}, arch="2*fc:8", epochs=3,
                    batch_size=64, activation="relu")
    stored = run.to_stored()
    assert list(stored)[:7] == ["rule", "schedule", "dataset", "arch", "epochs", "activation", "batch_size"]
    assert (stored["schedule"], stored["forward_lr"], stored["inverse_lr"]) == ("alternating", 0.02, 1e-3)  # defaults filled
    back = RunConfig.from_stored(json.loads(json.dumps(stored)), seeds=(9,), device="cpu")
    assert back.to_stored() == stored and (back.seeds, back.device, back.arch, back.activation) == ((9,), "cpu", "2*fc:8", "relu")
    assert RunConfig.from_stored({**stored, "worker": "x"}, epochs=5).epochs == 5  # other names ignored, fields replaced


def test_a_population_holds_per_member_settings_as_lists_and_refuses_what_members_must_share():
    members = [RunConfig.from_stored({"rule": "dtp", "forward_lr": lr}, seeds=(seed,)) for lr, seed in ((1e-3, 0), (2e-3, 5))]
    population = RunConfig.population(members)
    assert population.seeds == (0, 5) and population.settings["forward_lr"] == [1e-3, 2e-3]
    assert population.settings["schedule"] == "parallel"  # shared, not a list
    with pytest.raises(ValueError, match="must share their architecture"):
        RunConfig.population([members[0], replace(members[1], batch_size=32)])
    with pytest.raises(ValueError, match="must share schedule"):
        RunConfig.population([members[0], replace(members[1], settings={**members[1].settings, "schedule": "alternating"})])


def test_a_trial_stores_the_run_it_trained_and_train_command_reads_it_back(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = StudySpec(rule="dtp-alternating", trials=1, epochs=1, storage=url, devices="cpu", seed=4,
                     overrides={"batch_size": "64"})
    study = run_study(spec, progress=False)
    (trial,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    attrs = trial.user_attrs
    run = RunConfig.from_stored(attrs[CONFIG], seeds=(attrs[SEED],), data_seed=attrs[DATA_SEED], device=attrs[DEVICE])
    assert run.to_stored() == attrs[CONFIG]
    values = {**trial.params, "schedule": "alternating", "batch_size": 64}  # what the trial sampled and what it held
    made = spec.checked().run_config(run.arch, values, seeds=(attrs[SEED],), device="cpu")
    assert made.to_stored() == attrs[CONFIG] and made.minibatch_seed == 4 == run.minibatch_seed
    command = train_command(run)
    assert "--rule dtp" in command and "--batch-size 64" in command and "--set schedule=alternating" in command
    assert "--seed 4" in command and "--data-seed" not in command  # trial 0's seed is the study's: no data seed apart
    assert "--data-seed 4" in train_command(replace(run, seeds=(7,)))


def members(n: int = 2) -> FitState:
    state = FitState.start(n, seed=0)
    state.bound = [LOSS_GROWTH_LIMIT * math.log(10)] * n
    return state


def record(loss: float = 1.0, val: float | None = 0.5, train: float = 0.4, epoch: int = 1) -> EpochResult:
    return EpochResult(epoch, loss, train, val, 0.5, 1.0)


@pytest.mark.parametrize("loss, finite, reason", [
    (math.nan, True, "loss became nan in epoch 1"),
    (math.inf, False, "loss became inf in epoch 1"),  # the loss is named before the weights
    (1.0, False, "weights became NaN or infinite in epoch 1"),
    (1e4, True, "loss became 1e+04 in epoch 1, over 1000 times its start (2.3)"),
])
def test_a_member_that_diverged_stops_unrecorded_and_the_callback_never_hears_of_it(loss, finite, reason):
    state, heard = members(), []
    assert stop_member(state, 1, record(loss), finite, None, 0, lambda m, r: heard.append(m))
    assert state.results[1].diverged.reason == reason and state.results[1].history == [] and heard == []
    assert not state.results[1].diverged.stalled and state.results[0].diverged is None


def test_a_member_stops_when_the_callback_says_false_and_stalls_at_chance_only_on_forward_epochs():
    state, chance = members(), chance_level(10)
    assert chance == pytest.approx(0.85)
    assert stop_member(state, 0, record(), True, chance, 0, lambda m, r: False)
    assert state.results[0].pruned_at == 1 and len(state.results[0].history) == 1
    at_chance = record(val=0.9)
    assert not stop_member(state, 1, at_chance, True, chance, 2, None)
    assert not stop_member(state, 1, replace(at_chance, epoch=2), True, None, 2, None)  # an inverse-only epoch: not counted
    assert stop_member(state, 1, replace(at_chance, epoch=3), True, chance, 2, None)
    stalled = state.results[1].diverged
    assert stalled.stalled and stalled.epoch == 3 and "error stayed at chance (0.90) for 2 epochs" in stalled.reason
    assert len(state.results[1].history) == 3  # a stalled member's epochs are recorded
    other = members()
    assert not stop_member(other, 0, record(val=None, train=0.9), True, chance, 2, None)  # no validation split: training error
    assert other.at_chance[0] == 1


def test_cli_train_carries_seeds_into_the_summary_and_refuses_a_bad_batch_size_in_one_line():
    base = [sys.executable, "-m", "bioscale.cli", "train", "--rule", "bp", "--arch", "2*fc:8", "--epochs", "1", "--quiet"]
    done = subprocess.run([*base, "--json", "--seed", "3", "--data-seed", "4", "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["seed"], out["data_seed"], out["device"], out["arch"]) == (3, 4, "cpu", "2*fc:8")
    refused = subprocess.run([*base, "--batch-size", "0"], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "bioscale: error: batch_size=0 is out of range: it must lie in [1, inf)"]
