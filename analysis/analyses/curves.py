"""Training curves: validation error per epoch of each study's best and median configuration.

A curve still falling at the last epoch says the budget cut training short (see the flags); a
median curve far above the best one says most configurations did not train.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from dataclasses import dataclass, field

import numpy as np

from bioscale.contract import complete_trials, search_trials

from .protocol import REDUCED_MARK
from ..report import Block, Paragraph
from ..statistics.stability import learning_curves
from . import _common as c

if TYPE_CHECKING:
    from typing import Sequence

    from matplotlib.figure import Figure
    from optuna.trial import FrozenTrial

    from ..output import Output
    from ..results import Analysis

NAME = "curves"
TITLE = "Training curves"
ORDER = 15


@dataclass
class StudyCurves:
    """The best and the median complete configuration's validation curve (fractions per epoch)."""

    name: str
    study: str
    label: str
    activation: str | None
    best: list[float]
    median: list[float]
    best_trial: int
    median_trial: int


@dataclass
class Curves:
    """Per (dataset, arch): the studies' curves, and the chance level."""

    groups: dict[tuple[str, str], list[StudyCurves]] = field(default_factory=dict)
    chance: dict[tuple[str, str], float] = field(default_factory=dict)


def best_and_median(trials: Sequence[FrozenTrial]) -> tuple | None:
    """(best trial, median trial) of complete trials by value (the lower median); None when none."""
    ranked = sorted(complete_trials(search_trials(trials)), key=lambda t: (t.value, t.number))
    if not ranked:
        return None
    return ranked[0], ranked[(len(ranked) - 1) // 2]


def compute(results: Analysis) -> Curves:
    """The best and median configuration's validation curve of every study with complete trials."""
    out = Curves()
    for group, members in c.groups(results).items():
        for a in members:
            found = best_and_median(a.record.trials)
            if found is None:
                continue
            best, median = found
            curves = learning_curves([best, median])
            if len(curves) < 2:
                continue
            out.groups.setdefault(group, []).append(StudyCurves(a.name, a.record.name, a.record.label, c.activation(a),
                                                                curves[0], curves[1], best.number, median.number))
            out.chance[group] = a.chance
    return out


def draw(title: str, studies: list[StudyCurves], chance: float) -> Figure:
    """One panel per rule label: best (solid) and median (dashed) curves, tanh dark and ReLU light, chance dotted."""
    import matplotlib as mpl

    from ..palette import series_style
    from ..plots import new_figure, styled

    labels = list(dict.fromkeys(s.label for s in studies))
    ncols = min(4, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    with styled():
        width, height = 3.3 * ncols + 0.7, 2.5 * nrows + 1.3
        # a fixed layout: constrained layout costs more than drawing for a grid this size
        fig, axes = new_figure(width, height, nrows, ncols, layout=None, sharex=True, sharey=True)
        fig.subplots_adjust(left=0.7 / width, right=1 - 0.1 / width, top=1 - 0.75 / height, bottom=0.95 / height,
                            wspace=0.08, hspace=0.3)
        flat = list(axes.ravel())
        for ax, label in zip(flat, labels):
            for s in (s for s in studies if s.label == label):
                act = s.activation if s.activation in ("tanh", "relu") else None
                color = series_style(label, act).color
                name = act or "best"
                ax.plot(np.arange(1, len(s.best) + 1), 100 * np.asarray(s.best), color=color, lw=2,
                        label=f"{name}: best" if act else "best")
                ax.plot(np.arange(1, len(s.median) + 1), 100 * np.asarray(s.median), color=color, lw=1.5, ls="--",
                        label=f"{name}: median" if act else "median")
            ax.axhline(100 * chance, color="#555555", ls=":", lw=1)
            reduced = any(s.name.endswith(REDUCED_MARK) for s in studies if s.label == label)
            ax.set_title(label + (f" {REDUCED_MARK}" if reduced else ""), fontsize=10)
            ax.set_ylim(0, 100)
        for ax in flat[len(labels):]:
            ax.set_axis_off()
        for ax in flat[max(0, len(labels) - ncols):len(labels)]:  # the lowest panel of each column
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
            ax.xaxis.set_tick_params(labelbottom=True)
        for ax in axes[:, 0]:
            ax.set_ylabel("validation error (%)")
        handles, names = flat[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncols=4, fontsize=8, frameon=False)
        fig.suptitle(title)
    return fig


def draw_study(title: str, study: StudyCurves, chance: float) -> Figure:
    """One study's own curves: its best (solid) and median (dashed) configuration's validation error per epoch."""
    import matplotlib as mpl

    from ..palette import series_style
    from ..plots import new_figure, styled

    act = study.activation if study.activation in ("tanh", "relu") else None
    color = series_style(study.label, act).color
    with styled():
        fig, axes = new_figure(5.0, 3.4)
        ax = axes[0, 0]
        for curve, ls, name, trial in ((study.best, "-", "best", study.best_trial),
                                       (study.median, "--", "median", study.median_trial)):
            ax.plot(np.arange(1, len(curve) + 1), 100 * np.asarray(curve), color=color, lw=2, ls=ls,
                    label=f"{name} configuration (trial {trial})")
        ax.axhline(100 * chance, color="#555555", ls=":", lw=1, label=f"chance ({100 * chance:.0f}%)")
        ax.set_ylim(0, 100)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation error (%)")
        ax.legend(fontsize=8)
        fig.suptitle(title, fontsize=10)
    return fig


def render(computed: Curves, out: Output, figures: str) -> list[Block]:
    """One figure of curves per dataset and architecture (nothing with --figures none); each study's own on --figures all."""
    if not out.wants("key"):
        return []
    if not computed.groups:
        return [Paragraph("No study recorded learning curves.")]
    blocks: list[Block] = [Paragraph("Validation error per epoch of each study's best configuration (solid) and its median "
                                     "configuration (dashed); dotted: chance level. tanh studies in the rule's colour, "
                                     "ReLU studies lighter.")]
    for group, studies in computed.groups.items():
        folder = c.folder(group)
        blocks += out.figure(draw, (f"{c.title(group)}: training curves, best and median configuration", studies,
                                    computed.chance[group]), folder, f"{folder}-training-curves",
                             f"{c.title(group)}: validation error per epoch, best and median configuration of each study")
        for s in studies:
            blocks += out.figure(draw_study, (f"{s.name}: training curves", s, computed.chance[group]), folder,
                                 f"{s.name}-curves", f"{s.name}: validation error per epoch of its best and median "
                                 "configuration", level="all", studies=[s.study])
    return blocks
