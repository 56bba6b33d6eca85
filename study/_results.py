"""Reading studies back (list, best) and the evaluate stage (re-train the best with several seeds)."""

from __future__ import annotations

import shlex
import statistics
import sys
from dataclasses import replace
from typing import Any, Iterable, Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from bioscale import contract, defaults
from bioscale.contract import (BEST_EPOCH, CONFIG, DATA_SEED, DEVICE, SECONDS, SEED, TEST_ERROR, TRAIN_ERROR, Evaluation,
                               StudyInfo)
from bioscale.devices import AUTO, resolve_device
from bioscale.errors import UsageError
from bioscale.run_config import RunConfig
from bioscale.storages import open_existing

from ._recipe import fit_configuration



def resolve_study_name(storage: BaseStorage, name: str | None) -> str:
    """`name`, or the only study in the storage; UsageError when that is ambiguous or missing."""
    names = optuna.get_all_study_names(storage)
    if name is None:
        if len(names) == 1:
            return names[0]
        raise UsageError(f"this storage holds {len(names)} studies; name one with --study-name: {', '.join(names) or 'none'}")
    if name not in names:
        raise UsageError(f"no study {name!r} in this storage; studies: {', '.join(names) or 'none'}")
    return name


def list_studies(storage: str | None) -> list[dict[str, Any]]:
    """One dict per study: name, stage, dataset, arch, label, trial counts, budget, best validation error."""
    storage_obj = open_existing(storage)
    return [study_summary(optuna.load_study(study_name=name, storage=storage_obj))
            for name in optuna.get_all_study_names(storage_obj)]


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """A study's row of `list_studies`."""
    trials = study.get_trials(deepcopy=False)
    info = StudyInfo.from_attrs(study.user_attrs)
    best = contract.best_trial(trials)
    return {"study": study.study_name, "stage": info.stage, "dataset": info.dataset,
            "arch": info.arch, "label": info.label, "epochs": info.epochs,
            "budget": info.trials, "finished": sum(map(contract.is_finished, trials)),
            "states": summary_counts(trials), "best_val_error": best.value if best else None,
            "test_error_mean": info.evaluation.test_error_mean if info.evaluation else None, "winner": info.winner}


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The study's best trial (`bioscale.contract.best_trial`); UsageError when none has completed."""
    trial = contract.best_trial(study.get_trials(deepcopy=False))
    if trial is None:
        raise UsageError(f"study {study.study_name!r} has no complete trial yet")
    return trial


def best(storage: str | None, study_name: str | None = None) -> dict[str, Any]:
    """The best trial of a study: its number, validation / test / train errors, sampled params and full config."""
    storage_obj = open_existing(storage)
    name = resolve_study_name(storage_obj, study_name)
    return best_of(optuna.load_study(study_name=name, storage=storage_obj))


def best_of(study: optuna.Study) -> dict[str, Any]:
    """`best` for a loaded study."""
    trial = best_trial(study)
    info = StudyInfo.from_attrs(study.user_attrs)
    attrs = trial.user_attrs
    out = {"study": study.study_name, "trial": trial.number, "role": contract.incumbent_role(trial), "seed": attrs.get(SEED),
           "data_seed": attrs.get(DATA_SEED, attrs.get(SEED)),
           "device": attrs.get(DEVICE), "val_error": trial.value,
           "test_error": attrs.get(TEST_ERROR), "train_error": attrs.get(TRAIN_ERROR),
           "best_epoch": attrs.get(BEST_EPOCH), "params": dict(trial.params),
           "config": attrs.get(CONFIG, {}), "seconds": attrs.get(SECONDS),
           "finished": sum(map(contract.is_finished, study.get_trials(deepcopy=False))), "budget": info.trials}
    if info.winner is not None:
        out["winner"] = info.winner
    if info.evaluation is not None:
        out["evaluation"] = info.evaluation.to_attr()
    return out


