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

from .activation import (NO_CLEAR_DIFFERENCE, NOT_ENOUGH, RELU_BETTER, TANH_BETTER, TIE, ActivationEffect,
                         activation_effect, best_of_n, verdict_from_ci)
from .evaluation import Evaluated, evaluated
from .outcomes import COMPLETE, DIVERGED, STALLED, chance_error, counted_error, outcome, search_finished
from .storage import StudyRecord

ACTIVATIONS = ("tanh", "relu")
PAIRED, UNPAIRED = "paired", "unpaired"
MIN_PAIRED = 2  # fewer matched configurations give no interval at all (evidence.py says when it is firm)


def config_key(params: dict) -> tuple:
    """A configuration without its activation, floats rounded, as a hashable key for matching across studies."""
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items() if k != "activation"))


def matched_errors(tanh: StudyRecord, relu: StudyRecord) -> np.ndarray:
    """(tanh, ReLU) counted errors (diverged at chance), one row per configuration both studies ran, in a fixed order."""
    def errors(record: StudyRecord) -> dict[tuple, list[float]]:
        chance, found = chance_error(record.dataset), {}
        for trial in search_finished(record.trials):
            value = counted_error(trial, chance)
            if math.isfinite(value):
                found.setdefault(config_key(trial.params), []).append(value)
        return found

    a, b = errors(tanh), errors(relu)
    matched = [(x, y) for key in sorted(a, key=str) if key in b for x, y in zip(a[key], b[key])]
    return np.asarray(matched, dtype=float).reshape(-1, 2)


@dataclass
class PairedEffect:
    """tanh − ReLU error on the same configurations: paired t-interval of the mean difference and a sign test."""

    diffs: np.ndarray
    n_configs: int  # configurations in the larger study, to tell how many matched
    mean: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    tanh_wins: int = 0
    relu_wins: int = 0
    ties: int = 0
    sign_p: float = math.nan
    verdict: str = NOT_ENOUGH
    values: np.ndarray | None = None  # (tanh, ReLU) errors of each matched configuration, when known

    @property
    def n(self) -> int:
        """Matched configurations."""
        return int(self.diffs.size)

    @property
    def usable(self) -> bool:
        """True when at least half of the configurations matched (the studies sampled the same ones)."""
        return self.n >= MIN_PAIRED and self.n * 2 >= self.n_configs

    @property
    def half_width(self) -> float:
        """Half the width of the 95% CI: the smallest difference this pair could tell from zero."""
        return (self.ci[1] - self.ci[0]) / 2 if all(map(math.isfinite, self.ci)) else math.nan

    def line(self) -> str:
        """One line: mean difference, its CI and half-width, wins and the sign test."""
        if self.n < MIN_PAIRED:
            return f"{NOT_ENOUGH} ({self.n} matched configurations)"
        tie = f" — {TIE}" if self.ties == self.n else ""
        return (f"{self.verdict}{tie}: mean tanh − ReLU {100 * self.mean:+.2f} pp (95% paired t CI {100 * self.ci[0]:+.2f} to "
                f"{100 * self.ci[1]:+.2f}, ± {100 * self.half_width:.2f}), tanh better in {self.tanh_wins} of {self.n} "
                f"configurations, ReLU in {self.relu_wins}, tied {self.ties}; sign test p = {self.sign_p:.3g}")


def paired_effect(diffs: np.ndarray, n_configs: int = 0, confidence: float = 0.95) -> PairedEffect:
    """Paired t-interval and sign test of tanh − ReLU differences; the verdict from the interval."""
    diffs = np.asarray(diffs, dtype=float)
    effect = PairedEffect(diffs=diffs, n_configs=max(n_configs, diffs.size))
    if diffs.size < MIN_PAIRED:
        return effect
    tol = 1e-12
    effect.tanh_wins, effect.relu_wins = int((diffs < -tol).sum()), int((diffs > tol).sum())
    effect.ties = int(diffs.size - effect.tanh_wins - effect.relu_wins)
    effect.mean = float(diffs.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, diffs.size - 1) * diffs.std(ddof=1) / math.sqrt(diffs.size))
    effect.ci = (effect.mean - half, effect.mean + half)
    decided = effect.tanh_wins + effect.relu_wins
    effect.sign_p = float(stats.binomtest(effect.tanh_wins, decided).pvalue) if decided else 1.0
    effect.verdict = verdict_from_ci(effect.ci[0] if abs(effect.ci[0]) > tol else 0.0,
                                     effect.ci[1] if abs(effect.ci[1]) > tol else 0.0)
    return effect


