"""The study's progress bar: trials finished of the budget and the best so far, on a terminal only."""

from __future__ import annotations

import threading

import optuna
from optuna.trial import TrialState

from bioscale.contract import StudyInfo, best_trial, is_finished
from bioscale.formats import percent
from bioscale.storages import open_storage

from ._plan import Plan


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
        self._bar.total = max(self._bar.total, StudyInfo.from_attrs(study.user_attrs).trials or self.plan.trials)
        self._bar.n = sum(map(is_finished, trials))
        self._bar.set_postfix(best=percent(best.value if best else None), running=running, refresh=False)
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
