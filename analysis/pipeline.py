"""`analyze()`: `compute()` every study's numbers and every analysis, then `render()` them as tables, figures and report."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from optuna.storages import BaseStorage

from .statistics.importance import FANOVA_SEEDS
from .rendering import output_options, render
from .results import compute


def analyze(storage: str | BaseStorage | None | Sequence[str | BaseStorage], patterns: Sequence[str] | None, out: Path | str,
            formats: Sequence[str] | str = ("png",), progress: bool = True, *, seeds: int = FANOVA_SEEDS,
            figures: str = "key") -> Path:
    """Analyse the matching studies (of one storage or several) and write CSV tables, figures (`figures`: none, key, all) and report.md/report.html under `out`; returns report.md."""
    out, formats = output_options(out, formats, figures)  # bad options fail before the slow part
    return render(compute(storage, patterns, progress, seeds=seeds), out, formats, figures)
