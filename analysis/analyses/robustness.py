"""Robustness: how many configurations come close to the rule's own best and to a common reference (BP's best).

A configuration counts as close when its error (diverged at chance) is within 1 or 5 percentage
points; the learning-rate band is the span, in decades, of learning rates within 5 pp of the
best. The paper's stability claims (BP most stable, TP rules most sensitive, alternating steadier
than parallel) are judged on the share within 5 pp of the reference, and marked exploratory when
a study has fewer configurations than a share needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from dataclasses import dataclass, field

import pandas as pd

from ..statistics.design import fidelity_summary
from ..statistics.evidence import evidence
from .paper import arch_family
from ..report import Block, Bullets, Paragraph, Table
from ..statistics.stability import MARGIN, MARGINS, Robustness
from . import _common as c

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

NAME = "robustness"
TITLE = "Robustness and the paper's stability claims"
ORDER = 50


@dataclass
class RobustnessResult:
    """Per (dataset, arch): each study's Robustness (by family), the claims and whether they rest on enough configurations."""

    groups: dict[tuple[str, str], list[tuple[str, str, Robustness]]] = field(default_factory=dict)  # (name, study, r)
    claims: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    weakest: dict[tuple[str, str], int] = field(default_factory=dict)  # fewest finished configurations in the group
    learned: dict[tuple[str, str], dict[str, bool]] = field(default_factory=dict)  # `evidence.learned`, per study
    long: pd.DataFrame = field(default_factory=pd.DataFrame)
    fidelity: str = ""  # the budget the shares read (`design.fidelity_summary`)


def compute(results: Analysis) -> RobustnessResult:
    """Shares per study, the paper's claims per dataset and family."""
    out = RobustnessResult(long=results.stability, fidelity=fidelity_summary(results.records))
    for group, members in c.groups(results).items():
        rows = [(a.name, a.record.name, a.robustness) for a in members if a.analysed and a.robustness is not None]
        if rows:
            out.groups[group] = rows
            out.weakest[group] = min(r.n_finished for _, _, r in rows)
            out.claims[group] = results.claims.get((group[0], arch_family(group[1])), [])
            out.learned[group] = {a.name: a.learned for a in members if a.analysed and a.robustness is not None}
    return out


def _band(r: Robustness) -> str:
    if not r.lr_bands:
        return "–"
    return ", ".join(f"{n} {w:.1f}" for n, w in sorted(r.lr_bands.items())) + evidence("lr_band", r.n_within).mark()


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
                                    + (f" *({ev.tag()}: the smallest study has {ev.n} configurations, a share needs "
                                       f"{ev.needed}; one configuration moves a share by {100 / max(ev.n, 1):.0f} pp)*"
                                       if not ev.ok else "") + ":"))
            blocks.append(Bullets(computed.claims[group]))
        frame = pd.DataFrame([{
            "dataset": group[0], "arch": group[1], "study": name, "configurations": r.n_finished,
            **{f"within {100 * m:.0f} pp of own best (%)": c.pct(r.within_best.get(m, math.nan), 0) for m in MARGINS},
            **{f"within {100 * m:.0f} pp of reference (%)": c.pct(r.within_reference.get(m, math.nan), 0) for m in MARGINS},
            "LR band within 5 pp (decades)": _band(r) if learned.get(name, True) else "– (never learned)"}
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
