"""Tunability (Probst, Boulesteix and Bischl, JMLR 2019): what tuning buys over the rule's default configuration.

The default configuration's validation error (one extra trial per study) minus the tuned best at
the study's budget, set beside the noise scale: one validation example and, where the best was
re-evaluated, the spread of its test error over seeds. A gain within that noise is a tie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..report import Block, Paragraph, Table
from ..statistics import tunability as study
from . import _common as c

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

NAME = "tunability"
TITLE = "What tuning buys"
ORDER = 60


@dataclass
class Gain:
    """One study's default error, tuned best, gain, and noise scale (fractions)."""

    dataset: str
    arch: str
    name: str
    default_error: float
    default_outcome: str
    tuned_error: float
    n_search: int
    gain: float
    one_example: float
    seed_spread: float
    default_is_best: bool = False  # the default configuration is the study's incumbent

    @property
    def noise(self) -> float:
        """The larger of one validation example and the seed spread."""
        return max(x for x in (self.one_example, self.seed_spread, 0.0) if math.isfinite(x))

    @property
    def within_noise(self) -> bool:
        """True when the gain is no larger than the noise scale."""
        return abs(self.gain) <= self.noise


@dataclass
class Tunability:
    """Every study's gain, and the median over them."""

    gains: list[Gain] = field(default_factory=list)
    by_study: dict[str, study.Tunability] = field(default_factory=dict)  # every analysed study's, by study name

    @property
    def median(self) -> float:
        """Median gain over the studies (NaN when none)."""
        values = [g.gain for g in self.gains if math.isfinite(g.gain)]
        return float(np.median(values)) if values else math.nan

    @property
    def median_noise(self) -> float:
        """Median noise scale over the studies."""
        values = [g.noise for g in self.gains]
        return float(np.median(values)) if values else math.nan


def compute(results: Analysis) -> Tunability:
    """Every analysed study's tunability; the gains of those with a default-configuration trial."""
    out = Tunability()
    for a in c.ordered(results):
        if not a.analysed:
            continue
        t = out.by_study[a.record.name] = study.tunability(a.record.trials, a.chance)
        if t.default_trial is None:
            continue
        ev = a.evaluated
        spread = max(ev.errors) - min(ev.errors) if ev is not None and ev.n >= 2 else math.nan
        out.gains.append(Gain(a.record.dataset, a.record.arch, a.name, t.default_error, t.default_outcome, t.tuned_error,
                              t.n_search, t.gain, c.one_example(a.record.dataset), spread, t.default_is_best))
    return out


def render(computed: Tunability, out: Output, figures: str) -> list[Block]:
    """The median gain with its noise scale, and a table (tunability.csv in fractions)."""
    if not computed.gains:
        return [Paragraph("No study trained its rule's default configuration.")]
    within = sum(g.within_noise for g in computed.gains)
    blocks: list[Block] = [Paragraph(
        f"Median over {len(computed.gains)} studies: tuning buys **{c.pp(computed.median)} pp** of validation error, "
        f"against a noise scale of about {c.pct(computed.median_noise)} pp (the larger of one validation example and the "
        f"best configuration's test-error spread over seeds); {within} of {len(computed.gains)} gains are within that "
        "noise and count as ties.")]
    frame = pd.DataFrame([{"dataset": g.dataset, "arch": g.arch, "study": g.name, "default_error": g.default_error,
                           "default_outcome": g.default_outcome, "tuned_error": g.tuned_error, "configurations": g.n_search,
                           "gain": g.gain, "one_validation_example": g.one_example, "seed_spread": g.seed_spread,
                           "within_noise": g.within_noise, "default_is_best": g.default_is_best}
                          for g in computed.gains])
    out.table(frame, "tunability")
    shown = pd.DataFrame([{"dataset": g.dataset, "arch": g.arch, "study": g.name,
                           "default (%)": c.pct(g.default_error) + ("" if g.default_outcome == "complete"
                                                                   else f" ({g.default_outcome})"),
                           "search's best (%)": c.pct(g.tuned_error), "configurations": g.n_search,
                           "study's best": "the default" if g.default_is_best else "a search trial",
                           "tuning buys (pp)": c.pp(g.gain), "noise (pp)": c.pct(g.noise),
                           "verdict": "tie (within noise)" if g.within_noise else ("helps" if g.gain > 0 else "hurts")}
                          for g in computed.gains])
    blocks.append(Table(c.drop_constant(shown), "Validation error of the default configuration and of the search's best "
                                                "(percent; tunability.csv holds fractions). Where the default beat every "
                                                "search trial it is the study's best (the incumbent) everywhere else in "
                                                "this report."))
    blocks.append(Paragraph("Which one or two changes buy the gain is the ablation path's answer, per study, in the next "
                            "section (*Which changes buy the gain*)."))
    return blocks
