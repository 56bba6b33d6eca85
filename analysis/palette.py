"""One look per series: a rule keeps one colour in every figure (its catalogue line's), its schedule its line style.

In a tanh-vs-ReLU experiment the ReLU study of a rule is drawn in a lighter shade of the rule's colour.
"""

from __future__ import annotations

from dataclasses import dataclass

from bioscale import catalogue

# Colours for rules the catalogue gives none (Okabe-Ito / seaborn "colorblind"; the listed rules hold the others).
FREE_COLOURS = ("#949494", "#ECE133", "#56B4E9")
SCHEDULES = tuple(sorted({s for facts in catalogue.RULES.values() for s in facts.schedules}))  # alternating, parallel
LINE_STYLES = {None: "-", "alternating": "-", "parallel": "--"}


@dataclass(frozen=True)
class SeriesStyle:
    """How one rule-and-schedule series is drawn: colour by rule, line style by schedule."""

    rule: str
    schedule: str | None
    color: str
    linestyle: str


def split_label(label: str) -> tuple[str, str | None]:
    """(rule, schedule) of a label such as ao-sdtp-alternating; a label without a schedule is all rule."""
    for schedule in SCHEDULES:
        if label.endswith(f"-{schedule}"):
            return label[: -len(schedule) - 1], schedule
    return label, None


def lighter(color: str, amount: float = 0.5) -> str:
    """`color` (#RRGGBB) mixed with white: 0 keeps it, 1 is white."""
    channels = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02X}" for c in channels)


def series_style(label: str, activation: str | None = None) -> SeriesStyle:
    """The one mapping from a label (rule plus -schedule), and a held activation, to colour and line style."""
    rule, schedule = split_label(label)
    facts = catalogue.facts(rule)
    color = facts.colour if facts is not None and facts.colour else FREE_COLOURS[sum(map(ord, rule)) % len(FREE_COLOURS)]
    if activation == "relu":
        color = lighter(color)
    return SeriesStyle(rule=rule, schedule=schedule, color=color, linestyle=LINE_STYLES.get(schedule, ":"))
