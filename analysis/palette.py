"""One look per series: a rule keeps one colour in every figure, its schedule told apart by line style and hatching.

In a tanh-vs-ReLU experiment the ReLU study of a rule is drawn in a lighter shade of the rule's colour.
"""

from __future__ import annotations

from dataclasses import dataclass

# The Okabe-Ito / seaborn "colorblind" colours, one per rule in the paper's order; rules not listed take the rest.
COLOURS = ("#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC", "#CA9161", "#FBAFE4", "#949494", "#ECE133", "#56B4E9")
RULE_ORDER = ("bp", "fa", "dfa", "tp", "dtp", "sdtp", "ao-sdtp")
# Rules published after the paper, one colour each from seaborn's "dark" palette (none of the above).
LATER_RULES = {
    "kp": "#B1400D", "wm": "#8C0800", "sign-symmetry-frsf": "#591E71", "sign-symmetry-brsf": "#A23582",
    "ddtp": "#001C7F", "ldrl": "#12711C", "ep": "#3C3C3C", "chl": "#B8850A",
}
SCHEDULES = ("alternating", "parallel")
LINE_STYLES = {None: "-", "alternating": "-", "parallel": "--"}
HATCHES = {None: "", "alternating": "", "parallel": "//"}
MARKERS = {None: "o", "alternating": "o", "parallel": "s"}


@dataclass(frozen=True)
class SeriesStyle:
    """How one rule-and-schedule series is drawn: colour by rule, line style, hatch and marker by schedule."""

    rule: str
    schedule: str | None
    color: str
    linestyle: str
    hatch: str
    marker: str


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
    """The one mapping from a label (rule plus -schedule), and a held activation, to colour, line style, hatch and marker."""
    rule, schedule = split_label(label)
    if rule in RULE_ORDER:
        color = COLOURS[RULE_ORDER.index(rule)]
    elif rule in LATER_RULES:
        color = LATER_RULES[rule]
    else:  # a stable colour from the ones the paper's rules leave free
        free = COLOURS[len(RULE_ORDER):]
        color = free[sum(map(ord, rule)) % len(free)]
    if activation == "relu":
        color = lighter(color)
    return SeriesStyle(rule=rule, schedule=schedule, color=color, linestyle=LINE_STYLES.get(schedule, ":"),
                       hatch=HATCHES.get(schedule, ".."), marker=MARKERS.get(schedule, "^"))