@dataclass
class Pooled:
    """The tanh − ReLU difference pooled over every matched configuration of every paired rule."""

    n_pairs: int
    n_configs: int
    mean: float
    ci: tuple[float, float]
    tanh_wins: int
    relu_wins: int
    ties: int
    rules_tanh: int  # pairs whose own verdict is tanh better
    rules_relu: int
    verdict: str

    def line(self) -> str:
        """One line: pooled mean with its CI, configuration wins and rule verdicts."""
        tie = f" — {TIE}" if self.ties == self.n_configs else ""
        return (f"{self.verdict}{tie}: pooled over {self.n_pairs} rules and {self.n_configs} matched configurations, mean "
                f"tanh − ReLU {100 * self.mean:+.2f} pp (95% CI {100 * self.ci[0]:+.2f} to {100 * self.ci[1]:+.2f}, "
                f"bootstrap over configurations within rules); tanh better in {self.tanh_wins} of {self.n_configs} "
                f"configurations, ReLU in {self.relu_wins}, tied {self.ties}; rules: {self.rules_tanh} tanh better, "
                f"{self.rules_relu} ReLU better, {self.n_pairs - self.rules_tanh - self.rules_relu} no clear difference")


def pooled(effects: Sequence[PairedEffect], *, n_resamples: int = 4000, seed: int = 0) -> Pooled | None:
    """Pool paired differences across rules: the mean over every configuration, CI from a bootstrap stratified by rule."""
    effects = [e for e in effects if e.usable]
    if not effects:
        return None
    everything = np.concatenate([e.diffs for e in effects])
    rng = np.random.default_rng(seed)
    sums = np.zeros(n_resamples)
    for e in effects:
        sums += e.diffs[rng.integers(0, e.n, size=(n_resamples, e.n))].sum(axis=1)
    means = sums / everything.size
    low, high = (float(np.quantile(means, q)) for q in (0.025, 0.975))
    tol = 1e-12
    return Pooled(n_pairs=len(effects), n_configs=int(everything.size), mean=float(everything.mean()), ci=(low, high),
                  tanh_wins=int((everything < -tol).sum()), relu_wins=int((everything > tol).sum()),
                  ties=int((np.abs(everything) <= tol).sum()),
                  rules_tanh=sum(e.verdict == TANH_BETTER for e in effects),
                  rules_relu=sum(e.verdict == RELU_BETTER for e in effects),
                  verdict=verdict_from_ci(low, high))


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
    paired: "PairedEffect | None" = None  # configuration by configuration, where both studies sampled the same ones

    @property
    def design(self) -> str:
        """'paired' when most configurations of both studies match, else 'unpaired'."""
        return PAIRED if self.paired is not None and self.paired.usable else UNPAIRED

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
        if self.design == PAIRED:
            return (f"{self.verdict} configuration by configuration (paired over the {self.paired.n} configurations both "
                    f"studies ran: {self.paired.line().split(': ', 1)[1]}); unpaired, over "
                    f"every finished configuration: {_effect_clause(self.on_all)}; " + "; ".join(parts))
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
    matched = matched_errors(tanh, relu)
    pair.paired = paired_effect(matched[:, 0] - matched[:, 1], max(a.errors.size, b.errors.size))
    pair.paired.values = matched
    pair.verdict = pair.paired.verdict if pair.design == PAIRED else pair.on_all.verdict
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
