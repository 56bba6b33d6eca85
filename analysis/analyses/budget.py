"""Budget trust: do short runs rank configurations as the full run does?

Spearman ρ between each configuration's validation error at epoch e and at its last epoch, and
the overlap of the top 5 at e with the final top 5, over the configurations that trained the full
budget. A study that halved its configurations also gets the rank agreement (Spearman ρ, with its
n) between the first rung and the full budget among those that reached it, and says when it is
low: then halving on the first rung may have dropped the configurations that would have won. A rank correlation over fewer than
`evidence.THRESHOLDS["trust"]` curves, or a top-5 overlap over fewer than 20 configurations, is
marked exploratory (among 6 configurations the top 5 always overlap in at least 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from bioscale.contract import complete_trials

from ..report import Block, Paragraph, Table
from ..statistics.design import full_budget, rungs_and_full
from ..statistics.evidence import evidence
from ..statistics.stability import TRUST_RHO, BudgetTrust, RungTrust, budget_trust, learning_curves, rung_trust
from . import _common as c

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

NAME = "budget"
TITLE = "Budget trust: can short runs be trusted?"
ORDER = 55


@dataclass
class Budget:
    """Per (dataset, arch): (name, study, BudgetTrust) in family order."""

    groups: dict[tuple[str, str], list[tuple[str, str, BudgetTrust]]] = field(default_factory=dict)
    rungs: dict[str, RungTrust] = field(default_factory=dict)  # by report name, for studies with rungs
    by_study: dict[str, BudgetTrust] = field(default_factory=dict)  # every analysed study's, by study name

    @property
    def low(self) -> list[str]:
        """The studies whose first rung ranks the full budget poorly."""
        return [name for name, t in self.rungs.items() if t.low]


def compute(results: Analysis) -> Budget:
    """Each analysed study's budget trust and, where it has rungs, its first rung's rank agreement with the full budget."""
    out = Budget()
    for group, members in c.groups(results).items():
        analysed = [a for a in members if a.analysed]
        for a in analysed:
            out.by_study[a.record.name] = budget_trust(learning_curves(complete_trials(full_budget(a.record.trials))))
            rungs = rungs_and_full(a.record, a.chance)
            if rungs:
                out.rungs[a.name] = rung_trust(*rungs)
        if analysed:
            out.groups[group] = [(a.name, a.record.name, out.by_study[a.record.name]) for a in analysed]
    return out


def trust_mark(n: int) -> str:
    """The exploratory mark of a verdict resting on n curves: ρ needs 10, a top-5 overlap 20."""
    return next((evidence(k, n).mark() for k in ("trust", "top_overlap") if not evidence(k, n).ok), "")


def render(computed: Budget, out: Output, figures: str) -> list[Block]:
    """A table of verdicts with their evidence; the figure when any study has enough curves (else on --figures all)."""
    from .. import plots

    blocks: list[Block] = []
    if computed.low:
        blocks.append(Paragraph(f"**Budget trust is low** for {c.names_line(computed.low)}: their first rung does not "
                                f"rank the full budget (Spearman ρ below {TRUST_RHO:g}), so successive halving may have "
                                "stopped their best configurations early; read their best errors as upper bounds of "
                                "what the rule reaches."))
    for group, rows in computed.groups.items():
        firm = [name for name, _, t in rows if evidence("trust", t.curves).ok]
        frame = pd.DataFrame([{"dataset": group[0], "arch": group[1], "study": name, "curves": t.curves,
                               "verdict": t.verdict() + trust_mark(t.curves),
                               **({"first rung vs full budget": computed.rungs[name].line() +
                                   evidence("trust", computed.rungs[name].n).mark()} if name in computed.rungs else {})}
                              for name, _, t in rows])
        if not firm:
            blocks.append(Paragraph(f"**{c.title(group)}**: no study has {evidence('trust', 0).needed} learning curves; "
                                    "every verdict below is exploratory."))
        blocks.append(Table(c.drop_constant(frame)))
        folder = c.folder(group)
        blocks += out.figure(plots.budget_figure, (f"{c.title(group)}: budget trust", {n: t for n, _, t in rows}),
                             folder, f"{folder}-budget-trust", f"{c.title(group)}: Spearman ρ and top-5 overlap between "
                             "validation error at epoch e and at the last epoch", level="key" if firm else "all")
    return blocks
