"""The report's analyses, found in `bioscale.analysis.analyses` as the rules are found by the rule registry.

Adding an analysis touches one module (and its test): create `analysis/analyses/<name>.py` with

    NAME = "my-analysis"          # unique; other analyses refer to it by this name
    TITLE = "My analysis"         # its section heading ("" for no heading)
    ORDER = 35                    # report position: scaling -1 (shown with several tasks), findings 0,
                                  # key sections 10-69, appendix 80+
    NEEDS = ("activation",)       # optional: analyses whose computed results compute() reads
    APPENDIX = False              # optional: True places the section in the appendix

    def compute(results: Analysis) -> MyNumbers:
        # every number, as a dataclass, computed here from the loaded studies (results.studies: each a
        # LoadedStudy with its trials at the study's fidelity, chance level and re-evaluated best) with
        # the library in `analysis/statistics/`, and from results.computed[name] for NEEDS; per-study
        # numbers in a `by_study` dict by study name (`Analysis.statistic` reads one); writes nothing
    def render(computed: MyNumbers, out: Output, figures: str) -> list[Block]:
        # writes CSVs (out.table) and schedules figures (out.figure, level "key" or "all"); returns report blocks

The pipeline imports every module of the package whose name does not start with "_", computes them
in dependency order (`compute_all`, called by `bioscale.analysis.compute`), and renders them in
ORDER (`bioscale.analysis.render`). Thresholds for what a statistic needs come from `evidence.py`.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

REQUIRED = ("NAME", "TITLE", "ORDER", "compute", "render")


def analyses() -> list[ModuleType]:
    """Every analysis module, in report order (ORDER, then NAME)."""
    package = importlib.import_module(f"{__package__}.analyses")

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        missing = [name for name in REQUIRED if not hasattr(module, name)]
        if missing:
            raise TypeError(f"analysis module {module.__name__} lacks {', '.join(missing)}")
        found.append(module)
    names = [m.NAME for m in found]
    if len(set(names)) != len(names):
        raise TypeError(f"two analysis modules share a NAME: {sorted(names)}")
    return sorted(found, key=lambda m: (m.ORDER, m.NAME))


def get(name: str) -> ModuleType:
    """The analysis module called `name`."""
    for module in analyses():
        if module.NAME == name:
            return module
    raise KeyError(f"no analysis {name!r}; known: {', '.join(m.NAME for m in analyses())}")


def compute_all(results: Any) -> dict[str, Any]:
    """Compute every analysis on `results` (a `bioscale.analysis.Analysis`) in dependency order; {NAME: computed}."""
    modules = {m.NAME: m for m in analyses()}
    done: dict[str, Any] = {}
    results.computed = done
    bar = _progress(len(modules), getattr(results, "progress", False))

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise TypeError(f"analyses depend on each other in a cycle: {' -> '.join(path + (name,))}")
        module = modules[name]
        for need in getattr(module, "NEEDS", ()):
            visit(need, path + (name,))
        done[name] = module.compute(results)
        bar.update()

    for name in modules:
        visit(name, ())
    bar.close()
    return done


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over the analyses when enabled (quiet when not a TTY)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="analysing", disable=None if enabled else True, leave=False)
