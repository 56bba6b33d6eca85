"""Reading studies back (list, best) and the evaluate stage (re-train the best with several seeds)."""

from __future__ import annotations

import shlex
import statistics
import sys
from typing import Any, Iterable, Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from bioscale import contract, spaces
from bioscale.contract import DATA_SEED, DEVICE, SEED
from bioscale.devices import AUTO, resolve_device
from bioscale.errors import UsageError
from bioscale.storages import open_existing
from bioscale.train import build, fit



def resolve_study_name(storage: BaseStorage, name: str | None) -> str:
    """`name`, or the only study in the storage; UsageError when that is ambiguous or missing."""
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
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
    return [study_summary(optuna.load_study(study_name=s.study_name, storage=storage_obj))
            for s in optuna.get_all_study_summaries(storage_obj, include_best_trial=False)]


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """A study's row of `list_studies`."""
    trials = study.get_trials(deepcopy=False)
    attrs = study.user_attrs
    best = contract.best_trial(trials)
    evaluation = attrs.get("evaluation") or {}
    return {"study": study.study_name, "stage": attrs.get("stage"), "dataset": attrs.get("dataset"),
            "arch": attrs.get("arch"), "label": attrs.get("label"), "epochs": attrs.get("epochs"),
            "budget": attrs.get("trials"), "finished": sum(map(contract.is_finished, trials)),
            "states": summary_counts(trials), "best_val_error": best.value if best else None,
            "test_error_mean": evaluation.get("test_error_mean"), "winner": attrs.get("winner")}


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
    attrs = study.user_attrs
    out = {"study": study.study_name, "trial": trial.number, "seed": trial.user_attrs.get(SEED),
           "data_seed": trial.user_attrs.get(DATA_SEED, trial.user_attrs.get(SEED)),
           "device": trial.user_attrs.get(DEVICE), "val_error": trial.value,
           "test_error": trial.user_attrs.get("test_error"), "train_error": trial.user_attrs.get("train_error"),
           "best_epoch": trial.user_attrs.get("best_epoch"), "params": dict(trial.params),
           "config": trial.user_attrs.get("config", {}), "seconds": trial.user_attrs.get("seconds"),
           "finished": sum(map(contract.is_finished, study.get_trials(deepcopy=False))), "budget": attrs.get("trials")}
    if "winner" in attrs:
        out["winner"] = attrs["winner"]
    if "evaluation" in attrs:
        out["evaluation"] = attrs["evaluation"]
    return out


def train_command(config: dict[str, Any], seed: int, device: str | None = None, data_seed: int | None = None) -> str:
    """A `bioscale train` command line that trains `config` exactly as its trial did: the validation split, seeds, `device`."""
    from bioscale import rules

    parts = ["bioscale train", f"--rule {config['rule']}", f"--dataset {config['dataset']}", f"--arch {shlex.quote(config['arch'])}",
             f"--epochs {config['epochs']}", f"--activation {config['activation']}", f"--batch-size {config['batch_size']}",
             f"--seed {seed}"] + ([f"--data-seed {data_seed}"] if data_seed not in (None, seed) else []) + (
                 [f"--device {device}"] if device else [])
    defaults = rules.settings(config["rule"])
    parts += [f"--set {k}={config[k]}" for k in defaults if k in config and config[k] != defaults[k]]
    return " ".join(parts)


def evaluate_study(storage: str | None, study_name: str | None = None, seeds: Sequence[int] = (0, 1, 2),
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
    config = dict(trial.user_attrs["config"])
    epochs = epochs or int(study.user_attrs.get("epochs") or config["epochs"])
    config["epochs"] = epochs
    training, settings = spaces.split_config(config["rule"], config)
    data_seed = int(study.user_attrs.get("seed") or 0)
    data, learner = build(rule=config["rule"], dataset=config["dataset"], arch=config["arch"],
                          activation=training.get("activation", "tanh"), seeds=seeds, device=device, data_root=data_root,
                          settings=settings)
    results = fit(learner, data, epochs=epochs, batch_size=training.get("batch_size", 128), seed=data_seed,
                  progress=progress, chance_patience=0)
    del data, learner
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
    evaluation = {"seeds": seeds, "test_errors": test_errors, "train_errors": train_errors,
                  "test_error_mean": _mean(test_errors), "test_error_std": _std(test_errors),
                  "test_errors_at_best_val": at_best, "best_val_epochs": best_epochs,
                  "test_error_at_best_val_mean": _mean(at_best), "test_error_at_best_val_std": _std(at_best),
                  "epochs": epochs, "config": config, "trial": trial.number, "device": device, "data_seed": data_seed}
    if diverged:
        evaluation["diverged"] = diverged
    study.set_user_attr("evaluation", evaluation)
    return evaluation


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
