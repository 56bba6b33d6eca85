"""The re-evaluated best configuration of a study (`bioscale study evaluate`): which test error, and the seeds that diverged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from bioscale.contract import Evaluation

AT_BEST_VAL = "test error at the best-validation epoch"
AT_LAST = "test error at the last epoch (the evaluation recorded no best-validation epoch)"


@dataclass
class Evaluated:
    """Test errors of the best configuration re-trained over seeds; diverged seeds are named, not dropped silently."""

    seeds: list[Any]
    errors: list[float]
    basis: str
    diverged: list[dict[str, Any]] = field(default_factory=list)
    chance: float = math.nan
    recorded: tuple[float, float] | None = None  # (mean, std) as the evaluation wrote them, when it did

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
        values = self.errors + [self.chance] * len(self.diverged)
        return float(np.mean(values)) if values else math.nan

    def line(self) -> str:
        """One line: mean ± sd over the seeds, which test error, and the seeds that diverged."""
        text = (f"{100 * self.mean:.2f} ± {100 * self.std:.2f}% over {self.n} seeds ({self.basis})"
                if self.n else "no seed finished")
        if self.diverged:
            named = ", ".join(f"seed {d.get('seed')} ({d.get('reason', 'diverged')})" for d in self.diverged)
            text += (f"; {len(self.diverged)} of {self.n + len(self.diverged)} seeds diverged and are not in that mean: "
                     f"{named}; with them at chance level ({100 * self.chance:.0f}%) the mean is "
                     f"{100 * self.mean_with_diverged:.2f}%")
        return text


def evaluated(evaluation: Evaluation | Mapping[str, Any] | None, chance: float) -> Evaluated | None:
    """The evaluation record read: test errors at the best-validation epoch when recorded, else at the last epoch."""
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
    diverged = record.diverged
    seeds = list(record.seeds)
    if not values and not diverged:
        return None
    recorded = (float(mean), float(std) if isinstance(std, (int, float)) else math.nan) \
        if isinstance(mean, (int, float)) and math.isfinite(mean) else None
    return Evaluated(seeds=seeds, errors=values, basis=basis, diverged=[dict(d) for d in diverged], chance=chance,
                     recorded=recorded)
