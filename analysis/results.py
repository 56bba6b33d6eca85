"""`compute()`: every number of an analysis as data (importances, effects, stability, tables); no files, no figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pandas as pd
from optuna.storages import BaseStorage

from bioscale.contract import end_reason

from .activation import ActivationEffect, activation_effect, format_effect
from .importance import (FANOVA_SEEDS, MIN_TRIALS, FanovaResult, PedAnovaResult, fanova_importance, is_log,
                         ped_anova_importance, top_params, unify_distributions)
from .paper import compare
from .stability import BudgetTrust, Robustness, budget_trust, learning_curves, robustness
from .storage import StudyRecord, display_name, read_storage, select_studies
from .tables import best_table_from, trials_frame


@dataclass
class StudyAnalysis:
    """Everything computed for one study."""

    record: StudyRecord
    name: str
    status: str = "ok"
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    fanova: FanovaResult | None = None
    ped: PedAnovaResult | None = None
    effect: ActivationEffect | None = None
    activation_note: str = ""
    incomplete: dict[str, dict[str, int]] = field(default_factory=dict)  # activation -> end reason -> count
    robustness: Robustness | None = None
    trust: BudgetTrust | None = None
    log_params: list[str] = field(default_factory=list)
    top_params: list[str] = field(default_factory=list)

    @property
    def analysed(self) -> bool:
        """False when the study was skipped or has no complete trial."""
        return self.fanova is not None


@dataclass
class Analysis:
    """Every number of one analysis: one `StudyAnalysis` per study and the tables across studies."""

    url: str
    patterns: list[str] | None
    storage: BaseStorage
    studies: list[StudyAnalysis]
    best: pd.DataFrame
    comparison: pd.DataFrame
    importance: pd.DataFrame
    activation: pd.DataFrame
    stability: pd.DataFrame

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


def compute(storage: str | BaseStorage | None, patterns: Sequence[str] | None = None, progress: bool = True, *,
            seeds: int = FANOVA_SEEDS) -> Analysis:
    """Every number of the matching studies' analysis, as data; writes no file and draws no figure."""
    patterns = list(patterns) if patterns else None
    url = display_name(storage)
    opened = read_storage(storage)
    records = select_studies(opened, patterns, url=url)
    studies = [analyse_study(r, n, seeds) for r, n in zip(progress_bar(records, progress, "analysing studies"),
                                                           display_names(records))]
    best = best_table_from(records)
    importance, activation, stability = long_tables(studies)
    return Analysis(url=url, patterns=patterns, storage=opened, studies=studies, best=best, comparison=compare(best),
                    importance=importance, activation=activation, stability=stability)


def analyse_study(record: StudyRecord, name: str, seeds: int = FANOVA_SEEDS) -> StudyAnalysis:
    """Importances, activation effect, robustness and budget trust of one study."""
    result = StudyAnalysis(record=record, name=name)
    if record.skipped:
        result.status = f"skipped: {record.skipped}"
        return result
    complete = record.complete
    if not complete:
        result.status = f"0 complete trials (of {len(record.trials)})"
        return result
    result.frame = trials_frame(record)
    merged, _ = unify_distributions(complete)
    result.log_params = sorted(n for n, d in merged.items() if is_log(d))
    result.fanova = fanova_importance(complete, seeds=seeds)
    result.ped = ped_anova_importance(complete)
    result.top_params = top_params(result.fanova, result.ped, [c for c in result.frame.columns if c in merged])
    if len(complete) < MIN_TRIALS:
        result.status = f"not enough trials ({len(complete)} complete; importances need at least {MIN_TRIALS})"
    result.effect, result.activation_note = _activation(record, result.frame)
    if result.effect is not None:
        result.incomplete = _incomplete_by_activation(record)
        if any(result.incomplete.values()):
            result.activation_note += "; did not complete (left out above): " + "; ".join(
                f"{a} {sum(c.values())} ({', '.join(f'{k} {v}' for k, v in sorted(c.items()))})"
                for a, c in result.incomplete.items() if c)
    finished = record.finished
    complete_numbers = {t.number for t in complete}
    errors = [t.value if t.number in complete_numbers else math.nan for t in finished]
    lrs = {n: [t.params.get(n, math.nan) for t in finished] for n in result.log_params if n.endswith("_lr")}
    result.robustness = robustness(errors, n_finished=len(finished), lrs=lrs)
    result.trust = budget_trust(learning_curves(complete))
    return result


