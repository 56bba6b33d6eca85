"""tanh vs ReLU as an experiment: two studies of one rule that differ only in the activation they fix, compared.

`--activations tanh,relu` gives every rule one study per activation (names ending ":tanh" and
":relu"), same stage, dataset, architecture, label, budget and sampler, each tuned on its own.
A pair is compared on every finished configuration (diverged ones at the chance-level error),
on the complete ones, on divergence rates, on the expected best of n random configurations at
the studies' budget, and on the evaluated best over seeds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats

from .activation import (NO_CLEAR_DIFFERENCE, NOT_ENOUGH, RELU_BETTER, TANH_BETTER, ActivationEffect, activation_effect,
                         best_of_n)
from .evaluation import Evaluated, evaluated
from .outcomes import COMPLETE, DIVERGED, STALLED, chance_error, counted_error, outcome, search_finished
from .storage import StudyRecord

ACTIVATIONS = ("tanh", "relu")


def fixed_activation(record: StudyRecord) -> str | None:
    """The activation a study fixes for every trial (not sampled), else None."""
    value = record.info.fixed.get("activation")
    return value if value in ACTIVATIONS and "activation" not in record.info.space else None


def find_pairs(records: Sequence[StudyRecord]) -> list[tuple[StudyRecord, StudyRecord]]:
    """(tanh study, ReLU study) for each stage, dataset, architecture and label that has one of each."""
    found: dict[tuple, dict[str, StudyRecord]] = {}
    for record in records:
        activation = fixed_activation(record)
        if activation and not record.skipped:
            key = (record.info.stage, record.dataset, record.arch, record.label)
            found.setdefault(key, {}).setdefault(activation, record)
    return [(both["tanh"], both["relu"]) for _, both in sorted(found.items(), key=lambda kv: tuple(map(str, kv[0])))
            if len(both) == 2]


@dataclass
class Arm:
    """One activation's study in a pair: every finished configuration's counted error and how each ended."""

    study: str
    errors: np.ndarray  # every finished configuration with an error; diverged ones at chance level
    complete: np.ndarray  # complete configurations only
    diverged: np.ndarray  # 1 for each finished configuration that diverged or stalled, else 0
    evaluated: Evaluated | None = None

    @property
    def divergence_rate(self) -> float:
        """Share of finished configurations that diverged or stalled."""
        return float(self.diverged.mean()) if self.diverged.size else math.nan


def arm(record: StudyRecord) -> Arm:
    """The errors and divergence indicators of one study's finished search trials."""
    chance = chance_error(record.dataset)
    finished = search_finished(record.trials)
    errors = np.array([counted_error(t, chance) for t in finished], dtype=float)
    kinds = [outcome(t) for t in finished]
    return Arm(study=record.name, errors=errors[np.isfinite(errors)],
               complete=np.array([e for e, k in zip(errors, kinds) if k == COMPLETE], dtype=float),
               diverged=np.array([k in (DIVERGED, STALLED) for k in kinds], dtype=float),
               evaluated=evaluated(record.evaluation, chance))


@dataclass
class PairComparison:
    """tanh vs ReLU for one rule on one dataset and architecture; differences are tanh − ReLU."""

    dataset: str
    arch: str
    label: str
    tanh: Arm
    relu: Arm
    on_all: ActivationEffect  # every finished configuration, diverged at chance level
    on_complete: ActivationEffect  # complete configurations only
    divergence_diff: float = math.nan  # ReLU − tanh share that diverged
    divergence_ci: tuple[float, float] = (math.nan, math.nan)
    divergence_p: float = math.nan  # Fisher's exact test
    budget: int = 0  # n of the expected best of n
    best_tanh: float = math.nan
    best_relu: float = math.nan
    best_ci: tuple[float, float] = (math.nan, math.nan)  # of tanh − ReLU expected best of n
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    verdict: str = NOT_ENOUGH

    @property
    def best_diff(self) -> float:
        """tanh − ReLU expected best validation error after `budget` random configurations."""
        return self.best_tanh - self.best_relu

    @property
    def evaluated_diff(self) -> float:
        """tanh − ReLU mean evaluated test error over seeds (NaN unless both were evaluated)."""
        if self.tanh.evaluated is None or self.relu.evaluated is None:
            return math.nan
        return self.tanh.evaluated.mean - self.relu.evaluated.mean

    def summary(self) -> str:
        """The verdict with its reasons: divergence, configurations that trained, best found, evaluated best."""
        parts = [_divergence_clause(self), f"among configurations that trained: {_effect_clause(self.on_complete)}"]
        if math.isfinite(self.best_tanh) and math.isfinite(self.best_relu):
            parts.append(f"expected best of {self.budget} configurations: tanh {100 * self.best_tanh:.2f}%, ReLU "
                         f"{100 * self.best_relu:.2f}% (Δ {_pp_ci(self.best_diff, self.best_ci)})")
        if self.tanh.evaluated is not None and self.relu.evaluated is not None:
            parts.append(f"evaluated best: tanh {self.tanh.evaluated.line()}; ReLU {self.relu.evaluated.line()}")
        return f"{self.verdict} over every finished configuration ({_effect_clause(self.on_all)}); " + "; ".join(parts)


