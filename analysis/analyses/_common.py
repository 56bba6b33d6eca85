"""What several analyses share: the order of rules by family, split sizes, number formats, figure helpers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

from bioscale import catalogue

from ..palette import split_label
from ..output import slug
from ..report import pct  # noqa: F401 (c.pct: the report's one percentage format)
from ..statistics.evaluation import splits  # noqa: F401 (c.splits)
from ..storage import group_title as title, names_line  # noqa: F401 (c.title: `digits / fc`, c.names_line)

if TYPE_CHECKING:
    from ..results import Analysis, LoadedStudy

def label_key(label: str, activation: str | None = None) -> tuple:
    """Sort key of a rule label (rule-schedule) and activation: by family, then the catalogue's order, schedule, activation."""
    rule, schedule = split_label(label)
    return (catalogue.rule_key(rule), schedule or "", {"tanh": 0, "relu": 1}.get(activation or "", 2))


def activation(a: "LoadedStudy") -> str | None:
    """The activation a study fixed ('tanh', 'relu'), 'sampled', or None."""
    info = a.record.info
    if "activation" in info.space:
        return "sampled"
    value = info.fixed.get("activation")
    return str(value) if value is not None else None


def identity(a: "LoadedStudy") -> dict[str, str]:
    """The columns that name a study in a CSV table: study, dataset, arch, label."""
    return {"study": a.record.name, "dataset": a.record.dataset, "arch": a.record.arch, "label": a.record.label}


def ordered(results: "Analysis") -> list["LoadedStudy"]:
    """The studies by group, family and activation (never by their order in the storage)."""
    return sorted(results.studies,
                  key=lambda a: (a.record.group, label_key(a.record.label, activation(a)), a.record.name))


def groups(results: "Analysis") -> dict[tuple[str, str], list["LoadedStudy"]]:
    """The studies per (dataset, arch), each list ordered by family."""
    found: dict[tuple[str, str], list] = {}
    for a in ordered(results):
        found.setdefault(a.record.group, []).append(a)
    return found


def one_example(dataset: str) -> float:
    """The error (fraction) one validation example is worth; NaN when the split is unknown."""
    sizes = splits(dataset)
    return 1.0 / sizes[1] if sizes and sizes[1] else math.nan


def pp(value: float, digits: int = 2, sign: bool = True) -> str:
    """A fraction as percentage points ('+1.23'), '–' when missing."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100 * value:+.{digits}f}" if sign else f"{100 * value:.{digits}f}"


def ci(low: float, high: float, digits: int = 2) -> str:
    """'−1.23 to +0.45' in pp, '–' when missing."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"{pp(low, digits)} to {pp(high, digits)}"


def drop_constant(frame, keep: Iterable[str] = ("dataset", "arch")):
    """`frame` without columns that hold one value on every row (except those in `keep`) or duplicate another column."""
    text, columns = frame.astype(str), []
    for name in frame.columns:
        constant = len(frame) > 1 and text[name].nunique() <= 1
        if name in keep or not (constant or any(text[name].equals(text[other]) for other in columns)):
            columns.append(name)
    return frame[columns]


def folder(group: tuple[str, str]) -> str:
    """The figure folder of a group, e.g. digits-fc."""
    return f"{slug(group[0])}-{slug(group[1])}"
