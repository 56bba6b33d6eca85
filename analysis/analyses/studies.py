"""Per-study details (appendix): every number computed for each study, one bullet list per study; its figures on --figures all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import math
from dataclasses import dataclass, field

import pandas as pd

from bioscale.contract import complete_trials, search_trials

from ..statistics.evidence import evidence
from ..statistics.importance import FanovaResult, PedAnovaResult
from ..report import Block, Bullets, Heading, Paragraph, pct
from ..statistics.stability import MARGINS
from ..tables import end_reasons
from . import _common as c
from .budget import trust_mark
from .robustness import band

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis, LoadedStudy

NAME = "studies"
TITLE = "Per-study details"
ORDER = 85
NEEDS = ("activation", "budget", "importance", "outcomes", "robustness", "tunability")
APPENDIX = True


@dataclass
class StudyDetails:
    """Per group: (heading name, study name, bullet items, status) of each analysed study; the studies not analysed."""

    groups: dict[tuple[str, str], list[tuple[str, str, list[str], str]]] = field(default_factory=dict)
    activation_figures: list[tuple] = field(default_factory=list)  # (group, name, study, frame, effect, incomplete)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def compute(results: Analysis) -> StudyDetails:
    """The bullet items of every analysed study (the numbers, as text), in family order."""
    out = StudyDetails()
    best = results.best
    for group, members in c.groups(results).items():
        for a in members:
            if not a.analysed:
                out.skipped.append((a.record.name, a.status))
                continue
            row = best.loc[best.study == a.record.name].iloc[0]
            out.groups.setdefault(group, []).append((a.name, a.record.name, _study_bullets(a, row, results.computed), a.status))
            w = results.computed["activation"].by_study[a.record.name]
            if w.effect is not None and min(w.effect.n_tanh, w.effect.n_relu) > 0:
                out.activation_figures.append((group, a.name, a.record.name, a.frame, w.effect,
                                               {k: sum(v.values()) for k, v in w.incomplete.items()}))
    return out


def render(computed: StudyDetails, out: Output, figures: str) -> list[Block]:
    """A sub-heading and bullets per study; within-study activation figures on --figures all."""
    from .. import plots

    blocks: list[Block] = []
    for group, rows in computed.groups.items():
        blocks.append(Heading(c.title(group), 3))
        for name, study, items, status in rows:
            blocks.append(Heading(f"{name} — `{study}`", 3))
            if status != "ok":
                blocks.append(Paragraph(f"**{status}**"))
            blocks.append(Bullets(items))
            for g, n, s, frame, effect, incomplete in computed.activation_figures:
                if s == study:
                    blocks += out.figure(plots.activation_figure, (n, frame, effect, incomplete), c.folder(g),
                                         f"{n}-activation", f"{n}: validation error under tanh and ReLU, and the "
                                         "expected best after n random trials", level="all", studies=[s])
    if computed.skipped:
        blocks.append(Heading("Studies not analysed", 3))
        blocks.append(Bullets([f"`{name}`: {status}" for name, status in computed.skipped]))
    return blocks


def _study_bullets(a: LoadedStudy, best: pd.Series, computed: dict[str, Any]) -> list[str]:
    record = a.record
    counts = computed["outcomes"].by_study.get(record.name)
    tuned = computed["tunability"].by_study.get(record.name)
    shares = computed["importance"].by_study[record.name]
    items = []
    reasons = end_reasons(record)
    search = search_trials(record.trials)
    default = " (besides the default configuration's trial)" if len(search) < len(record.trials) else ""
    items.append(f"**Trials**: {len(complete_trials(search))} complete of {len(search)} configurations searched{default}"
                 + (f"; ended early or failed: {', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))}" if reasons else "")
                 + (f"; {record.epochs} epochs each" if record.epochs else ""))
    if counts is not None:
        patience = record.info.chance_patience
        items.append(f"**Diverged or stalled** (a sensitivity number: every finished search trial counts): "
                     f"{counts.line()}; stall detection "
                     + ("not recorded" if patience is None else "off" if patience <= 0 else f"on ({patience} epochs)"))
    line = (f"**Best**: validation error {pct(best.best_val_error)}% (trial {best.best_trial}), "
            f"test error at it {pct(best.test_error_at_best)}%")
    if a.evaluated is not None:
        line += f"; evaluated: test error {a.evaluated.line()}"
    items.append(line)
    if tuned is not None and tuned.default_trial is not None:
        items.append(f"**Tunability**: {tuned.line()}")
    items += _importance_items(shares.fanova, shares.ped, "complete trials")
    if shares.fanova_all is not None:
        items += _importance_items(shares.fanova_all, shares.ped_all,
                                   f"every finished trial, diverged ones at chance level {100 * a.chance:.0f}%")
    items.append(f"**Activation**: {computed['activation'].by_study[record.name].note}")
    r = computed["robustness"].by_study.get(record.name)
    if r is not None and r.n_finished:
        own = ", ".join(f"{100 * r.within_best.get(m, math.nan):.0f}% within {100 * m:.0f} pp" for m in MARGINS)
        ref = ", ".join(f"{100 * r.within_reference.get(m, math.nan):.0f}% within {100 * m:.0f} pp" for m in MARGINS)
        items.append(f"**Robustness** (of {r.n_finished} finished configurations): {own} of its own best; {ref} of the "
                     f"common reference ({r.reference_from or 'none'}); learning-rate band within {100 * r.margin:.0f} pp "
                     f"of its best: {band(r, 2, ' decades')}")
    trust = computed["budget"].by_study.get(record.name)
    if trust is not None:
        line = f"**Budget trust**: {trust.verdict()}"
        if trust.ok:
            line += f" (ρ at epoch 1: {trust.rho[0]:.2f})" if math.isfinite(trust.rho[0]) else ""
            line += trust_mark(trust.curves)
        items.append(line)
    return items


def _importance_items(f: FanovaResult | None, p: PedAnovaResult | None, trials: str) -> list[str]:
    items: list[str] = []
    if f is not None:
        text = (f"**fANOVA** on {trials} (global variance; {f.evaluator}, {f.seeds} seeds × {f.n_trees} trees; "
                f"{f.overall.n_trials} trials; log10 scale for {', '.join(f.log_params) or 'no parameter'}): ")
        if f.overall.ok:
            text += (", ".join(f"{p} {100 * m:.1f} ± {100 * s:.1f}%" for p, m, s in f.overall.ranked())
                     + " (± is the spread over forest seeds, not sampling uncertainty)"
                     + evidence("importance", f.overall.n_trials).mark())
        else:
            text += f.overall.status
        if f.overall.constant:
            text += f"; fixed (one possible value, importance 0): {', '.join(f.overall.constant)}"
        if f.dropped:
            text += "; dropped: " + ", ".join(f"{p} ({why})" for p, why in f.dropped.items())
        items.append(text)
        if f.conditional:
            cond = ", ".join(f"{p} (in {c} of {f.overall.n_trials} trials)" for p, c in f.conditional.items())
            items.append(f"**Conditional parameters** {cond}: left out of the line above, evaluated per branch:")
            for branch in f.branches:
                body = (", ".join(f"{p} {100 * m:.1f} ± {100 * s:.1f}%" for p, m, s in branch.ranked())
                        + evidence("importance", branch.n_trials).mark() if branch.ok else branch.status)
                items.append(f"  {branch.title} ({branch.n_trials} trials): {body}")  # a sub-item
    if p is not None and p.ok:
        items.append(f"**PED-ANOVA** on {trials} (what reaching the top {100 * p.target_quantile:.0f}% needs; {p.n_top} of "
                     f"{p.n_trials} trials): " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in p.ranked())
                     + evidence("importance", p.n_trials).mark())
    elif p is not None:
        items.append(f"**PED-ANOVA** on {trials}: {p.status}")
    return items


