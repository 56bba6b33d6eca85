"""Robustness: how many configurations come close to the rule's own best and to a common reference (BP's best).

A configuration counts as close when its error (diverged at chance) is within 1 or 5 percentage
points; the learning-rate band is the span, in decades, of learning rates within 5 pp of the
best. The paper's stability claims (BP most stable, TP rules most sensitive, alternating steadier
than parallel) are judged on the share within 5 pp of the reference, and marked exploratory when
a study has fewer configurations than a share needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from ..report import Block, Bullets, Paragraph, Table
from ..statistics.design import fidelity_summary, first_rung_errors
from ..statistics.evidence import EXPLORATORY, evidence
from ..statistics.importance import log_scaled
from ..statistics.stability import MARGIN, MARGINS, Robustness, paper_claims, robustness
from . import _common as c
from .paper import arch_family

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis, LoadedStudy

NAME = "robustness"
TITLE = "Robustness and the paper's stability claims"
ORDER = 50
NEEDS = ("budget", "outcomes")  # stability.csv carries their columns


@dataclass
class RobustnessResult:
    """Per (dataset, arch): each study's Robustness (by family), the claims and whether they rest on enough configurations."""

    groups: dict[tuple[str, str], list[tuple[str, str, Robustness]]] = field(default_factory=dict)  # (name, study, r)
    claims: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    weakest: dict[tuple[str, str], int] = field(default_factory=dict)  # fewest finished configurations in the group
    learned: dict[tuple[str, str], dict[str, bool]] = field(default_factory=dict)  # `evidence.learned`, per study
    long: pd.DataFrame = field(default_factory=pd.DataFrame)
    fidelity: str = ""  # the budget the shares read (`design.fidelity_summary`)
    by_study: dict[str, Robustness] = field(default_factory=dict)  # every analysed study's, by study name


def study_robustness(a: LoadedStudy) -> Robustness:
    """One study's shares near its best, over every finished configuration at its first rung (diverged at chance)."""
    finished, errors = first_rung_errors(a.record, a.chance)  # sensitivity compares configurations where all reached
    lrs = {n: [t.params.get(n, math.nan) for t in finished] for n in log_scaled(a.complete) if n.endswith("_lr")}
    return robustness(errors, n_finished=len(finished), lrs=lrs, n_complete=len(a.complete))


def set_references(studies: Sequence[LoadedStudy], by_study: Mapping[str, Robustness]) -> dict[tuple[str, str], list[str]]:
    """Measure every study's stability against BP's best on its dataset and family (else the best rule's); the paper's claims per pair."""
    by: dict[tuple[str, str], list[tuple[LoadedStudy, Robustness]]] = {}
    for a in studies:
        r = by_study.get(a.record.name)
        if r is not None and math.isfinite(r.best_error):
            by.setdefault((a.record.dataset, arch_family(a.record.arch)), []).append((a, r))
    claims = {}
    for (dataset, family), members in by.items():
        bp = [m for m in members if m[0].record.rule == "bp"]
        ref, best = min(bp or members, key=lambda m: m[1].best_error)
        source = (f"{'BP' if bp else ref.name + ' (no BP study)'}'s best on {dataset or '?'} / {family}, "
                  f"{100 * best.best_error:.2f}%")
        for _, r in members:
            r.set_reference(best.best_error, source)
        shares: dict[tuple[str, str | None], float] = {}
        for a, r in (m for m in members if m[0].learned):  # a rule with several studies counts with its steadiest; a
            # study that never learned is not 'sensitive', it failed (and is left out of the claims)
            key = (a.record.rule, a.record.schedule)
            shares[key] = max(shares.get(key, -1.0), r.within_reference.get(MARGIN, math.nan))
        claims[(dataset, family)] = paper_claims(shares)
    return claims


