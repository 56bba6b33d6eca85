"""`compute()`: every number of an analysis as data (importances, effects, stability, tables); no files, no figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from bioscale.contract import best_trial, complete_trials

from .statistics.evaluation import Evaluated, evaluated
from .statistics.evidence import evidence, learned
from .statistics.importance import FANOVA_SEEDS, MIN_TRIALS, log_scaled
from .statistics.outcomes import chance_error, outcomes
from .analyses.paper import arch_family
from .statistics.design import fidelity_line, fidelity_trials, first_rung_errors, full_budget, rungs_and_full
from .analyses.protocol import REDUCED_MARK, reduced_budgets
from .statistics.stability import (MARGIN, MARGINS, BudgetTrust, Robustness, RungTrust, budget_trust, learning_curves, paper_claims,
                        robustness, rung_trust)
from .storage import StudyRecord, display_name, read_storage, select_across
from .tables import best_table_from, trials_frame


@dataclass
class StudyAnalysis:
    """Everything computed for one study."""

    record: StudyRecord
    name: str
    status: str = "ok"
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    robustness: Robustness | None = None
    trust: BudgetTrust | None = None
    chance: float = math.nan  # the chance-level error a diverged trial counts with
    evaluated: Evaluated | None = None
    complete: list[FrozenTrial] = field(default_factory=list)  # trained configurations (`design.fidelity_trials`)
    everything: list[FrozenTrial] = field(default_factory=list)  # every finished one with an error, diverged at chance
    rung_trust: RungTrust | None = None  # first rung against the full budget, for a study with rungs
    fidelity: str = ""  # which budget the configuration-level statistics read (`design.fidelity_line`)

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
            return ev.errors + [ev.chance] * len(ev.diverged)
        best = best_trial(self.record.trials)
        return [float(best.value)] if best is not None else []

    @property
    def learned(self) -> bool:
        """Whether the study learned (`evidence.learned`: every judged error at most half of chance)."""
        return learned(self.judged_errors, self.chance)


@dataclass
class Analysis:
    """Every number of one analysis: one `StudyAnalysis` per study and the tables across studies."""

    url: str
    patterns: list[str] | None
    storage: BaseStorage
    studies: list[StudyAnalysis]
    best: pd.DataFrame
    stability: pd.DataFrame
    claims: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (dataset, family) -> the paper's stability claims
    seeds: int = FANOVA_SEEDS  # fANOVA forest seeds per study
    progress: bool = False  # a progress bar while the analyses compute
    computed: dict[str, Any] | None = None  # every registered analysis's numbers, by its NAME (`registry.compute_all`)

    @property
    def records(self) -> list[StudyRecord]:
        """The studies read, in analysis order."""
        return [a.record for a in self.studies]

    @property
    def groups(self) -> dict[tuple[str, str], list[StudyAnalysis]]:
        """The studies per (dataset, arch): the rules that are compared with each other."""
        groups: dict[tuple[str, str], list[StudyAnalysis]] = {}
        for a in self.studies:
            groups.setdefault(a.record.group, []).append(a)
        return groups

    def study(self, name: str) -> StudyAnalysis:
        """The result of one study, by study name or by the name the report gives it."""
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
    patterns = list(patterns) if patterns else None
    storages = [storage] if storage is None or isinstance(storage, (str, BaseStorage)) else list(storage)
    urls = [display_name(s) for s in storages]
    opened = [read_storage(s) for s in storages]
    records = select_across(list(zip(urls, opened)), patterns)
    url, opened = " + ".join(urls), opened[0]  # figures are attached through each study's own storage
    studies = [analyse_study(r, n) for r, n in zip(records, display_names(records))]
    claims = set_references(studies)
    best = best_table_from(records)
    stability = stability_table(studies)
    analysis = Analysis(url=url, patterns=patterns, storage=opened, studies=studies, best=best,
                        stability=stability, claims=claims, seeds=seeds, progress=progress)
    from . import registry

    registry.compute_all(analysis)
    return analysis


def set_references(studies: Sequence[StudyAnalysis]) -> dict[tuple[str, str], list[str]]:
    """Measure every study's stability against BP's best on its dataset and family (else the best rule's); the paper's claims per pair."""
    by: dict[tuple[str, str], list[StudyAnalysis]] = {}
    for a in studies:
        if a.robustness is not None and math.isfinite(a.robustness.best_error):
            by.setdefault((a.record.dataset, arch_family(a.record.arch)), []).append(a)
    claims = {}
    for (dataset, family), members in by.items():
        bp = [a for a in members if a.record.rule == "bp"]
        pool = bp or members
        ref = min(pool, key=lambda a: a.robustness.best_error)
        source = (f"{'BP' if bp else ref.name + ' (no BP study)'}'s best on {dataset or '?'} / {family}, "
                  f"{100 * ref.robustness.best_error:.2f}%")
        for a in members:
            a.robustness.set_reference(ref.robustness.best_error, source)
        shares: dict[tuple[str, str | None], float] = {}
        for a in (a for a in members if a.learned):  # a rule with several studies counts with its steadiest; a study
            # that never learned is not 'sensitive', it failed (and is left out of the claims)
            key = (a.record.rule, a.record.schedule)
            shares[key] = max(shares.get(key, -1.0), a.robustness.within_reference.get(MARGIN, math.nan))
        claims[(dataset, family)] = paper_claims(shares)
    return claims


def analyse_study(record: StudyRecord, name: str) -> StudyAnalysis:
    """Importances, activation effect, robustness and budget trust of one study (`forests`: its fANOVA, when computed already)."""
    result = StudyAnalysis(record=record, name=name)
    if record.skipped:
        result.status = f"skipped: {record.skipped}"
        return result
    result.chance = chance = chance_error(record.dataset)
    result.complete, result.everything = complete, everything = fidelity_trials(record, chance)  # at the first rung
    if not complete:
        result.status = f"0 complete trials (of {len(record.trials)})"
        return result
    result.frame = trials_frame(record)
    result.evaluated = evaluated(record.evaluation, chance, record.dataset)
    if len(complete) < MIN_TRIALS:
        result.status = f"not enough trials ({len(complete)} complete; importances need at least {MIN_TRIALS})"
    finished, errors = first_rung_errors(record, chance)  # sensitivity compares configurations where all reached
    lrs = {n: [t.params.get(n, math.nan) for t in finished] for n in log_scaled(complete) if n.endswith("_lr")}
    result.robustness = robustness(errors, n_finished=len(finished), lrs=lrs, n_complete=len(complete))
    result.trust = budget_trust(learning_curves(complete_trials(full_budget(record.trials))))
    rungs = rungs_and_full(record, chance)
    result.rung_trust = rung_trust(*rungs) if rungs else None
    result.fidelity = fidelity_line(record)
    return result


def display_names(records: Sequence[StudyRecord]) -> list[str]:
    """Each study's name in the report: its label, plus its fixed activation or else its study name where a label repeats
    within a group; a study run at a reduced budget carries the mark (†) wherever its name and numbers appear."""
    reduced = reduced_budgets(records)
    seen: dict[tuple, int] = {}
    for record in records:
        seen[(record.group, record.label)] = seen.get((record.group, record.label), 0) + 1
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


def stability_table(analyses: Sequence[StudyAnalysis]) -> pd.DataFrame:
    """Stability results as a long table (one row per study) for CSV."""
    stability = []
    for a in analyses:
        base = {"study": a.record.name, "dataset": a.record.dataset, "arch": a.record.arch, "label": a.record.label}
        if a.robustness is not None:
            r, t = a.robustness, a.trust
            o = outcomes(a.record.trials)
            row = {**base, "n_finished": r.n_finished, "n_complete": r.n_complete,
                   "share_diverged": o.share_diverged if o else math.nan, "n_diverged": o.n_diverged if o else 0,
                   "n_stalled": o.n_stalled if o else 0, "n_pruned": o.n_pruned if o else 0,
                   "best_error": r.best_error, "reference_error": r.reference_error, "reference": r.reference_from,
                   **{f"within_{100 * m:.0f}pp_of_best": r.within_best.get(m, math.nan) for m in MARGINS},
                   **{f"within_{100 * m:.0f}pp_of_reference": r.within_reference.get(m, math.nan) for m in MARGINS},
                   **{f"band_decades_{n}": w for n, w in r.lr_bands.items()},
                   "settle_epoch": t.settle_epoch if t else None, "last_epoch": t.last_epoch if t else None,
                   "top5_overlap_epoch": t.overlap_epoch if t else None, "budget_trust": t.verdict() if t else ""}
            stability.append(row)
    return pd.DataFrame(stability)