def _activation(record: StudyRecord, frame: pd.DataFrame) -> tuple[ActivationEffect | None, str]:
    if "activation" not in frame.columns:
        value = record.info.fixed.get("activation")
        return None, f"activation not searched{f' (fixed to {value})' if value else ''}"
    present = set(frame["activation"].dropna())
    if not {"tanh", "relu"} <= present:
        return None, f"activation took only {', '.join(sorted(map(str, present)))} in the complete trials: nothing to compare"
    effect = activation_effect(frame.loc[frame["activation"] == "tanh", "value"],
                               frame.loc[frame["activation"] == "relu", "value"])
    return effect, format_effect(effect)


def _incomplete_by_activation(record: StudyRecord) -> dict[str, dict[str, int]]:
    """Per activation, how its trials that did not complete ended (diverged ones end PRUNED in bioscale studies)."""
    complete = {t.number for t in record.complete}
    counts: dict[str, dict[str, int]] = {"tanh": {}, "relu": {}}
    for trial in record.finished:
        activation = trial.params.get("activation")
        if trial.number in complete or activation not in counts:
            continue
        reason = end_reason(trial)
        counts[activation][reason] = counts[activation].get(reason, 0) + 1
    return counts


def display_names(records: Sequence[StudyRecord]) -> list[str]:
    """Each study's name in the report: its label, plus the study name where a label repeats within a group."""
    seen: dict[tuple, int] = {}
    for record in records:
        seen[(record.group, record.label)] = seen.get((record.group, record.label), 0) + 1
    return [r.label if seen[(r.group, r.label)] == 1 else f"{r.label} ({r.name})" for r in records]


def long_tables(analyses: Sequence[StudyAnalysis]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Importance, activation and stability results as long tables (one row per study, param or branch) for CSV."""
    importance, activation, stability = [], [], []
    for a in analyses:
        base = {"study": a.record.name, "dataset": a.record.dataset, "arch": a.record.arch, "label": a.record.label}
        if a.fanova is not None:
            for branch in [a.fanova.overall, *a.fanova.branches]:
                for p in branch.params:
                    importance.append({**base, "method": "fanova", "branch": branch.title, "n_trials": branch.n_trials,
                                       "param": p, "log10_scale": p in a.fanova.log_params,
                                       "importance": branch.mean.get(p, math.nan), "std": branch.std.get(p, math.nan),
                                       "status": branch.status})
        if a.ped is not None:
            for p, v in a.ped.importance.items():
                importance.append({**base, "method": "ped-anova", "branch": f"top {a.ped.target_quantile:.3g}",
                                   "n_trials": a.ped.n_trials, "param": p, "log10_scale": p in a.log_params,
                                   "importance": v, "std": math.nan, "status": a.ped.status})
        if a.effect is not None:
            e = a.effect
            activation.append({**base, "n_tanh": e.n_tanh, "n_relu": e.n_relu,
                               "not_complete_tanh": sum(a.incomplete.get("tanh", {}).values()),
                               "not_complete_relu": sum(a.incomplete.get("relu", {}).values()),
                               "median_tanh": e.median_tanh,
                               "median_relu": e.median_relu, "median_diff": e.median_diff, "median_ci_low": e.median_ci[0],
                               "median_ci_high": e.median_ci[1], "best_quartile_diff": e.best_quartile_diff,
                               "best_quartile_ci_low": e.best_quartile_ci[0], "best_quartile_ci_high": e.best_quartile_ci[1],
                               "p_value": e.p_value, "verdict": e.verdict})
        if a.robustness is not None:
            r, t = a.robustness, a.trust
            row = {**base, "n_finished": r.n_finished, "n_complete": r.n_complete, "best_error": r.best_error,
                   "margin": r.margin, "fraction_within": r.fraction_within,
                   **{f"band_decades_{n}": w for n, w in r.lr_bands.items()},
                   "settle_epoch": t.settle_epoch if t else None, "last_epoch": t.last_epoch if t else None,
                   "budget_trust": t.verdict() if t else ""}
            stability.append(row)
    return pd.DataFrame(importance), pd.DataFrame(activation), pd.DataFrame(stability)


def progress_bar(items: Sequence, enabled: bool, desc: str) -> Iterable:
    """`items` behind a tqdm bar when enabled (quiet when not a TTY)."""
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=None, leave=False)
