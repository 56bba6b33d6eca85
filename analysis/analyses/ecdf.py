"""Error distributions: the empirical CDF of validation error over every finished configuration, all rules on one axis.

As Optuna's `plot_edf`: for each study, the share of its finished configurations (diverged or
stalled ones at the chance-level error) whose best validation error is at most x. A curve to
the left and rising early is a rule that is both good and easy to tune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

import numpy as np

from ..outcomes import counted_error, search_finished
from ..report import Block, Paragraph
from . import _common as c

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..output import Output
    from ..results import Analysis

NAME = "ecdf"
TITLE = "Error distributions over configurations"
ORDER = 10


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


def draw(title: str, series: list[Series], chance: float) -> Figure:
    """ECDF panels (one per fixed activation, else one), a line per study, the chance level dashed."""
    from ..palette import series_style
    from ..plots import new_figure, styled

    panels = sorted({s.activation if s.activation in ("tanh", "relu") else "" for s in series},
                    key=lambda a: {"tanh": 0, "relu": 1}.get(a, 2))
    with styled():
        fig, axes = new_figure(6.2 * len(panels) + 2.2, 5.0, 1, len(panels), sharey=True)
        for ax, panel in zip(axes[0], panels):
            for s in series:
                if (s.activation if s.activation in ("tanh", "relu") else "") != panel or not s.errors.size:
                    continue
                style = series_style(s.label)
                x = np.concatenate([[0.0], 100 * s.errors])
                y = np.concatenate([[0.0], 100 * np.arange(1, s.errors.size + 1) / s.errors.size])
                ax.step(x, y, where="post", color=style.color, ls=style.linestyle, lw=1.8, label=s.label)
            ax.axvline(100 * chance, color="#555555", ls=":", lw=1.2, label=f"chance ({100 * chance:.0f}%)")
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 102)
            ax.set_xlabel("best validation error (%)")
            ax.set_title(f"activation {panel}" if panel else "", fontsize=10)
        axes[0, 0].set_ylabel("configurations with error ≤ x (%)")
        handles, labels = axes[0, -1].get_legend_handles_labels()
        for ax in axes[0, :-1]:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels:
                    handles.append(h)
                    labels.append(l)
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="rule")
        fig.suptitle(title)
    return fig


def render(computed: Ecdf, out: Output, figures: str) -> list[Block]:
    """One ECDF figure per dataset and architecture (nothing with --figures none)."""
    if not out.wants("key"):
        return []
    blocks: list[Block] = []
    if not computed.groups:
        return [Paragraph("No study has finished configurations.")]
    blocks.append(Paragraph("Each curve is one study: the share of its finished configurations whose best validation error "
                            "is at most x (diverged or stalled runs at the chance-level error, dotted). Left and steep is "
                            "good and easy to tune; a curve that jumps at chance is a rule many configurations never train."))
    for group, series in computed.groups.items():
        folder = c.folder(group)
        blocks += out.figure(draw, (f"{c.title(group)}: validation error over every finished configuration", series,
                                    computed.chance[group]), folder, f"{folder}-error-ecdf",
                             f"{c.title(group)}: empirical CDF of best validation error per study "
                             f"({sum(s.errors.size for s in series)} configurations in all)")
    return blocks
