"""`render()`: an `Analysis` -> CSV tables, figures and report.md/report.html under one folder, one section per analysis."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Sequence

from optuna.storages import BaseStorage, InMemoryStorage

from bioscale.errors import UsageError

from . import registry
from .artifacts import ARTIFACT_DIR_NAME, artifact_store, attach_figures
from .analyses.protocol import PAPER_BUDGET, below_paper_budget, budget_text, data_problem, is_paper_protocol, search_space_problems
from .output import FIGURE_DIR_NAME, FIGURE_LEVELS, Output
from .report import Block, Contents, Heading, Paragraph, write_report
from .results import Analysis
from .storage import StudyRecord

FORMATS = ("png", "pdf", "svg")
PAPER = "Bartunov et al. 2018, *Assessing the scalability of biologically-motivated deep learning algorithms and architectures*"


def parse_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """('png', 'pdf') from 'png,pdf' or a sequence; unknown formats raise UsageError."""
    items = formats.split(",") if isinstance(formats, str) else [p for f in formats for p in str(f).split(",")]
    chosen = tuple(dict.fromkeys(i.strip().lower().lstrip(".") for i in items if i.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise UsageError(f"unknown figure format {', '.join(unknown) or '(none)'}; "
                         f"pass --format with some of: {', '.join(FORMATS)}")
    return chosen


def output_options(out: Path | str, formats: Sequence[str] | str, figures: str = "key") -> tuple[Path, tuple[str, ...]]:
    """The output folder and figure formats, checked before any work: UsageError when `out` is a file or an option is unknown."""
    formats = parse_formats(formats)
    if figures not in FIGURE_LEVELS:
        raise UsageError(f"unknown --figures {figures!r}; choose one of: {', '.join(FIGURE_LEVELS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for the figures and the report")
    return out, formats


def render(analysis: Analysis, out: Path | str, formats: Sequence[str] | str = ("png",), figures: str = "key") -> Path:
    """Write the analysis as CSV tables, figures (`figures`: none, key or all) and report.md/report.html; returns report.md."""
    out, formats = output_options(out, formats, figures)
    out.mkdir(parents=True, exist_ok=True)
    if analysis.computed is None:
        registry.compute_all(analysis)
    output = Output(out, formats, figures)
    main: list[Block] = []
    appendix: list[Block] = []
    for module in registry.analyses():
        blocks = module.render(analysis.computed[module.NAME], output, figures)
        if not blocks:
            continue
        target = appendix if getattr(module, "APPENDIX", False) else main
        target += ([Heading(module.TITLE)] if module.TITLE else []) + blocks
    attach = output.draw_all()
    note = _attach(analysis, attach, out)
    blocks = _header(analysis, formats, figures, output.tables, note) + [Contents()] + main
    if appendix:
        blocks += [Heading("Appendix", 1)] + [Heading(b.text, 2) if isinstance(b, Heading) and b.level == 2 else b
                                               for b in appendix]
    return write_report(blocks, out, "bioscale analysis")


def _header(analysis: Analysis, formats: tuple[str, ...], figures: str, tables: list[str], note: str) -> list[Block]:
    from bioscale import __version__

    records = analysis.records
    analysed = [a for a in analysis.studies if a.analysed]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    chosen = ("matching " + " ".join(f"`{p}`" for p in analysis.patterns) if analysis.patterns
              else "every study with stage `tune`")
    datasets = sorted({r.dataset for r in records if r.dataset})
    relation, differs = _relation(records)
    return [
        Heading("bioscale analysis", 1),
        Paragraph(f"A sensitivity analysis of biologically motivated learning rules, {relation} {PAPER} "
                  f"({_search(records)} per rule, best configuration re-evaluated over seeds), on {', '.join(datasets) or '?'}."
                  + differs),
        Paragraph(f"Storage `{analysis.url}`; studies: {chosen} ({len(records)}; {len(analysed)} with complete trials). "
                  f"Generated {when} by bioscale {__version__}. Errors are printed in percent; the CSV tables beside "
                  f"this report ({', '.join(tables) or 'none'}) hold fractions (0.05 = 5 %), one row per study with its "
                  f"dataset and architecture. Figures: {figures} (`--figures none|key|all`), in `{FIGURE_DIR_NAME}/` "
                  f"({', '.join(formats)}). {note}"),
    ]


def _search(records: Sequence[StudyRecord]) -> str:
    """How these studies searched, in words: 'random search', 'sobol search with successive halving', ..."""
    from .statistics.design import design

    designs = [design(r) for r in records]
    text = " or ".join(sorted({d.sampler or r.info.sampler or "random" for d, r in zip(designs, records)})) + " search"
    halved = [d.scheme for d in designs if d.first_rung is not None]
    if not halved:
        return text
    names = " or ".join(sorted({"Hyperband" if s == "hyperband" else "successive halving" for s in halved}))
    return text + f" with {names}" + (f" in {len(halved)} of {len(records)} studies" if len(halved) < len(records) else "")


def _relation(records: Sequence[StudyRecord]) -> tuple[str, str]:
    """('reproducing', '') when every study ran the paper's protocol at its budget on its data, else ('after', why not)."""
    if records and all(is_paper_protocol(r) for r in records):
        return "reproducing", ""
    short = sorted({budget_text(r) for r in records if below_paper_budget(r)})
    other = sorted({problem for r in records if (problem := data_problem(r.dataset))})
    space = sum(bool(search_space_problems(r.info)) for r in records)
    differs = ([f"budget {', '.join(short)} configurations × epochs (the paper: {PAPER_BUDGET[0]} × {PAPER_BUDGET[1]})"]
               if short else []) + other + ([f"{space} of {len(records)} studies searched otherwise than the paper "
                                             "(sampler, space or activation)"] if space else [])
    return "after", (" Not a reproduction: " + "; ".join(differs) + "." if differs else "")


def _attach(analysis: Analysis, attach: dict[str, list[Path]], out: Path) -> str:
    storage: BaseStorage = analysis.storage
    if not attach:
        return ("Each study's own figures (its curves, importances, sensitivity) are attached to it as Optuna artifacts "
                "with `--figures all`.")
    if isinstance(storage, InMemoryStorage):  # optuna-dashboard cannot open it
        return "The storage is in memory, so no figures were attached to studies as artifacts."
    store = artifact_store(out)
    attached, failures = 0, []
    for a in analysis.studies:
        files = attach.get(a.record.name)
        if not files or not a.analysed:
            continue
        try:
            attached += attach_figures(a.record.study, files, store)
        except Exception as error:  # a read-only storage must not cost the report
            failures.append(f"{a.record.name}: {error}")
    where = (out / ARTIFACT_DIR_NAME).resolve()
    note = (f"{attached} figures are attached to their studies as Optuna artifacts in `{where}`; `bioscale dashboard` "
            f"shows them when optuna-dashboard gets `--artifact-dir {where}`.")
    if failures:
        note += " Could not attach to: " + "; ".join(failures[:5]) + ("; ..." if len(failures) > 5 else "") + "."
    return note
