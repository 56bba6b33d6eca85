"""Population trials in studies: K trials asked together, trained as one batched model, each told its own result."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from bioscale import contract
from bioscale.spec import StudySpec
from bioscale.study import run_study


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


@pytest.mark.slow
def test_a_population_trains_each_trial_as_it_would_alone(tmp_path):
    """Random search of the paper's protocol samples no structural value: the same trials with K = 1 and K = 3."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    runs = {k: run_study(StudySpec(rule="dtp", trials=5, schedule="parallel", epochs=2, storage=url,
                                   study_name=f"k{k}", sampler="random", protocol="paper", devices="cpu",
                                   population=k, seed=3), progress=False) for k in (1, 3)}
    alone, together = (runs[k].get_trials() for k in (1, 3))
    assert [t.user_attrs["population"] for t in alone] == [[n] for n in range(5)]
    assert [t.user_attrs["population"] for t in together] == [[0, 1, 2]] * 3 + [[3, 4]] * 2
    for a, b in zip(alone, together, strict=True):
        assert a.params == b.params and a.user_attrs["seed"] == b.user_attrs["seed"] == 3 + a.number
        assert a.user_attrs["data_seed"] == b.user_attrs["data_seed"] == 3
        assert a.state == b.state == TrialState.COMPLETE
        assert b.value == a.value and b.user_attrs["curve"] == a.user_attrs["curve"]  # error counts: exactly equal


def test_populations_share_their_structural_values_and_keep_the_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = run_study(StudySpec(rule="ao-sdtp", trials=7, schedule="alternating", epochs=1, storage=url,
                                sampler="tpe", protocol="extended", devices="cpu", population=3,
                                overrides={"aux_size": "16:64"}), progress=False)
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    groups = {tuple(t.user_attrs["population"]) for t in trials}
    assert groups == {(0, 1, 2), (3, 4, 5), (6,)}
    structural = ("activation", "batch_size", "aux_size", "alternation_period")
    for group in groups:
        members = [trials[n] for n in group]
        assert len({tuple(m.params[p] for p in structural) for m in members}) == 1, group
    # Per-member values really differ within a population.
    assert len({trials[n].params["forward_lr"] for n in (0, 1, 2)}) == 3
    assert len({trials[n].user_attrs["seed"] for n in (0, 1, 2)}) == 3


def test_queued_trials_go_first_in_a_population_of_their_own(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = run_study(StudySpec(rule="bp", trials=4, epochs=1, storage=url, sampler="random", protocol="extended",
                                devices="cpu", population=4, default_trial=True), progress=False)
    trials = study.get_trials()
    assert trials[0].user_attrs["role"] == "default" and trials[0].user_attrs["population"] == [0]
    assert [t.user_attrs["population"] for t in trials[1:]] == [[1, 2, 3, 4]] * 4
    assert len({(t.params["activation"], t.params["batch_size"]) for t in trials[1:]}) == 1
    # what the queue held for the default trial is ours to read (not Optuna's private `fixed_params`), and it trained that
    assert trials[0].user_attrs[contract.QUEUED_PARAMS] == trials[0].params


def test_queued_trials_share_a_population_with_fresh_ones_when_nothing_structural_is_sampled(tmp_path):
    """The paper's protocol samples only per-member settings, so the default trial trains with the search trials."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = run_study(StudySpec(rule="bp", trials=4, epochs=1, storage=url, sampler="random", protocol="paper",
                                devices="cpu", population=5, default_trial=True), progress=False)
    trials = study.get_trials()
    assert trials[0].user_attrs["role"] == "default" and len(trials) == 5
    assert [t.user_attrs["population"] for t in trials] == [[0, 1, 2, 3, 4]] * 5
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_bad_population_is_refused_before_a_study_exists(tmp_path, capsys):
    from bioscale.cli import main

    url = f"sqlite:///{tmp_path / 'b.db'}"
    code = main(["study", "run", "--rule", "bp", "--population", "0", "--storage", url])
    err = capsys.readouterr().err
    assert code == 2 and "population must be a whole number >= 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.db").exists()
