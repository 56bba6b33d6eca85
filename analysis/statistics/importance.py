"""Hyperparameter importances: fANOVA on the search scale, per branch, over seeds; and PED-ANOVA."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
from collections import Counter
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

MIN_TRIALS = 5
MIN_TRIALS_PED = 10
# 4 forests of 32 trees: 128 trees in all, split evenly over 2 cores when the slow fallback runs in processes.
FANOVA_SEEDS = 4
FANOVA_TREES = 32
PARALLEL_MIN_TRIALS = 200  # below this, starting worker processes costs more than the fallback saves

try:  # Cython build from Optuna's authors: same importances, about 15x faster
    from optuna_fast_fanova import FanovaImportanceEvaluator as _FastFanova
except ImportError:  # pragma: no cover - depends on the environment
    _FastFanova = None


def fast_fanova_available() -> bool:
    """True when optuna-fast-fanova can be imported."""
    return _FastFanova is not None


@dataclass
class FanovaBranch:
    """fANOVA over one set of trials: mean and spread over seeds of each parameter's variance share."""

    title: str
    n_trials: int
    params: list[str]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    constant: list[str] = field(default_factory=list)
    status: str = "ok"

    @property
    def ok(self) -> bool:
        """True when importances were computed."""
        return self.status == "ok"

    def ranked(self) -> list[tuple[str, float, float]]:
        """(param, mean, std), most important first."""
        return [(p, m, self.std[p]) for p, m in most_important_first(self.mean)]


@dataclass
class FanovaResult:
    """fANOVA for one study: all trials on their common parameters, plus one branch per set of conditional ones."""

    evaluator: str
    seeds: int
    n_trees: int
    log_params: list[str]
    overall: FanovaBranch
    conditional: dict[str, int] = field(default_factory=dict)
    branches: list[FanovaBranch] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


@dataclass
class PedAnovaResult:
    """PED-ANOVA: which parameters separate the top quantile from the rest (shares summing to 1)."""

    n_trials: int
    target_quantile: float
    n_top: int
    importance: dict[str, float] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    status: str = "ok"

    @property
    def ok(self) -> bool:
        """True when importances were computed."""
        return self.status == "ok"

    def ranked(self) -> list[tuple[str, float]]:
        """(param, share), most important first."""
        return most_important_first(self.importance)


def most_important_first(shares: dict[str, float]) -> list[tuple[str, float]]:
    """(param, share) by share, largest first; ties by name, never by the order the shares were found in."""
    return sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's info logs and warnings (e.g. 'new study created in memory') for a block."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(level)


def is_log(distribution: BaseDistribution) -> bool:
    """True for a log-scaled float or int distribution."""
    return isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.log


def unify_distributions(trials: Sequence[FrozenTrial]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """One distribution per parameter across trials (ranges widened, choices merged), and the params that cannot be merged."""
    seen: dict[str, list[BaseDistribution]] = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            known = seen.setdefault(name, [])
            if dist not in known:
                known.append(dist)
    merged: dict[str, BaseDistribution] = {}
    dropped: dict[str, str] = {}
    for name, dists in seen.items():
        if len(dists) == 1:
            merged[name] = dists[0]
        elif all(isinstance(d, (FloatDistribution, IntDistribution)) for d in dists):
            merged[name] = FloatDistribution(min(d.low for d in dists), max(d.high for d in dists),
                                             log=all(d.log for d in dists))
        elif all(isinstance(d, CategoricalDistribution) for d in dists):
            choices: list = []
            for d in dists:
                choices.extend(c for c in d.choices if c not in choices)
            merged[name] = CategoricalDistribution(choices)
        else:
            dropped[name] = "its distribution changed kind between trials"
    return merged, dropped


def to_search_scale(trials: Sequence[FrozenTrial]) -> tuple[list[FrozenTrial], list[str], dict[str, str]]:
    """Trials with log-scaled parameters re-expressed as uniform log10 values, so fANOVA integrates on the search scale.

    Optuna's fANOVA (and optuna-fast-fanova) build their space with transform_log=False, which
    weights a log-uniform learning rate by its linear width and understates its importance.
    """
    merged, dropped = unify_distributions(trials)
    scaled: dict[str, BaseDistribution] = {}
    log_params = []
    for name, dist in merged.items():
        if is_log(dist):
            scaled[name] = FloatDistribution(math.log10(dist.low), math.log10(dist.high))
            log_params.append(name)
        else:
            scaled[name] = dist
    out = []
    for trial in trials:
        params = {n: math.log10(v) if n in log_params else v for n, v in trial.params.items() if n not in dropped}
        out.append(optuna.trial.create_trial(params=params, distributions={n: scaled[n] for n in params}, value=trial.value))
    return out, sorted(log_params), dropped


def _study_of(trials: Sequence[FrozenTrial]) -> optuna.Study:
    with quiet_optuna():
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="minimize")
        study.add_trials(trials)
    return study


