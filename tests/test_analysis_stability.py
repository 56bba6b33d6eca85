"""Robustness (share near the best, learning-rate band) and budget trust (rank agreement over epochs)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from bioscale.analysis.stability import budget_trust, learning_curves, robustness
from bioscale.analysis.storage import select_studies
from bioscale.analysis.synthetic import PAPER_SPACE, add_study


def test_robustness_counts_configurations_within_ten_percent_and_the_lr_band():
    errors = [0.10, 0.105, 0.109, 0.2, 0.5, math.nan]
    rates = [1e-4, 1e-3, 1e-2, 1e-5, 1e-3, 1e-3]
    result = robustness(errors, n_finished=7, lrs={"forward_lr": rates})
    assert result.n_within == 3
    assert result.fraction_within == pytest.approx(3 / 7)  # the failed and the missing one count as outside
    assert result.lr_bands["forward_lr"] == pytest.approx(2.0)
    assert result.fractions[-1] == pytest.approx(4 / 7)  # within 100 %: 0.2 counts, 0.5 not
    assert np.all(np.diff(result.fractions) >= 0)


def test_a_best_error_of_zero_still_leaves_a_margin():
    result = robustness([0.0, 0.0005, 0.01])
    assert result.n_within == 2


def test_a_broad_optimum_is_more_robust_than_a_narrow_one():
    def study(width):
        storage = optuna.storages.InMemoryStorage()
        add_study(storage, lambda p: 0.05 + (math.log10(p["forward_lr"]) + 3.5) ** 2 / width,
                  space={"forward_lr": PAPER_SPACE["forward_lr"]}, label="bp", n_trials=60)
        (record,) = select_studies(storage, None)
        values = [t.value for t in record.complete]
        return robustness(values, lrs={"forward_lr": [t.params["forward_lr"] for t in record.complete]})

    broad, narrow = study(width=100.0), study(width=1.0)
    assert broad.fraction_within > narrow.fraction_within
    assert broad.lr_bands["forward_lr"] > narrow.lr_bands["forward_lr"]


def test_budget_trust_finds_when_ranks_settle():
    rng = np.random.default_rng(0)
    final = rng.uniform(0.05, 0.5, size=30)
    # Epochs 1-5 are noise unrelated to the final ranking; from epoch 6 on the curves track it.
    curves = [[*rng.uniform(0.3, 0.9, size=5), *(f + 0.01 * (10 - e) for e in range(6, 11))] for f in final]
    result = budget_trust(curves)
    assert result.ok and result.last_epoch == 10
    assert result.settle_epoch == 6
    assert np.all(np.abs(result.rho[:5]) < 0.6)
    assert result.rho[-1] == pytest.approx(1.0)
    assert "epoch 6 of 10" in result.verdict() and "risky" in result.verdict()


def test_budget_trust_early_settling_says_safe_and_late_says_risky():
    rng = np.random.default_rng(1)
    final = rng.uniform(0.05, 0.5, size=20)
    early = budget_trust([[f + 0.3 / e for e in range(1, 11)] for f in final])
    assert early.settle_epoch == 1 and "safe" in early.verdict()
    late = budget_trust([[*rng.uniform(0.3, 0.9, size=9), f] for f in final])
    assert late.settle_epoch in (None, 10) and "do not trust" in late.verdict()


def test_budget_trust_needs_curves_that_differ():
    assert not budget_trust([[0.1, 0.2]] * 3).ok
    assert "not enough" in budget_trust([]).verdict()
    same_end = budget_trust([[0.5 + 0.01 * i, 0.3] for i in range(6)])
    assert not same_end.ok and "nothing to rank" in same_end.verdict()


def test_learning_curves_come_from_intermediate_values():
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, lambda p: 0.1, label="fa", n_trials=4, epochs=7)
    (record,) = select_studies(storage, None)
    curves = learning_curves(record.complete)
    assert len(curves) == 4 and all(len(c) == 7 for c in curves)
    assert curves[0] == [record.complete[0].intermediate_values[e] for e in range(1, 8)]
