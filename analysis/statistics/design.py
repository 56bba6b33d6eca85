"""The search design a study declares (`contract.DESIGN`), read for the statistics: shared draws and fidelity.

Which studies sampled identical configurations decides how an interval resamples them: studies
with equal draw keys share configuration i, so a pooled effect resamples configuration indices
jointly (a cluster bootstrap), not within each study. Studies written before the design was
recorded have no key: configurations that agree on every parameter the studies share are taken
as one draw (the way the old single-seed design showed itself), and their budget as full.

Which rung a statistic reads: sensitivity and importances compare configurations at the first
rung, the budget every configuration reached; best errors are read at the full budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial

from bioscale import contract

from .outcomes import DIVERGED, STALLED, counted_error, outcome, search_finished, valued_trials
from .stability import learning_curves
from ..storage import StudyRecord


@dataclass(frozen=True)
class Design:
    """A study's declared search design; empty fields where it declares none (an older study)."""

    sampler: str | None = None
    draws: str | None = None  # studies with equal keys sampled identical configurations
    shared: str | None = None  # "pair", "rules" or "none"
    scheme: str | None = None  # "halving", "hyperband", or None for a full-budget search
    eta: int | None = None
    rungs: tuple[int, ...] = ()  # epochs per rung, ascending; the last is the study's epochs

    @property
    def first_rung(self) -> int | None:
        """The epochs every configuration trained (None: every configuration trained the full budget)."""
        return self.rungs[0] if self.scheme and self.rungs else None

    def line(self) -> str:
        """One line naming the design but not its draw key: sampler, what shares draws, and the fidelity schedule."""
        if self.draws is None:
            return "no recorded design (older studies): shared draws inferred from the configurations, full budget"
        text = f"{self.sampler or 'sampler not recorded'} draws shared by {self.shared or 'none'}"
        if self.first_rung is None:
            return text + ", every configuration at the full budget"
        return text + f", {self.scheme} with η = {self.eta}, rungs of {', '.join(map(str, self.rungs))} epochs"


def design(record: StudyRecord) -> Design:
    """The design `record` declares; an empty Design when it declares none or a malformed one."""
    found = record.info.design or {}
    fidelity = found.get("fidelity") if isinstance(found.get("fidelity"), Mapping) else {}
    rungs = fidelity.get("rungs") if isinstance(fidelity.get("rungs"), list) else []
    return Design(sampler=_text(found.get("sampler")), draws=_text(found.get("draws")),
                  shared=_text(found.get("shared")), scheme=_text(fidelity.get("scheme")),
                  eta=_integer(fidelity.get("eta")),
                  rungs=tuple(int(r) for r in rungs if isinstance(r, (int, float)) and r > 0))


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def rung_error(trial: FrozenTrial, epochs: int | None, chance: float) -> float:
    """The error a finished search trial counts with at `epochs` (None: its full run): its lowest validation error up
    to then, chance level when it diverged or stalled by then; NaN when it has no error there."""
    if epochs is None:
        return counted_error(trial, chance)
    curve = (learning_curves([trial]) or [[]])[0]  # per-epoch validation errors, from epoch 1
    if outcome(trial) in (DIVERGED, STALLED) and len(curve) < epochs:
        return chance
    seen = [v for v in curve[:epochs] if math.isfinite(v)]
    return float(min(seen)) if seen else math.nan


def first_rung_errors(record: StudyRecord, chance: float) -> tuple[list[FrozenTrial], list[float]]:
    """Every finished search trial and its error at the first rung (its counted error when the study has no rungs)."""
    rung = design(record).first_rung
    finished = search_finished(record.trials)
    return finished, [rung_error(t, rung, chance) for t in finished]