def _fanova_runs(trials: Sequence[FrozenTrial], params: list[str], seeds: Sequence[int], n_trees: int,
                 use_fast: bool) -> list[dict[str, float]]:
    """One normalised importance dict per seed (module level so that joblib can ship it to workers)."""
    # optuna-fast-fanova takes the trials directly; copying them into a study costs about as much as one seed.
    study = _study_of([] if use_fast else trials)
    runs = []
    for seed in seeds:
        if use_fast:
            evaluator = _FastFanova(n_trees=n_trees, seed=seed, completed_trials=list(trials))
        else:
            evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=n_trees, seed=seed)
        with quiet_optuna():
            raw = evaluator.evaluate(study, params=params)
        total = sum(raw.values())
        runs.append({p: (float(raw.get(p, 0.0)) / total if total > 0 else 0.0) for p in params})
    return runs


def _fanova_branch(title: str, trials: Sequence[FrozenTrial], params: list[str], *, seeds: int, n_trees: int,
                   use_fast: bool, n_jobs: int) -> FanovaBranch:
    branch = FanovaBranch(title=title, n_trials=len(trials), params=sorted(params))
    if len(trials) < MIN_TRIALS:
        branch.status = f"not enough trials ({len(trials)} complete, fANOVA needs at least {MIN_TRIALS})"
        return branch
    values = np.array([t.value for t in trials], dtype=float)
    if np.ptp(values) == 0:
        branch.status = f"not enough trials: all {len(trials)} reach the same value, nothing to explain"
        return branch
    dists = trials[0].distributions
    branch.constant = sorted(p for p in params if dists[p].single())
    searched = sorted(p for p in params if not dists[p].single())
    if not searched:
        branch.status = "no searched parameters (all fixed)"
        return branch
    seed_list = list(range(seeds))
    if n_jobs > 1 and seeds > 1 and len(trials) >= PARALLEL_MIN_TRIALS:
        from joblib import Parallel, delayed

        chunks = [seed_list[i::n_jobs] for i in range(n_jobs) if seed_list[i::n_jobs]]
        runs = [r for part in Parallel(n_jobs=len(chunks))(
            delayed(_fanova_runs)(list(trials), searched, c, n_trees, use_fast) for c in chunks) for r in part]
    else:
        runs = _fanova_runs(trials, searched, seed_list, n_trees, use_fast)
    matrix = np.array([[run[p] for p in searched] for run in runs])
    branch.mean = {p: float(m) for p, m in zip(searched, matrix.mean(axis=0))}
    branch.std = {p: float(s) for p, s in zip(searched, matrix.std(axis=0))}
    for p in branch.constant:
        branch.mean[p], branch.std[p] = 0.0, 0.0
    return branch


def fanova_importance(trials: Sequence[FrozenTrial], *, seeds: int = FANOVA_SEEDS, n_trees: int = FANOVA_TREES,
                      evaluator: str = "auto", n_jobs: int | None = None) -> FanovaResult:
    """fANOVA shares of variance over complete trials, log params on their log10 scale, mean ± std over seeds.

    `trials` are COMPLETE trials with finite values. Parameters present in every trial are
    evaluated together over all of them; when some are conditional (present in some trials only),
    each set of co-occurring parameters (a branch) is evaluated again on its own trials.
    `evaluator` is "auto" (optuna-fast-fanova when importable), "fast" or "optuna".
    `n_jobs` defaults to 1 with optuna-fast-fanova and to one process per core (up to `seeds`) otherwise;
    with fewer than PARALLEL_MIN_TRIALS trials the seeds always run in this process.
    """
    if evaluator not in ("auto", "fast", "optuna"):
        raise ValueError(f"unknown fANOVA evaluator {evaluator!r}; choose auto, fast or optuna")
    if evaluator == "fast" and _FastFanova is None:
        raise ValueError("optuna-fast-fanova is not installed; pip install optuna-fast-fanova, or use evaluator='optuna'")
    use_fast = _FastFanova is not None and evaluator != "optuna"
    if n_jobs is None:
        n_jobs = 1 if use_fast else max(1, min(seeds, usable_cores()))
    scaled, log_params, dropped = to_search_scale(trials) if trials else ([], [], {})
    counts = Counter(name for trial in scaled for name in trial.params)
    common = sorted(p for p, c in counts.items() if c == len(scaled))
    conditional = {p: c for p, c in sorted(counts.items()) if c < len(scaled)}
    options = dict(seeds=seeds, n_trees=n_trees, use_fast=use_fast, n_jobs=n_jobs)
    common_trials = [_restrict(t, common) for t in scaled] if conditional else scaled
    overall = _fanova_branch("all trials, parameters common to all" if conditional else "all trials",
                             common_trials, common, **options)
    branches = []
    if conditional:
        groups: dict[tuple[str, ...], list[FrozenTrial]] = {}
        for trial in scaled:
            groups.setdefault(tuple(sorted(trial.params)), []).append(trial)
        for names, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            extra = [n for n in names if n in conditional]
            title = "branch with " + (", ".join(extra) if extra else "no conditional parameter")
            branches.append(_fanova_branch(title, members, list(names), **options))
    return FanovaResult(evaluator="optuna-fast-fanova" if use_fast else "optuna", seeds=seeds, n_trees=n_trees,
                        log_params=log_params, overall=overall, conditional=conditional, branches=branches,
                        dropped=dropped)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _restrict(trial: FrozenTrial, names: Sequence[str]) -> FrozenTrial:
    return optuna.trial.create_trial(params={n: trial.params[n] for n in names},
                                     distributions={n: trial.distributions[n] for n in names}, value=trial.value)