def _pp_ci(diff: float, ci: tuple[float, float]) -> str:
    if not math.isfinite(diff):
        return "–"
    text = f"{100 * diff:+.2f} pp"
    return text + (f", 95% CI {100 * ci[0]:+.2f} to {100 * ci[1]:+.2f}" if all(map(math.isfinite, ci)) else "")


def _effect_clause(effect: ActivationEffect) -> str:
    if effect.verdict == NOT_ENOUGH:
        return f"{NOT_ENOUGH} ({effect.n_tanh} tanh, {effect.n_relu} ReLU)"
    return (f"{effect.verdict}, median tanh − ReLU {_pp_ci(effect.median_diff, effect.median_ci)}, "
            f"Mann-Whitney p = {effect.p_value:.3g}, n = {effect.n_tanh} tanh, {effect.n_relu} ReLU")


def _divergence_clause(pair: PairComparison) -> str:
    rates = (f"tanh {100 * pair.tanh.divergence_rate:.0f}% of {pair.tanh.diverged.size}, ReLU "
             f"{100 * pair.relu.divergence_rate:.0f}% of {pair.relu.diverged.size} configurations diverged or stalled")
    low, high = pair.divergence_ci
    if math.isfinite(low) and low > 0:
        return f"ReLU diverged more often ({rates}; Fisher p = {pair.divergence_p:.3g})"
    if math.isfinite(high) and high < 0:
        return f"tanh diverged more often ({rates}; Fisher p = {pair.divergence_p:.3g})"
    return f"divergence rates alike ({rates})"


def expected_best(errors: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """Expected lowest error of n draws with replacement from `errors` along `axis` (vectorised best_of_n at one n)."""
    values = np.sort(np.asarray(errors, dtype=float), axis=axis)
    m = values.shape[axis]
    i = np.arange(1, m + 1)
    weights = (1 - (i - 1) / m) ** n - (1 - i / m) ** n
    return np.moveaxis(values, axis, -1) @ weights


def compare_pair(tanh: StudyRecord, relu: StudyRecord, *, n_resamples: int = 2000, seed: int = 0) -> PairComparison:
    """Compare a pair's studies on every finished configuration, complete ones, divergence, best of n and the evaluated best."""
    a, b = arm(tanh), arm(relu)
    pair = PairComparison(dataset=tanh.dataset, arch=tanh.arch, label=tanh.label, tanh=a, relu=b,
                          on_all=activation_effect(a.errors, b.errors, n_resamples=n_resamples, seed=seed),
                          on_complete=activation_effect(a.complete, b.complete, n_resamples=n_resamples, seed=seed))
    if a.diverged.size and b.diverged.size:
        pair.divergence_diff = b.divergence_rate - a.divergence_rate
        pair.divergence_ci = _bootstrap(b.diverged, a.diverged, lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                                        n_resamples, seed)
        table = [[int(b.diverged.sum()), int(b.diverged.size - b.diverged.sum())],
                 [int(a.diverged.sum()), int(a.diverged.size - a.diverged.sum())]]
        pair.divergence_p = float(stats.fisher_exact(table).pvalue)
    if a.errors.size and b.errors.size:
        pair.budget = n = int(min(a.errors.size, b.errors.size))
        pair.best_tanh, pair.best_relu = float(expected_best(a.errors, n)), float(expected_best(b.errors, n))
        pair.curves = {"tanh": best_of_n(a.errors), "relu": best_of_n(b.errors)}
        if min(a.errors.size, b.errors.size) >= 3:
            pair.best_ci = _bootstrap(a.errors, b.errors, lambda x, y, axis=-1: expected_best(x, n, axis) -
                                      expected_best(y, n, axis), n_resamples, seed)
    pair.verdict = pair.on_all.verdict
    return pair


def _bootstrap(x: np.ndarray, y: np.ndarray, statistic, n_resamples: int, seed: int) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap((x, y), statistic, vectorized=True, paired=False, n_resamples=n_resamples,
                                 method="percentile", rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # every resample alike (e.g. no divergence on either side)
        value = float(statistic(x[None, :], y[None, :])[0])
        return value, value
    return low, high


def across_rules(pairs: Sequence[PairComparison]) -> str:
    """Does the paper's choice of tanh hold for each rule? One line over every pair."""
    if not pairs:
        return ""
    by = {v: [f"{p.label} ({p.dataset}/{p.arch})" for p in pairs if p.verdict == v]
          for v in (TANH_BETTER, NO_CLEAR_DIFFERENCE, RELU_BETTER, NOT_ENOUGH)}
    holds = len(by[TANH_BETTER]) + len(by[NO_CLEAR_DIFFERENCE])
    judged = len(pairs) - len(by[NOT_ENOUGH])
    text = (f"The paper's choice of tanh holds (tanh better or no clear difference, over every finished configuration) "
            f"for {holds} of {judged} rules compared")
    details = [f"{v}: {', '.join(names)}" for v, names in by.items() if names]
    return text + (" — " + "; ".join(details) if details else "") + "."
