"""Trials as one population: K trials sampled together, trained as one batched model, each told its own result.

A single trial is a population of one. Every member's objective is its lowest validation error
over the epochs; the test error is recorded on every trial but never chooses or prunes anything.
Every trial of a study sees the same minibatch order (the study's seed), so a trial's numbers do
not depend on which population it trained in.
"""

from __future__ import annotations

import functools
import json
import platform
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import bioscale
from bioscale import contract, defaults, rules, spaces

from bioscale.contract import (ARCHITECTURE, BEST_EPOCH, CHECKPOINT, CONFIG, CURVE, DATA_SEED, DEVICE, DEVICE_NAME,
                               END_REASON, HEARTBEAT, POPULATION, RESULT_ATTRS, RESUMED_FROM, SECONDS, SEED, TEST_ERROR, TRAIN_ERROR,
                               VAL_ERROR, VERSIONS, WORKER, EndReason, is_finished, worker_id)
from bioscale.errors import first_line
from bioscale.resume import Checkpointing, Preempted
from bioscale.storages import heartbeat_settings, supports_heartbeat
from bioscale.train import EpochResult, FitResult

from . import checkpoints
from ._design import population_halving
from ._plan import Plan
from ._recipe import fit_configuration

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
    if plan.stage == ARCHITECTURE:
        arch_names = spaces.architecture_space(plan.family, plan.dataset)
        arch = spaces.build_arch(plan.family, plan.dataset, {k: v for k, v in values.items() if k in arch_names})
    else:
        arch = plan.arch_spec
    training, settings = spaces.split_config(plan.rule, values)
    return {"rule": plan.rule, "schedule": plan.schedule, "dataset": plan.dataset, "arch": arch,
            "epochs": plan.epochs, **defaults.TRAINING, **training, **rules.settings(plan.rule), **settings}


def summarise(curve: dict[str, list[float]]) -> dict[str, Any]:
    """The errors at the epoch of the lowest validation error (never chosen by test error)."""
    if not curve["val"]:
        return {}
    best = min(range(len(curve["val"])), key=lambda i: curve["val"][i])
    return {TRAIN_ERROR: curve["train"][best], VAL_ERROR: curve["val"][best], TEST_ERROR: curve["test"][best],
            BEST_EPOCH: best + 1}


def structural(plan: Plan) -> list[str]:
    """The sampled names every member of a population shares: all but the rule's per-member settings (`Rule.per_member`)."""
    per_member = rules.get(plan.rule).per_member
    return [name for name in plan.space if name not in per_member]


