"""The strongest pairwise interaction of a study, on its surrogate (its 2-D partial dependence, which analyses/surrogate.py draws).

For every pair of parameters the 2-D partial dependence PD(a, b) is the predicted error averaged
over SAMPLE configurations drawn uniformly on the search scale, with the pair set to (a, b) on a
GRID × GRID grid (every choice for a categorical one). Its interaction part
PD(a, b) − PD(a) − PD(b) + PD₀ (the one-parameter dependences taken as the grid's row and column
means) is what the pair does together beyond each alone; its variance as a share of the total
variance of the predicted error over the sample is the pair's interaction share (fANOVA's
pairwise term, on the same measure). It is computed per tree: mean ± sd over trees.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from optuna.trial import FrozenTrial

from bioscale import contract

from .surrogate import OnSurrogate, Surrogate, SurrogateFit, fmt_value

GRID = 8
SAMPLE = 128
# A strongest pair below this share of the variance is reported as no interaction (the effects add up).
NEGLIGIBLE = 0.01


@dataclass
class PairInteraction:
    """One pair's interaction share of the total variance, mean ± sd over trees."""

    first: str
    second: str
    share: float
    spread: float


@dataclass
class Interactions(OnSurrogate):
    """Every pair's interaction share, and the 2-D partial dependence of the strongest pair."""

    pairs: list[PairInteraction] = field(default_factory=list)  # strongest first
    grid_first: np.ndarray | None = None  # search-scale values of the strongest pair's grid
    grid_second: np.ndarray | None = None
    dependence: np.ndarray | None = None  # PD (len(grid_first), len(grid_second)), mean over trees
    labels_first: list[str] = field(default_factory=list)
    labels_second: list[str] = field(default_factory=list)
    best: dict[str, object] = field(default_factory=dict)
    log_params: list[str] = field(default_factory=list)
    observed: np.ndarray | None = None  # the trials' search-scale values of the strongest pair, (n, 2)
    categorical: tuple[bool, bool] = (False, False)  # whether each of the strongest pair is categorical (grid = choice indices)

    @property
    def computed(self) -> bool:
        """True when pairs were computed."""
        return super().computed and bool(self.pairs)

    @property
    def strongest(self) -> PairInteraction | None:
        """The pair with the largest interaction share."""
        return self.pairs[0] if self.pairs else None

    def line(self) -> str:
        """One line for the report: the strongest pair, and the next one for scale."""
        if not self.computed:
            return self.status
        prefix, top = self.prefix, self.pairs[0]
        text = f"{prefix}{top.first} × {top.second} {100 * top.share:.1f} ± {100 * top.spread:.1f}% of the variance"
        if top.share < NEGLIGIBLE:
            text = (f"{prefix}no pair interacts (the parameters' effects add up): the strongest, {top.first} × "
                    f"{top.second}, explains {100 * top.share:.1f} ± {100 * top.spread:.1f}% of the variance")
        if len(self.pairs) > 1:
            nxt = self.pairs[1]
            text += f" (next: {nxt.first} × {nxt.second} {100 * nxt.share:.1f}%)"
        return text


def _pair_shares(surrogate: Surrogate, sample: np.ndarray, i: int, j: int, gi: np.ndarray, gj: np.ndarray,
                 totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-tree interaction shares, mean PD over trees) of parameters i and j."""
    rows = np.repeat(sample[None, None, :, :], len(gi), axis=0).repeat(len(gj), axis=1)  # (gi, gj, sample, params)
    rows[..., i] = gi[:, None, None]
    rows[..., j] = gj[None, :, None]
    trees = surrogate.per_tree(rows.reshape(-1, sample.shape[1])).reshape(-1, len(gi), len(gj), len(sample))
    pd2 = trees.mean(axis=3)  # (trees, gi, gj)
    residual = pd2 - pd2.mean(axis=2, keepdims=True) - pd2.mean(axis=1, keepdims=True) + pd2.mean(axis=(1, 2), keepdims=True)
    var = residual.reshape(len(trees), -1).var(axis=1)
    shares = np.divide(var, totals, out=np.zeros_like(var), where=totals > 0)
    return shares, pd2.mean(axis=0)


def interactions(surrogate: Surrogate, best: Mapping[str, object] | None = None, *, grid: int = GRID,
                 sample: int = SAMPLE, seed: int = 0) -> Interactions:
    """Every pair's interaction share on `surrogate`; the strongest pair's 2-D partial dependence."""
    result = Interactions(n_trials=surrogate.n_trials, best=dict(best or {}), log_params=list(surrogate.log_params))
    if len(surrogate.params) < 2:
        result.status = "interactions not computed: fewer than two searched parameters"
        return result
    points = surrogate.uniform_sample(sample, seed)
    totals = surrogate.per_tree(points).var(axis=1)
    grids = {p: surrogate.grid(p, grid) for p in surrogate.params}
    found = []
    for i, j in itertools.combinations(range(len(surrogate.params)), 2):
        a, b = surrogate.params[i], surrogate.params[j]
        shares, pd2 = _pair_shares(surrogate, points, i, j, grids[a], grids[b], totals)
        found.append((float(shares.mean()), float(shares.std()), a, b, pd2, i, j))
    found.sort(key=lambda f: -f[0])
    result.pairs = [PairInteraction(a, b, m, s) for m, s, a, b, _, _, _ in found]
    _, _, a, b, pd2, i, j = found[0]
    result.grid_first, result.grid_second, result.dependence = grids[a], grids[b], pd2
    result.labels_first = [fmt_value(surrogate.decode_value(a, x)) for x in grids[a]]
    result.labels_second = [fmt_value(surrogate.decode_value(b, x)) for x in grids[b]]
    result.observed = surrogate.X[:, [i, j]]
    result.categorical = (surrogate.is_categorical(a), surrogate.is_categorical(b))
    result.judge(surrogate, "interactions")
    return result


def compute(trials: Sequence[FrozenTrial], fit: SurrogateFit) -> Interactions:
    """The study's pairwise interactions on its surrogate."""
    if not fit.ok:
        return Interactions(n_trials=fit.n_trials, status=f"interactions {fit.status}")
    best = contract.best_trial(trials)
    return interactions(fit.surrogate, best.params if best is not None else None)
