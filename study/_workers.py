"""Workers: each takes trials under the budget lock until the study's budget is spent; a supervisor replaces dead ones.

A worker asks up to `plan.spec.population` trials at once and trains them as one population
(`_objective.train_trials`): fresh trials share the first one's structural values (architecture,
activation, batch size, schedule period, ...), drawn by the study's sampler with those values
fixed; queued trials (re-queued ones, the default configuration) go first, in queue order, as
many as agree on those values.

The budget counts finished trials (complete, pruned, or failed with an error) plus the ones
running or queued; every worker checks it and asks for its next trial under one lock per study
(`BudgetLock`), so K workers on any number of machines finish exactly N trials. A local worker
that dies is replaced (`SupervisedWorker` under the `processes` executor), its trial failed and re-queued at once; a worker
lost elsewhere (another command, another machine) is noticed by heartbeats (RDB storages) or by
its process id (journal files, one machine). A re-queued trial keeps its parameters and seed,
and the failed one does not count. A worker with nothing left to start waits while other trials
run, so that one of them dying is still picked up.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time
import warnings
from typing import Callable

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from bioscale import executors, resume
from bioscale.contract import HEARTBEAT, QUEUED_PARAMS, StudyInfo, counts_against_budget, trial_worker
from bioscale.resume import Preempted
from bioscale.storages import MAX_RETRY, heartbeat_settings, open_storage, supports_heartbeat

from ._design import Design
from ._lock import BudgetLock
from ._objective import structural, suggest, train_trials
from ._plan import Plan
from ._samplers import make_pruner, make_sampler


def work(plan: Plan, index: int, device: str, threads: int | None, *, progress: bool | None = False,
         on_change: Callable[[optuna.Study], None] | None = None, storage: BaseStorage | None = None) -> int:
    """One worker: take trials under the budget lock until the study's budget is spent; returns how many it ran."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Populations are asked and told by hand (one batched model trains many trials), with heartbeats of their own.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    storage = storage if storage is not None else open_storage(plan.storage)
    heartbeat = supports_heartbeat(storage)
    interval, grace = heartbeat_settings()
    study = optuna.load_study(study_name=plan.study_name, storage=storage, pruner=make_pruner(plan.spec.pruner, plan.spec.epochs))
    study.sampler = make_sampler(plan.spec.sampler, Design.of(plan.spec).seed,
                                 stream=_stream(index, len(study.get_trials(deepcopy=False))), space=plan.space)
    lock = BudgetLock(plan.storage, plan.study_name)
    orphan_patience = max(2 * grace, 60)
    poll = max(1.0, min(float(interval), 5.0)) if heartbeat else 2.0
    ran = 0
    try:
        while True:
            if resume.stop_requested():
                raise Preempted(0, 0, None)
            lock.acquire()
            try:
                recover_lost_trials(study, storage, heartbeat, orphan_patience, grace)
                step, size = next_step(study, _budget(study, plan), plan.spec.population)
                if step == "run":
                    trials, params = ask_population(study, plan, size)
            finally:
                lock.release()
            if step == "run":
                try:
                    train_trials(study, plan, trials, params, device, progress=progress)
                except Preempted:
                    lock.acquire()
                    try:
                        for trial in trials:
                            requeue_preempted(study, storage, trial)
                    finally:
                        lock.release()
                    raise
                ran += len(trials)
            if on_change is not None:
                on_change(study)
            if step == "done":
                return ran
            if step == "wait":
                time.sleep(poll)
    finally:
        lock.close()


def _stream(index: int, trials_before: int) -> int:
    """Distinct sampler streams for each worker and each rerun of a study."""
    return index * 1_000_003 + trials_before


def _budget(study: optuna.Study, plan: Plan) -> int:
    """The global budget: the latest `trials` any run of this study asked for."""
    return StudyInfo.from_attrs(study.user_attrs).trials or plan.spec.trials


def next_step(study: optuna.Study, budget: int, population: int = 1) -> tuple[str, int]:
    """('run', how many trials to ask: queued ones and budget left, at most `population`), ('wait', 0) while others' trials run, or ('done', 0)."""
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    left = max(0, budget - sum(counts_against_budget(t) for t in trials))
    if waiting or left:
        return "run", min(population, waiting + left)
    if any(t.state == TrialState.RUNNING for t in trials):
        return "wait", 0
    return "done", 0


