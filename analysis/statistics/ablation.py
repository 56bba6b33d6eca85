"""Ablation path (Fawcett and Hoos 2016) on the study's surrogate: which changes from the defaults buy the gain, in order.

The path starts at the rule's default configuration (the study's default-configuration trial
where there is one, else the rule's defaults) and ends at the best search trial's configuration.
Each step changes the one parameter (still at its default) whose change to its best value lowers
the surrogate's predicted error most; each step's predicted error carries its spread over trees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from optuna.trial import FrozenTrial

from bioscale import contract

from .outcomes import COMPLETE, DIVERGED, PRUNED, STALLED, counted_error, outcome
from .surrogate import OnSurrogate, Surrogate, SurrogateFit, fmt_value

# The first changes of the path that buy at least this share of the predicted improvement are "most of it".
MOST = 0.8


@dataclass
class AblationStep:
    """One change of the path: a parameter from its default to its best value, and the predicted error after it."""

    param: str
    default: object
    best: object
    error: float  # predicted error after this change (mean over trees)
    spread: float  # standard deviation over trees
    gain: float  # predicted error before this change minus after it


@dataclass
class AblationPath(OnSurrogate):
    """The greedy path from the default configuration to the best one, on the surrogate (status also 'empty')."""

    source: str = ""  # where the default configuration came from
    default: dict[str, object] = field(default_factory=dict)
    best: dict[str, object] = field(default_factory=dict)
    default_error: float = math.nan  # observed (chance level when the default trial diverged); NaN without a default trial
    best_error: float = math.nan  # observed, the best search trial
    start: tuple[float, float] = (math.nan, math.nan)  # predicted (mean, spread) at the default configuration
    steps: list[AblationStep] = field(default_factory=list)
    improvement_spread: float = math.nan  # sd over trees of each tree's own improvement (paired, unlike the steps' spreads)
    notes: list[str] = field(default_factory=list)

    @property
    def computed(self) -> bool:
        """True when there is a path (possibly empty) to show."""
        return self.status in ("ok", "exploratory", "empty")

    @property
    def improvement(self) -> float:
        """Predicted error at the default minus the lowest along the path (later steps may raise it again)."""
        return self.start[0] - min(s.error for s in self.steps) if self.steps else 0.0

    def most(self, share: float = MOST) -> tuple[list[str], float]:
        """The first one or two changes and the share of the predicted improvement they buy (the first ones reaching `share`)."""
        total = self.improvement
        if not self.steps or total <= 0:
            return [], math.nan
        for k in (1, 2):
            bought = min(1.0, (self.start[0] - self.steps[min(k, len(self.steps)) - 1].error) / total)
            if bought >= share or k >= len(self.steps):
                return [s.param for s in self.steps[:k]], bought
        return [s.param for s in self.steps[:2]], bought

    def line(self) -> str:
        """One line for the report: where the path starts, which changes buy most of the gain, the tie to tunability."""
        if not self.computed:
            return self.status
        if self.status == "empty":
            return self.notes[0]
        names, share = self.most()
        start = f"from {self.source}, predicted {_pct(self.start)}"
        end = f"to the best trial's configuration, predicted {_pct((self.steps[-1].error, self.steps[-1].spread))}"
        order = " → ".join(f"{s.param} {fmt_value(s.default)}→{fmt_value(s.best)} ({100 * s.gain:+.2f} pp)"
                           for s in self.steps)
        text = f"{self.prefix}{start} {end}; path: {order}. "
        if names and math.isfinite(share):
            text += (f"{' and '.join(names)} {'buys' if len(names) == 1 else 'buy'} {100 * share:.0f}% of the predicted "
                     f"improvement of {100 * self.improvement:.2f} pp")
            if share < MOST:
                text += f" (no one or two changes buy {100 * MOST:.0f}%: the gain is spread over {len(self.steps)} changes)"
        else:
            text += "the surrogate predicts no improvement along the path"
        worse = [s for s in self.steps if s.gain < 0]
        if worse:
            text += "; " + ", ".join(f"{s.param} raises the predicted error by {-100 * s.gain:.2f} pp "
                                     f"(spread {100 * s.spread:.2f} pp)" for s in worse)
        if math.isfinite(self.default_error) and math.isfinite(self.best_error):
            text += (f"; observed, tuning buys {100 * (self.default_error - self.best_error):+.2f} pp "
                     f"({100 * self.default_error:.2f}% → {100 * self.best_error:.2f}%)")
        return text + ("; " + "; ".join(self.notes) if self.notes else "")


def _pct(pair: tuple[float, float]) -> str:
    return f"{100 * pair[0]:.2f} ± {100 * pair[1]:.2f}%"


def default_configuration(trials: Sequence[FrozenTrial], rule: str | None, chance: float
                          ) -> tuple[dict[str, object], str, float]:
    """(configuration, where it came from, observed error): the default trial's, else the rule's defaults (error NaN)."""
    trial = contract.default_trial(trials)
    if trial is not None:
        kind = outcome(trial)
        error = counted_error(trial, chance)
        how = {COMPLETE: f"{100 * error:.2f}%", DIVERGED: f"{kind}, counted at chance level {100 * error:.0f}%",
               STALLED: f"{kind}, counted at chance level {100 * error:.0f}%",
               PRUNED: f"stopped by the pruner at {100 * error:.2f}%"}.get(kind, f"{kind}, no error recorded")
        return dict(trial.params), f"the default-configuration trial {trial.number} ({how})", error
    if rule:
        try:
            from bioscale.spaces import rule_defaults  # loads the rule registry (and torch) only when no default trial exists

            return dict(rule_defaults(rule)), f"{rule}'s default settings (no default-configuration trial)", math.nan
        except Exception:  # a rule this installation does not know: no defaults to start from
            pass
    return {}, "", math.nan


def ablation_path(surrogate: Surrogate, default: Mapping[str, object], best: Mapping[str, object], *,
                  source: str = "the default configuration", default_error: float = math.nan,
                  best_error: float = math.nan) -> AblationPath:
    """The greedy path from `default` to `best` on `surrogate`, one parameter per step."""
    path = AblationPath(n_trials=surrogate.n_trials, source=source, default=dict(default), best=dict(best),
                        default_error=default_error, best_error=best_error)
    target = surrogate.encode(best)
    current = target.copy()
    for i, name in enumerate(surrogate.params):
        if name not in default:
            path.notes.append(f"{name} has no default: held at its best value")
            continue
        value = surrogate.encode_value(name, default[name])
        if math.isnan(value):
            path.notes.append(f"{name}'s default {fmt_value(default[name])} is not one of its choices: held at its best value")
            continue
        low, high = surrogate.bounds(name)
        if not low <= value <= high:
            path.notes.append(f"{name}'s default {fmt_value(default[name])} lies outside the searched range: the path "
                              f"starts at the nearest edge")
            value = min(max(value, low), high)
        current[i] = value
    mean, spread = surrogate.predict(current)
    path.start = (float(mean[0]), float(spread[0]))
    todo = [i for i in range(len(surrogate.params)) if not math.isclose(current[i], target[i], rel_tol=1e-9, abs_tol=1e-12)]
    if math.isfinite(default_error) and math.isfinite(best_error) and default_error <= best_error:
        path.status = "empty"
        path.notes.insert(0, f"the default configuration is already the best: {source} is at least as good as the best "
                             f"search trial ({100 * best_error:.2f}%); no change buys an improvement, the path is empty")
        return path
    if not todo:
        path.status = "empty"
        path.notes.insert(0, "the default configuration already has the best trial's values: the path is empty")
        return path
    rows = [current.copy()]  # the configuration at the start and after each step, for the paired spread
    while todo:
        candidates = np.repeat(current[None, :], len(todo), axis=0)
        for row, i in enumerate(todo):
            candidates[row, i] = target[i]
        means, spreads = surrogate.predict(candidates)
        row = int(np.argmin(means))
        i = todo.pop(row)
        before = path.steps[-1].error if path.steps else path.start[0]
        name = surrogate.params[i]
        path.steps.append(AblationStep(param=name, default=surrogate.decode_value(name, current[i]), best=best[name],
                                       error=float(means[row]), spread=float(spreads[row]), gain=before - float(means[row])))
        current[i] = target[i]
        rows.append(current.copy())
    trees = surrogate.per_tree(np.vstack(rows))  # paired over trees: each tree's own improvement to the lowest step
    lowest = 1 + int(np.argmin([s.error for s in path.steps]))
    path.improvement_spread = float(np.std(trees[:, 0] - trees[:, lowest]))
    path.judge(surrogate, "ablation")
    return path


def compute(trials: Sequence[FrozenTrial], fit: SurrogateFit, rule: str | None, chance: float) -> AblationPath:
    """The study's ablation path from its default configuration to its best search trial."""
    if not fit.ok:
        return AblationPath(n_trials=fit.n_trials, status=f"ablation path {fit.status}")
    best = contract.best_trial(trials, search_only=True)
    if best is None:
        return AblationPath(n_trials=fit.n_trials, status="ablation path not computed: no complete search trial")
    default, source, error = default_configuration(trials, rule, chance)
    if not default:
        return AblationPath(n_trials=fit.n_trials, status="ablation path not computed: no default-configuration trial and "
                                                          "no known defaults of the rule")
    return ablation_path(fit.surrogate, default, best.params, source=source, default_error=error,
                         best_error=float(best.value))
