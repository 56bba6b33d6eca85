"""The storage contract in code: one meaning of finished, one best trial, and studies bioscale did not write."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from bioscale import contract
from bioscale.analysis.storage import group_title, select_studies
from bioscale.contract import StudyInfo


def trial(number, state, value=None, **attrs):
    made = create_trial(state=state, value=value if state == TrialState.COMPLETE else None, params={"x": 0.5},
                        distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs)
    made.number = number
    return made


def test_finished_counted_and_requeued_agree():
    lost = trial(0, TrialState.FAIL)  # a dead worker's trial: re-queued, not finished
    error = trial(1, TrialState.FAIL, end_reason="error: RuntimeError: boom")
    oom = trial(2, TrialState.PRUNED, end_reason="out of memory on cuda:0: ...")
    done = trial(3, TrialState.COMPLETE, 0.2)
    default = trial(4, TrialState.COMPLETE, 0.1, role="default")
    running = trial(5, TrialState.RUNNING)
    assert [contract.is_finished(t) for t in (lost, error, oom, done, default, running)] == [False, True, True, True, True, False]
    assert [contract.was_requeued(t) for t in (lost, error, oom, done)] == [True, False, False, False]
    assert [contract.counts_against_budget(t) for t in (lost, error, oom, done, default, running)] == [
        False, True, True, True, False, True]


def test_the_best_trial_is_the_lowest_complete_trial_earliest_on_ties_the_default_included():
    halved = create_trial(state=TrialState.PRUNED, value=0.01, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                          user_attrs={"end_reason": contract.HALVED.text("stopped by successive halving at epoch 1")})
    halved.number = 5  # a lower error at a low rung is no full-budget result
    trials = [trial(0, TrialState.COMPLETE, 0.3), trial(1, TrialState.COMPLETE, 0.1), trial(2, TrialState.COMPLETE, 0.1),
              trial(3, TrialState.COMPLETE, 0.05, role="default"), trial(4, TrialState.PRUNED, end_reason="diverged: nan"),
              halved]
    incumbent = contract.best_trial(trials)
    assert incumbent.number == 3 and contract.incumbent_role(incumbent) == "default"
    searched = contract.best_trial(trials, search_only=True)
    assert searched.number == 1 and contract.incumbent_role(searched) == "search"
    assert contract.default_trial(trials).number == 3
    assert contract.best_trial([trials[3], trials[4]]).number == 3
    assert contract.best_trial([trials[3], trials[4]], search_only=True) is None
    assert contract.best_trial([trials[4], halved]) is None
    assert contract.read_end_reason(halved.user_attrs["end_reason"]) == contract.HALVED and contract.is_finished(halved)


def test_study_info_round_trips_and_reads_any_study():
    info = StudyInfo(stage="tune", protocol="paper", dataset="mnist", arch="fc", rule="dtp", schedule="parallel",
                     label="dtp-parallel", epochs=10, trials=60, fixed={"activation": "tanh"})
    attrs = info.to_attrs()
    assert list(attrs)[-1] == "stage" and "evaluation" not in attrs and attrs["schedule"] == "parallel"
    assert StudyInfo.from_attrs(attrs) == info
    foreign = StudyInfo.from_attrs({"epochs": "many", "fixed": [1, 2], "note": "x"})
    assert not foreign.written_by_bioscale and foreign.epochs is None and foreign.fixed == {}


def test_a_study_bioscale_did_not_write_is_shown_by_its_own_name(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    foreign = optuna.create_study(storage=url, study_name="someone-elses-study")
    foreign.add_trial(trial(0, TrialState.COMPLETE, 0.4))
    (record,) = select_studies(optuna.storages.RDBStorage(url), ["someone-elses-study"])
    assert record.label == "someone-elses-study" and group_title(record.group) == "someone-elses-study"
    assert group_title(("mnist", "fc")) == "mnist / fc"
