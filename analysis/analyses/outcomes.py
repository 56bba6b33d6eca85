"""How runs ended: diverged, stalled, pruned, failed; whether stall detection was on; how many ended near chance.

"0 % stalled" means nothing when stall detection was off (`chance_patience` 0), so each count
says whether its detector ran, and configurations that ended within 5 pp of the chance-level
error are counted either way: a run that never learned is one whatever stopped it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import asdict, dataclass, field

import pandas as pd

from ..statistics.outcomes import Outcomes as StudyCounts, counted_error, outcomes, search_finished
from ..report import Block, Paragraph, Table
from . import _common as c

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

NAME = "outcomes"
TITLE = "How the runs ended"
ORDER = 45
NEAR_CHANCE = 0.05  # within 5 percentage points of chance: did not learn


@dataclass(frozen=True)
class StudyOutcome(StudyCounts):
    """The counts of one study's finished search configurations (`statistics.outcomes.Outcomes`), named and placed."""

    study: str
    name: str
    dataset: str
    arch: str
    near_chance: int  # finished configurations within NEAR_CHANCE of chance, however they ended
    stall_detection: str  # "on (N epochs)", "off", "not recorded"


@dataclass
class Outcomes:
    """Every study's outcome counts and the totals."""

    studies: list[StudyOutcome] = field(default_factory=list)

    @property
    def by_study(self) -> dict[str, StudyOutcome]:
        """The counts by study name."""
        return {s.study: s for s in self.studies}

    def total(self, name: str) -> int:
        """The sum of one count over the studies."""
        return sum(getattr(s, name) for s in self.studies)

    @property
    def detection(self) -> str:
        """'on', 'off', 'mixed' or 'not recorded' over the studies."""
        states = {"on" if s.stall_detection.startswith("on") else s.stall_detection for s in self.studies}
        return states.pop() if len(states) == 1 else "mixed"


def detection(patience: int | None) -> str:
    """How stall detection was set for a study."""
    if patience is None:
        return "not recorded"
    return f"on ({patience} epochs at chance)" if patience > 0 else "off"


def compute(results: Analysis) -> Outcomes:
    """Counts per study, in report order."""
    out = Outcomes()
    for a in c.ordered(results):
        if a.record.skipped:
            continue
        chance = a.chance if a.analysed else 0.9
        errors = [counted_error(t, chance) for t in search_finished(a.record.trials)]
        near = sum(1 for e in errors if e == e and e >= chance - NEAR_CHANCE)
        out.studies.append(StudyOutcome(**asdict(outcomes(a.record.trials)), study=a.record.name, name=a.name,
                                        dataset=a.record.dataset, arch=a.record.arch, near_chance=near,
                                        stall_detection=detection(a.record.info.chance_patience)))
    return out


def render(computed: Outcomes, out: Output, figures: str) -> list[Block]:
    """A sentence with the totals and a table per study."""
    if not computed.studies:
        return [Paragraph("No study finished a configuration.")]
    total = computed.total("n_finished")
    blocks: list[Block] = [Paragraph(
        f"Of {total} finished configurations, {computed.total('n_diverged')} diverged (NaN or exploding loss; always "
        f"detected), {computed.total('n_stalled')} stalled at chance (stall detection {computed.detection}), "
        f"{computed.total('n_pruned')} were stopped by a pruner, {computed.total('n_halved')} halved at a lower rung by "
        f"design and {computed.total('n_failed')} failed; "
        f"**{computed.total('near_chance')} of {total} ended within {100 * NEAR_CHANCE:.0f} pp of chance**, however they "
        "were stopped. Diverged and stalled runs count at the chance-level error in every statistic.")]
    frame = pd.DataFrame([{"dataset": s.dataset, "arch": s.arch, "study": s.name, "finished": s.n_finished,
                           "complete": s.n_complete, "diverged": s.n_diverged, "stalled": s.n_stalled,
                           "pruned": s.n_pruned, "halved": s.n_halved, "failed": s.n_failed,
                           f"within {100 * NEAR_CHANCE:.0f} pp of chance": s.near_chance,
                           "stall detection": s.stall_detection} for s in computed.studies])
    out.table(frame, "outcomes")
    blocks.append(Table(c.drop_constant(frame, keep=("dataset", "arch", "study", "finished")), "Counts of configurations per study (columns equal on every row are left "
                                                "out; outcomes.csv has them all)."))
    return blocks