def stability_table(studies: Sequence[LoadedStudy], by_study: Mapping[str, Robustness],
                    computed: Mapping[str, Any]) -> pd.DataFrame:
    """One row per analysed study: shares near its best and the reference, outcome counts, budget trust (stability.csv)."""
    rows = []
    for a in studies:
        r = by_study.get(a.record.name)
        if r is None:
            continue
        t = computed["budget"].by_study.get(a.record.name)
        o = computed["outcomes"].by_study.get(a.record.name)
        rows.append({**c.identity(a), "n_finished": r.n_finished, "n_complete": r.n_complete,
                     "share_diverged": o.share_diverged if o else math.nan, "n_diverged": o.n_diverged if o else 0,
                     "n_stalled": o.n_stalled if o else 0, "n_pruned": o.n_pruned if o else 0,
                     "best_error": r.best_error, "reference_error": r.reference_error, "reference": r.reference_from,
                     **{f"within_{100 * m:.0f}pp_of_best": r.within_best.get(m, math.nan) for m in MARGINS},
                     **{f"within_{100 * m:.0f}pp_of_reference": r.within_reference.get(m, math.nan) for m in MARGINS},
                     **{f"band_decades_{n}": w for n, w in r.lr_bands.items()},
                     "settle_epoch": t.settle_epoch if t else None, "last_epoch": t.last_epoch if t else None,
                     "top5_overlap_epoch": t.overlap_epoch if t else None, "budget_trust": t.verdict() if t else ""})
    return pd.DataFrame(rows)


def compute(results: Analysis) -> RobustnessResult:
    """Shares per study, the paper's claims per dataset and family."""
    by_study = {a.record.name: study_robustness(a) for a in results.studies if a.analysed}
    claims = set_references(results.studies, by_study)
    out = RobustnessResult(long=stability_table(results.studies, by_study, results.computed),
                           fidelity=fidelity_summary(results.records), by_study=by_study)
    for group, members in c.groups(results).items():
        analysed = [a for a in members if a.analysed]
        if analysed:
            out.groups[group] = [(a.name, a.record.name, by_study[a.record.name]) for a in analysed]
            out.weakest[group] = min(by_study[a.record.name].n_finished for a in analysed)
            out.claims[group] = claims.get((group[0], arch_family(group[1])), [])
            out.learned[group] = {a.name: a.learned for a in analysed}
    return out


def band(r: Robustness, digits: int = 1, unit: str = "") -> str:
    """Each learning rate's band within the margin of the best, in decades, with its evidence; '–' when none."""
    if not r.lr_bands:
        return "–"
    return (", ".join(f"{n} {w:.{digits}f}{unit}" for n, w in sorted(r.lr_bands.items()))
            + evidence("lr_band", r.n_within).mark())


def render(computed: RobustnessResult, out: Output, figures: str) -> list[Block]:
    """Per group: the claims (with their evidence), a table, and the robustness figure."""
    from .. import plots
    from ..palette import series_style

    blocks: list[Block] = [Paragraph(f"Shares count each configuration's error at {computed.fidelity}; the reference "
                                     "is BP's best error at that budget.")]
    if len(computed.long):
        out.table(computed.long, "stability")  # every column, whatever the data: a stable schema for scripts
    for group, rows in computed.groups.items():
        learned = computed.learned.get(group, {})
        ev = evidence("stability", computed.weakest[group])
        if computed.claims.get(group):
            blocks.append(Paragraph(f"**{c.title(group)}: the paper's stability claims**, judged on the share of finished "
                                    f"configurations within {100 * MARGIN:.0f} pp of the common reference, among studies that "
                                    "learned (a rule that never learned failed; it is not counted as sensitive)"
                                    + (f" *({EXPLORATORY}: the smallest study has {ev.n} configurations, a share needs "
                                       f"{ev.needed}; one configuration moves a share by {100 / max(ev.n, 1):.0f} pp)*"
                                       if not ev.ok else "") + ":"))
            blocks.append(Bullets(computed.claims[group]))
        frame = pd.DataFrame([{
            "dataset": group[0], "arch": group[1], "study": name, "configurations": r.n_finished,
            **{f"within {100 * m:.0f} pp of own best (%)": c.pct(r.within_best.get(m, math.nan), 0) for m in MARGINS},
            **{f"within {100 * m:.0f} pp of reference (%)": c.pct(r.within_reference.get(m, math.nan), 0) for m in MARGINS},
            "LR band within 5 pp (decades)": band(r) if learned.get(name, True) else "– (never learned)"}
            for name, _, r in rows])
        blocks.append(Table(c.drop_constant(frame), f"{c.title(group)}: reference "
                                                    f"{rows[0][2].reference_from or 'none'}."))
        styles = {name: series_style(name.split(" ")[0], "relu" if name.endswith("[relu]") else None) for name, _, _ in rows}
        folder = c.folder(group)
        blocks += out.figure(plots.robustness_figure, (f"{c.title(group)}: robustness", {n: r for n, _, r in rows}, styles),
                             folder, f"{folder}-robustness", f"{c.title(group)}: share of finished configurations within x "
                             "pp of the rule's best and of the common reference; learning-rate band within 5 pp",
                             level="all")
    return blocks
