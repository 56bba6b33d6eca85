"""`analyze()`: `compute()` every study's numbers, then `render()` them as figures, tables, report and artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from optuna.storages import BaseStorage

from .importance import FANOVA_SEEDS
from .rendering import output_options, render
from .results import compute


def analyze(storage: str | BaseStorage | None, patterns: Sequence[str] | None, out: Path | str,
            formats: Sequence[str] | str = ("png",), progress: bool = True, *, seeds: int = FANOVA_SEEDS) -> Path:
    """Analyse the matching studies and write figures, CSV tables and report.md/report.html under `out`; returns report.md."""
    out, formats = output_options(out, formats)  # bad options fail before the slow part
    return render(compute(storage, patterns, progress, seeds=seeds), out, formats, progress)