def ped_anova_importance(trials: Sequence[FrozenTrial], *, target_quantile: float | None = None) -> PedAnovaResult:
    """PED-ANOVA (Optuna's default evaluator) for reaching the top quantile; by default the best 10 % but at least 5 trials."""
    n = len(trials)
    quantile = target_quantile if target_quantile is not None else max(0.1, MIN_TRIALS / max(n, 1))
    result = PedAnovaResult(n_trials=n, target_quantile=quantile, n_top=math.ceil(quantile * n))
    if n < MIN_TRIALS_PED:
        result.status = f"not enough trials ({n} complete, PED-ANOVA needs at least {MIN_TRIALS_PED})"
        return result
    if np.ptp([t.value for t in trials]) == 0:
        result.status = f"not enough trials: all {n} reach the same value, nothing to explain"
        return result
    merged, dropped = unify_distributions(trials)
    rebuilt = [optuna.trial.create_trial(params={k: v for k, v in t.params.items() if k not in dropped},
                                         distributions={k: merged[k] for k in t.params if k not in dropped},
                                         value=t.value) for t in trials]
    study = _study_of(rebuilt)
    with quiet_optuna():
        raw = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile).evaluate(study)
    # Optuna orders tied parameters as a set iterates (by PYTHONHASHSEED): ties go by name instead.
    result.raw = {k: float(v) for k, v in most_important_first(dict(raw))}
    total = sum(result.raw.values())
    result.importance = {k: (v / total if total > 0 else 0.0) for k, v in result.raw.items()}
    return result


def top_params(fanova: FanovaResult | None, ped: PedAnovaResult | None, available: Sequence[str], k: int = 4,
               floor: float = 0.02) -> list[str]:
    """The k most important parameters (fANOVA first, PED-ANOVA as fallback), skipping those under `floor`."""
    order: list[tuple[str, float]] = []
    if fanova is not None and fanova.overall.ok:
        order = [(p, m) for p, m, _ in fanova.overall.ranked()]
        for branch in fanova.branches:
            if branch.ok:
                order += [(p, m) for p, m, _ in branch.ranked() if p in fanova.conditional]
    elif ped is not None and ped.ok:
        order = ped.ranked()
    if not order:  # no importances at all: keep the order the params come in
        return list(dict.fromkeys(available))[:k]
    chosen: list[str] = []
    for name, share in order:
        if name in available and name not in chosen and (share >= floor or not chosen):
            chosen.append(name)
    return chosen[:k]


def log_scaled(trials: Sequence[FrozenTrial]) -> list[str]:
    """The parameters searched on a log scale in `trials` (their unified distributions), sorted."""
    merged, _ = unify_distributions(trials)
    return sorted(n for n, d in merged.items() if is_log(d))


EXPLORATORY_SEEDS, EXPLORATORY_TREES = 2, 16  # forests of a study whose importances are exploratory anyway (evidence.py)


def study_forests(complete: Sequence[FrozenTrial], everything: Sequence[FrozenTrial],
                  seeds: int = FANOVA_SEEDS) -> tuple[FanovaResult, FanovaResult | None]:
    """fANOVA of one study on its complete trials and, when some did not complete, on every finished one (fewer
    forests when the shares will be exploratory anyway)."""
    from .evidence import evidence

    options = dict(seeds=seeds) if evidence("importance", len(complete)).ok else dict(
        seeds=min(seeds, EXPLORATORY_SEEDS), n_trees=EXPLORATORY_TREES)
    return (fanova_importance(complete, **options),
            fanova_importance(everything, **options) if len(everything) > len(complete) else None)


def fanova_batch(studies: Sequence[tuple[Sequence[FrozenTrial], Sequence[FrozenTrial]]],
                 seeds: int = FANOVA_SEEDS) -> list[tuple[FanovaResult, FanovaResult | None]]:
    """`study_forests` of many studies' (complete, every finished) trials, the studies spread over the cores."""
    workers = min(usable_cores(), len(studies)) if len(studies) >= 4 else 1
    return fork_map(lambda study: study_forests(*study, seeds), studies, workers,
                    chunksize=max(1, len(studies) // (4 * workers)))


_TASK: tuple[Callable, Sequence] | None = None  # read by forked workers: the function needs no pickling


def fork_map(function: Callable, items: Sequence, workers: int, chunksize: int = 1) -> list:
    """[function(item) for item in items], over `workers` forked processes where the platform forks, else here."""
    global _TASK
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(item) for item in items]
    _TASK = (function, items)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_run_task, range(len(items)), chunksize=chunksize)
    finally:
        _TASK = None


def _run_task(index: int):
    function, items = _TASK
    return function(items[index])
