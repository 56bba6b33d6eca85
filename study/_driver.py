"""Running a study: create or resume it, then run workers until the global trial budget is spent.

The budget counts finished trials (complete, pruned, or failed with an error) plus the ones
running or queued; every worker checks it and asks for its next trial under one lock per study
(`BudgetLock`), so K workers on any number of machines finish exactly N trials. A local worker
that dies is replaced by the `Supervisor`, which fails and re-queues its trial at once; a worker
lost elsewhere (another command, another machine) is noticed by heartbeats (RDB storages) or by
its process id (journal files, one machine). A re-queued trial keeps its parameters and seed,
and the failed one does not count. A worker with nothing left to start waits while other trials
run, so that one of them dying is still picked up.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import threading
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from bioscale.contract import (SAME_ON_RESUME, best_trial, counts_against_budget, is_finished, name_objective,
                               trial_worker)
from bioscale.data import load
from bioscale.devices import AUTO, resolve_devices
from bioscale.errors import UsageError
from bioscale.nets import arch_family, resolve_arch
from bioscale.storages import (DEFAULT_STORAGE, MAX_RETRY, heartbeat_settings, open_storage, parse_storage,
                               supports_heartbeat)

from ._objective import make_objective
from ._lock import BudgetLock
from ._plan import Plan, check_common, label, search_space, study_name
from ._samplers import make_pruner, make_sampler, sampler_settings

def run_study(stage: str, rule: str, dataset: str, arch: str, trials: int = 60, *, schedule: str | None = None,
              storage: str | None = DEFAULT_STORAGE, study_name: str | None = None, sampler: str = "tpe",
              pruner: str = "none", epochs: int = 10, workers: int = 1, devices: Sequence[str] | str = AUTO,
              fixed: Mapping[str, Any] | None = None, seed: int = 0, data_root: str | None = None,
              progress: bool = True, chance_patience: int = 5, val_size: float | int | None = None) -> optuna.Study:
    """Create (or resume) a study and run it until `trials` trials have finished, over `workers` processes.

    `fixed` takes `--set` overrides: a value fixes a parameter, `low:high` or `a,b,c` narrows
    it. Everything is checked before the study is created; bad input raises UsageError.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _run(stage, rule, dataset, arch, trials, schedule=schedule, storage=storage, study_name=study_name,
                    sampler=sampler, pruner=pruner, epochs=epochs, workers=workers, devices=devices, fixed=fixed,
                    seed=seed, data_root=data_root, progress=progress, chance_patience=chance_patience,
                    val_size=val_size)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _run(stage: str, rule: str, dataset: str, arch: str, trials: int, *, schedule: str | None, storage: str | None,
         study_name: str | None, sampler: str, pruner: str, epochs: int, workers: int, devices: Sequence[str] | str,
         fixed: Mapping[str, Any] | None, seed: int, data_root: str | None, progress: bool, chance_patience: int,
         val_size: float | int | None) -> optuna.Study:
    plan, storage_obj, devices = prepare(stage, rule, dataset, arch, trials, schedule=schedule, storage=storage,
                                         study_name_=study_name, sampler=sampler, pruner=pruner, epochs=epochs,
                                         workers=workers, devices=devices, fixed=fixed or {}, seed=seed,
                                         data_root=data_root, chance_patience=chance_patience, val_size=val_size)
    study = open_study(plan, storage_obj)
    if progress:
        print(f"study {plan.study_name}: {workers} worker(s) on {', '.join(devices)}", file=sys.stderr, flush=True)
    show = progress and sys.stderr.isatty()
    bar = StudyProgress(plan, show)
    try:
        if workers == 1:
            work(plan, 0, devices[0], None, progress=None if show else False, on_change=bar.refresh, storage=storage_obj)
        else:
            _run_parallel(plan, workers, devices, bar)
    finally:
        bar.close()
    study = optuna.load_study(study_name=plan.study_name, storage=storage_obj)
    if plan.stage == "architecture":
        record_winner(study)
    return study


