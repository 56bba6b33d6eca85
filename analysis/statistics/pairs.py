"""tanh vs ReLU as an experiment: two studies of one rule that differ only in the activation they fix, compared.

`--activations tanh,relu` gives every rule one study per activation (names ending ":tanh" and
":relu"), same stage, dataset, architecture, label, budget and sampler, each tuned on its own.
A pair is compared on every finished configuration (diverged ones at the chance-level error),
on the complete ones, on divergence rates, on the expected best of n random configurations at
the studies' budget, and on the evaluated best over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

from .activation import (NOT_ENOUGH, RELU_BETTER, TANH_BETTER, TIE, ActivationEffect, activation_effect, best_of_n,
                         bootstrap_ci, expected_best, test_verdict, verdict_from_ci)
from .design import draw_clusters, first_rung_errors
from .evaluation import Evaluated, evaluated
from .outcomes import COMPLETE, DIVERGED, STALLED, chance_error, outcome
from ..storage import StudyRecord

ACTIVATIONS = ("tanh", "relu")
PAIRED, UNPAIRED = "paired", "unpaired"
MIN_PAIRED = 2  # fewer matched configurations give no interval at all (evidence.py says when it is firm)


def config_key(params: dict) -> tuple:
    """A configuration without its activation, floats rounded, as a hashable key for matching across studies."""
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items() if k != "activation"))


@dataclass
class Matched:
    """The configurations both studies of a pair ran: (tanh, ReLU) errors per run and the tanh trial each row came from."""

    values: np.ndarray  # (n, 2)
    trials: list[int]  # tanh trial numbers, one per row


def matched_errors(tanh: StudyRecord, relu: StudyRecord) -> Matched:
    """(tanh, ReLU) errors at the first rung (diverged at chance), one row per configuration both studies ran."""
    def errors(record: StudyRecord) -> dict[tuple, list[tuple[float, int]]]:
        found: dict[tuple, list[tuple[float, int]]] = {}
        for trial, value in zip(*first_rung_errors(record, chance_error(record.dataset))):
            if math.isfinite(value):
                found.setdefault(config_key(trial.params), []).append((value, trial.number))
        return found

    a, b = errors(tanh), errors(relu)
    rows = [(x, y, number) for key in sorted(a, key=str) if key in b for (x, number), (y, _) in zip(a[key], b[key])]
    return Matched(values=np.asarray([r[:2] for r in rows], dtype=float).reshape(-1, 2), trials=[r[2] for r in rows])


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of p-values (family-wise error); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.full(p.shape, np.nan)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((order.size - np.arange(order.size)) * p[order]))
    return adjusted


@dataclass
class PairedEffect:
    """tanh − ReLU error on the same configurations (a configuration's seeds averaged): the sign test decides."""

    diffs: np.ndarray
    n_configs: int  # configurations in the larger study, to tell how many matched
    clusters: list = field(default_factory=list)  # the draw of each difference (`design.draw_clusters`)
    mean: float = math.nan
    median: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)  # of the median, from the sign test's order statistics
    tanh_wins: int = 0
    relu_wins: int = 0
    ties: int = 0
    sign_p: float = math.nan
    p_adjusted: float = math.nan  # the sign test's p after the multiplicity correction over every pair
    n_tests: int = 1  # per-pair verdicts in the family the correction ran over
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

    def adjust(self, p_adjusted: float, n_tests: int) -> None:
        """Decide the verdict on the sign test's p corrected over `n_tests` verdicts."""
        self.p_adjusted, self.n_tests = p_adjusted, n_tests
        if self.n >= MIN_PAIRED:
            self.verdict = test_verdict(p_adjusted, self.tanh_wins > self.relu_wins)

    def line(self) -> str:
        """One line: the verdict, the sign test that decided it (raw and adjusted p), the median with its CI."""
        if self.n < MIN_PAIRED:
            return f"{NOT_ENOUGH} ({self.n} matched configurations)"
        tie = f" — {TIE}" if self.ties == self.n else ""
        return (f"{self.verdict}{tie}: tanh better in {self.tanh_wins} of {self.n} configurations, ReLU in "
                f"{self.relu_wins}, tied {self.ties}; sign test p = {self.sign_p:.3g}, "
                f"{_corrected(self.p_adjusted, self.n_tests)}; "
                f"median tanh − ReLU {100 * self.median:+.2f} pp (95% CI {100 * self.ci[0]:+.2f} to "
                f"{100 * self.ci[1]:+.2f}), mean {100 * self.mean:+.2f} pp")


