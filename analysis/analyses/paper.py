"""The paper's tables: our best results per study, and ours beside Bartunov et al. 2018 (Tables 1 and 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from bioscale import datasets, nets
from bioscale.errors import UsageError

from ..report import Block, Paragraph, Table
from . import _common as c
from .protocol import PAPER_PROTOCOL, REDUCED_MARK, reduced_budgets

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis


def published() -> pd.DataFrame:
    """Tables 1 and 2 as rows (table, dataset, family, label, paper_name) with errors as fractions in [0, 1]."""
    with resources.files(__package__).joinpath("paper.csv").open("r", encoding="utf-8") as handle:
        table = pd.read_csv(handle)
    for column in ("train_error", "test_error", "top5_test_error"):
        table[column] = table.pop(f"{column}_pct") / 100.0
    return table


def arch_family(arch: str) -> str:
    """'fc', 'lc', 'conv' or 'mixed' for a preset name or a spec string; '?' when it is neither (a study bioscale did not write)."""
    try:
        return nets.arch_family(str(arch).strip())
    except UsageError:
        return "?"


def paper_dataset(dataset: str) -> str | None:
    """The paper's name for one of our datasets (the paper's ImageNet runs used full-size 224x224 images)."""
    return datasets.REGISTRY[dataset].paper_name if dataset in datasets.REGISTRY else None


def compare(best: pd.DataFrame) -> pd.DataFrame:
    """Our best errors beside the published ones per dataset, family and label; `diff` is ours − published test error.

    `best` is `best_table()`'s frame. Our test error is the evaluated mean over seeds where
    `bioscale study evaluate` ran (at each seed's best-validation epoch when the evaluation recorded
    it, `test_at` says which), else the test error at the best validation epoch of the best trial.
    A row whose study did not run the paper's protocol says so in `paper_note`.
    """
    paper = published()
    rows = []
    for row in best.itertuples(index=False):
        family = arch_family(row.arch)
        match = paper[(paper.dataset == paper_dataset(row.dataset)) & (paper.family == family)
                      & (paper.label == row.label)]
        evaluated = row.evaluated_test_mean is not None and not _isnan(row.evaluated_test_mean)
        ours = row.evaluated_test_mean if evaluated else row.test_error_at_best
        published_test = float(match.test_error.iloc[0]) if len(match) else math.nan
        note = ("paper: full-size ImageNet (224x224)" if paper_dataset(row.dataset) == "imagenet" and len(match)
                else ("" if len(match) else "no published counterpart"))
        paper_like = bool(getattr(row, "paper_protocol", True))
        if not paper_like:
            note = "; ".join(filter(None, [f"NOT the paper's protocol: {getattr(row, 'protocol_note', '')}", note]))
        rows.append({
            "dataset": row.dataset, "arch": row.arch, "family": family, "label": row.label,
            "trials_complete": row.trials_complete, "best_val_error": row.best_val_error,
            "test_error_at_best": row.test_error_at_best, "evaluated_test_mean": row.evaluated_test_mean,
            "evaluated_test_std": row.evaluated_test_std, "ours_test_error": ours,
            "ours_basis": "evaluated" if evaluated else ("best trial" if not _isnan(ours) else "none"),
            "paper_train_error": float(match.train_error.iloc[0]) if len(match) else math.nan,
            "paper_test_error": published_test,
            "diff": (ours - published_test) if not _isnan(ours) and not _isnan(published_test) else math.nan,
            "test_at": ((getattr(row, "evaluated_basis", "") or "evaluated") if evaluated
                        else ("best-validation epoch of the best trial" if not _isnan(ours) else "")),
            "protocol": getattr(row, "protocol", ""), "sampler": getattr(row, "sampler", ""),
            "fixed": getattr(row, "fixed", ""), "sampled": getattr(row, "sampled", ""),
            "paper_protocol": paper_like, "protocol_verdict": getattr(row, "protocol_verdict", ""),
            "paper_setup": PAPER_PROTOCOL if len(match) else "",
            "paper_note": note,
        })
    return pd.DataFrame(rows)


def _isnan(value: object) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


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
    """The tables computed with the studies (`Analysis.best`, and `compare`d with the paper's) and the reduced budgets."""
    return PaperTables(best=results.best, comparison=compare(results.best), reduced=reduced_budgets(results.records))


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
