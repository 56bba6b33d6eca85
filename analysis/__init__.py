"""Sensitivity analysis, plots and reports from Optuna storages.

`compute()` returns every number as data (each registered analysis's numbers in `.computed`),
`render()` writes tables, figures and the report from it, `analyze()` does both; `best_table()`
summarises. The analyses are modules of `analysis/analyses/`; `registry.py` says how to add one.

Names load on first use, so that importing the package (the CLI, fANOVA worker processes) does
not pull in matplotlib, seaborn and pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "analyze": ".pipeline", "compute": ".results", "Analysis": ".results", "LoadedStudy": ".results",
    "render": ".rendering", "FORMATS": ".rendering", "FIGURE_DIR_NAME": ".output", "FIGURE_LEVELS": ".output",
    "best_table": ".tables", "ARTIFACT_DIR_NAME": ".artifacts",
    "fanova_importance": ".statistics.importance", "ped_anova_importance": ".statistics.importance", "fast_fanova_available": ".statistics.importance",
    "FanovaResult": ".statistics.importance", "PedAnovaResult": ".statistics.importance",
    "activation_effect": ".statistics.activation", "best_of_n": ".statistics.activation", "ActivationEffect": ".statistics.activation",
    "robustness": ".statistics.stability", "budget_trust": ".statistics.stability", "Robustness": ".statistics.stability", "BudgetTrust": ".statistics.stability",
    "published": ".analyses.paper", "compare": ".analyses.paper",
    "read_storage": ".storage", "select_studies": ".storage",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .statistics.activation import ActivationEffect, activation_effect, best_of_n
    from .artifacts import ARTIFACT_DIR_NAME
    from .statistics.importance import FanovaResult, PedAnovaResult, fanova_importance, fast_fanova_available, ped_anova_importance
    from .analyses.paper import compare, published
    from .pipeline import analyze
    from .rendering import FORMATS, render
    from .results import Analysis, LoadedStudy, compute
    from .output import FIGURE_DIR_NAME, FIGURE_LEVELS
    from .statistics.stability import BudgetTrust, Robustness, budget_trust, robustness
    from .storage import read_storage, select_studies
    from .tables import best_table


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
