"""Export every trial of a storage: one tidy CSV for pandas users, or DeepCAVE's DataFrame-converter layout.

CSV: one row per trial of every matching study (default: every study): the study's identity
(study, stage, dataset, arch, rule, schedule, label, activation), the trial's number, role, state,
outcome and end reason, its errors (Optuna's value; `counted_error`, the error it counts with when
every finished trial counts: chance level for a diverged or stalled run), best epoch, seed, time,
one `params_NAME` column per parameter, and its learning curves as JSON lists (`curve_val`, ...).

DeepCAVE (its "Pandas DataFrame" converter): one folder per study holding `configspace.csv`
(name, type, log, lower, upper, default, distribution, ordered, item_0, item_1, ...) and
`trials.csv` (config_id, one column per parameter, `metric:val_error [0.0; 1.0] (minimize)`,
status, start_time, end_time, budget, seed, then additional columns). The budget is the epoch: a
trial has one row per epoch of its validation curve, with the lowest validation error up to that
epoch (what the trial would have reported had it been stopped there), so DeepCAVE's budget views
work; a complete trial's row at its last epoch is its objective value. A run that diverged or
stalled gets a last row at the study's epoch budget at chance level, status SUCCESS, so that
DeepCAVE's analyses see it as bioscale's do (its `outcome` column says what happened); a run
that failed with an error is CRASHED (out of memory: MEMORYOUT), without a cost. The converter
has no conditional parameters: a parameter a trial did not sample is written at its default
(the default trial's value, else the first choice or the lower bound) and named in `inactive`.
A categorical parameter whose choices are all numbers (batch_size, forward_eps, ...) is written
as an integer or float parameter over [min, max] (log-scaled when its choices lie more evenly on
a log scale, as batch sizes 32-256 and eps 1e-8-1e-3 do): the converter reads CSV cells back as numbers, which would never
match the string choices of a categorical one. For the same reason a True/False choice (EP's `symmetric`) is
written as yes/no: pandas would read True/False back as booleans, which ConfigSpace refuses as a string choice.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from bioscale import contract, defaults
from bioscale.errors import UsageError

from .statistics.importance import unify_distributions
from .statistics.outcomes import COMPLETE, DIVERGED, FAILED, STALLED, chance_error, counted_error, outcome
from .storage import StudyRecord, display_name, read_storage, select_studies
from .tables import number

FORMATS = defaults.EXPORT_FORMATS
METRIC = f"metric:{contract.VAL_ERROR} [0.0; 1.0] (minimize)"  # DeepCAVE's grammar: metric:NAME [LOWER; UPPER] (minimize)
SEARCH, DEFAULT = "search", "default"  # the `role` column


def check_format(fmt: str) -> str:
    """The export format, lower case; UsageError naming the choices otherwise."""
    chosen = (fmt or "").strip().lower()
    if chosen not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return chosen


def read_records(storage: str | None, patterns: Sequence[str] | None) -> list[StudyRecord]:
    """The matching studies (default: every study in the storage, whatever its stage)."""
    return select_studies(read_storage(storage), list(patterns) if patterns else ["*"], url=display_name(storage))


# ---------------------------------------------------------------------------------------------
# One tidy table


def _curves(trial: FrozenTrial) -> dict[str, list[float]]:
    recorded = trial.user_attrs.get(contract.CURVE)
    curves = {name: [float(v) if v is not None else math.nan for v in recorded.get(name) or []]
              for name in contract.CURVE_SERIES} if isinstance(recorded, dict) else {}
    if not curves.get("val") and trial.intermediate_values:
        curves["val"] = [float(trial.intermediate_values[s]) for s in sorted(trial.intermediate_values)]
    return curves


def _time(value: _dt.datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def trial_state_outcome(trial: FrozenTrial) -> str:
    """complete, diverged, stalled, pruned or failed for a finished trial; running, waiting or requeued otherwise."""
    if contract.is_finished(trial):
        return outcome(trial)
    if contract.was_requeued(trial):
        return "requeued"
    return trial.state.name.lower()


def trials_table(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """One row per trial of every study: identity, role, state, outcome, errors, best epoch, params, curves."""
    rows = []
    names: list[str] = []
    for record in records:
        chance = chance_error(record.dataset)
        for trial in record.trials:
            curves = _curves(trial)
            attrs = trial.user_attrs
            finished = contract.is_finished(trial)
            row = {"study": record.name, "stage": record.info.stage or "", "dataset": record.dataset, "arch": record.arch,
                   "rule": record.rule, "schedule": record.schedule or "", "label": record.label,
                   "activation": trial.params.get("activation", record.info.fixed.get("activation", "")),
                   "trial": trial.number, "role": DEFAULT if contract.is_default_config(trial) else SEARCH,
                   "state": trial.state.name, "outcome": trial_state_outcome(trial),
                   contract.END_REASON: str(attrs.get(contract.END_REASON) or ""),
                   "value": float(trial.value) if trial.value is not None else math.nan,
                   "counted_error": counted_error(trial, chance) if finished else math.nan, "chance_error": chance,
                   "val_error": number(attrs.get(contract.VAL_ERROR)),
                   "train_error": number(attrs.get(contract.TRAIN_ERROR)),
                   "test_error": number(attrs.get(contract.TEST_ERROR)),
                   "best_epoch": attrs.get(contract.BEST_EPOCH), "epochs": len(curves.get("val", [])),
                   "seed": attrs.get(contract.SEED), "data_seed": attrs.get(contract.DATA_SEED),
                   "device": attrs.get(contract.DEVICE) or "", "seconds": number(attrs.get(contract.SECONDS)),
                   "datetime_start": _time(trial.datetime_start), "datetime_complete": _time(trial.datetime_complete)}
            for name, value in trial.params.items():
                row[f"params_{name}"] = value
                if name not in names:
                    names.append(name)
            for series in contract.CURVE_SERIES:
                row[f"curve_{series}"] = json.dumps(curves[series]) if curves.get(series) else ""
            rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        params = [f"params_{n}" for n in sorted(names)]
        curves = [f"curve_{s}" for s in contract.CURVE_SERIES]
        fixed = [c for c in frame.columns if c not in params and c not in curves]
        frame = frame[fixed + params + curves]
        frame = frame.astype({"best_epoch": "Int64", "seed": "Int64", "data_seed": "Int64"})
    return frame


def export_csv(storage: str | None, patterns: Sequence[str] | None, path: Path | str) -> tuple[Path, int]:
    """Write the tidy table of every trial to `path`; returns (path, rows)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; pass a file name for the CSV, e.g. {path / 'trials.csv'}")
    frame = trials_table(read_records(storage, patterns))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path, len(frame)


