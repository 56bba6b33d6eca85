"""The re-evaluated best configuration of a study (`bioscale study evaluate`): which test error, and the seeds that diverged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from bioscale import datasets
from bioscale.contract import Evaluation

AT_BEST_VAL = "test error at the best-validation epoch"
AT_LAST = "test error at the last epoch (the evaluation recorded no best-validation epoch)"
Z95 = 1.959964  # two-sided 95% normal quantile


def splits(dataset: str | None) -> tuple[int, int, int] | None:
    """(train, validation, test) examples of a dataset as bioscale splits it; None when unknown."""
    entry = datasets.REGISTRY.get(dataset or "")
    return entry.splits() if entry is not None else None


def standard_error(errors: Sequence[float], n_test: int | None) -> float:
    """Standard error of a mean test error over seeds: the seed spread (s²/k over k seeds) plus the binomial error of
    an error rate e measured on n test examples, e(1 − e)/n (the same examples for every seed, so it does not average
    out); NaN when the test set's size is unknown or there is no error."""
    if not errors or not n_test:
        return math.nan
    mean = float(np.mean(errors))
    spread = float(np.var(errors, ddof=1)) / len(errors) if len(errors) > 1 else 0.0
    return math.sqrt(spread + mean * (1 - mean) / n_test)


@dataclass
class Evaluated:
    """Test errors of the best configuration re-trained over seeds; diverged seeds are named, not dropped silently."""

    errors: list[float]
    basis: str
    diverged: list[dict[str, Any]] = field(default_factory=list)
    chance: float = math.nan
    recorded: tuple[float, float] | None = None  # (mean, std) as the evaluation wrote them, when it did
    n_test: int | None = None  # test examples each seed's error was measured on

    @property
    def with_diverged(self) -> list[float]:
        """Every seed's test error, each diverged seed at the chance-level error."""
        return self.errors + [self.chance] * len(self.diverged)

    @property
    def interval(self) -> tuple[float, float]:
        """95% normal interval of the mean test error (diverged seeds at chance), clipped to [0, 1] (`standard_error`)."""
        values = self.with_diverged
        se = standard_error(values, self.n_test)
        if not math.isfinite(se):
            return math.nan, math.nan
        mean = float(np.mean(values))
        return max(0.0, mean - Z95 * se), min(1.0, mean + Z95 * se)

    @property
    def n(self) -> int:
        """Seeds whose runs finished with a test error."""
        return len(self.errors)

    @property
    def mean(self) -> float:
        """Mean test error over the seeds that finished."""
        if self.recorded is not None:
            return self.recorded[0]
        return float(np.mean(self.errors)) if self.errors else math.nan

    @property
    def std(self) -> float:
        """Standard deviation of the test error over the seeds that finished."""
        if self.recorded is not None:
            return self.recorded[1]
        return float(np.std(self.errors)) if self.errors else math.nan

    @property
    def mean_with_diverged(self) -> float:
        """Mean test error with each diverged seed at the chance-level error."""
        return float(np.mean(self.with_diverged)) if self.with_diverged else math.nan

    def line(self) -> str:
        """One line: mean ± sd over the seeds, which test error, and the seeds that diverged."""
        low, high = self.interval
        spread = (f", 95% CI {100 * low:.2f}–{100 * high:.2f}% (seeds and {self.n_test or 'unknown'} test examples)"
                  if math.isfinite(low) else "")
        text = (f"{100 * self.mean:.2f} ± {100 * self.std:.2f}% over {self.n} seeds ({self.basis}){spread}"
                if self.n else "no seed finished")
        if self.diverged:
            named = ", ".join(f"seed {d.get('seed')} ({d.get('reason', 'diverged')})" for d in self.diverged)
            text += (f"; {len(self.diverged)} of {self.n + len(self.diverged)} seeds diverged and are not in that mean: "
                     f"{named}; with them at chance level ({100 * self.chance:.0f}%) the mean is "
                     f"{100 * self.mean_with_diverged:.2f}%")
        return text


def evaluated(evaluation: Evaluation | Mapping[str, Any] | None, chance: float, dataset: str | None = None) -> Evaluated | None:
    """The evaluation record read: test errors at the best-validation epoch when recorded, else at the last epoch.

    `dataset` gives the test set's size, for the interval (`Evaluated.interval`).
    """
    record = Evaluation.read(evaluation)
    if record is None:
        return None
    if record.test_errors_at_best_val:
        errors, basis = record.test_errors_at_best_val, AT_BEST_VAL
        mean, std = record.test_error_at_best_val_mean, record.test_error_at_best_val_std
    else:
        errors, basis = record.test_errors, AT_LAST
        mean, std = record.test_error_mean, record.test_error_std
        if not errors and mean is not None:
            errors = [mean]
    values = [float(e) for e in errors if isinstance(e, (int, float)) and math.isfinite(e)]
    if not values and not record.diverged:
        return None
    recorded = (float(mean), float(std) if isinstance(std, (int, float)) else math.nan) \
        if isinstance(mean, (int, float)) and math.isfinite(mean) else None
    sizes = splits(dataset)
    return Evaluated(errors=values, basis=basis, diverged=[dict(d) for d in record.diverged], chance=chance,
                     recorded=recorded, n_test=sizes[2] if sizes else None)
