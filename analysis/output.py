"""Where an analysis writes: figures (at the chosen level, in the chosen formats), CSV tables, and what gets attached.

`Output.figure()` takes a function that draws the figure and returns its report block at once;
the drawing happens in `Output.draw_all()`, over the machine's cores, so that analyses stay
simple and the slow part (matplotlib) runs in parallel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .report import FigureBlock
from .statistics.importance import fork_map, usable_cores

FIGURE_DIR_NAME = "figures"
FIGURE_LEVELS = ("none", "key", "all")  # none; the figures the report's summary shows; also one set per study


def slug(text: str) -> str:
    """A file-name-safe version of a label or spec string."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


@dataclass
class _Job:
    draw: Callable
    args: tuple
    stem: Path
    studies: tuple[str, ...]


@dataclass
class Output:
    """The output folder, figure formats and level; collects figure jobs and the CSV tables written."""

    folder: Path
    formats: tuple[str, ...] = ("png",)
    level: str = "key"
    jobs: list[_Job] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    def wants(self, level: str) -> bool:
        """True when figures of `level` ('key' or 'all') are drawn."""
        return FIGURE_LEVELS.index(self.level) >= FIGURE_LEVELS.index(level)

    def figure(self, draw: Callable, args: tuple, folder: str, name: str, caption: str, *, level: str = "key",
               studies: Sequence[str] = ()) -> list[FigureBlock]:
        """Schedule `draw(*args)` (returns a Figure) as figures/<folder>/<name>.<fmt>; its report block, or [] when not wanted.

        `studies` are the study names the figure is attached to as an Optuna artifact.
        """
        if not self.wants(level):
            return []
        stem = self.folder / FIGURE_DIR_NAME / folder / slug(name)
        self.jobs.append(_Job(draw, args, stem, tuple(studies)))
        files = {fmt: stem.with_suffix(f".{fmt}").relative_to(self.folder).as_posix() for fmt in self.formats}
        return [FigureBlock(caption=caption, files=files)]

    def table(self, frame: pd.DataFrame, name: str) -> None:
        """Write `frame` as <name>.csv (no index)."""
        frame.to_csv(self.folder / f"{name}.csv", index=False)
        self.tables.append(f"{name}.csv")

    def draw_all(self) -> dict[str, list[Path]]:
        """Draw and save every scheduled figure (in parallel over the cores); returns {study: files to attach}."""
        workers = max(1, min(usable_cores(), len(self.jobs)))
        fork_map(lambda job: draw_job(job, self.formats), self.jobs, workers)
        attach: dict[str, list[Path]] = {}
        for job in self.jobs:
            main = job.stem.with_suffix("." + ("png" if "png" in self.formats else self.formats[0]))
            for study in job.studies:
                attach.setdefault(study, []).append(main)
        return attach


def draw_job(job: _Job, formats: Sequence[str]) -> None:
    """Draw one scheduled figure and save it in every format."""
    from . import plots

    fig = job.draw(*job.args)
    plots.save(fig, job.stem, formats)
    fig.clear()