def member_settings(plan: Plan, configs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training arguments, rule settings) of a population: a per-member setting as one value per member, the rest shared."""
    training, settings = spaces.split_config(plan.rule, configs[0])
    for config in configs[1:]:
        other_training, _ = spaces.split_config(plan.rule, config)
        if other_training != training or config["arch"] != configs[0]["arch"]:
            raise ValueError("the members of a population must share their architecture and training arguments")
    for name, value in settings.items():
        values = [spaces.split_config(plan.rule, c)[1][name] for c in configs]
        if name in rules.get(plan.rule).per_member:
            settings[name] = values
        elif any(v != value for v in values):
            raise ValueError(f"the members of a population must share {name}")
    return training, settings


def train_trials(study: optuna.Study, plan: Plan, trials: list[optuna.Trial], params: list[dict[str, Any]],
                 device: str, *, progress: bool | None = None) -> None:
    """Train `trials` (their sampled `params`) as one population on `device`, report every epoch to each, and tell each its result.

    A member that diverges or that the pruner stops ends PRUNED with its reason while the others
    go on; out of memory ends every member PRUNED; any other error fails them all.
    """
    # Heartbeats start before a trial names its worker: a trial that names a worker but has no
    # heartbeat would never be found stale if that worker were killed.
    with _Heartbeat(study, trials):
        _train_and_tell(study, plan, trials, params, device, progress)


def _train_and_tell(study: optuna.Study, plan: Plan, trials: list[optuna.Trial], params: list[dict[str, Any]],
                    device: str, progress: bool | None) -> None:
    """`train_trials` inside its heartbeat: record each trial's identity, train (resuming from the population's
    checkpoint when its trials are re-runs of a population that saved one), tell each its result.

    Preempted: the trials are left RUNNING with their curves so far, the checkpoint kept, and
    `Preempted` raised for the worker to fail and re-queue them under the budget lock.
    """
    roots = [checkpoints.root_number(t) for t in trials]
    order = sorted(range(len(trials)), key=lambda i: roots[i])  # one member order for a population and its re-runs
    trials, params, roots = [trials[i] for i in order], [params[i] for i in order], [roots[i] for i in order]
    configs = [configuration(plan, p) for p in params]
    seeds = [int(t.user_attrs.get(SEED, plan.seed + t.number)) for t in trials]  # a re-queued trial keeps its seed
    curves: list[dict[str, list[float]]] = [{"train": [], "val": [], "test": []} for _ in trials]
    numbers = [t.number for t in trials]
    path = checkpoints.population_path(Path(plan.spec.checkpoint_dir), plan.study_name, roots)
    halving = population_halving(plan.spec, roots, [contract.is_default_config(t) for t in trials])
    for trial, seed, config, curve in zip(trials, seeds, configs, curves):
        for key in RESULT_ATTRS:
            if key in trial.user_attrs:
                trial.set_user_attr(key, None)
        for key, value in ((SEED, seed), (DATA_SEED, plan.seed), (POPULATION, numbers), (DEVICE, device),
                           (WORKER, f"{worker_id()}:{trial.number}"), (VERSIONS, versions()), (CONFIG, config),
                           (CURVE, curve), (CHECKPOINT, str(path)), (RESUMED_FROM, None)):
            trial.set_user_attr(key, value)
        if device.startswith("cuda"):
            import torch

            trial.set_user_attr(DEVICE_NAME, torch.cuda.get_device_name(torch.device(device)))

    def record_epoch(member: int, record: EpochResult) -> None:
        curve = curves[member]
        curve["train"].append(record.train_error)
        curve["val"].append(record.val_error)
        curve["test"].append(record.test_error)
        trials[member].report(record.val_error, record.epoch)  # one write per epoch; the curve is written as the trial ends

    def report(member: int, record: EpochResult) -> bool:
        record_epoch(member, record)
        # after the last epoch there is nothing to save
        return not (record.epoch < plan.epochs and trials[member].should_prune())

    def resumed(epoch: int, histories: list[FitResult]) -> None:
        for member, history in enumerate(histories):
            for record in history.history:
                record_epoch(member, record)
            trials[member].set_user_attr(RESUMED_FROM, epoch)
        print(f"bioscale: trials {numbers} resume from their checkpoint after epoch {epoch}", file=sys.stderr, flush=True)

    meta = json.loads(json.dumps({"study": plan.study_name, "roots": roots, "seeds": seeds, "data_seed": plan.seed,
                                  "configs": configs}))
    checkpoint = Checkpointing(path, every=plan.spec.checkpoint_every, meta=meta, on_resume=resumed)
    start = time.perf_counter()
    reasons: list[str | None] = [None] * len(trials)  # each trial's `end_reason`
    outcomes: list[tuple[TrialState, float | None]] = [(TrialState.FAIL, None)] * len(trials)
    preempted = False
    try:
        try:
            results = _train(plan, configs, seeds, device, report, progress, checkpoint, halving)
            for member, result in enumerate(results):
                if result.pruned_at is not None and halving is not None:  # halving replaces the pruner
                    reasons[member] = EndReason.HALVED.text(f"stopped by successive halving at epoch {result.pruned_at}")
                    outcomes[member] = (TrialState.PRUNED, result.best.val_error)
                elif result.diverged is not None:
                    kind = EndReason.STALLED if result.diverged.stalled else EndReason.DIVERGED
                    reasons[member] = kind.text(result.diverged.reason)
                    outcomes[member] = (TrialState.PRUNED, None)
                elif result.pruned_at is not None:
                    reasons[member] = EndReason.PRUNED.text()
                    outcomes[member] = (TrialState.PRUNED, None)
                else:
                    outcomes[member] = (TrialState.COMPLETE, result.best.val_error)
        except KeyboardInterrupt:
            reasons = [EndReason.INTERRUPTED.text()] * len(trials)
            raise
        except Preempted as error:
            preempted = True
            reasons = [EndReason.PREEMPTED.text(str(error))] * len(trials)
            raise
        except Exception as error:
            out_of_memory = _out_of_memory(error)
            if not out_of_memory:
                reason = EndReason.ERROR.text(f"{type(error).__name__}: {first_line(error, '')}".rstrip(": "))
                reasons = [reason] * len(trials)
                print(f"bioscale: trials {numbers} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            else:
                reasons = [f"{EndReason.OUT_OF_MEMORY.value} on {device}: {first_line(error, '')}".rstrip(": ")] * len(trials)
                outcomes = [(TrialState.PRUNED, None)] * len(trials)
        # Out of memory: outside the handler, so that the error's traceback (which holds the
        # population's network and activations) is gone before the memory is given back.
        if reasons[0] is not None and contract.read_end_reason(reasons[0]) == EndReason.OUT_OF_MEMORY:
            _free_memory(device)
    finally:
        seconds = round(time.perf_counter() - start, 3)
        for trial, curve, reason, (state, value) in zip(trials, curves, reasons, outcomes):
            trial.set_user_attr(CURVE, curve)
            for key, item in summarise(curve).items():
                trial.set_user_attr(key, item)
            trial.set_user_attr(SECONDS, seconds)
            if reason is not None:
                trial.set_user_attr(END_REASON, reason)
            if not preempted and state == TrialState.PRUNED and value is not None:
                # halved: Optuna's tell would take the last epoch's error; its value is the best so far
                study._storage.set_trial_state_values(trial._trial_id, state, [value])  # noqa: SLF001
            elif not preempted:
                study.tell(trial, value, state=state, skip_if_finished=True)
        if not preempted and not plan.spec.keep_checkpoints and all(
                is_finished(study._storage.get_trial(t._trial_id)) for t in trials):  # noqa: SLF001
            checkpoints.remove(path)


def _train(plan: Plan, configs: list[dict[str, Any]], seeds: list[int], device: str,
           report: Callable[[int, EpochResult], bool], progress: bool | None,
           checkpoint: Checkpointing | None = None, halving: Callable[[int, dict[int, float]], list[int]] | None = None,
           ) -> list[FitResult]:
    """Build and fit the population; its net and data live only in that call (freed when it returns or raises)."""
    _, settings = member_settings(plan, configs)
    return fit_configuration(configs[0], settings, seeds, device, data_seed=plan.seed, data_root=plan.data_root,
                             val_size=plan.val_size, callback=report, progress=progress,
                             chance_patience=plan.chance_patience, drop_stopped=True, checkpoint=checkpoint, select=halving)


class _Heartbeat:
    """Records a heartbeat for every running trial of a population while it trains.

    RDB storages: their own heartbeat table (Optuna's). Storages without one (journal files): the
    trial's `heartbeat` attribute, the time of the latest beat, which workers on other machines read.
    """

    def __init__(self, study: optuna.Study, trials: list[optuna.Trial]) -> None:
        self.storage = study._storage  # noqa: SLF001 - Optuna keeps no public handle on a study's storage
        self.native = supports_heartbeat(self.storage)
        self.ids = [t._trial_id for t in trials]  # noqa: SLF001
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        self.beat()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def beat(self) -> None:
        for trial_id in self.ids:
            if self.native:
                self.storage.record_heartbeat(trial_id)
            else:
                try:
                    self.storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass

    def run(self) -> None:
        interval = self.storage.get_heartbeat_interval() if self.native else heartbeat_settings()[0]
        while not self.stop.wait(interval):
            self.beat()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


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
