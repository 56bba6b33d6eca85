"""Error distributions: the empirical CDF of validation error over every finished configuration, a panel per rule family.

As Optuna's `plot_edf`: for each study, the share of its finished configurations (diverged or
stalled ones at the chance-level error) whose best validation error is at most x. A curve to
the left and rising early is a rule that is both good and easy to tune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

import numpy as np

from bioscale import catalogue

from ..statistics.outcomes import counted_error, search_finished
from ..palette import split_label
from .protocol import REDUCED_MARK
from ..report import Block, Paragraph
from . import _common as c

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..output import Output
    from ..results import Analysis

NAME = "ecdf"
TITLE = "Error distributions over configurations"
ORDER = 10
MAX_CURVES = 7  # curves one panel holds before its colours and line styles stop telling them apart


@dataclass
class Series:
    """One study's sorted errors (fractions) and how it is drawn."""

    name: str
    label: str
    activation: str | None
    errors: np.ndarray
    study: str = ""


@dataclass
class Ecdf:
    """Per (dataset, arch): each study's errors, the chance level."""

    groups: dict[tuple[str, str], list[Series]] = field(default_factory=dict)
    chance: dict[tuple[str, str], float] = field(default_factory=dict)


def compute(results: Analysis) -> Ecdf:
    """Every finished configuration's counted error per study, sorted."""
    out = Ecdf()
    for group, members in c.groups(results).items():
        series = []
        for a in members:
            if not a.analysed:
                continue
            errors = np.array([counted_error(t, a.chance) for t in search_finished(a.record.trials)], dtype=float)
            series.append(Series(a.name, a.record.label, c.activation(a), np.sort(errors[np.isfinite(errors)]),
                                 a.record.name))
            out.chance[group] = a.chance
        if series:
            out.groups[group] = series
    return out


def panels(series: list[Series]) -> list[tuple[str, list[str]]]:
    """Small multiples: (title, labels) per rule family in the report's order; a family with more than `MAX_CURVES`
    labels is split by schedule so that no panel holds more curves than its colours tell apart."""
    by_family: dict[str, list[str]] = {}
    for s in series:
        labels = by_family.setdefault(catalogue.family_of(split_label(s.label)[0]), [])
        if s.label not in labels:
            labels.append(s.label)
    found = []
    for family, labels in by_family.items():
        if len(labels) <= MAX_CURVES:
            found.append((family, labels))
            continue
        for schedule in dict.fromkeys(split_label(label)[1] for label in labels):
            found.append((f"{family}, {schedule or 'no schedule'}", [l for l in labels if split_label(l)[1] == schedule]))
    return found


def _legend(s: Series) -> str:
    """The series' label, with the reduced-budget mark its display name carries."""
    return s.label + (f" {REDUCED_MARK}" if s.name.endswith(REDUCED_MARK) else "")


def draw(title: str, series: list[Series], chance: float) -> Figure:
    """Small multiples: a row per rule family (panels()), a column per fixed activation; BP in grey in every other
    panel as the reference; the chance level dotted."""
    from ..palette import series_style
    from ..plots import new_figure, styled

    columns = sorted({s.activation if s.activation in ("tanh", "relu") else "" for s in series},
                     key=lambda a: {"tanh": 0, "relu": 1}.get(a, 2))
    rows = panels(series)
    with styled():
        fig, axes = new_figure(4.0 * len(columns) + 2.8, 2.3 * len(rows) + 1.0, len(rows), len(columns), sharex=True,
                               sharey=True)
        for i, (panel, labels) in enumerate(rows):
            for j, column in enumerate(columns):
                ax = axes[i, j]
                for s in series:
                    if (s.activation if s.activation in ("tanh", "relu") else "") != column or not s.errors.size:
                        continue
                    reference = s.label == "bp" and "bp" not in labels
                    if s.label not in labels and not reference:
                        continue
                    style = series_style(s.label)
                    x = np.concatenate([[0.0], 100 * s.errors])
                    y = np.concatenate([[0.0], 100 * np.arange(1, s.errors.size + 1) / s.errors.size])
                    ax.step(x, y, where="post", color="#AAAAAA" if reference else style.color,
                            ls="-" if reference else style.linestyle, lw=1.2 if reference else 1.8,
                            label="bp (reference)" if reference else _legend(s), zorder=2 if reference else 3)
                ax.axvline(100 * chance, color="#555555", ls=":", lw=1.2, label=f"chance ({100 * chance:.0f}%)")
                ax.set_xlim(0, 100)
                ax.set_ylim(0, 102)
                ax.set_title(", ".join(filter(None, [panel, f"activation {column}" if column else ""])), fontsize=9)
                if j == 0:
                    ax.set_ylabel("configurations\nwith error ≤ x (%)", fontsize=8)
                if i == len(rows) - 1:
                    ax.set_xlabel("best validation error (%)")
            legend: dict = {}  # each label once, in the order the row's panels first draw it
            for ax in axes[i]:
                for handle, label in zip(*ax.get_legend_handles_labels()):
                    legend.setdefault(label, handle)
            axes[i, -1].legend(list(legend.values()), list(legend), loc="upper left", bbox_to_anchor=(1.02, 1.0),
                               fontsize=7, frameon=False)
        fig.suptitle(title)
    return fig


def render(computed: Ecdf, out: Output, figures: str) -> list[Block]:
    """One ECDF figure per dataset and architecture (nothing with --figures none)."""
    if not out.wants("key"):
        return []
    blocks: list[Block] = []
    if not computed.groups:
        return [Paragraph("No study has finished configurations.")]
    blocks.append(Paragraph("One row of panels per rule family (BP in grey in each as the reference), one column per "
                            "activation. Each curve is one study: the share of its finished configurations whose best "
                            "validation error is at most x (diverged or stalled runs at the chance-level error, dotted). "
                            "Left and steep is good and easy to tune; a curve that jumps at chance is a rule many "
                            "configurations never train."))
    for group, series in computed.groups.items():
        folder = c.folder(group)
        blocks += out.figure(draw, (f"{c.title(group)}: validation error over every finished configuration", series,
                                    computed.chance[group]), folder, f"{folder}-error-ecdf",
                             f"{c.title(group)}: empirical CDF of best validation error per study "
                             f"({sum(s.errors.size for s in series)} configurations in all)")
    return blocks
