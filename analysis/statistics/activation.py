"""Does tanh beat ReLU for a rule? Differences in medians and best quartiles, bootstrap CIs, a rank test, a verdict.

One test decides a verdict and is the one printed: here the Mann-Whitney test (two-sided, at
ALPHA after any multiplicity correction), its direction from the U statistic; the bootstrap CIs
describe the size of the difference.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

TANH_BETTER = "tanh better"
RELU_BETTER = "ReLU better"
NO_CLEAR_DIFFERENCE = "no clear difference"
NOT_ENOUGH = "not enough trials"
TIE = "tie (identical errors)"
MIN_PER_ACTIVATION = 3
ALPHA = 0.05  # every verdict's level, after the multiplicity correction where several are drawn


@dataclass
class ActivationEffect:
    """tanh minus ReLU validation error: positive differences mean ReLU reached lower errors."""

    n_tanh: int
    n_relu: int
    median_tanh: float = math.nan
    median_relu: float = math.nan
    median_diff: float = math.nan
    median_ci: tuple[float, float] = (math.nan, math.nan)
    best_quartile_tanh: float = math.nan
    best_quartile_relu: float = math.nan
    best_quartile_diff: float = math.nan
    best_quartile_ci: tuple[float, float] = (math.nan, math.nan)
    p_value: float = math.nan
    confidence: float = 0.95
    verdict: str = NOT_ENOUGH
    p_adjusted: float = math.nan  # the Mann-Whitney p after the multiplicity correction (the raw p for one comparison)
    n_tests: int = 1
    tanh_lower: bool = False  # the rank test's direction: tanh's errors tend to be lower

    def adjust(self, p_adjusted: float, n_tests: int) -> None:
        """Decide the verdict on the Mann-Whitney p corrected over `n_tests` verdicts."""
        self.p_adjusted, self.n_tests = p_adjusted, n_tests
        if self.n_tanh >= MIN_PER_ACTIVATION and self.n_relu >= MIN_PER_ACTIVATION:
            self.verdict = test_verdict(p_adjusted, self.tanh_lower)


def best_quartile_mean(errors: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the lowest quarter of the errors (at least one) along `axis`."""
    errors = np.asarray(errors, dtype=float)
    k = max(1, math.ceil(errors.shape[axis] / 4))
    return np.take(np.sort(errors, axis=axis), np.arange(k), axis=axis).mean(axis=axis)


def expected_best(errors: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """Expected lowest error of n draws with replacement from `errors` along `axis`."""
    values = np.sort(np.asarray(errors, dtype=float), axis=axis)
    m = values.shape[axis]
    i = np.arange(1, m + 1)
    weights = (1 - (i - 1) / m) ** n - (1 - i / m) ** n  # P(min of n draws is the i-th smallest)
    return np.moveaxis(values, axis, -1) @ weights


def best_of_n(errors: Sequence[float], n_max: int | None = None) -> np.ndarray:
    """Expected best (lowest) error after n random trials, n = 1..n_max, drawing from the observed errors with replacement."""
    values = np.asarray(errors, dtype=float)
    return np.array([expected_best(values, n) for n in range(1, (n_max or values.size) + 1)] if values.size else [])


def test_verdict(p: float, tanh_lower: bool) -> str:
    """A test's verdict: a direction when p (adjusted where several verdicts are drawn) is below ALPHA."""
    if not math.isfinite(p):
        return NOT_ENOUGH
    if p >= ALPHA:
        return NO_CLEAR_DIFFERENCE
    return TANH_BETTER if tanh_lower else RELU_BETTER


def verdict_from_ci(low: float, high: float) -> str:
    """The verdict for a CI on tanh − ReLU error: ReLU better if it lies above zero, tanh better if below."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return NOT_ENOUGH
    if low > 0:
        return RELU_BETTER
    if high < 0:
        return TANH_BETTER
    return NO_CLEAR_DIFFERENCE


def activation_effect(tanh_errors: Sequence[float], relu_errors: Sequence[float], *, confidence: float = 0.95,
                      n_resamples: int = 4000, seed: int = 0) -> ActivationEffect:
    """Compare the error distributions under tanh and ReLU: bootstrap CIs of the differences, Mann-Whitney p, verdict."""
    tanh = np.asarray([e for e in tanh_errors if math.isfinite(e)], dtype=float)
    relu = np.asarray([e for e in relu_errors if math.isfinite(e)], dtype=float)
    effect = ActivationEffect(n_tanh=tanh.size, n_relu=relu.size, confidence=confidence)
    if tanh.size:
        effect.median_tanh, effect.best_quartile_tanh = float(np.median(tanh)), float(best_quartile_mean(tanh))
    if relu.size:
        effect.median_relu, effect.best_quartile_relu = float(np.median(relu)), float(best_quartile_mean(relu))
    if min(tanh.size, relu.size) < MIN_PER_ACTIVATION:
        return effect
    effect.median_diff = effect.median_tanh - effect.median_relu
    effect.best_quartile_diff = effect.best_quartile_tanh - effect.best_quartile_relu

    def median_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(x, axis=axis) - np.median(y, axis=axis)

    def quartile_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return best_quartile_mean(x, axis=axis) - best_quartile_mean(y, axis=axis)

    effect.median_ci = bootstrap_ci(tanh, relu, median_diff, n_resamples, seed, confidence)
    effect.best_quartile_ci = bootstrap_ci(tanh, relu, quartile_diff, n_resamples, seed, confidence)
    if np.ptp(np.concatenate([tanh, relu])) > 0:
        test = stats.mannwhitneyu(tanh, relu, alternative="two-sided")
        effect.p_value, effect.tanh_lower = float(test.pvalue), bool(test.statistic < tanh.size * relu.size / 2)
    else:
        effect.p_value = 1.0
    effect.adjust(effect.p_value, 1)
    return effect


def bootstrap_ci(x: np.ndarray, y: np.ndarray, statistic, n_resamples: int, seed: int,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of statistic(x, y), each sample resampled on its own (vectorised `statistic`).

    Percentile intervals: BCa needs jackknife estimates that medians of tied errors often make degenerate.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap((x, y), statistic, vectorized=True, paired=False, confidence_level=confidence,
                                 n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def format_effect(effect: ActivationEffect) -> str:
    """One line: verdict, median difference with CI in percentage points, p-value."""
    if effect.verdict == NOT_ENOUGH:
        return f"{NOT_ENOUGH} to compare activations ({effect.n_tanh} tanh, {effect.n_relu} ReLU; need {MIN_PER_ACTIVATION} each)"
    pct = int(round(effect.confidence * 100))
    return (f"{effect.verdict}: median error tanh − ReLU {100 * effect.median_diff:+.2f} pp "
            f"({pct}% CI {100 * effect.median_ci[0]:+.2f} to {100 * effect.median_ci[1]:+.2f}), "
            f"best-quartile mean {100 * effect.best_quartile_diff:+.2f} pp "
            f"({100 * effect.best_quartile_ci[0]:+.2f} to {100 * effect.best_quartile_ci[1]:+.2f}), "
            f"Mann-Whitney p = {effect.p_value:.3g} (n = {effect.n_tanh} tanh, {effect.n_relu} ReLU)")
