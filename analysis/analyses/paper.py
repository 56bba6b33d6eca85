"""The paper's tables: our best results per study, and ours beside Bartunov et al. 2018 (Tables 1 and 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from dataclasses import dataclass, field

import pandas as pd

from ..protocol import REDUCED_MARK, reduced_budgets
from ..report import Block, Paragraph, Table
from . import _common as c

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

NAME = "paper"
TITLE = "Best results and the published ones"
ORDER = 70


@dataclass
class PaperTables:
    """The best-result table (one row per study) and the comparison with the published numbers."""

    best: pd.DataFrame
    comparison: pd.DataFrame
    reduced: dict[str, str] = field(default_factory=dict)  # study -> why its budget is reduced


def compute(results: Analysis) -> PaperTables:
    """The tables computed with the studies (`Analysis.best`, `Analysis.comparison`) and the reduced budgets."""
    return PaperTables(best=results.best, comparison=results.comparison, reduced=reduced_budgets(results.records))


def _fmt_best(best: pd.DataFrame, reduced: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": best.dataset, "arch": best.arch,
        "rule": [name + (f" {REDUCED_MARK}" if study in reduced else "")
                 for name, study in zip(rule_names(best), best.study)],
        "complete trials": [f"{a} of {b}" for a, b in zip(best.trials_complete, best.trials_total)],
        "best val error (%)": best.best_val_error.map(c.pct), "test error at it (%)": best.test_error_at_best.map(c.pct),
        "evaluated test error (%)": [f"{c.pct(m)} ± {c.pct(s)} ({n} seeds)" if n else "–"
                                     for m, s, n in zip(best.evaluated_test_mean, best.evaluated_test_std,
                                                        best.evaluated_seeds)]})


def rule_names(best: pd.DataFrame) -> list[str]:
    """Labels, with the fixed activation added where a label repeats within a dataset and architecture."""
    repeats = best.groupby(["dataset", "arch", "label"])["label"].transform("size")
    return [f"{label} [{act}]" if n > 1 and act not in ("", "sampled") else label
            for label, n, act in zip(best.label, repeats, best.activation)]


def _fmt_compare(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": table.dataset, "arch": table.arch, "rule": table.label,
        "ours: test error (%)": table.ours_test_error.map(c.pct), "ours: basis": table.ours_basis,
        "paper: test error (%)": table.paper_test_error.map(c.pct),
        "difference (pp)": table["diff"].map(c.pp),
        "paper's protocol?": table.protocol_verdict})


def render(computed: PaperTables, out: Output, figures: str) -> list[Block]:
    """best.csv, paper_comparison.csv, and both tables."""
    out.table(computed.best, "best")
    out.table(computed.comparison, "paper_comparison")
    blocks: list[Block] = [Table(c.drop_constant(_fmt_best(computed.best, computed.reduced),
                                                 keep=("dataset", "arch", "rule", "complete trials")),
                                 "Best configuration per study (percent; best.csv holds fractions)."
                                 + (f" {REDUCED_MARK}: a reduced budget, "
                                    + "; ".join(sorted(set(computed.reduced.values()))) + "." if computed.reduced else ""))]
    comparison = computed.comparison
    matched = comparison[comparison.paper_test_error.notna()]
    if len(matched):
        blocks.append(Table(c.drop_constant(_fmt_compare(matched)),
                            "Ours minus published (Bartunov et al. 2018, Tables 1 and 2), test error in percent."))
    unmatched = comparison[comparison.paper_test_error.isna()]
    if len(unmatched):
        blocks.append(Paragraph("No published counterpart for: " + ", ".join(sorted(
            {f"{r.dataset}/{r.family}/{r.label}" for r in unmatched.itertuples()})) +
            " (the paper ran MNIST, CIFAR-10 and ImageNet with FC, LC and conv nets)."))
    return blocks
