"""`render()`: an `Analysis` -> figures, CSV tables, report.md/report.html and artifacts under one folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd
from optuna.storages import BaseStorage

from bioscale.errors import UsageError

from . import plots
from .artifacts import ARTIFACT_DIR_NAME, artifact_store, attach_figures
from .report import FigureBlock, write_report
from .results import Analysis, StudyAnalysis, progress_bar
from .sections import FIGURE_DIR_NAME, report_blocks
from .stability import MARGIN
from .storage import group_title, is_dashboard_readable
from .surrogate_analyses import figures as surrogate_figures, long_table as surrogate_table  # issue 28 glue

FORMATS = ("png", "pdf", "svg")

Written = list[tuple[FigureBlock, Path]]  # each figure's report block and the file attached as an artifact


def parse_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """('png', 'pdf') from 'png,pdf' or a sequence; unknown formats raise UsageError."""
    items = formats.split(",") if isinstance(formats, str) else [p for f in formats for p in str(f).split(",")]
    chosen = tuple(dict.fromkeys(i.strip().lower().lstrip(".") for i in items if i.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise UsageError(f"unknown figure format {', '.join(unknown) or '(none)'}; "
                         f"pass --format with some of: {', '.join(FORMATS)}")
    return chosen


def output_options(out: Path | str, formats: Sequence[str] | str) -> tuple[Path, tuple[str, ...]]:
    """The output folder and figure formats, checked before any work: UsageError when `out` is a file."""
    formats = parse_formats(formats)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for the figures and the report")
    return out, formats


def slug(text: str) -> str:
    """A file-name-safe version of a label or spec string."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def render(analysis: Analysis, out: Path | str, formats: Sequence[str] | str = ("png",), progress: bool = False) -> Path:
    """Write the analysis as figures, CSV tables and report.md/report.html under `out`; returns report.md."""
    out, formats = output_options(out, formats)
    out.mkdir(parents=True, exist_ok=True)
    analysis.best.to_csv(out / "best.csv", index=False)
    analysis.comparison.to_csv(out / "paper_comparison.csv", index=False)
    analysis.importance.to_csv(out / "importance.csv", index=False)
    analysis.activation.to_csv(out / "activation.csv", index=False)
    analysis.stability.to_csv(out / "stability.csv", index=False)
    analysis.activation_pairs.to_csv(out / "activation_pairs.csv", index=False)
    analysis.tunability.to_csv(out / "tunability.csv", index=False)
    surrogate_table([(a.record.name, a.record.label, a.surrogate) for a in analysis.studies]).to_csv(
        out / "ablation.csv", index=False)  # issue 28 glue

    writer = _FigureWriter(out, formats)
    styles = plots.styles_for({a.name: (a.record.label, None if "activation" in a.record.info.space
                                        else a.record.info.fixed.get("activation")) for a in analysis.studies})
    study_written = {a.record.name: _study_figures(a, writer, _folder(a.record.group))
                     for a in progress_bar(analysis.studies, progress, "drawing figures")}
    group_written = {g: _group_figures(g, [a for a in members if a.analysed], writer, _folder(g), styles)
                     for g, members in analysis.groups.items()}
    pair_written = [writer.write(plots.pair_figure(f"{p.dataset} / {p.arch} / {p.label}", p), _folder((p.dataset, p.arch)),
                                 f"{slug(p.label)}-tanh-vs-relu",
                                 f"{p.label} on {p.dataset} / {p.arch}: the tanh and the ReLU study, every finished "
                                 "configuration (diverged at chance level) and the expected best after n configurations")[0]
                    for p in analysis.pairs]
    artifact_note = _attach(analysis.storage, analysis.studies, study_written, group_written, out)
    blocks = report_blocks(analysis, {k: [b for b, _ in v] for k, v in study_written.items()},
                           {k: [b for b, _ in v] for k, v in group_written.items()}, artifact_note, formats,
                           pair_written)
    markdown, _ = write_report(blocks, out, "bioscale analysis")
    return markdown


def _folder(group: tuple[str, str]) -> str:
    return f"{slug(group[0])}-{slug(group[1])}"


class _FigureWriter:
    def __init__(self, out: Path, formats: tuple[str, ...]) -> None:
        self.out, self.formats = out, formats

    def write(self, fig, folder: str, name: str, caption: str) -> tuple[FigureBlock, Path]:
        paths = plots.save(fig, self.out / FIGURE_DIR_NAME / folder / name, self.formats)
        png = paths["png"].read_bytes() if "png" in paths else plots.png_bytes(fig)
        block = FigureBlock(caption=caption, files={f: p.relative_to(self.out).as_posix() for f, p in paths.items()},
                            png=png)
        fig.clear()
        upload = paths.get("png") or paths.get("svg") or next(iter(paths.values()))
        return block, upload