# ---------------------------------------------------------------------------------------------
# DeepCAVE


def _numeric_choices(dist: CategoricalDistribution) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in dist.choices)


def _log_spaced(choices: Sequence[float]) -> bool:
    """Whether numeric choices lie more evenly on a log scale than on a linear one (two choices: a decade apart or more)."""
    values = sorted(float(c) for c in choices)
    if values[0] <= 0:
        return False
    if len(values) < 3:
        return values[-1] / values[0] >= 10

    def unevenness(x: list[float]) -> float:
        steps = [b - a for a, b in zip(x, x[1:])]
        mean = sum(steps) / len(steps)
        return math.sqrt(sum((d - mean) ** 2 for d in steps) / len(steps)) / mean

    return unevenness([math.log(v) for v in values]) < unevenness(values) - 1e-9


def configspace_row(name: str, dist: BaseDistribution, default: Any) -> dict[str, Any]:
    """One row of configspace.csv: the converter's name, type, log, lower, upper, default, distribution, ordered, items."""
    row: dict[str, Any] = {"name": name, "type": "", "log": False, "lower": None, "upper": None, "default": default,
                           "distribution": "", "ordered": None}
    if isinstance(dist, CategoricalDistribution) and not _numeric_choices(dist):
        row.update(type="categorical", ordered=False)
        row.update({f"item_{k}": choice_cell(c) for k, c in enumerate(dist.choices)})
        row["default"] = choice_cell(default if default is not None else dist.choices[0])
        return row
    if isinstance(dist, CategoricalDistribution):
        low, high = min(dist.choices), max(dist.choices)
        integer = all(isinstance(c, int) for c in dist.choices)
        log = _log_spaced(dist.choices)
    else:
        low, high, log = dist.low, dist.high, dist.log
        integer = isinstance(dist, IntDistribution)
    row.update(type="integer" if integer else "float", log=bool(log), lower=low, upper=high, distribution="uniform")
    if default is None or not low <= default <= high:
        row["default"] = None
    return row


def choice_cell(choice: Any) -> str:
    """A categorical choice as a CSV cell that pandas reads back as the same string (booleans as yes/no)."""
    if isinstance(choice, bool):
        return "yes" if choice else "no"
    return str(choice)


def _fill(dist: BaseDistribution, default: Any) -> Any:
    if default is not None:
        return default
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low


