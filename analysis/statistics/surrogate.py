"""One surrogate per study: a random forest on the search scale, for ablation paths, local importance and interactions.

Every finished search trial is a training point, with the error it counts with elsewhere
(`outcomes.counted_error`: diverged and stalled runs at chance level, pruned ones at the lowest
error they reached). Parameters are encoded as importance.py encodes them for fANOVA
(`importance.to_search_scale`): log-scaled ones as log10 values, categorical ones as the index of
their choice. Only parameters present in every trial are used (conditional ones are listed in
`dropped`). The spread of a prediction is the standard deviation over the forest's trees.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from bioscale import contract

from .evidence import MIN_OOB_R2, evidence, needed
from .importance import to_search_scale
from .outcomes import DIVERGED, STALLED, valued_trials

# Leaves of at least 3 trials as in SMAC's and DeepCAVE's forests (a lone diverged run does not own a region);
# every parameter tried at each split (with few parameters, SMAC's 5/6 leaves trees blind to the main one:
# on the planted test, LPI of x1 92 ± 22 % instead of 99.9 ± 0.1 %); bootstrap samples.
N_TREES = 64
MIN_SAMPLES_LEAF = 3
MAX_FEATURES = 1.0
SEED = 0
# Below this many finished search trials no surrogate is fitted; thresholds live in evidence.py with the others.
MIN_TRIALS_FIT = needed("surrogate")


@dataclass
class Surrogate:
    """A fitted forest and the encoding of its inputs: one column per parameter, on the search scale."""

    params: list[str]
    distributions: dict[str, BaseDistribution]  # on the search scale (log params as log10 floats)
    log_params: list[str]
    forest: object  # sklearn.ensemble.RandomForestRegressor
    X: np.ndarray
    y: np.ndarray
    n_diverged: int = 0  # training points that diverged or stalled (counted at chance level)
    oob_r2: float = math.nan  # out-of-bag R² of the forest: how much of the trials' variance it predicts for unseen ones

    @property
    def n_trials(self) -> int:
        """Trials the forest was fitted to."""
        return len(self.y)

    def is_categorical(self, name: str) -> bool:
        """True for a categorical parameter (encoded as the index of its choice)."""
        return isinstance(self.distributions[name], CategoricalDistribution)

    def encode_value(self, name: str, value: object) -> float:
        """One parameter's raw value on the search scale (NaN for a choice the space does not hold)."""
        dist = self.distributions[name]
        if isinstance(dist, CategoricalDistribution):
            return float(dist.choices.index(value)) if value in dist.choices else math.nan
        value = float(value)
        return math.log10(value) if name in self.log_params else value

    def decode_value(self, name: str, x: float) -> object:
        """The raw value of a search-scale coordinate (the inverse of `encode_value`)."""
        dist = self.distributions[name]
        if isinstance(dist, CategoricalDistribution):
            return dist.choices[int(round(x))]
        return 10 ** x if name in self.log_params else x

    def encode(self, config: Mapping[str, object]) -> np.ndarray:
        """A configuration (raw values) as one row of the forest's inputs."""
        return np.array([self.encode_value(p, config[p]) for p in self.params], dtype=float)

    def bounds(self, name: str) -> tuple[float, float]:
        """The parameter's range on the search scale (choice indices for a categorical one)."""
        dist = self.distributions[name]
        if isinstance(dist, CategoricalDistribution):
            return 0.0, float(len(dist.choices) - 1)
        return float(dist.low), float(dist.high)

    def grid(self, name: str, n: int) -> np.ndarray:
        """Points spanning the parameter's range: every choice, or `n` evenly spaced values on the search scale."""
        dist = self.distributions[name]
        if isinstance(dist, CategoricalDistribution):
            return np.arange(len(dist.choices), dtype=float)
        low, high = self.bounds(name)
        return np.linspace(low, high, n)

    def per_tree(self, X: np.ndarray) -> np.ndarray:
        """Predictions of every tree, shape (trees, rows)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return np.stack([tree.predict(X) for tree in self.forest.estimators_])

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation over trees) of the predicted error of each row."""
        trees = self.per_tree(X)
        return trees.mean(axis=0), trees.std(axis=0)

    def uniform_sample(self, n: int, seed: int = SEED) -> np.ndarray:
        """`n` configurations drawn uniformly on the search scale (choices uniformly), as forest inputs."""
        rng = np.random.default_rng(seed)
        columns = []
        for name in self.params:
            low, high = self.bounds(name)
            if self.is_categorical(name):
                columns.append(rng.integers(0, int(high) + 1, n).astype(float))
            else:
                columns.append(rng.uniform(low, high, n))
        return np.column_stack(columns)