def _study_figures(a: StudyAnalysis, writer: _FigureWriter, folder: str) -> Written:
    written: Written = []
    if not a.analysed:
        return written
    name, stem = a.name, slug(a.name)
    if a.fanova.overall.ok or a.ped.ok or a.fanova.branches:
        fig = plots.importance_figure(name, a.fanova, a.ped)
        written.append(writer.write(fig, folder, f"{stem}-importance", f"{name}: hyperparameter importances, fANOVA "
                                    "(global variance) and PED-ANOVA (top quantile)"))
    if a.effect is not None and min(a.effect.n_tanh, a.effect.n_relu) > 0:
        fig = plots.activation_figure(name, a.frame, a.effect, {k: sum(c.values()) for k, c in a.incomplete.items()})
        written.append(writer.write(fig, folder, f"{stem}-activation", f"{name}: validation error under tanh and ReLU, "
                                    "and the expected best after n random trials"))
    if len(a.frame) >= 2:
        fig = plots.sensitivity_figure(name, a.frame, a.top_params, a.log_params, MARGIN)
        written.append(writer.write(fig, folder, f"{stem}-sensitivity",
                                    f"{name}: validation error against the most important hyperparameters"))
    written += [writer.write(fig, folder, f"{stem}-{kind}", caption)
                for kind, fig, caption in surrogate_figures(a.surrogate, name)]  # issue 28 glue
    return written


def _group_figures(group: tuple[str, str], done: list[StudyAnalysis], writer: _FigureWriter, folder: str,
                   styles: dict) -> Written:
    title = group_title(group)
    written: Written = []
    if not done:
        return written
    fanova_rows, ped_rows, conditional = {}, {}, set()
    for a in done:
        row = a.name if a.fanova.overall.ok or a.ped.ok else f"{a.name} (too few trials)"
        fanova_rows[row] = a.fanova.overall.mean if a.fanova.overall.ok else {}
        ped_rows[row] = a.ped.importance if a.ped.ok else {}
        conditional |= set(a.fanova.conditional)
    fanova_table = pd.DataFrame.from_dict(fanova_rows, orient="index")
    ped_table = pd.DataFrame.from_dict(ped_rows, orient="index")
    order = (fanova_table.mean().add(ped_table.mean(), fill_value=0).sort_values(ascending=False).index
             if len(fanova_table.columns) or len(ped_table.columns) else [])
    note = f"conditional parameters ({', '.join(sorted(conditional))}): fANOVA per branch in the report" if conditional else ""
    fig = plots.importance_heatmap(f"{title}: hyperparameter importance per rule",
                                   fanova_table.reindex(columns=order), ped_table.reindex(columns=order), note)
    written.append(writer.write(fig, folder, f"{folder}-importance-heatmap",
                                f"{title}: rules × hyperparameters; left fANOVA share of global variance "
                                "(log params on log10 scale), right PED-ANOVA importance for reaching the top quantile"))
    accuracy = {}
    for a in done:
        frame = a.frame
        n_not = a.robustness.n_finished - a.robustness.n_complete if a.robustness else 0
        accuracy[a.name] = (1 - frame["value"].to_numpy(float), 1 - frame["test_error"].to_numpy(float), n_not)
    fig = plots.accuracy_distribution(f"{title}: accuracy over configurations (cf. the paper's Figure 5)", accuracy, styles)
    written.append(writer.write(fig, folder, f"{folder}-accuracy-distribution",
                                f"{title}: validation and test accuracy at each configuration's best validation epoch, per rule, "
                                "as a share of its finished configurations, on one shared axis"))
    fig = plots.robustness_figure(f"{title}: robustness", {a.name: a.robustness for a in done}, styles)
    written.append(writer.write(fig, folder, f"{folder}-robustness",
                                f"{title}: share of finished configurations within x percentage points of the rule's best and of "
                                f"the common reference, and the learning-rate band within {100 * MARGIN:.0f} pp"))
    fig = plots.budget_figure(f"{title}: budget trust", {a.name: a.trust for a in done}, styles)
    written.append(writer.write(fig, folder, f"{folder}-budget-trust",
                                f"{title}: Spearman rank correlation, and overlap of the top 5, between validation error at "
                                "epoch e and at the last epoch"))
    effects = {a.name: a.effect for a in done if a.effect is not None}
    if effects:
        fig = plots.activation_forest(f"{title}: tanh vs ReLU", effects)
        written.append(writer.write(fig, folder, f"{folder}-activation-effects",
                                    f"{title}: tanh − ReLU differences in error with bootstrap confidence intervals"))
    return written


def _attach(storage: BaseStorage, analyses: list[StudyAnalysis], study_written: dict[str, Written],
            group_written: dict[tuple[str, str], Written], out: Path) -> str:
    if not is_dashboard_readable(storage):
        return "The storage is in memory, so no figures were attached to studies as artifacts."
    store = artifact_store(out)
    attached, failures = 0, []
    for a in analyses:
        if not a.analysed:  # skipped or no complete trial: nothing of its own to show
            continue
        files = [path for _, path in study_written[a.record.name] + group_written.get(a.record.group, [])]
        if not files:
            continue
        try:
            attached += attach_figures(a.record.study, files, store)
        except Exception as error:  # a read-only storage must not cost the report
            failures.append(f"{a.record.name}: {error}")
    note = (f"{attached} figures are attached to their studies as Optuna artifacts in `{(out / ARTIFACT_DIR_NAME).resolve()}`; "
            f"`bioscale dashboard` shows them when optuna-dashboard gets `--artifact-dir {(out / ARTIFACT_DIR_NAME).resolve()}`.")
    if failures:
        note += " Could not attach to: " + "; ".join(failures[:5]) + ("; ..." if len(failures) > 5 else "") + "."
    return note
