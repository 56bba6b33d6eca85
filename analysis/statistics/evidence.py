"""How many observations each statistic needs before the report states it firmly.

Every statistic the report prints knows the number of observations it rests on. Below the
threshold named here it is either left out or printed greyed with the mark `exploratory` and its
reason (e.g. "exploratory: 6 trials, fANOVA shares need at least 30"). The thresholds are
rules of thumb, chosen so that a share or rank is not dominated by one or two points:

- fANOVA / PED-ANOVA shares: a random forest over 7-8 parameters needs several trials per
  parameter; at 30 complete trials the top parameter is stable across forest seeds.
- a top-k overlap needs at least 4k configurations, or the overlap is high by construction.
- a learning-rate band needs at least 3 configurations near the best.
- an unpaired comparison (Mann-Whitney, bootstrap of medians) needs 8 per arm.
- a paired comparison needs 5 matched configurations (a sign test of 5 of 5 wins has p = 0.06,
  of 6 of 6 p = 0.03).
- a stability share (within x pp of a reference) needs 20 configurations.
- a budget-trust rank correlation needs 10 learning curves.
- "learned": every evaluated seed (a diverged one at chance) ends with an error at most
  LEARNED_SHARE of chance, i.e. at least half-way from chance to zero: ≤ 45 % on ten classes
  (a margin of 45 pp), ≤ 25 % on two (25 pp); the margin scales with the number of classes as
  chance = 1 − 1/classes does. A study not re-evaluated is judged on its best validation error.
  Sensitivity is measured only among studies that learned: a share of configurations near a
  reference means nothing for a rule that never came near it.
- a surrogate random forest (ablation path, local importance, interactions) is not fitted below 8
  finished trials: with 3 trials per leaf it would have two or three leaves; its ablation path and
  local importances are exploratory below 20 trials, its pairwise interactions (which need more
  data than main effects) below 30, and all three when the forest predicts the trials it was not
  fitted to with out-of-bag R² below MIN_OOB_R2 (e.g. when runs that diverge at random, not by
  configuration, dominate the variance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

THRESHOLDS: dict[str, tuple[int, str, str]] = {  # kind -> (observations needed, what is counted, the statistic)
    "importance": (30, "complete trials", "an importance share (fANOVA, PED-ANOVA)"),
    "top_overlap": (20, "configurations", "a top-5 overlap"),
    "lr_band": (3, "configurations near the best", "a learning-rate band"),
    "unpaired": (8, "configurations per activation", "an unpaired comparison"),
    "paired": (5, "matched configurations", "a paired comparison"),
    "stability": (20, "configurations", "a stability share"),
    "trust": (10, "learning curves", "a rank correlation across epochs"),
    "sensitivity": (20, "configurations per study", "a sensitivity ranking of rules"),
    "surrogate": (8, "finished trials", "a surrogate random forest"),
    "ablation": (20, "finished trials", "an ablation path"),
    "local_importance": (20, "finished trials", "local parameter importance"),
    "interactions": (30, "finished trials", "an interaction share"),
}
LEARNED_SHARE = 0.5  # learned: every seed's error at most this share of the chance-level error
MIN_OOB_R2 = 0.5  # below this out-of-bag R², every result on a surrogate is exploratory
EXPLORATORY = "exploratory"


@dataclass(frozen=True)
class Evidence:
    """The observations one statistic rests on against the number it needs."""

    kind: str
    n: int
    needed: int
    unit: str
    statistic: str

    @property
    def ok(self) -> bool:
        """True when the statistic rests on enough observations to be stated firmly."""
        return self.n >= self.needed

    @property
    def reason(self) -> str:
        """Why it is exploratory ('' when it is not)."""
        return "" if self.ok else f"{self.n} {self.unit}; {self.statistic} needs at least {self.needed}"

    def mark(self) -> str:
        """'' when firm, else ' *(exploratory: reason)*' to append to a printed number."""
        return "" if self.ok else f" *({EXPLORATORY}: {self.reason})*"


def learned_threshold(chance: float) -> float:
    """The highest error that counts as learned on a dataset whose chance-level error is `chance`."""
    return LEARNED_SHARE * chance


def learned(errors: Sequence[float], chance: float) -> bool:
    """Whether every error (one per evaluated seed, a diverged seed at chance) is well below chance."""
    values = [float(e) for e in errors]
    return bool(values) and all(math.isfinite(e) and e <= learned_threshold(chance) for e in values)


def needed(kind: str) -> int:
    """The number of observations a statistic of `kind` (a key of THRESHOLDS) needs."""
    return THRESHOLDS[kind][0]


def evidence(kind: str, n: int) -> Evidence:
    """The evidence of a statistic of `kind` (a key of THRESHOLDS) resting on `n` observations."""
    count, unit, statistic = THRESHOLDS[kind]
    return Evidence(kind=kind, n=int(n), needed=count, unit=unit, statistic=statistic)
