"""Tunability (Probst, Boulesteix and Bischl, JMLR 2019): the default configuration's error against the tuned best."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from optuna.trial import FrozenTrial

from bioscale import contract

from .outcomes import COMPLETE, counted_error, outcome


@dataclass(frozen=True)
class Tunability:
    """Validation errors of the rule's default configuration and of the best search trial at the study's budget."""

    default_error: float  # chance level when the default configuration diverged
    default_outcome: str
    default_trial: int | None
    tuned_error: float
    tuned_trial: int | None
    n_search: int  # finished search trials the tuned best was chosen from
    incumbent_trial: int | None = None  # the study's best (`contract.best_trial`): the default's trial when it won

    @property
    def default_is_best(self) -> bool:
        """True when the default configuration is the study's incumbent (no search trial beat it)."""
        return self.incumbent_trial is not None and self.incumbent_trial == self.default_trial

    @property
    def gain(self) -> float:
        """How much tuning buys: default − tuned validation error (positive when tuning helped)."""
        return self.default_error - self.tuned_error

    def line(self) -> str:
        """One line: default error, tuned best, difference in percentage points."""
        if self.default_trial is None:
            return "no default-configuration trial in this study"
        default = f"{100 * self.default_error:.2f}%" + ("" if self.default_outcome == COMPLETE else
                                                         f" ({self.default_outcome}, counted at chance level)")
        if not math.isfinite(self.tuned_error):
            return f"default configuration {default} (trial {self.default_trial}); no complete search trial to compare"
        return (f"default configuration {default} validation error (trial {self.default_trial}), search's best "
                f"{100 * self.tuned_error:.2f}% (trial {self.tuned_trial}, best of {self.n_search} finished "
                f"configurations): tuning buys {100 * self.gain:+.2f} pp"
                + ("; the default stays the study's best (the incumbent)" if self.default_is_best else ""))


def tunability(trials: Sequence[FrozenTrial], chance: float) -> Tunability:
    """The default trial's validation error (chance level if it diverged) against the best search trial's."""
    default = contract.default_trial(trials)
    best = contract.best_trial(trials, search_only=True)
    incumbent = contract.best_trial(trials)
    n_search = len(contract.finished_trials(contract.search_trials(trials)))
    return Tunability(default_error=counted_error(default, chance) if default else math.nan,
                      default_outcome=outcome(default) if default else "",
                      default_trial=default.number if default else None,
                      tuned_error=float(best.value) if best else math.nan,
                      tuned_trial=best.number if best else None, n_search=n_search,
                      incumbent_trial=incumbent.number if incumbent else None)
