"""How fragile is a rule: the share of configurations near the best, the learning-rate band, and whether short runs rank right."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from optuna.trial import FrozenTrial
from scipy import stats

MARGIN = 0.10
MARGIN_FLOOR = 0.001  # 0.1 percentage point: keeps the margin meaningful when the best error is 0
TRUST_RHO = 0.8
MIN_CURVES = 5


@dataclass
class Robustness:
    """Share of finished configurations within `margin` (relative) of the best error, and learning-rate bands."""

    n_finished: int
    n_complete: int
    best_error: float
    margin: float
    n_within: int
    fraction_within: float
    lr_bands: dict[str, float] = field(default_factory=dict)
    margins: np.ndarray = field(default_factory=lambda: np.array([]))
    fractions: np.ndarray = field(default_factory=lambda: np.array([]))


def robustness(errors: Sequence[float], n_finished: int | None = None, lrs: Mapping[str, Sequence[float]] | None = None,
               margin: float = MARGIN, floor: float = MARGIN_FLOOR) -> Robustness:
    """Share of configurations with error ≤ best + max(best·margin, floor), and each learning rate's span (decades) among them.

    `errors` hold NaN for failed and pruned configurations, which count as outside the margin.
    """
    values = np.asarray(errors, dtype=float)
    finite = np.isfinite(values)
    n_finished = int(values.size if n_finished is None else n_finished)
    if not finite.any() or n_finished == 0:
        return Robustness(n_finished, 0, math.nan, margin, 0, math.nan)
    best = float(values[finite].min())
    within = finite & (values <= best + max(best * margin, floor) + 1e-12)
    margins = np.linspace(0.0, 1.0, 101)
    fractions = np.array([(values[finite] <= best + max(best * m, floor) + 1e-12).sum() / n_finished for m in margins])
    bands = {}
    for name, rates in (lrs or {}).items():
        rates = np.asarray(rates, dtype=float)
        chosen = rates[within & np.isfinite(rates) & (rates > 0)]
        if chosen.size:
            bands[name] = float(np.log10(chosen.max()) - np.log10(chosen.min()))
    return Robustness(n_finished=n_finished, n_complete=int(finite.sum()), best_error=best, margin=margin,
                      n_within=int(within.sum()), fraction_within=float(within.sum() / n_finished),
                      lr_bands=bands, margins=margins, fractions=fractions)


@dataclass
class BudgetTrust:
    """Spearman rank correlation between validation error at epoch e and at each configuration's last epoch."""

    epochs: np.ndarray
    rho: np.ndarray
    n_curves: np.ndarray
    last_epoch: int
    settle_epoch: int | None
    threshold: float = TRUST_RHO
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when enough curves were recorded to compute correlations."""
        return self.epochs.size > 0 and bool(np.isfinite(self.rho).any())

    def verdict(self) -> str:
        """One line on whether short runs and pruning can be trusted for this rule."""
        if not self.ok:
            return self.problem or (f"not enough learning curves (need {MIN_CURVES} complete trials with "
                                    "per-epoch validation errors)")
        if self.last_epoch <= 1:
            return "one epoch per run: nothing to compare"
        if self.settle_epoch is None or self.settle_epoch >= self.last_epoch:
            return (f"ranks never settle before the last epoch (Spearman ρ < {self.threshold:g} at epoch "
                    f"{self.last_epoch - 1} of {self.last_epoch}): do not trust short runs or pruning")
        share = self.settle_epoch / self.last_epoch
        where = f"ρ ≥ {self.threshold:g} from epoch {self.settle_epoch} of {self.last_epoch}"
        if share <= 0.25:
            return f"ranks settle early ({where}): short runs and pruning look safe"
        if share <= 0.5:
            return f"ranks settle by mid-run ({where}): prune only after about half the budget"
        return f"ranks keep changing late ({where}): short runs and pruning are risky"


def learning_curves(trials: Sequence[FrozenTrial]) -> list[list[float]]:
    """Per-epoch validation errors of each trial, from intermediate values or the `curve` user attribute."""
    curves = []
    for trial in trials:
        if trial.intermediate_values:
            curve = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
        else:
            recorded = trial.user_attrs.get("curve")
            curve = list(recorded.get("val") or []) if isinstance(recorded, dict) else []
        curve = [float(v) if v is not None else math.nan for v in curve]
        if curve:
            curves.append(curve)
    return curves


def budget_trust(curves: Sequence[Sequence[float]], threshold: float = TRUST_RHO) -> BudgetTrust:
    """Spearman ρ across configurations between the error at epoch e and at their last epoch, for e = 1..last."""
    curves = [list(c) for c in curves if len(c) > 0]
    if len(curves) < MIN_CURVES:
        return BudgetTrust(np.array([]), np.array([]), np.array([]), 0, None, threshold)
    last_epoch = max(len(c) for c in curves)
    final = np.array([c[-1] for c in curves], dtype=float)
    epochs = np.arange(1, last_epoch + 1)
    rho = np.full(epochs.size, np.nan)
    counts = np.zeros(epochs.size, dtype=int)
    for index, epoch in enumerate(epochs):
        at = np.array([c[epoch - 1] if len(c) >= epoch else np.nan for c in curves], dtype=float)
        keep = np.isfinite(at) & np.isfinite(final)
        counts[index] = int(keep.sum())
        if counts[index] >= MIN_CURVES and np.ptp(at[keep]) > 0 and np.ptp(final[keep]) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho[index] = stats.spearmanr(at[keep], final[keep]).statistic
    finite_final = final[np.isfinite(final)]
    problem = "" if finite_final.size and np.ptp(finite_final) > 0 else \
        "every configuration ends with the same error: nothing to rank"
    settle = None
    for index in range(epochs.size - 1, -1, -1):
        if np.isfinite(rho[index]) and rho[index] >= threshold:
            settle = int(epochs[index])
        else:
            break
    return BudgetTrust(epochs=epochs, rho=rho, n_curves=counts, last_epoch=last_epoch, settle_epoch=settle,
                       threshold=threshold, problem=problem)
