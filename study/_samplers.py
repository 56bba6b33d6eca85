"""Samplers and pruners, with every argument that matters pinned (Optuna's defaults move between versions)."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler, QMCSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from bioscale import defaults
from bioscale.errors import UsageError
from bioscale.spec import fidelity_of


SAMPLERS, PRUNERS = defaults.SAMPLERS, defaults.PRUNERS

# TPE as bioscale runs it. Optuna 5 made the multivariate TPE and the constant liar its
# defaults; pinning them (and the rest) keeps a study's protocol the same under any version.
TPE_SETTINGS = {"n_startup_trials": 10, "n_ei_candidates": 24, "multivariate": True, "group": False,
                "constant_liar": True}


def check_sampler(name: str) -> None:
    """Raise UsageError for an unknown sampler name."""
    if name not in SAMPLERS:
        raise UsageError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")


def sampler_settings(name: str, seed: int) -> dict[str, Any]:
    """The sampler's pinned settings, as recorded in the study."""
    if name == "sobol":
        return {"seed": seed, "qmc_type": "sobol", "scramble": True}
    return {**TPE_SETTINGS, "seed": seed} if name == "tpe" else {"seed": seed, "per_trial": True}


def make_sampler(name: str, seed: int, stream: int = 0, space: dict[str, BaseDistribution] | None = None) -> BaseSampler:
    """A seeded sampler over `space`; `stream` separates the workers (and reruns) of a TPE study so they draw differently.

    Random and Sobol draws do not depend on the worker: every worker of a study shares one sequence.
    """
    check_sampler(name)
    if name == "random":
        return TrialSeededRandomSampler(seed)
    if name == "sobol":
        return SobolSampler(space or {}, seed)
    worker_seed = int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
    return TPESampler(seed=worker_seed, **TPE_SETTINGS)


class SobolSampler(QMCSampler):
    """Optuna's scrambled Sobol sampler over a search space known up front.

    Optuna's QMCSampler learns the space from the first finished trial and draws every trial
    before that at random; the members of a population are all asked before any finishes, so
    this one is told the study's space instead. Its points go to the trials in the order they
    are asked (one sequence per study, shared by its workers); queued trials (the default
    configuration, re-queued ones) take none. The space has no conditional parameters, and a
    categorical one takes one coordinate, as Optuna's sampler does.
    """

    def __init__(self, space: dict[str, BaseDistribution], seed: int) -> None:
        super().__init__(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False)
        self._space = dict(space)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._space)


class TrialSeededRandomSampler(RandomSampler):
    """Random search whose draws depend only on (seed, trial number, parameter name).

    Trial k gets the same configuration whichever worker runs it and however many workers
    share the study, so a random search of N configurations is one reproducible set.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self._base_seed = seed

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        seed = zlib.crc32(f"{self._base_seed}:{trial.number}:{param_name}".encode())
        return RandomSampler(seed=seed).sample_independent(study, trial, param_name, param_distribution)


def check_pruner(spec: str, epochs: int) -> None:
    """Raise UsageError for an unknown pruner or a bad best-after epoch."""
    make_pruner(spec, epochs)


def make_pruner(spec: str, epochs: int) -> BasePruner:
    """none | median | halving[:ETA] | hyperband[:ETA] | best-after[:EPOCH] -> a pruner on the per-epoch validation error."""
    name, _, argument = spec.partition(":")
    if name == "none" and not argument:
        return optuna.pruners.NopPruner()
    if name == "median" and not argument:
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0, interval_steps=1)
    if fidelity_of(spec) is not None:  # successive halving runs inside each population (bioscale.study._design)
        return optuna.pruners.NopPruner()
    if name == "best-after":
        try:
            epoch = int(argument) if argument else 10
        except ValueError:
            epoch = 0
        if epoch < 1 or (argument and epoch > epochs):
            raise UsageError(f"pruner {spec!r}: the epoch must be a whole number from 1 to the study's {epochs} epochs")
        return BestAfterPruner(epoch, epochs)
    raise UsageError(f"unknown pruner {spec!r}; choose one of: {', '.join(PRUNERS)}")


class BestAfterPruner(BasePruner):
    """The paper's ImageNet protocol, online: after `epoch` epochs, only the best trial so far goes on.

    The paper ran every configuration for 10 epochs and continued only the best. Run one after
    another, each trial is stopped at `epoch` unless its validation error there beats every
    other trial's at the same epoch; the trials that continue are a superset of the paper's one,
    and include it. A study of no more than `epoch` epochs has nothing to continue: no pruning.
    """

    def __init__(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step != self.epoch or step >= self.epochs:
            return False
        mine = trial.intermediate_values[step]
        for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
            value = other.intermediate_values.get(self.epoch)
            if other.number == trial.number or value is None:
                continue
            if value < mine or (value == mine and other.number < trial.number):
                return True
        return False