def prepare(stage: str, rule: str, dataset: str, arch: str, trials: int, *, schedule: str | None, storage: str | None,
            study_name_: str | None, sampler: str, pruner: str, epochs: int, workers: int,
            devices: Sequence[str] | str, fixed: Mapping[str, Any], seed: int, data_root: str | None,
            chance_patience: int, val_size: float | int | None) -> tuple[Plan, BaseStorage, list[str]]:
    """Check a study's whole configuration, then open its storage; raises UsageError before creating anything."""
    rule, schedule, overrides = check_common(stage=stage, rule=rule, schedule=schedule, dataset=dataset, epochs=epochs,
                                             trials=trials, sampler=sampler, pruner=pruner,
                                             chance_patience=chance_patience, overrides=fixed)
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a whole number >= 1 (got {workers!r})")
    device_list = resolve_devices(devices)
    family, space, fixed_values = search_space(stage, rule, schedule, dataset, arch, overrides)
    if not isinstance(seed, int):
        raise UsageError(f"seed must be a whole number (got {seed!r})")
    load(dataset, root=data_root, val_size=val_size)  # the data must be there before any trial starts
    if workers > 1 or device_list[0] != "cpu":
        load.cache_clear()  # the workers load their own copy, on their own device
    spec = parse_storage(storage)
    if spec.kind != "journal":
        heartbeat_settings()  # malformed heartbeat settings are user errors too
    storage_obj = open_storage(spec)
    arch_name, arch_spec, arch_from = arch, None, None
    if stage == "tune":
        if arch.startswith("@"):
            arch_from = arch
            arch_spec = arch_name = winner_of(storage_obj, arch[1:])
            family = arch_family(arch_spec)
        else:
            arch_spec = resolve_arch(arch, dataset)
    name = study_name_ or study_name(stage, dataset, arch_name, label(rule, schedule))
    plan = Plan(stage=stage, rule=rule, schedule=schedule, dataset=dataset, arch=arch_name, arch_spec=arch_spec,
                arch_from=arch_from, family=family, epochs=epochs, trials=trials, sampler=sampler, pruner=pruner,
                seed=seed, chance_patience=chance_patience, space=space, fixed=fixed_values, storage=spec,
                study_name=name, data_root=data_root, val_size=val_size)
    return plan, storage_obj, device_list


def winner_of(storage: BaseStorage, name: str) -> str:
    """The architecture spec an architecture-stage study chose."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        raise UsageError(f"no study {name!r} in this storage to take an architecture from; studies: {names or 'none'}") from None
    if study.user_attrs.get("stage") != "architecture":
        raise UsageError(f"study {name!r} is not an architecture-stage study")
    winner = study.user_attrs.get("winner")
    if not winner:
        raise UsageError(f"architecture study {name!r} has no winner yet (no trial has completed)")
    return winner


def open_study(plan: Plan, storage: BaseStorage) -> optuna.Study:
    """Create the study, or resume it when its recorded settings match the plan's."""
    attrs = _jsonable(plan.info(sampler_settings(plan.sampler, plan.seed)).to_attrs())
    study = optuna.create_study(storage=storage, study_name=plan.study_name, direction="minimize", load_if_exists=True)
    existing = study.user_attrs
    if "stage" not in existing:
        if study.get_trials(deepcopy=False) or len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MINIMIZE:
            raise UsageError(f"study {plan.study_name!r} exists but bioscale did not create it; choose another --study-name")
        name_objective(study)
        for key, value in attrs.items():  # `stage` last: a worker that sees it knows every other attribute is there
            study.set_user_attr(key, value)
        return study
    for key in SAME_ON_RESUME:
        if _jsonable(existing.get(key)) != attrs[key]:
            shown = "its search space" if key == "space" else f"{key}={json.dumps(existing.get(key))}"
            raise UsageError(f"study {plan.study_name!r} exists with {shown}, which this run changes; "
                             f"rerun with the same settings to resume it, or give another --study-name")
    if existing.get("trials") != plan.trials:
        study.set_user_attr("trials", plan.trials)
    return study


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def record_winner(study: optuna.Study) -> str | None:
    """Store the best complete trial's architecture as the study's `winner`; returns it."""
    best = best_trial(study.get_trials(deepcopy=False))
    if best is None:
        return None
    winner = best.user_attrs["config"]["arch"]
    if study.user_attrs.get("winner") != winner or study.user_attrs.get("winner_trial") != best.number:
        study.set_user_attr("winner", winner)
        study.set_user_attr("winner_trial", best.number)
    return winner