def _status(trial: FrozenTrial) -> str:
    if outcome(trial) != FAILED:
        return "SUCCESS"
    reason = contract.read_end_reason(trial.user_attrs.get(contract.END_REASON))
    return "MEMORYOUT" if reason == contract.OUT_OF_MEMORY else "CRASHED"


def deepcave_frames(record: StudyRecord) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(configspace, trials) of one study in DeepCAVE's DataFrame-converter layout."""
    finished = contract.finished_trials(record.trials)
    merged, _ = unify_distributions(finished)
    if not merged and record.info.space:
        from optuna.distributions import json_to_distribution

        merged = {n: json_to_distribution(t) for n, t in record.info.space.items()}
    default_trial = contract.default_trial(record.trials)
    defaults: Mapping[str, Any] = default_trial.params if default_trial is not None else {}
    names = sorted(merged)
    space = pd.DataFrame([configspace_row(n, merged[n], defaults.get(n)) for n in names])
    chance = chance_error(record.dataset)
    budget = record.epochs
    rows = []
    for trial in finished:
        config, inactive = {}, []
        for name in names:
            if name in trial.params:
                value = trial.params[name]
            else:
                value = _fill(merged[name], defaults.get(name))
                inactive.append(name)
            dist = merged[name]
            config[name] = choice_cell(value) if isinstance(dist, CategoricalDistribution) and not _numeric_choices(dist) else value
        start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        end = trial.datetime_complete.timestamp() if trial.datetime_complete else start
        seed = trial.user_attrs.get(contract.SEED)
        base = {"config_id": trial.number, **config}
        extra = {"trial": trial.number, "role": DEFAULT if contract.is_default_config(trial) else SEARCH,
                 "outcome": outcome(trial), contract.END_REASON: str(trial.user_attrs.get(contract.END_REASON) or ""),
                 "test_error": number(trial.user_attrs.get(contract.TEST_ERROR)), "inactive": ",".join(inactive)}
        kind = outcome(trial)
        val = [v for v in _curves(trial).get("val", [])]
        last = budget or len(val) or 1
        points: list[tuple[int, float]] = []
        lowest = math.inf
        for epoch, v in enumerate(val, start=1):
            if math.isfinite(v):
                lowest = min(lowest, v)
            if math.isfinite(lowest):
                points.append((epoch, lowest))
        if kind in (DIVERGED, STALLED):
            points = [p for p in points if p[0] < last] + [(last, chance)]
        elif kind == FAILED:
            points = [(last, math.nan)]
        elif kind == COMPLETE and not points:
            points = [(last, float(trial.value))]
        elif kind == COMPLETE and trial.state == TrialState.COMPLETE and points[-1][1] != float(trial.value):
            points[-1] = (points[-1][0], float(trial.value))  # the study's objective is what the trial reported
        n = max(p[0] for p in points) if points else 1
        for epoch, cost in points:
            rows.append({**base, METRIC: cost, "status": _status(trial), "start_time": start,
                         "end_time": start + (end - start) * epoch / n, "budget": epoch,
                         "seed": int(seed) if isinstance(seed, int) else -1, **extra})
    columns = ["config_id", *names, METRIC, "status", "start_time", "end_time", "budget", "seed",
               "trial", "role", "outcome", contract.END_REASON, "test_error", "inactive"]
    return space, pd.DataFrame(rows, columns=columns)


def export_deepcave(storage: str | None, patterns: Sequence[str] | None, folder: Path | str) -> list[Path]:
    """Write one DeepCAVE run folder (configspace.csv, trials.csv) per matching study under `folder`; returns them."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file; pass a folder: DeepCAVE reads one folder per study")
    from .output import slug

    written = []
    for record in read_records(storage, patterns):
        space, trials = deepcave_frames(record)
        run = folder / slug(record.name)
        run.mkdir(parents=True, exist_ok=True)
        space.to_csv(run / "configspace.csv", index=False)
        trials.to_csv(run / "trials.csv", index=False)
        written.append(run)
    return written


def export(storage: str | None, fmt: str, out: Path | str, patterns: Sequence[str] | None = None) -> str:
    """Write the export in `fmt` ('csv' or 'deepcave') to `out`; returns one line saying what was written."""
    fmt = check_format(fmt)
    if fmt == "csv":
        path, n = export_csv(storage, patterns, out)
        return f"{n} trials written to {path}"
    runs = export_deepcave(storage, patterns, out)
    return f"{len(runs)} DeepCAVE run folder{'s' if len(runs) != 1 else ''} written under {out}: " + \
        ", ".join(r.name for r in runs)
