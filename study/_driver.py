"""Running a study: prepare it, run its workers (one in this process, or supervised processes), show progress."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Mapping, Sequence

import optuna

from bioscale.devices import AUTO
from bioscale.storages import DEFAULT_STORAGE

from ._prepare import open_study, prepare, record_winner
from ._progress import StudyProgress
from ._workers import Supervisor, work


def run_study(stage: str, rule: str, dataset: str, arch: str, trials: int = 60, *, schedule: str | None = None,
              storage: str | None = DEFAULT_STORAGE, study_name: str | None = None, sampler: str = "tpe",
              pruner: str = "none", epochs: int = 10, workers: int = 1, devices: Sequence[str] | str = AUTO,
              fixed: Mapping[str, Any] | None = None, seed: int = 0, data_root: str | None = None,
              progress: bool = True, chance_patience: int = 5, val_size: float | int | None = None,
              protocol: str = "extended", activation: str | None = None, default_trial: bool = False,
              population: int = 1) -> optuna.Study:
    """Create (or resume) a study and run it until `trials` trials have finished, over `workers` processes.

    `protocol` decides what is sampled and what held (`bioscale.spaces.protocols`: "paper" or
    "extended"); `activation` holds the activation (and names the study `...:{activation}`).
    `fixed` takes `--set` overrides: a value fixes a parameter, `low:high` or `a,b,c` narrows
    it. With `default_trial`, a new tuning study first trains the rule's default settings once,
    outside its budget and its statistics, to measure how much tuning buys. Each worker trains
    up to `population` trials at once as one batched model (same numbers, less time per trial).
    Everything is checked before the study is created; bad input raises UsageError.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        plan, storage_obj, devices = prepare(stage, rule, dataset, arch, trials, schedule=schedule, storage=storage,
                                             study_name_=study_name, sampler=sampler, pruner=pruner, epochs=epochs,
                                             workers=workers, devices=devices, fixed=fixed or {}, seed=seed,
                                             data_root=data_root, chance_patience=chance_patience, val_size=val_size,
                                             protocol=protocol, activation=activation, population=population)
        open_study(plan, storage_obj, default_trial=default_trial)
        if progress:
            print(f"study {plan.study_name}: {workers} worker(s) on {', '.join(devices)}"
                  + (f", populations of {population} trials" if population > 1 else ""), file=sys.stderr, flush=True)
        show = progress and sys.stderr.isatty()
        bar = StudyProgress(plan, show)
        try:
            if workers == 1:
                work(plan, 0, devices[0], None, progress=None if show else False, on_change=bar.refresh, storage=storage_obj)
            else:
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
        finally:
            bar.close()
        study = optuna.load_study(study_name=plan.study_name, storage=storage_obj)
        if plan.stage == "architecture":
            record_winner(study)
        return study
    finally:
        optuna.logging.set_verbosity(verbosity)