@dataclass
class SurrogateFit:
    """The surrogate of one study, or why there is none."""

    n_trials: int  # finished search trials with an error
    surrogate: Surrogate | None = None
    status: str = "ok"
    dropped: dict[str, str] = field(default_factory=dict)  # parameter -> why it is not an input

    @property
    def ok(self) -> bool:
        """True when a surrogate was fitted."""
        return self.surrogate is not None


def fit_surrogate(trials: Sequence[FrozenTrial], chance: float, *, n_trees: int = N_TREES,
                  seed: int = SEED) -> SurrogateFit:
    """A random forest on every finished search trial of `trials` (diverged at `chance`), on the search scale."""
    valued = valued_trials(trials, chance)
    fit = SurrogateFit(n_trials=len(valued))
    if len(valued) < MIN_TRIALS_FIT:
        fit.status = f"not computed: {len(valued)} finished trials, a surrogate needs at least {MIN_TRIALS_FIT}"
        return fit
    scaled, log_params, dropped = to_search_scale(valued)
    fit.dropped = dict(dropped)
    for name, count in Counter(name for trial in scaled for name in trial.params).items():
        if count < len(scaled):
            fit.dropped[name] = f"conditional (in {count} of {len(scaled)} trials)"
    distributions = {n: d for n, d in scaled[0].distributions.items() if n not in fit.dropped}
    params = sorted(n for n, d in distributions.items() if not d.single())
    if not params:
        fit.status = "not computed: no searched parameter"
        return fit
    y = np.array([t.value for t in scaled], dtype=float)
    if np.ptp(y) == 0:
        fit.status = f"not computed: all {len(y)} trials reach the same error, nothing to explain"
        return fit
    X = np.array([[_encode(t.params[p], distributions[p]) for p in params] for t in scaled], dtype=float)
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=n_trees, random_state=seed, min_samples_leaf=MIN_SAMPLES_LEAF,
                                   min_samples_split=max(2, MIN_SAMPLES_LEAF), max_features=MAX_FEATURES, bootstrap=True,
                                   oob_score=True, n_jobs=1)
    with warnings.catch_warnings():  # a few trials are in every bootstrap sample at small n: sklearn warns, OOB skips them
        warnings.simplefilter("ignore")
        forest.fit(X, y)
    n_diverged = sum(1 for t in valued if t.user_attrs.get(contract.OUTCOME) in (DIVERGED, STALLED))
    fit.surrogate = Surrogate(params=params, distributions={p: distributions[p] for p in params},
                              log_params=[p for p in log_params if p in params], forest=forest, X=X, y=y,
                              n_diverged=n_diverged, oob_r2=float(forest.oob_score_))
    return fit


@dataclass
class OnSurrogate:
    """What every result on a study's surrogate carries: the trials it rests on, its status, why it is exploratory."""

    n_trials: int
    caveat: str = ""  # why the result is only exploratory
    status: str = "ok"  # ok, exploratory, or why not computed

    @property
    def computed(self) -> bool:
        """True when the result was computed."""
        return self.status in ("ok", "exploratory")

    @property
    def prefix(self) -> str:
        """What opens the report line of an exploratory result ('' for a firm one)."""
        return f"*exploratory* ({self.caveat}): " if self.status == "exploratory" else ""

    def judge(self, surrogate: Surrogate, kind: str) -> None:
        """Mark the result exploratory where results of `kind` on `surrogate` are (`caveat`)."""
        self.caveat = caveat(surrogate, kind)
        if self.caveat:
            self.status = "exploratory"


def caveat(surrogate: Surrogate, kind: str) -> str:
    """Why results of `kind` (an evidence.THRESHOLDS key) on `surrogate` are only exploratory ("" when they are not)."""
    reasons = []
    ev = evidence(kind, surrogate.n_trials)
    if not ev.ok:
        reasons.append(ev.reason)
    if not surrogate.oob_r2 >= MIN_OOB_R2:
        reasons.append(f"the surrogate predicts unseen trials with out-of-bag R² {surrogate.oob_r2:.2f}, "
                       f"below {MIN_OOB_R2}")
    return "; ".join(reasons)


def _encode(value: object, dist: BaseDistribution) -> float:
    if isinstance(dist, CategoricalDistribution):
        return float(dist.choices.index(value))
    return float(value)


def fmt_value(value: object) -> str:
    """A parameter value, short: 3 significant digits for floats."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)

