"""tanh vs ReLU: verdicts on studies where the answer is known, and the best-of-n curve."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from bioscale.analysis.statistics.activation import (NO_CLEAR_DIFFERENCE, NOT_ENOUGH, RELU_BETTER, TANH_BETTER, activation_effect,
                                          best_of_n, best_quartile_mean, verdict_from_ci)
from bioscale.analysis.storage import select_studies
from bioscale.analysis.synthetic import PAPER_SPACE, add_study
from bioscale.analysis.tables import trials_frame


def errors_by_activation(relu_shift: float, n_trials: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    noise = np.random.default_rng(seed + 100)

    def objective(p):
        base = 0.1 + 0.02 * (math.log10(p["forward_lr"]) + 3.5) ** 2 + 0.02 * noise.random()
        return base + (relu_shift if p["activation"] == "relu" else 0.0)

    storage = optuna.storages.InMemoryStorage()
    space = {"forward_lr": PAPER_SPACE["forward_lr"], "activation": PAPER_SPACE["activation"]}
    add_study(storage, objective, label="dtp-alternating", rule="dtp", schedule="alternating", space=space,
              n_trials=n_trials, seed=seed)
    (record,) = select_studies(storage, None)
    frame = trials_frame(record)
    return (frame.loc[frame.activation == "tanh", "value"].to_numpy(),
            frame.loc[frame.activation == "relu", "value"].to_numpy())


def test_relu_truly_better_gets_relu_better_with_ci_above_zero():
    tanh, relu = errors_by_activation(relu_shift=-0.05)
    effect = activation_effect(tanh, relu)
    assert effect.verdict == RELU_BETTER
    assert effect.median_ci[0] > 0 and effect.median_diff > 0
    assert effect.best_quartile_diff > 0
    assert effect.p_value < 0.05


def test_tanh_truly_better_gets_tanh_better():
    tanh, relu = errors_by_activation(relu_shift=0.05, seed=3)
    effect = activation_effect(tanh, relu)
    assert effect.verdict == TANH_BETTER
    assert effect.median_ci[1] < 0


def test_no_activation_effect_gets_no_clear_difference():
    tanh, relu = errors_by_activation(relu_shift=0.0, seed=1)
    effect = activation_effect(tanh, relu)
    assert effect.verdict == NO_CLEAR_DIFFERENCE
    assert effect.median_ci[0] <= 0 <= effect.median_ci[1]


def test_bootstrap_is_seeded():
    tanh, relu = errors_by_activation(relu_shift=0.01, n_trials=30, seed=2)
    assert activation_effect(tanh, relu, seed=7) == activation_effect(tanh, relu, seed=7)


def test_too_few_per_activation_is_not_enough():
    effect = activation_effect([0.1, 0.2], [0.1, 0.3, 0.2, 0.4])
    assert effect.verdict == NOT_ENOUGH and math.isnan(effect.p_value)
    assert effect.median_tanh == pytest.approx(0.15)


def test_verdict_rule():
    assert verdict_from_ci(0.01, 0.02) == RELU_BETTER
    assert verdict_from_ci(-0.02, -0.01) == TANH_BETTER
    assert verdict_from_ci(-0.01, 0.01) == NO_CLEAR_DIFFERENCE


def test_best_of_n_is_the_expected_minimum_of_n_draws():
    rng = np.random.default_rng(0)
    errors = rng.uniform(0.05, 0.5, size=25)
    curve = best_of_n(errors, n_max=40)
    assert curve[0] == pytest.approx(errors.mean())
    assert np.all(np.diff(curve) <= 1e-12)
    assert curve[-1] >= errors.min() and curve[-1] - errors.min() < 0.05
    draws = rng.choice(errors, size=(20000, 5)).min(axis=1)
    assert curve[4] == pytest.approx(draws.mean(), abs=0.005)


def test_best_quartile_mean_takes_the_lowest_quarter():
    assert best_quartile_mean(np.array([4.0, 1.0, 3.0, 2.0, 8.0, 7.0, 6.0, 5.0])) == pytest.approx(1.5)
    assert best_quartile_mean(np.array([3.0])) == pytest.approx(3.0)
