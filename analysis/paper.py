"""The published numbers (Bartunov et al. 2018, Tables 1 and 2) and our best errors beside them."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pandas as pd

from bioscale import datasets, nets
from bioscale.errors import UsageError

from .protocol import PAPER_PROTOCOL


def published() -> pd.DataFrame:
    """Tables 1 and 2 as rows (table, dataset, family, label, paper_name) with errors as fractions in [0, 1]."""
    with resources.files(__package__).joinpath("paper.csv").open("r", encoding="utf-8") as handle:
        table = pd.read_csv(handle)
    for column in ("train_error", "test_error", "top5_test_error"):
        table[column] = table.pop(f"{column}_pct") / 100.0
    return table


def _family(arch: str) -> str:
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
        family = _family(row.arch)
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