def _corrected(p_adjusted: float, n_tests: int) -> str:
    if n_tests <= 1:
        return "one comparison, no correction"
    return f"Holm-adjusted over {n_tests} pairs p = {p_adjusted:.3g}"


def wins(diffs: np.ndarray, tol: float = 1e-12) -> tuple[int, int, int]:
    """(tanh lower, ReLU lower, tied) among tanh − ReLU differences."""
    tanh, relu = int((diffs < -tol).sum()), int((diffs > tol).sum())
    return tanh, relu, int(diffs.size - tanh - relu)


def sign_interval(diffs: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free CI of the median difference: the order statistics the sign test does not reject."""
    values = np.sort(np.asarray(diffs, dtype=float))
    n = values.size
    k = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))  # the largest k with P(Bin ≤ k - 1) < α/2 (1-based)
    if k < 1:  # too few differences for any interval at this confidence: the whole range
        return float(values[0]), float(values[-1])
    return float(values[k - 1]), float(values[n - k])


def paired_effect(diffs: np.ndarray, n_configs: int = 0, clusters: Sequence | None = None) -> PairedEffect:
    """Sign test of tanh − ReLU differences (one per configuration); the verdict from its p (one comparison)."""
    diffs = np.asarray(diffs, dtype=float)
    effect = PairedEffect(diffs=diffs, n_configs=max(n_configs, diffs.size),
                          clusters=list(clusters) if clusters is not None else [])
    if diffs.size < MIN_PAIRED:
        return effect
    effect.tanh_wins, effect.relu_wins, effect.ties = wins(diffs)
    effect.mean, effect.median = float(diffs.mean()), float(np.median(diffs))
    effect.ci = sign_interval(diffs)
    decided_n = effect.tanh_wins + effect.relu_wins
    effect.sign_p = float(stats.binomtest(effect.tanh_wins, decided_n).pvalue) if decided_n else 1.0
    effect.adjust(effect.sign_p, 1)
    return effect


def cluster_bootstrap(values: np.ndarray, clusters: Sequence, *, confidence: float = 0.95, n_resamples: int = 4000,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean of `values` resampling whole clusters (values sharing a draw) with replacement.

    The mean is a ratio (resampled sums over resampled counts), so clusters of unequal size weigh
    by their size as in the point estimate. Several seeds of one configuration sit inside its
    cluster and move with it: resampling the top stage of a nested design carries the lower
    stage's variation (Davison and Hinkley 1997, section 3.8).
    """
    labels = {label: i for i, label in enumerate(dict.fromkeys(clusters))}
    index = np.array([labels[c] for c in clusters])
    sums = np.bincount(index, weights=values, minlength=len(labels))
    counts = np.bincount(index, minlength=len(labels)).astype(float)
    weights = np.random.default_rng(seed).multinomial(len(labels), np.full(len(labels), 1 / len(labels)), n_resamples)
    means = (weights @ sums) / (weights @ counts)
    return tuple(float(np.quantile(means, q)) for q in ((1 - confidence) / 2, (1 + confidence) / 2))


@dataclass
class Pooled:
    """The tanh − ReLU difference pooled over every matched configuration of every paired rule × architecture."""

    n_pairs: int
    n_rules: int  # distinct rules among the pairs
    n_configs: int
    n_draws: int  # distinct draws the bootstrap resamples (fewer than n_configs when rules shared draws)
    mean: float
    ci: tuple[float, float]
    tanh_wins: int
    relu_wins: int
    ties: int
    rules_tanh: int  # pairs whose own verdict is tanh better
    rules_relu: int
    verdict: str

    def line(self) -> str:
        """One line: pooled mean with its CI, how it resampled, configuration wins and pair verdicts."""
        tie = f" — {TIE}" if self.ties == self.n_configs else ""
        return (f"{self.verdict}{tie}: pooled over {self.n_pairs} rule × architecture pairs ({self.n_rules} rules) and "
                f"{self.n_configs} matched configurations, mean tanh − ReLU {100 * self.mean:+.2f} pp (95% CI "
                f"{100 * self.ci[0]:+.2f} to {100 * self.ci[1]:+.2f}, cluster bootstrap over {self.n_draws} draws: "
                f"configurations that share a draw are resampled together); tanh better in {self.tanh_wins} of "
                f"{self.n_configs} configurations, ReLU in {self.relu_wins}, tied {self.ties}; pairs: {self.rules_tanh} "
                f"tanh better, {self.rules_relu} ReLU better, {self.n_pairs - self.rules_tanh - self.rules_relu} no "
                "clear difference (sign test, Holm-adjusted)")


def pooled(effects: Sequence[PairedEffect], labels: Sequence[str] | None = None, *, n_resamples: int = 4000,
           seed: int = 0) -> Pooled | None:
    """Pool paired differences across pairs: the mean over every configuration, CI from a bootstrap over draws."""
    keep = [i for i, e in enumerate(effects) if e.usable]
    if not keep:
        return None
    chosen = [effects[i] for i in keep]
    everything = np.concatenate([e.diffs for e in chosen])
    clusters = [c for i, e in zip(keep, chosen) for c in (e.clusters if e.clusters else [(i, j) for j in range(e.n)])]
    low, high = cluster_bootstrap(everything, clusters, n_resamples=n_resamples, seed=seed)
    tanh_wins, relu_wins, ties = wins(everything)
    return Pooled(n_pairs=len(chosen), n_rules=len({labels[i] for i in keep}) if labels else len(chosen),
                  n_configs=int(everything.size), n_draws=len(set(clusters)), mean=float(everything.mean()), ci=(low, high),
                  tanh_wins=tanh_wins, relu_wins=relu_wins, ties=ties,
                  rules_tanh=sum(e.verdict == TANH_BETTER for e in chosen),
                  rules_relu=sum(e.verdict == RELU_BETTER for e in chosen),
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
    """The errors at the first rung (every configuration reached it) and divergence indicators of one study's search."""
    chance = chance_error(record.dataset)
    finished, values = first_rung_errors(record, chance)
    errors = np.array(values, dtype=float)
    kinds = [outcome(t) for t in finished]
    return Arm(study=record.name, errors=errors[np.isfinite(errors)],
               complete=np.array([e for e, k in zip(errors, kinds) if k == COMPLETE and math.isfinite(e)], dtype=float),
               diverged=np.array([k in (DIVERGED, STALLED) for k in kinds], dtype=float),
               evaluated=evaluated(record.evaluation, chance, record.dataset))


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
    divergence_ci: tuple[float, float] = (math.nan, math.nan)  # of the ReLU − tanh share that diverged
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
    def test(self) -> str:
        """The one test that decides the verdict: the sign test when paired, Mann-Whitney otherwise."""
        return "sign test" if self.design == PAIRED else "Mann-Whitney"

    @property
    def deciding(self) -> "PairedEffect | ActivationEffect":
        """The effect whose test decides the verdict: the paired one when the studies shared draws."""
        return self.paired if self.design == PAIRED else self.on_all

    @property
    def p_value(self) -> float:
        """The deciding test's p-value before the multiplicity correction."""
        return self.paired.sign_p if self.design == PAIRED else self.on_all.p_value

    @property
    def p_adjusted(self) -> float:
        """The deciding test's p-value after Holm's correction over every pair."""
        return self.deciding.p_adjusted

    def adjust(self, p_adjusted: float, n_tests: int) -> None:
        """Decide the verdict on the deciding test's p corrected over `n_tests` pairs."""
        self.deciding.adjust(p_adjusted, n_tests)
        self.verdict = self.deciding.verdict

    @property
    def best_diff(self) -> float:
        """tanh − ReLU expected best validation error after `budget` random configurations."""
        return self.best_tanh - self.best_relu

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
                    f"studies ran: {self.paired.line().split(': ', 1)[1]}); for comparison, unpaired over "
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
            f"Mann-Whitney p = {effect.p_value:.3g}, {_corrected(effect.p_adjusted, effect.n_tests)}, n = {effect.n_tanh} "
            f"tanh, {effect.n_relu} ReLU")


def _divergence_clause(pair: PairComparison) -> str:
    rates = (f"tanh {100 * pair.tanh.divergence_rate:.0f}% of {pair.tanh.diverged.size}, ReLU "
             f"{100 * pair.relu.divergence_rate:.0f}% of {pair.relu.diverged.size} configurations diverged or stalled")
    low, high = pair.divergence_ci
    if math.isfinite(low) and low > 0:
        return f"ReLU diverged more often ({rates}; Fisher p = {pair.divergence_p:.3g})"
    if math.isfinite(high) and high < 0:
        return f"tanh diverged more often ({rates}; Fisher p = {pair.divergence_p:.3g})"
    return f"divergence rates alike ({rates})"


def compare_pair(tanh: StudyRecord, relu: StudyRecord, *, draws: Mapping[tuple[str, int], Hashable] | None = None,
                 n_resamples: int = 2000, seed: int = 0) -> PairComparison:
    """Compare a pair's studies on every finished configuration, complete ones, divergence, best of n and the evaluated best.

    `draws` labels each trial's draw across studies (`design.draw_clusters`; by default over this pair alone).
    """
    a, b = arm(tanh), arm(relu)
    pair = PairComparison(dataset=tanh.dataset, arch=tanh.arch, label=tanh.label, tanh=a, relu=b,
                          on_all=activation_effect(a.errors, b.errors, n_resamples=n_resamples, seed=seed),
                          on_complete=activation_effect(a.complete, b.complete, n_resamples=n_resamples, seed=seed))
    if a.diverged.size and b.diverged.size:
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
    draws = draws if draws is not None else draw_clusters([tanh, relu])
    rows: dict = {}  # one difference per draw: a configuration's seeds averaged
    for (x, y), number in zip(matched.values, matched.trials):
        rows.setdefault(draws[(tanh.name, number)], []).append(x - y)
    pair.paired = paired_effect(np.array([np.mean(v) for v in rows.values()]), max(a.errors.size, b.errors.size),
                                clusters=list(rows))
    pair.paired.values = matched.values
    pair.verdict = pair.deciding.verdict
    return pair


def compare_pairs(pairs: Sequence[tuple[StudyRecord, StudyRecord]]) -> list[PairComparison]:
    """Every pair compared, its verdict decided by its one test after Holm's correction over all the pairs' tests.

    The pairs' draws are labelled across studies (`design.draw_clusters`), so that a pooled
    interval resamples configurations that several rules shared together.
    """
    draws = draw_clusters([record for pair in pairs for record in pair])
    compared = [compare_pair(tanh, relu, draws=draws) for tanh, relu in pairs]
    adjusted = holm([p.p_value for p in compared])
    n_tests = int(np.isfinite(adjusted).sum())
    for comparison, p in zip(compared, adjusted):
        comparison.adjust(float(p), n_tests)
    return compared


def _bootstrap(x: np.ndarray, y: np.ndarray, statistic, n_resamples: int, seed: int) -> tuple[float, float]:
    low, high = bootstrap_ci(x, y, statistic, n_resamples, seed)
    if not (math.isfinite(low) and math.isfinite(high)):  # every resample alike (e.g. no divergence on either side)
        value = float(statistic(x[None, :], y[None, :])[0])
        return value, value
    return low, high
