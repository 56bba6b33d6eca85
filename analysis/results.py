"""`compute()`: load the matching studies as `LoadedStudy`s, then every registered analysis computes its numbers from them.

Loading reads what a storage holds (trials at the study's fidelity, the chance level, the
re-evaluated best, the best table); every statistic is computed by the analysis module that
reports it (`registry.py`), never here.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from bioscale.contract import best_trial

from .analyses.protocol import REDUCED_MARK, reduced_budgets
from .statistics.design import fidelity_trials
from .statistics.evaluation import Evaluated, evaluated
from .statistics.evidence import learned
from .statistics.importance import FANOVA_SEEDS, MIN_TRIALS
from .statistics.outcomes import chance_error
from .storage import StudyRecord, display_name, read_storage, select_across
from .tables import best_table_from, trials_frame


@dataclass
class LoadedStudy:
    """One study as the analyses read it: its record, its name in the report, and its trials at the study's fidelity."""

    record: StudyRecord
    name: str
    status: str = "ok"
    chance: float = math.nan  # the chance-level error a diverged trial counts with
    complete: list[FrozenTrial] = field(default_factory=list)  # trained configurations (`design.fidelity_trials`)
    everything: list[FrozenTrial] = field(default_factory=list)  # every finished one with an error, diverged at chance
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    evaluated: Evaluated | None = None

    @property
    def analysed(self) -> bool:
        """False when the study was skipped or has no complete trial."""
        return bool(self.complete)

    @property
    def judged_errors(self) -> list[float]:
        """The errors 'learned' is judged on: each evaluated seed's (a diverged one at chance), else the study's best
        at the full budget (`contract.best_trial`, the default included); [] when there is neither."""
        ev = self.evaluated
        if ev is not None and ev.n:
            return ev.with_diverged
        best = best_trial(self.record.trials)
        return [float(best.value)] if best is not None else []

    @property
    def learned(self) -> bool:
        """Whether the study learned (`evidence.learned`: every judged error at most half of chance)."""
        return learned(self.judged_errors, self.chance)


@dataclass
class Analysis:
    """The loaded studies and every registered analysis's numbers, by its NAME (`registry.compute_all`)."""

    url: str
    patterns: list[str] | None
    storage: BaseStorage
    studies: list[LoadedStudy]
    best: pd.DataFrame
    seeds: int = FANOVA_SEEDS  # fANOVA forests per study
    progress: bool = False
    computed: dict[str, Any] | None = None  # every registered analysis's numbers, by its NAME

    @property
    def records(self) -> list[StudyRecord]:
        """The studies read, in analysis order."""
        return [a.record for a in self.studies]

    @property
    def groups(self) -> dict[tuple[str, str], list[LoadedStudy]]:
        """The studies per (dataset, arch): the rules that are compared with each other."""
        groups: dict[tuple[str, str], list[LoadedStudy]] = {}
        for a in self.studies:
            groups.setdefault(a.record.group, []).append(a)
        return groups

    def study(self, name: str) -> LoadedStudy:
        """One study, by study name or by the name the report gives it."""
        for a in self.studies:
            if name in (a.record.name, a.name):
                return a
        raise KeyError(f"no study {name!r}; analysed: {', '.join(a.record.name for a in self.studies)}")

    def statistic(self, analysis: str, study: str) -> Any:
        """One study's numbers in one analysis (its `by_study`), by study name or report name; None when it has none."""
        return self.computed[analysis].by_study.get(self.study(study).record.name)


def compute(storage: str | BaseStorage | None | Sequence[str | BaseStorage], patterns: Sequence[str] | None = None,
            progress: bool = True, *, seeds: int = FANOVA_SEEDS) -> Analysis:
    """Every number of the matching studies' analysis, as data; writes no file and draws no figure.

    `storage` is one storage or several (their studies are analysed together, e.g. one campaign per dataset).
    """
    from . import registry

    patterns = list(patterns) if patterns else None
    storages = [storage] if storage is None or isinstance(storage, (str, BaseStorage)) else list(storage)
    urls = [display_name(s) for s in storages]
    opened = [read_storage(s) for s in storages]
    records = select_across(list(zip(urls, opened)), patterns)
    studies = [load_study(r, n) for r, n in zip(records, display_names(records))]
    # figures are attached through each study's own storage
    analysis = Analysis(url=" + ".join(urls), patterns=patterns, storage=opened[0], studies=studies,
                        best=best_table_from(records), seeds=seeds, progress=progress)
    registry.compute_all(analysis)
    return analysis


def load_study(record: StudyRecord, name: str) -> LoadedStudy:
    """One study's trials at its fidelity (the first rung where it has rungs), chance level and re-evaluated best."""
    study = LoadedStudy(record=record, name=name)
    if record.skipped:
        study.status = f"skipped: {record.skipped}"
        return study
    study.chance = chance = chance_error(record.dataset)
    study.complete, study.everything = fidelity_trials(record, chance)
    if not study.complete:
        study.status = f"0 complete trials (of {len(record.trials)})"
        return study
    study.frame = trials_frame(record)
    study.evaluated = evaluated(record.evaluation, chance, record.dataset)
    if len(study.complete) < MIN_TRIALS:
        study.status = f"not enough trials ({len(study.complete)} complete; importances need at least {MIN_TRIALS})"
    return study


def display_names(records: Sequence[StudyRecord]) -> list[str]:
    """Each study's name in the report: its label, plus its fixed activation or else its study name where a label repeats
    within a group; a study run at a reduced budget carries the mark (†) wherever its name and numbers appear."""
    reduced = reduced_budgets(records)
    seen = Counter((record.group, record.label) for record in records)
    names = []
    for r in records:
        activation = r.info.fixed.get("activation") if "activation" not in r.info.space else None
        if seen[(r.group, r.label)] == 1:
            names.append(r.label)
        elif activation and sum(1 for o in records if (o.group, o.label) == (r.group, r.label)
                                and o.info.fixed.get("activation") == activation) == 1:
            names.append(f"{r.label} [{activation}]")
        else:
            names.append(f"{r.label} ({r.name})")
        if r.name in reduced:
            names[-1] += f" {REDUCED_MARK}"
    return names
