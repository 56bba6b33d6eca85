"""One trial: sample, train with `bioscale.train.train`, report each epoch, record everything.

The objective is the lowest validation error over the epochs; the test error is recorded on
every trial but never chooses or prunes anything.
"""

from __future__ import annotations

import functools
import platform
import time
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

import bioscale
from bioscale import rules, spaces
from bioscale.contract import (CONFIG, CURVE, DEVICE, DEVICE_NAME, DIVERGED, ERROR, INTERRUPTED, OUT_OF_MEMORY,
                               PRUNED, RESULT_ATTRS, SEED, VERSIONS, WORKER, worker_id)
from bioscale.errors import Diverged
from bioscale.train import EpochResult, train

from ._plan import Plan

@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of the packages that decide a trial's numbers."""
    import numpy
    import torch

    return {"bioscale": bioscale.__version__, "torch": torch.__version__, "optuna": optuna.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """Sample one parameter from its distribution through the trial's public API."""
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unsupported distribution for {name}: {dist!r}")


def configuration(plan: Plan, params: dict[str, Any]) -> dict[str, Any]:
    """The full flat configuration a trial trains: what, where, training arguments, every rule setting."""
    values = {**plan.trial_fixed(), **params}
    if plan.stage == "architecture":
        arch_names = spaces.architecture_space(plan.family, plan.dataset)
        arch = spaces.build_arch(plan.family, plan.dataset, {k: v for k, v in values.items() if k in arch_names})
    else:
        arch = plan.arch_spec
    training, settings = spaces.split_config(plan.rule, values)
    return {"rule": plan.rule, "schedule": plan.schedule, "dataset": plan.dataset, "arch": arch,
            "epochs": plan.epochs, **spaces.TRAINING_DEFAULTS, **training, **rules.settings(plan.rule), **settings}


def summarise(curve: dict[str, list[float]]) -> dict[str, Any]:
    """The errors at the epoch of the lowest validation error (never chosen by test error)."""
    if not curve["val"]:
        return {}
    best = min(range(len(curve["val"])), key=lambda i: curve["val"][i])
    return {"train_error": curve["train"][best], "val_error": curve["val"][best], "test_error": curve["test"][best],
            "best_epoch": best + 1}


def make_objective(plan: Plan, device: str, *, progress: bool | None = None,
                   before: Callable[[], None] | None = None) -> Callable[[optuna.Trial], float]:
    """The objective run by every worker; `before` runs first (it releases the budget lock)."""

    def objective(trial: optuna.Trial) -> float:
        if before is not None:
            before()
        inherited = trial.user_attrs  # non-empty only for a retry of a dead worker's trial
        seed = int(inherited.get(SEED, plan.seed + trial.number))
        for key in RESULT_ATTRS:
            if key in inherited:
                trial.set_user_attr(key, None)
        params = {name: suggest(trial, name, dist) for name, dist in plan.space.items()}
        config = configuration(plan, params)
        curve: dict[str, list[float]] = {"train": [], "val": [], "test": []}
        for key, value in ((SEED, seed), (DEVICE, device), (WORKER, f"{worker_id()}:{trial.number}"),
                           (VERSIONS, versions()), (CONFIG, config), (CURVE, curve)):
            trial.set_user_attr(key, value)
        if device.startswith("cuda"):
            import torch

            trial.set_user_attr(DEVICE_NAME, torch.cuda.get_device_name(torch.device(device)))

        def report(record: EpochResult) -> None:
            curve["train"].append(record.train_error)
            curve["val"].append(record.val_error)
            curve["test"].append(record.test_error)
            trial.set_user_attr(CURVE, curve)
            trial.report(record.val_error, record.epoch)
            if record.epoch < plan.epochs and trial.should_prune():  # after the last epoch there is nothing to save
                raise optuna.TrialPruned(f"pruned after epoch {record.epoch}")

        training, settings = spaces.split_config(plan.rule, config)
        start = time.perf_counter()
        reason: str | None = None
        try:
            try:
                result, _ = train(rule=plan.rule, dataset=plan.dataset, arch=config["arch"], epochs=plan.epochs,
                                  seed=seed, device=device, data_root=plan.data_root, val_size=plan.val_size,
                                  settings=settings, callback=report, progress=progress,
                                  chance_patience=plan.chance_patience, **training)
                return result.best.val_error
            except optuna.TrialPruned:
                reason = PRUNED
                raise
            except Diverged as error:
                reason = f"{DIVERGED}: {error.reason}"
                raise optuna.TrialPruned(reason) from None
            except Exception as error:
                if not _out_of_memory(error):
                    reason = f"{ERROR}: {type(error).__name__}: {_first_line(error)}".rstrip(": ")
                    raise
                reason = f"{OUT_OF_MEMORY} on {device}: {_first_line(error)}".rstrip(": ")
            except KeyboardInterrupt:
                reason = INTERRUPTED
                raise
            # Out of memory: outside the handler, so that the error's traceback (which holds the
            # trial's network and activations) is gone before the memory is given back.
            _free_memory(device)
            raise optuna.TrialPruned(reason)
        finally:
            for key, value in summarise(curve).items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            if reason is not None:
                trial.set_user_attr("end_reason", reason)

    return objective


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""


def _out_of_memory(error: BaseException) -> bool:
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except AttributeError:  # pragma: no cover - very old torch
        pass
    text = str(error)
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))


def _free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
