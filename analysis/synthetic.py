"""Synthetic studies shaped like docs/storage-contract.md, with objectives whose answers are known (tests, benchmarks, demos)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json)
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from bioscale import contract
from bioscale.contract import CONFIG, CURVE, DEFAULT_CONFIG, DEVICE, ROLE, SEED, VERSIONS, StudyInfo, name_objective

from .statistics.importance import quiet_optuna

Params = Mapping[str, object]

# A space in the paper's words (Table 4, widened as the spaces package does).
PAPER_SPACE: dict[str, BaseDistribution] = {
    "forward_lr": FloatDistribution(1e-5, 1e-2, log=True),
    "forward_beta2": CategoricalDistribution([0.99, 0.999]),
    "forward_eps": CategoricalDistribution([1e-4, 1e-6, 1e-8]),
    "inverse_lr": FloatDistribution(1e-5, 1e-2, log=True),
    "sigma": FloatDistribution(0.01, 0.4),
    "activation": CategoricalDistribution(["tanh", "relu"]),
}


def sample(space: Mapping[str, BaseDistribution], rng: np.random.Generator) -> dict[str, object]:
    """One random configuration: log-uniform for log-scaled parameters, uniform otherwise."""
    params: dict[str, object] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            params[name] = dist.choices[int(rng.integers(len(dist.choices)))]
        elif isinstance(dist, IntDistribution):
            params[name] = int(rng.integers(dist.low, dist.high + 1))
        elif dist.log:
            params[name] = float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        else:
            params[name] = float(rng.uniform(dist.low, dist.high))
    return params


@dataclass(frozen=True)
class Curve:
    """How a synthetic trial's learning curve runs: over `epochs`, cut after `epochs_done` (a trial that diverged or was
    pruned), with relative log-normal `noise` on each epoch's error, and, when `flat`, reaching its value at the third
    epoch and staying there (a converged run)."""

    epochs: int = 10
    epochs_done: int | None = None
    noise: float = 0.0
    flat: bool = False


def contract_trial(params: Params, distributions: Mapping[str, BaseDistribution], value: float | None, *,
                   curve: Curve = Curve(), state: TrialState = TrialState.COMPLETE, end_reason: str | None = None,
                   rng: np.random.Generator | None = None, role: str | None = None) -> FrozenTrial:
    """A trial carrying the contract's user attributes; its learning `curve` decays to `value` at the last epoch.

    With noise on the curve the trial's value (the lowest validation error) may fall below `value`.
    """
    rng = rng or np.random.default_rng(0)
    epochs = curve.epochs
    attrs: dict[str, object] = {"seconds": 1.0, DEVICE: "cpu", SEED: int(rng.integers(1 << 30)),
                                VERSIONS: {"bioscale": "synthetic"}, CONFIG: dict(params)}
    intermediate: dict[int, float] = {}
    if value is not None:
        start = min(0.9, value + 0.5)
        val = [value + (start - value) * math.exp(-3 * e / epochs) * (1 - e / epochs) for e in range(1, epochs + 1)]
        if curve.flat:
            val = [value + (start - value) * max(0.0, 1 - e / 3) for e in range(1, epochs + 1)]
        val = [min(0.95, v * math.exp(curve.noise * rng.normal())) for v in val]
        val[-1] = value
        val = val[:curve.epochs_done or epochs]
        best_epoch = int(np.argmin(val)) + 1
        train = [max(0.0, v - 0.02) for v in val]
        test = [min(1.0, v + 0.005) for v in val]
        attrs.update({contract.TRAIN_ERROR: train[best_epoch - 1], contract.VAL_ERROR: val[best_epoch - 1],
                      contract.TEST_ERROR: test[best_epoch - 1], contract.BEST_EPOCH: best_epoch})
        attrs[CURVE] = {"train": train, "val": val, "test": test}
        intermediate = {e: v for e, v in enumerate(val, start=1)}
        value = min(val)
    if end_reason:
        attrs[contract.END_REASON] = end_reason
    if role:
        attrs[ROLE] = role
    return optuna.trial.create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                                     params=dict(params), distributions=dict(distributions), user_attrs=attrs,
                                     intermediate_values=intermediate)


@dataclass(frozen=True)
class SyntheticStudy:
    """What a synthetic study is: its names as the study driver records them, its space, and how many trials end how.

    `conditional(params)` may return extra distributions to sample for a configuration (e.g.
    `alpha` only with some schedule); `n_failed` adds diverged trials, which the study driver
    records as PRUNED with `end_reason` "diverged: ..." after a few epochs; `diverges(params)`
    makes the sampled configurations it is true for diverge instead of completing; `n_pruned` adds
    trials stopped by a pruner at epoch 3. `fixed` and `protocol` are recorded as the study
    driver records them, the space as `info.space`. `default` adds the default-configuration
    trial (user attribute role="default") trained with those settings. `flat` gives converged curves
    (flat from the third epoch); `chance_patience` is recorded as the study driver records it.
    """

    label: str
    rule: str | None = None
    schedule: str | None = None
    dataset: str = "digits"
    arch: str = "fc"
    space: Mapping[str, BaseDistribution] | None = None
    conditional: Callable[[Params], Mapping[str, BaseDistribution]] | None = None
    n_trials: int = 60
    n_failed: int = 0
    epochs: int = 10
    seed: int = 0
    curve_noise: float = 0.0
    evaluation: Mapping[str, object] | None = None
    stage: str = "tune"
    fixed: Mapping[str, object] | None = None
    suffix: str | None = None
    protocol: str | None = None
    sampler: str = "random"
    diverges: Callable[[Params], bool] | None = None
    default: Params | None = None
    n_pruned: int = 0
    flat: bool = False
    chance_patience: int | None = None


def add_study(storage: str | BaseStorage, objective: Callable[[Params], float], **shape: Any) -> optuna.Study:
    """Create `{stage}:{dataset}:{arch}:{label}[:{suffix}]` with random-search trials of `objective` (an error in [0, 1]).

    `shape` holds the fields of `SyntheticStudy` (`label` at least), which says what each means.
    """
    return _create(storage, objective, SyntheticStudy(**shape))


def _create(storage: str | BaseStorage, objective: Callable[[Params], float], shape: SyntheticStudy) -> optuna.Study:
    space = dict(shape.space or PAPER_SPACE)
    rng = np.random.default_rng(shape.seed)
    name = f"{shape.stage}:{shape.dataset}:{shape.arch}:{shape.label}" + (f":{shape.suffix}" if shape.suffix else "")
    with quiet_optuna():
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    searched, failed = shape.n_trials, shape.n_trials + shape.n_failed  # trial indices below each end
    info = StudyInfo(stage=shape.stage, protocol=shape.protocol, dataset=shape.dataset, arch=shape.arch,
                     rule=shape.rule or shape.label.split("-")[0], schedule=shape.schedule, label=shape.label,
                     epochs=shape.epochs, trials=failed + shape.n_pruned, sampler=shape.sampler,
                     pruner="none" if not shape.n_pruned else "median", fixed=dict(shape.fixed or {}),
                     space={n: distribution_to_json(d) for n, d in space.items()}, bioscale_version="synthetic",
                     evaluation=contract.Evaluation.read(shape.evaluation), chance_patience=shape.chance_patience)
    name_objective(study)
    for key, value in info.to_attrs().items():
        study.set_user_attr(key, value)
    trials, epochs = [], shape.epochs
    for index in range(failed + shape.n_pruned):
        params = sample(space, rng)
        distributions = dict(space)
        if shape.conditional is not None:
            extra = dict(shape.conditional(params))
            params.update(sample(extra, rng))
            distributions.update(extra)
        if index >= failed:
            error = float(np.clip(objective(params), 0.0, 1.0))
            trials.append(contract_trial(params, distributions, error, curve=Curve(epochs, epochs_done=3),
                                         state=TrialState.PRUNED, end_reason="pruned", rng=rng))
        elif index < searched and not (shape.diverges is not None and shape.diverges(params)):
            error = float(np.clip(objective(params), 0.0, 1.0))
            trials.append(contract_trial(params, distributions, error, rng=rng,
                                         curve=Curve(epochs, noise=shape.curve_noise, flat=shape.flat)))
        else:
            trials.append(contract_trial(params, distributions, 0.9, curve=Curve(epochs, epochs_done=2),
                                         state=TrialState.PRUNED, end_reason="diverged: loss became nan", rng=rng))
    if shape.default is not None:
        params = {k: v for k, v in shape.default.items() if k in space}
        error = float(np.clip(objective(shape.default), 0.0, 1.0))
        trials.append(contract_trial(params, {k: space[k] for k in params}, error, curve=Curve(epochs), rng=rng,
                                     role=DEFAULT_CONFIG))
    with quiet_optuna():
        study.add_trials(trials)
    return study


def add_halving_study(storage: str | BaseStorage, first: Callable[[Params], float], full: Callable[[Params], float], *,
                      label: str, n_configs: int = 90, eta: int = 3, rungs: tuple[int, ...] = (1, 3, 9),
                      seed: int = 0) -> optuna.Study:
    """A successive-halving study (`contract.DESIGN` declares it): every configuration trains to the first rung, the best
    1/eta of each rung go on, the rest end PRUNED with end reason 'halved'.

    A configuration's error is `first(params)` at the first rung and `full(params)` at the last
    epoch, linear in between (so `full` below `first` gives a falling curve), so whether the first
    rung ranks the full budget is known.
    """
    epochs = rungs[-1]
    study = add_study(storage, full, label=label, n_trials=0, epochs=epochs, seed=seed, space=PAPER_SPACE)
    study.set_user_attr(contract.DESIGN, {"sampler": "random", "seed": seed, "draws": f"{label}:{seed}", "shared": "pair",
                                          "fidelity": {"scheme": "halving", "eta": eta, "rungs": list(rungs)}})
    rng = np.random.default_rng(seed)
    configs = [sample(PAPER_SPACE, rng) for _ in range(n_configs)]

    def curve(params: Params) -> list[float]:
        a, b, r0 = first(params), full(params), rungs[0]
        return [min(0.95, a + (0.9 - a) * (r0 - e) / r0) if e <= r0 else a + (b - a) * (e - r0) / (epochs - r0)
                for e in range(1, epochs + 1)]

    alive, stopped = list(range(n_configs)), {}
    for rung, keep in zip(rungs[:-1], (math.ceil(n_configs / eta ** (k + 1)) for k in range(len(rungs) - 1))):
        ranked = sorted(alive, key=lambda i: curve(configs[i])[rung - 1])
        alive = ranked[:keep]
        stopped.update({i: rung for i in ranked[keep:]})
    trials = []
    for i, params in enumerate(configs):
        values = curve(params)[:stopped.get(i, epochs)]
        attrs = {"seconds": 1.0, DEVICE: "cpu", SEED: seed + i, VERSIONS: {"bioscale": "synthetic"}, CONFIG: dict(params),
                 CURVE: {"val": values}}
        if i in stopped:
            attrs[contract.END_REASON] = contract.HALVED.text(f"rung of {stopped[i]} epochs")
        trials.append(optuna.trial.create_trial(
            state=TrialState.PRUNED if i in stopped else TrialState.COMPLETE,
            value=None if i in stopped else min(values), params=dict(params), distributions=dict(PAPER_SPACE),
            user_attrs=attrs, intermediate_values=dict(enumerate(values, start=1))))
    with quiet_optuna():
        study.add_trials(trials)
    return study
