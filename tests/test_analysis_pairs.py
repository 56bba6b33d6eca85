"""tanh vs ReLU as an experiment: one study per activation, compared; verdicts with known answers."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from bioscale.analysis import compute
from bioscale.analysis.statistics.activation import NO_CLEAR_DIFFERENCE, RELU_BETTER, TANH_BETTER
from bioscale.analysis.statistics.pairs import compare_pair, expected_best, find_pairs
from bioscale.analysis.statistics.activation import best_of_n
from bioscale.analysis.storage import select_studies
from bioscale.analysis.synthetic import PAPER_SPACE, add_study

SPACE = {k: v for k, v in PAPER_SPACE.items() if k != "activation"}


def objective(p):
    return 0.1 + 0.02 * (math.log10(p["forward_lr"]) + 3.5) ** 2


def relu_diverges_40_percent(p):  # sigma is uniform on [0.01, 0.4]: true for 40 % of configurations
    return p["sigma"] < 0.01 + 0.4 * 0.39


def add_pair(storage, label="bp", rule=None, schedule=None, relu_objective=objective, relu_diverges=None, seed=0,
             n_trials=60, **kwargs):
    for activation, fn, diverges in (("tanh", objective, None), ("relu", relu_objective, relu_diverges)):
        add_study(storage, fn, label=label, rule=rule, schedule=schedule, fixed={"activation": activation},
                  suffix=activation, space=SPACE, n_trials=n_trials, diverges=diverges, seed=seed, protocol="extended",
                  **kwargs)


def test_relu_diverging_for_40_percent_and_otherwise_equal_gets_a_verdict_that_says_so():
    storage = optuna.storages.InMemoryStorage()
    add_pair(storage, relu_diverges=relu_diverges_40_percent)
    ((tanh, relu),) = find_pairs(select_studies(storage, None))
    assert (tanh.name, relu.name) == ("tune:digits:fc:bp:tanh", "tune:digits:fc:bp:relu")
    pair = compare_pair(tanh, relu)
    assert pair.tanh.divergence_rate == 0 and 0.3 < pair.relu.divergence_rate < 0.5
    assert pair.divergence_ci[0] > 0 and pair.divergence_p < 0.001
    assert pair.on_complete.verdict == NO_CLEAR_DIFFERENCE  # the configurations that trained are alike
    assert pair.verdict == TANH_BETTER  # over every finished configuration, the diverged at chance level
    text = pair.summary()
    assert text.startswith("tanh better configuration by configuration (paired over the 60 configurations")
    assert "ReLU diverged more often (tanh 0% of 60, ReLU" in text
    assert "among configurations that trained: no clear difference" in text


def test_equal_pairs_get_no_clear_difference_and_relu_truly_better_gets_relu_better():
    storage = optuna.storages.InMemoryStorage()
    add_pair(storage, label="fa")
    add_pair(storage, label="dfa", relu_objective=lambda p: objective(p) - 0.05)
    pairs = {p.label: p for p in (compare_pair(t, r) for t, r in find_pairs(select_studies(storage, None)))}
    fa = pairs["fa"]
    assert fa.verdict == NO_CLEAR_DIFFERENCE and fa.relu.divergence_rate == fa.tanh.divergence_rate
    assert "divergence rates alike" in pairs["fa"].summary()
    assert pairs["dfa"].verdict == RELU_BETTER and pairs["dfa"].best_ci[0] > 0


def test_evaluated_best_over_seeds_is_compared_at_the_best_validation_epoch():
    storage = optuna.storages.InMemoryStorage()
    tanh_eval = {"seeds": [0, 1, 2], "test_errors": [0.5, 0.5, 0.5], "test_errors_at_best_val": [0.10, 0.11, 0.12]}
    relu_eval = {"seeds": [0, 1, 2], "test_errors": [0.20, 0.20], "diverged": [{"seed": 2, "reason": "loss became nan"}]}
    for activation, evaluation in (("tanh", tanh_eval), ("relu", relu_eval)):
        add_study(storage, objective, label="bp", fixed={"activation": activation}, suffix=activation, space=SPACE,
                  n_trials=10, evaluation=evaluation)
    pair = compare_pair(*find_pairs(select_studies(storage, None))[0])
    assert pair.tanh.evaluated.mean == pytest.approx(0.11) and "best-validation epoch" in pair.tanh.evaluated.basis
    assert pair.relu.evaluated.mean == pytest.approx(0.20) and "last epoch" in pair.relu.evaluated.basis
    assert pair.relu.evaluated.mean_with_diverged == pytest.approx((0.2 + 0.2 + 0.9) / 3)
    assert "seed 2 (loss became nan)" in pair.summary()


def test_only_studies_that_fix_the_activation_pair_up():
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, objective, label="bp", n_trials=5)  # samples activation: not part of a pair
    add_study(storage, objective, label="bp", fixed={"activation": "tanh"}, suffix="tanh", space=SPACE, n_trials=5)
    assert find_pairs(select_studies(storage, None)) == []


def test_expected_best_matches_best_of_n():
    errors = np.random.default_rng(0).uniform(0.05, 0.5, size=30)
    assert expected_best(errors, 7) == pytest.approx(best_of_n(errors, 7)[-1])
    assert expected_best(np.stack([errors, errors]), 7, axis=-1) == pytest.approx([best_of_n(errors, 7)[-1]] * 2)


def test_compute_reports_pairs_in_a_table_and_names_them_by_activation():
    storage = optuna.storages.InMemoryStorage()
    add_pair(storage, relu_diverges=relu_diverges_40_percent, n_trials=20)
    analysis = compute(storage, None, progress=False, seeds=1)
    assert [a.name for a in analysis.studies] == ["bp [relu]", "bp [tanh]"]
    (row,) = analysis.computed["activation"].rows
    assert row.label == "bp" and row.n == 20
