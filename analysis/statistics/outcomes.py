"""How each finished search trial ended, and the error it counts with when every finished trial counts.

A run that diverged (NaN loss) or stalled (error stayed at chance) is a property of its
configuration, not noise to drop: it counts at the chance-level error of its dataset,
1 − 1/classes. A trial a pruner stopped (end_reason "pruned") is not a divergence: it counts with
the lowest validation error it reached before it was stopped (what the study saw of it, an upper
bound of what it would have reached); one successive halving stopped at a lower rung ("halved") counts
the same way, with what it reached by its rung. Trials that failed with an error or ran out of memory carry
no error: they are counted in the shares and left out of every statistic. The default-configuration
trial is never one of these trials (`bioscale.contract.search_trials`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from bioscale import contract, datasets

# How a finished trial ended, for the statistics: complete, or one of the end reasons (error and out of memory: failed).
COMPLETE, FAILED = "complete", "failed"
DIVERGED, STALLED, PRUNED, HALVED = (contract.DIVERGED.value, contract.STALLED.value, contract.PRUNED.value,
                                     contract.HALVED.value)
UNKNOWN_CHANCE = 0.9  # a study of a dataset the registry does not know: ten classes assumed


def chance_error(dataset: str | None) -> float:
    """The error of guessing, 1 − 1/classes, for a registered dataset; 0.9 (ten classes) otherwise."""
    entry = datasets.REGISTRY.get(dataset or "")
    return 1.0 - 1.0 / entry.n_classes if entry else UNKNOWN_CHANCE


def outcome(trial: FrozenTrial) -> str:
    """complete, diverged (NaN loss), stalled (error stayed at chance), halved (at a lower rung), pruned or failed."""
    if trial.state == TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value):
        return COMPLETE
    reason = contract.read_end_reason(trial.user_attrs.get(contract.END_REASON))
    if reason == contract.EndReason.DIVERGED:
        return DIVERGED
    if reason == contract.EndReason.STALLED:
        return STALLED
    if reason == contract.EndReason.HALVED:
        return HALVED
    if reason == contract.EndReason.PRUNED or trial.state == TrialState.PRUNED:
        return PRUNED
    return FAILED


def counted_error(trial: FrozenTrial, chance: float) -> float:
    """The error a finished trial counts with among all finished ones (NaN for a failed one)."""
    kind = outcome(trial)
    if kind == COMPLETE:
        return float(trial.value)
    if kind in (DIVERGED, STALLED):
        return chance
    if kind in (PRUNED, HALVED):
        seen = [v for v in trial.intermediate_values.values() if v is not None and math.isfinite(v)]
        return float(min(seen)) if seen else math.nan
    return math.nan


@dataclass(frozen=True)
class Outcomes:
    """How the finished search trials of a study ended, with counts."""

    n_finished: int
    n_complete: int
    n_diverged: int
    n_stalled: int
    n_pruned: int
    n_failed: int
    n_halved: int  # stopped by successive halving at a lower rung: by design, not a failure

    @property
    def share_diverged(self) -> float:
        """Share of finished trials that diverged or stalled (NaN when none finished)."""
        return (self.n_diverged + self.n_stalled) / self.n_finished if self.n_finished else math.nan

    def line(self) -> str:
        """One line: the counts of each way the finished trials ended."""
        if not self.n_finished:
            return "no finished trial"
        parts = [f"{self.n_complete} complete", f"{self.n_diverged} diverged", f"{self.n_stalled} stalled at chance",
                 f"{self.n_pruned} stopped by the pruner", f"{self.n_halved} halved at a lower rung",
                 f"{self.n_failed} failed"]
        return (f"{100 * self.share_diverged:.0f}% diverged or stalled ({self.n_diverged + self.n_stalled} of "
                f"{self.n_finished} finished: " + ", ".join(p for p in parts if not p.startswith("0 ")) + ")")


def search_finished(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The finished trials of the search (the default configuration's left out)."""
    return contract.finished_trials(contract.search_trials(trials))


def outcomes(trials: Iterable[FrozenTrial]) -> Outcomes:
    """Counts of how the finished search trials ended."""
    kinds = [outcome(t) for t in search_finished(trials)]
    return Outcomes(len(kinds), kinds.count(COMPLETE), kinds.count(DIVERGED), kinds.count(STALLED),
                    kinds.count(PRUNED), kinds.count(FAILED), kinds.count(HALVED))


def valued_trials(trials: Sequence[FrozenTrial], chance: float) -> list[FrozenTrial]:
    """Every finished search trial with an error, as a COMPLETE trial whose value is its `counted_error`."""
    out = []
    for trial in search_finished(trials):
        value = counted_error(trial, chance)
        if math.isfinite(value) and trial.params:
            out.append(optuna.trial.create_trial(params=dict(trial.params), distributions=dict(trial.distributions),
                                                 value=value, user_attrs={contract.OUTCOME: outcome(trial)}))
    return out