def ask_population(study: optuna.Study, plan: Plan, size: int) -> tuple[list[optuna.Trial], list[dict]]:
    """Up to `size` trials that share their structural values, with their sampled parameters (call under the budget lock).

    Queued trials come first: the longest run at the head of the queue that agrees with the
    first on every structural value; fresh trials fill the rest only when the space samples no
    structural value (so they cannot be biased towards the queued ones). Otherwise fresh trials:
    the first sampled freely, the others with its structural values fixed (`PartialFixedSampler`
    over the study's sampler).
    """
    names = structural(plan)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if waiting:
        shared = [{n: _queued_value(t, n) for n in names} for t in waiting[:size]]
        queued = next((i for i, s in enumerate(shared) if s != shared[0]), len(shared))
        count = size if not names and queued == len(waiting) else queued
        trials = [study.ask() for _ in range(count)]  # Optuna pops the queue in order, then makes fresh trials
        return trials, [_sample(t, plan) for t in trials]
    first = study.ask()
    params = [_sample(first, plan)]
    trials = [first]
    if size > 1:
        sampler = study.sampler
        study.sampler = optuna.samplers.PartialFixedSampler({n: params[0][n] for n in names}, sampler)
        try:
            for _ in range(size - 1):
                trials.append(study.ask())
                params.append(_sample(trials[-1], plan))
        finally:
            study.sampler = sampler
    return trials, params


def _queued_value(trial: FrozenTrial, name: str) -> object:
    """A queued trial's value of `name`: a re-queued trial's own parameter, or what the default trial was queued with."""
    return trial.params[name] if name in trial.params else trial.user_attrs.get(QUEUED_PARAMS, {}).get(name)


def _sample(trial: optuna.Trial, plan: Plan) -> dict:
    return {name: suggest(trial, name, dist) for name, dist in plan.space.items()}


def recover_lost_trials(study: optuna.Study, storage: BaseStorage, heartbeat: bool, orphan_patience: float,
                        grace: float | None = None) -> None:
    """Fail and re-queue trials whose worker is gone: stale heartbeats, dead local processes, orphans."""
    if heartbeat:
        optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        alive = _worker_alive(trial, check_pid=not heartbeat, grace=grace)
        age = (now - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0
        if alive is False or (alive is None and age > orphan_patience):
            _fail_and_requeue(study, storage, trial)


def _worker_alive(trial: FrozenTrial, check_pid: bool, grace: float | None = None) -> bool | None:
    """True/False when the trial names its worker (and its pid, or on another machine its `heartbeat` attribute, can be
    checked), None when it does not. `check_pid`: the storage has no heartbeats of its own (journal files)."""
    worker = trial_worker(trial)
    if worker is None:
        return None  # not started yet, or attributes inherited by a retry that has not started
    host, pid = worker
    if not check_pid:
        return True
    if host != socket.gethostname():
        beat = trial.user_attrs.get(HEARTBEAT)
        if grace is None or not isinstance(beat, (int, float)) or isinstance(beat, bool):
            return True
        return time.time() - beat <= grace
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_and_requeue(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial | optuna.Trial,
                      retry: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
    """Fail a running trial and queue a copy with its parameters and seed, made by `retry` (an Optuna retry callback;
    default: the stale-trial one, at most MAX_RETRY times). A trial already finished is left alone."""
    try:
        changed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)  # noqa: SLF001
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    if changed:
        retry = retry or RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        retry(study, storage.get_trial(trial._trial_id))  # noqa: SLF001


def requeue_preempted(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial) -> None:
    """Fail a preempted trial (its `end_reason` says so) and queue it again with the same parameters and seed, however often.

    Call under the budget lock: the failed trial stops counting as the copy starts to.
    """
    _fail_and_requeue(study, storage, trial, RetryHeartbeatStaleTrialCallback(max_retry=None))


class SupervisedWorker(executors.Requeueable):
    """A `study run` worker as a task of the `processes` executor: one that dies (SIGKILL, out-of-memory kill) is replaced.

    The dead worker's running trials are failed and re-queued with the same parameters at once
    (not after a heartbeat grace period), under the budget lock, so the other workers' trials
    go on untouched and the study still ends with exactly its budget finished. The replacement
    gets a sampler stream of its own (the next worker index).
    """

    def __init__(self, plan: Plan, workers: int, threads: int | None) -> None:
        self.plan, self.workers, self.threads = plan, workers, threads
        self.replaced = 0

    def __call__(self, index: int, device: str) -> int:
        """Run worker `index` on `device` until the budget is spent; how many trials it ran."""
        return work(self.plan, index, device, self.threads)

    def lost(self, pid: int, index: int, device: str) -> tuple[int, str]:
        """Re-queue the running trials of the dead worker `pid`; its replacement's arguments."""
        numbers = self.requeue_trials_of(pid)
        print(f"bioscale: worker {pid}'s trial(s) {', '.join(map(str, numbers)) or '(none)'} re-queued", file=sys.stderr, flush=True)
        self.replaced += 1
        return self.workers + self.replaced - 1, device

    def requeue_trials_of(self, pid: int) -> list[int]:
        """Fail and re-queue every running trial of the dead worker `pid`; returns their numbers."""
        storage = open_storage(self.plan.storage, heartbeat=False)
        study = optuna.load_study(study_name=self.plan.study_name, storage=storage)
        lock = BudgetLock(self.plan.storage, self.plan.study_name)
        lock.acquire()
        try:
            lost = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if trial_worker(t) == (socket.gethostname(), pid)]
            for trial in lost:
                _fail_and_requeue(study, storage, trial)
        finally:
            lock.close()
        return [t.number for t in lost]
