"""Tables built from studies: the best result of each study, and one row per trial."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd

from optuna.storages import BaseStorage

from bioscale import contract
from bioscale.contract import best_trial, complete_trials, end_reason, finished_trials, search_trials

from .statistics.evaluation import evaluated
from .statistics.outcomes import chance_error
from .analyses.protocol import fixed_text, is_paper_protocol, protocol_problems, protocol_verdict
from .storage import StudyRecord, display_name, read_storage, select_studies

BEST_COLUMNS = ["study", "dataset", "arch", "label", "rule", "schedule", "trials_complete", "trials_total",
                "best_trial", "best_is_default", "best_val_error", "train_error_at_best", "test_error_at_best",
                "evaluated_test_mean", "evaluated_test_std", "evaluated_ci_low", "evaluated_ci_high", "evaluated_seeds", "evaluated_basis", "evaluated_diverged",
                "activation", "protocol", "sampler", "fixed", "sampled", "paper_protocol", "protocol_note",
                "protocol_verdict"]


def number(value: Any) -> float:
    """`value` as a float; NaN when it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def best_row(record: StudyRecord) -> dict[str, Any]:
    """The `best_table` row of one study."""
    search = search_trials(record.trials)  # the default configuration's trial is not part of the search
    complete = complete_trials(search)
    best = best_trial(record.trials)  # the incumbent: the default configuration's trial competes
    found = evaluated(record.evaluation, chance_error(record.dataset), record.dataset)
    info = record.info
    return {
        "study": record.name, "dataset": record.dataset, "arch": record.arch, "label": record.label,
        "rule": record.rule, "schedule": record.schedule, "trials_complete": len(complete),
        "trials_total": len(finished_trials(search)), "best_trial": best.number if best else None,
        "best_is_default": bool(best is not None and contract.is_default_config(best)),
        "best_val_error": float(best.value) if best else math.nan,
        "train_error_at_best": number(best.user_attrs.get(contract.TRAIN_ERROR)) if best else math.nan,
        "test_error_at_best": number(best.user_attrs.get(contract.TEST_ERROR)) if best else math.nan,
        "evaluated_test_mean": found.mean if found else math.nan,
        "evaluated_test_std": found.std if found else math.nan,
        "evaluated_ci_low": found.interval[0] if found else math.nan,
        "evaluated_ci_high": found.interval[1] if found else math.nan,
        "evaluated_seeds": found.n if found else 0,
        "evaluated_basis": found.basis if found else "",
        "evaluated_diverged": len(found.diverged) if found else 0,
        "activation": "sampled" if "activation" in info.space else info.fixed.get("activation", ""),
        "protocol": info.protocol or "", "sampler": info.sampler or "", "fixed": fixed_text(info),
        "sampled": ", ".join(sorted(info.space)), "paper_protocol": is_paper_protocol(record),
        "protocol_note": "; ".join(protocol_problems(record)), "protocol_verdict": protocol_verdict(record),
    }


def best_table_from(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """One row per study: trial counts, best validation error, test error at the best trial, evaluated test error."""
    frame = pd.DataFrame([best_row(r) for r in records], columns=BEST_COLUMNS)
    frame["best_trial"] = frame["best_trial"].astype("Int64")
    return frame.sort_values(["dataset", "arch", "label", "study"], kind="stable").reset_index(drop=True)


def trials_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per complete search trial: number, value (best validation error), train/test errors at it, and its params."""
    rows = []
    for trial in complete_trials(search_trials(record.trials)):
        row = {"number": trial.number, "value": float(trial.value),
               "train_error": number(trial.user_attrs.get(contract.TRAIN_ERROR)),
               "test_error": number(trial.user_attrs.get(contract.TEST_ERROR))}
        row.update(trial.params)
        rows.append(row)
    return pd.DataFrame(rows)


def end_reasons(record: StudyRecord) -> dict[str, int]:
    """How trials ended early (their `end_reason`, else their state when not complete), with counts."""
    early = [t for t in record.trials if t.user_attrs.get(contract.END_REASON)
             or not (t.state.name == "COMPLETE" and t.value is not None and np.isfinite(t.value))]
    return dict(Counter(end_reason(t) for t in early))


def best_table(storage: str | BaseStorage | None, patterns: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per matching study (default: stage 'tune'): trial counts, best and evaluated errors."""
    return best_table_from(select_studies(read_storage(storage), patterns, url=display_name(storage)))