def train_command(run: RunConfig) -> str:
    """A `bioscale train` command line that trains `run` exactly as its trial did: the validation split, its seed, data seed, device."""
    from bioscale import rules

    seed = run.seeds[0]
    parts = ["bioscale train", f"--rule {run.rule}", f"--dataset {run.dataset}", f"--arch {shlex.quote(run.arch)}",
             f"--epochs {run.epochs}", f"--activation {run.activation}", f"--batch-size {run.batch_size}",
             f"--seed {seed}"] + ([f"--data-seed {run.data_seed}"] if run.data_seed not in (None, seed) else []) + (
                 [f"--device {run.device}"] if run.device != AUTO else [])
    rule_defaults = rules.settings(run.rule)
    parts += [f"--set {k}={v}" for k, v in run.settings.items() if k in rule_defaults and v != rule_defaults[k]]
    return " ".join(parts)


def evaluate_study(storage: str | None, study_name: str | None = None, seeds: Sequence[int] = defaults.EVALUATION_SEEDS,
                   epochs: int | None = None, device: str = AUTO, data_root: str | None = None,
                   progress: bool | None = None) -> dict[str, Any]:
    """Re-train the study's best configuration with each seed; record its test errors.

    The seeds train together as one population, as the trials did (the validation split held
    out, the minibatch order of the study's seed; each seed draws its member's initial weights,
    rule state and noise). Each is measured twice: at the epoch of its lowest validation error
    (the paper's "best within the budget", chosen on validation, never on test) and at the last
    epoch. Seeds that diverge are listed under `diverged`, not averaged. The result is stored in
    the study's user attribute `evaluation`.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError("give one or more distinct seeds, e.g. --seeds 0,1,2")
    if epochs is not None and epochs < 1:
        raise UsageError(f"epochs must be >= 1 (got {epochs})")
    device = resolve_device(device)
    storage_obj = open_existing(storage)
    name = resolve_study_name(storage_obj, study_name)
    study = optuna.load_study(study_name=name, storage=storage_obj)
    trial = best_trial(study)
    info = StudyInfo.from_attrs(study.user_attrs)
    data_seed = int(info.seed or 0)
    run = RunConfig.from_stored(trial.user_attrs[CONFIG], seeds=tuple(seeds), data_seed=data_seed, device=device,
                                data_root=data_root, chance_patience=0)
    run = replace(run, epochs=epochs or int(info.epochs or run.epochs))
    results = fit_configuration(run, progress=progress)
    test_errors, train_errors, at_best, best_epochs, diverged = [], [], [], [], []
    for seed, result in zip(seeds, results):
        if result.diverged is not None:
            diverged.append({"seed": seed, "reason": result.diverged.reason})
            continue
        last, best_epoch = result.history[-1], result.best
        test_errors.append(last.test_error)
        train_errors.append(last.train_error)
        at_best.append(best_epoch.test_error)
        best_epochs.append(best_epoch.epoch)
        if progress is not False and sys.stderr.isatty():
            print(f"seed {seed}: test error {100 * best_epoch.test_error:.2f}% at epoch {best_epoch.epoch} "
                  f"(best validation), {100 * last.test_error:.2f}% at the last", file=sys.stderr)
    evaluation = Evaluation(seeds=seeds, test_errors=test_errors, train_errors=train_errors,
                            test_error_mean=_mean(test_errors), test_error_std=_std(test_errors),
                            test_errors_at_best_val=at_best, best_val_epochs=best_epochs,
                            test_error_at_best_val_mean=_mean(at_best), test_error_at_best_val_std=_std(at_best),
                            epochs=run.epochs, config=run.to_stored(), trial=trial.number, device=device, data_seed=data_seed,
                            diverged=diverged)
    record = evaluation.to_attr()
    study.set_user_attr(contract.EVALUATION, record)
    return record


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)


def summary_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """How many trials are in each state (lower-case state names)."""
    out: dict[str, int] = {}
    for trial in trials:
        out[trial.state.name.lower()] = out.get(trial.state.name.lower(), 0) + 1
    return out
