"""The three analyses on one study's surrogate (ablation path, local importance, interactions), bundled for the report.

`compute_surrogate_analyses` fits the surrogate once and runs the three; `bullets`, `figures`,
`methods` and `long_table` are what the report needs of them. This is the glue the current report
calls (three lines in results.py, rendering.py and sections.py); each analysis lives in its own
module (ablation.py, local_importance.py, interactions.py) with its own compute and render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
from optuna.trial import FrozenTrial

from . import ablation, interactions, local_importance
from .surrogate import MIN_OOB_R2, MIN_TRIALS_FIT, N_TREES, SurrogateFit, fit_surrogate, fmt_value


@dataclass
class SurrogateAnalyses:
    """One study's surrogate and the three analyses on it."""

    fit: SurrogateFit
    ablation: ablation.AblationPath
    local: local_importance.LocalImportance
    interactions: interactions.Interactions


def compute_surrogate_analyses(trials: Sequence[FrozenTrial], rule: str | None, chance: float) -> SurrogateAnalyses:
    """Fit the study's surrogate once; its ablation path, local importance and strongest interaction."""
    fit = fit_surrogate(trials, chance)
    return SurrogateAnalyses(fit=fit, ablation=ablation.compute(trials, fit, rule, chance),
                             local=local_importance.compute(trials, fit), interactions=interactions.compute(trials, fit))


def bullets(s: SurrogateAnalyses | None) -> list[str]:
    """The report's lines: one per analysis, or one saying why there is none."""
    if s is None:
        return []
    if not s.fit.ok:
        return [f"**Ablation path, local importance, interactions** (surrogate): {s.fit.status}"]
    head = (f"(random forest of {N_TREES} trees on {s.fit.n_trials} finished trials"
            + (f", {s.fit.surrogate.n_diverged} diverged at chance level" if s.fit.surrogate.n_diverged else "")
            + f"; out-of-bag R² {s.fit.surrogate.oob_r2:.2f})")
    items = [f"**Ablation path** {head}: {s.ablation.line()}",
             f"**Local importance** around the best (share of local variance, ± sd over trees): {s.local.line()}",
             f"**Strongest interaction** (share of the surrogate's variance, ± sd over trees): {s.interactions.line()}"]
    if s.fit.dropped:
        items.append("  not surrogate inputs: " + ", ".join(f"{p} ({why})" for p, why in s.fit.dropped.items()))
    return items


def figures(s: SurrogateAnalyses | None, name: str) -> list[tuple[str, object, str]]:
    """(file suffix, Figure, caption) of each figure there is to draw (none for an empty or missing result)."""
    if s is None or not s.fit.ok:
        return []
    out = []
    if s.ablation.computed and s.ablation.steps:
        out.append(("ablation", ablation.figure(s.ablation, name),
                    f"{name}: ablation path from the default configuration to the best, predicted error per step "
                    "(mean ± sd over the surrogate's trees)"))
    if s.local.computed:
        out.append(("local-importance", local_importance.figure(s.local, name),
                    f"{name}: local parameter importance around the best configuration, and the predicted error along "
                    "the most important parameters"))
    if s.interactions.computed:
        out.append(("interaction", interactions.figure(s.interactions, name),
                    f"{name}: 2-D partial dependence of the strongest pairwise interaction"))
    return out


def methods() -> str:
    """The report's methods paragraph for the three analyses."""
    return ("**Ablation path, local importance, interactions** (as DeepCAVE computes them): one random forest per "
            f"study ({N_TREES} trees, scikit-learn) fitted to every finished search trial on the importances' search "
            "scale (log10 for log-scaled parameters), diverged runs at chance level; spreads are standard deviations "
            "over its trees. *Ablation path* (Fawcett and Hoos 2016): from the default configuration (the study's "
            "default-configuration trial, else the rule's defaults) to the best trial's, greedily changing the one "
            "parameter that lowers the predicted error most. *Local importance* (Biedenkapp et al. 2018): each "
            "parameter varied alone over its range around the best configuration; its share of the variance of the "
            "predicted error. *Interactions*: the variance of each pair's 2-D partial dependence beyond its two 1-D "
            f"ones, as a share of the predicted error's variance over the space. No surrogate below {MIN_TRIALS_FIT} "
            f"trials; path and local importance are marked exploratory below {ablation.MIN_TRIALS} trials, "
            f"interactions below {interactions.MIN_TRIALS}, and all three when the forest's out-of-bag R² (how well it "
            f"predicts trials it was not fitted to) is below {MIN_OOB_R2}.")


def long_table(rows: Sequence[tuple[str, str, SurrogateAnalyses | None]]) -> pd.DataFrame:
    """One row per ablation step, local share and pair, from (study, label, analyses) triples, for CSV."""
    out = []
    for study, label, s in rows:
        if s is None or not s.fit.ok:
            continue
        base = {"study": study, "label": label, "n_trials": s.fit.n_trials}
        if s.ablation.computed:
            out.append({**base, "analysis": "ablation", "status": s.ablation.status, "step": 0, "param": "(default)",
                        "from": "", "to": "", "value": s.ablation.start[0], "spread": s.ablation.start[1]})
            for k, step in enumerate(s.ablation.steps, start=1):
                out.append({**base, "analysis": "ablation", "status": s.ablation.status, "step": k, "param": step.param,
                            "from": fmt_value(step.default), "to": fmt_value(step.best), "value": step.error,
                            "spread": step.spread, "gain": step.gain})
        if s.local.computed:
            for p, m, sd in s.local.ranked():
                out.append({**base, "analysis": "local importance", "status": s.local.status, "param": p, "value": m,
                            "spread": sd})
        if s.interactions.computed:
            for pair in s.interactions.pairs:
                out.append({**base, "analysis": "interaction", "status": s.interactions.status,
                            "param": f"{pair.first} x {pair.second}", "value": pair.share, "spread": pair.spread})
    return pd.DataFrame(out)
