"""Running a study: prepare it, run its workers (one in this process, or supervised processes), show progress."""

from __future__ import annotations

import os
import sys
import threading
import optuna

from bioscale import executors
from bioscale.contract import ARCHITECTURE
from bioscale.spec import LaunchSpec, StudySpec

from ._prepare import open_study, prepare, record_winner
from ._progress import StudyProgress
from ._workers import SupervisedWorker, work


def run_study(spec: StudySpec, *, progress: bool = True) -> optuna.Study:
    """Create (or resume) the study `spec` describes and run it until its trials have finished, over its workers.

    Everything is checked before the study is created; bad input raises UsageError. See
    `bioscale.spec.StudySpec` for what each setting does.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        plan, storage_obj, devices = prepare(spec)
        spec = plan.spec
        open_study(plan, storage_obj)
        workers, population = spec.workers, spec.population
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
                    processes = executors.get("processes")(LaunchSpec(executor="processes", jobs=workers))
                    jobs = processes.map_array(SupervisedWorker(plan, workers, threads), range(workers),
                                               [devices[slot % len(devices)] for slot in range(workers)])
                    for _ in processes.as_completed(jobs):
                        pass
                finally:
                    stop.set()
                    poller.join()
        finally:
            bar.close()
        study = optuna.load_study(study_name=plan.study_name, storage=storage_obj)
        if plan.spec.stage == ARCHITECTURE:
            record_winner(study)
        return study
    finally:
        optuna.logging.set_verbosity(verbosity)