# ---------------------------------------------------------------------------------------------
# Workers


def work(plan: Plan, index: int, device: str, threads: int | None, *, progress: bool | None = False,
         on_change: Callable[[optuna.Study], None] | None = None, storage: BaseStorage | None = None) -> int:
    """One worker: take trials under the budget lock until the study's budget is spent; returns how many it ran."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = storage if storage is not None else open_storage(plan.storage)
    heartbeat = supports_heartbeat(storage)
    interval, grace = heartbeat_settings() if heartbeat else (2, 0)
    study = optuna.load_study(study_name=plan.study_name, storage=storage, pruner=make_pruner(plan.pruner, plan.epochs))
    study.sampler = make_sampler(plan.sampler, plan.seed, stream=_stream(index, len(study.get_trials(deepcopy=False))))
    lock = BudgetLock(plan.storage, plan.study_name)
    objective = make_objective(plan, device, progress=progress, before=lock.release)
    orphan_patience = max(2 * grace, 60)
    poll = max(1.0, min(float(interval), 5.0))
    ran = 0
    try:
        while True:
            lock.acquire()
            try:
                recover_lost_trials(study, storage, heartbeat, orphan_patience)
                step = next_step(study, _budget(study, plan))
                if step == "run":
                    study.optimize(objective, n_trials=1, catch=(Exception,))
                    ran += 1
            finally:
                lock.release()
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
    return int(study.user_attrs.get("trials", plan.trials))


def next_step(study: optuna.Study, budget: int) -> str:
    """'run' (a queued trial, or budget left), 'wait' (others' trials still running), or 'done'."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return "run"
    if sum(counts_against_budget(t) for t in trials) < budget:
        return "run"
    if any(t.state == TrialState.RUNNING for t in trials):
        return "wait"
    return "done"


def recover_lost_trials(study: optuna.Study, storage: BaseStorage, heartbeat: bool, orphan_patience: float) -> None:
    """Fail and re-queue trials whose worker is gone: stale heartbeats, dead local processes, orphans."""
    if heartbeat:
        optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        alive = _worker_alive(trial, check_pid=not heartbeat)
        age = (now - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0
        if alive is False or (alive is None and age > orphan_patience):
            _fail_and_requeue(study, storage, trial)


def _worker_alive(trial: FrozenTrial, check_pid: bool) -> bool | None:
    """True/False when the trial names its worker (and the pid can be checked), None when it does not."""
    worker = trial_worker(trial)
    if worker is None:
        return None  # not started yet, or attributes inherited by a retry that has not started
    host, pid = worker
    if not check_pid or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_and_requeue(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial) -> None:
    try:
        changed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    if changed:
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, storage.get_trial(trial._trial_id))


def _run_parallel(plan: Plan, workers: int, devices: list[str], bar: "StudyProgress") -> None:
    """Run `workers` worker processes to the study's budget, replacing any that dies (see `Supervisor`)."""
    cpu_only = all(d == "cpu" for d in devices)
    threads = max(1, (os.cpu_count() or 1) // workers) if cpu_only else None
    stop = threading.Event()
    poller = threading.Thread(target=bar.poll, args=(stop,), daemon=True)
    poller.start()
    try:
        Supervisor(plan, workers, devices, threads).run()
    finally:
        stop.set()
        poller.join()


class Supervisor:
    """Plain worker processes watched by the driver: one that dies (SIGKILL, out-of-memory kill) is replaced.

    The dead worker's running trial is failed and re-queued with the same parameters at once
    (not after a heartbeat grace period), under the budget lock, so the other workers' trials
    go on untouched and the study still ends with exactly its budget finished. A worker that
    exits with an error, or more deaths than `max_restarts`, ends the run with a RuntimeError.
    """

    def __init__(self, plan: Plan, workers: int, devices: list[str], threads: int | None, *,
                 max_restarts: int | None = None, poll: float = 0.5) -> None:
        import multiprocessing

        self.plan, self.workers, self.devices, self.threads, self.poll = plan, workers, devices, threads, poll
        self.max_restarts = 3 * workers if max_restarts is None else max_restarts
        self._context = multiprocessing.get_context("spawn")  # no forked CUDA or database state
        self._started = 0

    def _start(self, slot: int):
        # Each process gets its own sampler stream index, replacements included.
        process = self._context.Process(target=work, args=(self.plan, self._started, self.devices[slot % len(self.devices)],
                                                           self.threads), name=f"bioscale-worker-{self._started}")
        self._started += 1
        process.start()
        return process

    def run(self) -> None:
        """Start the workers and watch them until every one has finished the budget."""
        slots = {slot: self._start(slot) for slot in range(self.workers)}
        restarts = 0
        try:
            while slots:
                time.sleep(self.poll)
                for slot, process in list(slots.items()):
                    if process.is_alive():
                        continue
                    process.join()
                    if process.exitcode == 0:
                        del slots[slot]
                    elif process.exitcode > 0:
                        raise RuntimeError(f"worker {process.pid} on {self.devices[slot % len(self.devices)]} stopped with an "
                                           f"error (exit {process.exitcode}; its traceback is above); rerun the same command to resume")
                    else:
                        restarts += 1
                        if restarts > self.max_restarts:
                            raise RuntimeError(f"{restarts} worker processes died (the last by signal {-process.exitcode}); "
                                               "rerun the same command to resume the study")
                        self.requeue_trials_of(process.pid)
                        print(f"bioscale: worker {process.pid} died (signal {-process.exitcode}); its trial is re-queued "
                              "and a new worker started", file=sys.stderr, flush=True)
                        slots[slot] = self._start(slot)
        finally:
            for process in slots.values():
                if process.is_alive():
                    process.terminate()
            for process in slots.values():
                process.join()

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


class StudyProgress:
    """A progress bar for the study (trials finished of the budget, best so far), on a terminal only."""

    def __init__(self, plan: Plan, show: bool) -> None:
        self.plan, self.show, self._bar, self._storage = plan, show, None, None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=plan.trials, desc=plan.study_name, unit="trial", dynamic_ncols=True, position=0)

    def refresh(self, study: optuna.Study) -> None:
        """Update from the study's trials."""
        if self._bar is None:
            return
        trials = study.get_trials(deepcopy=False)
        best = best_trial(trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        self._bar.total = max(self._bar.total, int(study.user_attrs.get("trials", self.plan.trials)))
        self._bar.n = sum(map(is_finished, trials))
        self._bar.set_postfix(best=f"{100 * best.value:.2f}%" if best else "-", running=running, refresh=False)
        self._bar.refresh()

    def poll(self, stop: threading.Event, every: float = 2.0) -> None:
        """Refresh from the storage until `stop` is set (used while worker processes run)."""
        if self._bar is None:
            return
        storage = open_storage(self.plan.storage, heartbeat=False)
        study = optuna.load_study(study_name=self.plan.study_name, storage=storage)
        while not stop.wait(every):
            try:
                self.refresh(study)
            except Exception:  # a busy database must not stop the run  # pragma: no cover
                pass
        self.refresh(study)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
