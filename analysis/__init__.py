"""Sensitivity analysis, plots and reports from Optuna storages: `analyze()` writes them all, `best_table()` summarises."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
from optuna.storages import BaseStorage

from .activation import ActivationEffect, activation_effect, best_of_n
from .artifacts import ARTIFACT_DIR_NAME
from .importance import FanovaResult, PedAnovaResult, fanova_importance, fast_fanova_available, ped_anova_importance
from .paper import compare, published
from .pipeline import FIGURE_DIR_NAME, FORMATS, analyze
from .stability import BudgetTrust, Robustness, budget_trust, robustness
from .storage import open_storage, select_studies
from .tables import best_table_from


def best_table(storage: str | BaseStorage, patterns: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per matching study: dataset, arch, label, rule, schedule, trial counts, best and evaluated errors."""
    url = storage if isinstance(storage, str) else type(storage).__name__
    return best_table_from(select_studies(open_storage(storage), patterns, url=str(url)))


__all__ = [
    "ARTIFACT_DIR_NAME", "FIGURE_DIR_NAME", "FORMATS", "ActivationEffect", "BudgetTrust", "FanovaResult",
    "PedAnovaResult", "Robustness", "activation_effect", "analyze", "best_of_n", "best_table", "budget_trust",
    "compare", "fanova_importance", "fast_fanova_available", "open_storage", "ped_anova_importance", "published",
    "robustness", "select_studies",
]
