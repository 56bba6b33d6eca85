"""Local parameter importance (Biedenkapp et al. 2018) around the best configuration, on the study's surrogate.

Each parameter is varied alone over its range (every choice, or GRID points evenly spaced on the
search scale) with the others held at the best trial's values. A parameter's importance is the
variance of the predicted error along its line, as a share of the sum over parameters; it is
computed per tree, and reported as the mean and standard deviation over trees. A large share
means: around the best, this is the setting that must be got exactly right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from optuna.trial import FrozenTrial

from bioscale import contract

from .surrogate import OnSurrogate, Surrogate, SurrogateFit

GRID = 25


@dataclass
class LocalCurve:
    """The predicted error along one parameter's line through the best configuration."""

    values: list[object]  # raw values
    x: np.ndarray  # search-scale values
    mean: np.ndarray
    spread: np.ndarray
    categorical: bool = False


@dataclass
class LocalImportance(OnSurrogate):
    """Variance shares of the predicted error around the best configuration, mean ± sd over trees."""

    best: dict[str, object] = field(default_factory=dict)
    share: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)
    curves: dict[str, LocalCurve] = field(default_factory=dict)
    log_params: list[str] = field(default_factory=list)

    def ranked(self) -> list[tuple[str, float, float]]:
        """(param, share, sd over trees), largest share first."""
        return sorted(((p, self.share[p], self.spread[p]) for p in self.share), key=lambda r: -r[1])

    def line(self, k: int = 4) -> str:
        """One line for the report."""
        if not self.computed:
            return self.status
        return self.prefix + ", ".join(f"{p} {100 * m:.1f} ± {100 * s:.1f}%" for p, m, s in self.ranked()[:k])


def local_importance(surrogate: Surrogate, best: Mapping[str, object], grid: int = GRID) -> LocalImportance:
    """LPI around `best`: each parameter's share of the local variance of the predicted error, per tree."""
    result = LocalImportance(n_trials=surrogate.n_trials, best=dict(best), log_params=list(surrogate.log_params))
    center = surrogate.encode(best)
    variances = []
    for i, name in enumerate(surrogate.params):
        xs = surrogate.grid(name, grid)
        rows = np.repeat(center[None, :], len(xs), axis=0)
        rows[:, i] = xs
        trees = surrogate.per_tree(rows)  # (trees, points)
        variances.append(trees.var(axis=1))
        result.curves[name] = LocalCurve(values=[surrogate.decode_value(name, x) for x in xs], x=xs,
                                         mean=trees.mean(axis=0), spread=trees.std(axis=0),
                                         categorical=surrogate.is_categorical(name))
    V = np.array(variances).T  # (trees, params)
    totals = V.sum(axis=1, keepdims=True)
    shares = np.divide(V, totals, out=np.zeros_like(V), where=totals > 0)
    for i, name in enumerate(surrogate.params):
        result.share[name] = float(shares[:, i].mean())
        result.spread[name] = float(shares[:, i].std())
    result.judge(surrogate, "local_importance")
    return result


def compute(trials: Sequence[FrozenTrial], fit: SurrogateFit) -> LocalImportance:
    """The study's local parameter importance around its best search trial."""
    if not fit.ok:
        return LocalImportance(n_trials=fit.n_trials, status=f"local importance {fit.status}")
    best = contract.best_trial(trials, search_only=True)
    if best is None:
        return LocalImportance(n_trials=fit.n_trials, status="local importance not computed: no complete search trial")
    return local_importance(fit.surrogate, best.params)