def full_budget(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The finished search trials that trained the study's full budget (successive halving stopped none of them)."""
    return [t for t in search_finished(trials)
            if contract.read_end_reason(t.user_attrs.get(contract.END_REASON)) != contract.HALVED]


def draw_clusters(records: Sequence[StudyRecord]) -> dict[tuple[str, int], Hashable]:
    """{(study, trial number): draw} for every finished search trial: trials with equal draws sampled one configuration.

    Declared designs give (draw key, position in the study's sampling order); studies without one
    are matched on the values of the parameters every one of them samples (activation aside).
    """
    clusters: dict[tuple[str, int], Hashable] = {}
    undeclared = [r for r in records if design(r).draws is None]
    common = set.intersection(*(set(r.info.space) or _sampled(r) for r in undeclared)) - {"activation"} \
        if undeclared else set()
    for record in records:
        key = design(record).draws
        for position, trial in enumerate(sorted(search_finished(record.trials), key=lambda t: t.number)):
            if key is not None:
                clusters[(record.name, trial.number)] = ("declared", key, position)
                continue
            values = tuple((n, round(v, 12) if isinstance(v, float) else v)
                           for n, v in sorted(trial.params.items()) if n in common)
            if any(isinstance(v, float) for _, v in values):
                clusters[(record.name, trial.number)] = ("inferred",) + values
            else:  # no continuous value in common, so equal values could be chance: every trial its own draw
                clusters[(record.name, trial.number)] = ("own", record.name, trial.number)
    return clusters


def _sampled(record: StudyRecord) -> set[str]:
    return {name for t in record.trials for name in t.params}


def fidelity_trials(record: StudyRecord, chance: float) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """(configurations that trained, every finished configuration with an error) as importances read them.

    A full-budget study gives its complete search trials and `outcomes.valued_trials`; a study
    with rungs gives every configuration at the first rung, as a COMPLETE trial valued at its
    error there (its curve kept), those that diverged by then only in the second list, at chance.
    """
    rung = design(record).first_rung
    if rung is None:
        return contract.complete_trials(contract.search_trials(record.trials)), valued_trials(record.trials, chance)
    trained, everything = [], []
    for trial in search_finished(record.trials):
        value = rung_error(trial, rung, chance)
        if not (math.isfinite(value) and trial.params):
            continue
        made = optuna.trial.create_trial(params=dict(trial.params), distributions=dict(trial.distributions), value=value,
                                         user_attrs={contract.OUTCOME: outcome(trial)},
                                         intermediate_values={s: v for s, v in trial.intermediate_values.items()
                                                              if s <= rung})
        made.number = trial.number
        everything.append(made)
        if not (outcome(trial) in (DIVERGED, STALLED) and max(trial.intermediate_values, default=0) < rung):
            trained.append(made)
    return trained, everything


def fidelity_line(record: StudyRecord) -> str:
    """Which budget the configuration-level statistics of `record` read."""
    rung = design(record).first_rung
    if rung is None:
        return "the full budget, which every configuration trained"
    return f"the first rung ({rung} epoch{'s' if rung != 1 else ''}), which every configuration reached"


def rungs_and_full(record: StudyRecord, chance: float) -> tuple[list[float], list[float], int, int] | None:
    """(first-rung errors, full-budget errors, first rung, epochs) of the configurations that trained the full budget;
    None for a study without rungs."""
    rung = design(record).first_rung
    if rung is None:
        return None
    survivors = full_budget(record.trials)
    return ([rung_error(t, rung, chance) for t in survivors], [counted_error(t, chance) for t in survivors], rung,
            record.epochs or design(record).rungs[-1])


def design_summary(records: Sequence[StudyRecord]) -> str:
    """The designs of these studies, each once with its number of studies and of distinct draw sets."""
    found: dict[str, list[Design]] = {}
    for record in records:
        if not record.skipped:
            found.setdefault(design(record).line(), []).append(design(record))
    return "; ".join(f"{len(ds)} stud{'y' if len(ds) == 1 else 'ies'}: {line}" +
                     (f" ({_count(len({d.draws for d in ds}), 'distinct draw set')})" if ds[0].draws is not None else "")
                     for line, ds in sorted(found.items()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def fidelity_summary(records: Sequence[StudyRecord]) -> str:
    """Which budget the configuration-level statistics of these studies read, each distinct reading once."""
    return "; ".join(sorted({fidelity_line(r) for r in records if not r.skipped})) or "no study"
