"""`analyze()`: every study -> importances, activation effect, stability -> figures, tables, report, artifacts."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
from optuna.storages import BaseStorage

from bioscale.errors import UsageError

from . import plots
from .activation import ActivationEffect, activation_effect, format_effect
from .artifacts import ARTIFACT_DIR_NAME, artifact_store, attach_figures
from .importance import (FANOVA_SEEDS, MIN_TRIALS, FanovaResult, PedAnovaResult, fanova_importance, is_log,
                         ped_anova_importance, top_params, unify_distributions)
from .paper import compare
from .report import FigureBlock, write_report
from .sections import FIGURE_DIR_NAME, long_tables, report_blocks
from .stability import MARGIN, BudgetTrust, Robustness, budget_trust, learning_curves, robustness
from .storage import StudyRecord, display_name, group_title, is_dashboard_readable, open_storage, select_studies
from .tables import best_table_from, end_reason, trials_frame

FORMATS = ("png", "pdf", "svg")


@dataclass
class StudyAnalysis:
    """Everything computed for one study."""

    record: StudyRecord
    name: str
    status: str = "ok"
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    fanova: FanovaResult | None = None
    ped: PedAnovaResult | None = None
    effect: ActivationEffect | None = None
    activation_note: str = ""
    incomplete: dict[str, dict[str, int]] = field(default_factory=dict)  # activation -> end reason -> count
    robustness: Robustness | None = None
    trust: BudgetTrust | None = None
    log_params: list[str] = field(default_factory=list)
    figures: list[FigureBlock] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def parse_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """('png', 'pdf') from 'png,pdf' or a sequence; unknown formats raise UsageError."""
    items = formats.split(",") if isinstance(formats, str) else [p for f in formats for p in str(f).split(",")]
    chosen = tuple(dict.fromkeys(i.strip().lower().lstrip(".") for i in items if i.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise UsageError(f"unknown figure format {', '.join(unknown) or '(none)'}; "
                         f"pass --format with some of: {', '.join(FORMATS)}")
    return chosen


def slug(text: str) -> str:
    """A file-name-safe version of a label or spec string."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


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


def _analyse_study(record: StudyRecord, name: str, writer: _FigureWriter, folder: str, seeds: int) -> StudyAnalysis:
    result = StudyAnalysis(record=record, name=name)
    if record.skipped:
        result.status = f"skipped: {record.skipped}"
        return result
    complete = record.complete
    if not complete:
        result.status = f"0 complete trials (of {len(record.trials)})"
        return result
    result.frame = trials_frame(record)
    merged, _ = unify_distributions(complete)
    result.log_params = sorted(n for n, d in merged.items() if is_log(d))
    result.fanova = fanova_importance(complete, seeds=seeds)
    result.ped = ped_anova_importance(complete)
    if len(complete) < MIN_TRIALS:
        result.status = f"not enough trials ({len(complete)} complete; importances need at least {MIN_TRIALS})"
    result.effect, result.activation_note = _activation(record, result.frame)
    if result.effect is not None:
        result.incomplete = _incomplete_by_activation(record)
        if any(result.incomplete.values()):
            result.activation_note += "; did not complete (left out above): " + "; ".join(
                f"{a} {sum(c.values())} ({', '.join(f'{k} {v}' for k, v in sorted(c.items()))})"
                for a, c in result.incomplete.items() if c)
    finished = record.finished
    complete_numbers = {t.number for t in complete}
    errors = [t.value if t.number in complete_numbers else math.nan for t in finished]
    lrs = {n: [t.params.get(n, math.nan) for t in finished] for n in result.log_params if n.endswith("_lr")}
    result.robustness = robustness(errors, n_finished=len(finished), lrs=lrs)
    result.trust = budget_trust(learning_curves(complete))

    stem = slug(name)
    if result.fanova.overall.ok or result.ped.ok or result.fanova.branches:
        fig = plots.importance_figure(name, result.fanova, result.ped)
        _add(result, writer.write(fig, folder, f"{stem}-importance",
                                  f"{name}: hyperparameter importances, fANOVA (global variance) and PED-ANOVA (top quantile)"))
    if result.effect is not None and min(result.effect.n_tanh, result.effect.n_relu) > 0:
        fig = plots.activation_figure(name, result.frame, result.effect,
                                      {a: sum(c.values()) for a, c in result.incomplete.items()})
        _add(result, writer.write(fig, folder, f"{stem}-activation",
                                  f"{name}: validation error under tanh and ReLU, and the expected best after n random trials"))
    if len(complete) >= 2:
        params = top_params(result.fanova, result.ped, [c for c in result.frame.columns if c in merged])
        fig = plots.sensitivity_figure(name, result.frame, params, result.log_params, MARGIN)
        _add(result, writer.write(fig, folder, f"{stem}-sensitivity",
                                  f"{name}: validation error against the most important hyperparameters"))
    return result


def _add(result: StudyAnalysis, written: tuple[FigureBlock, Path]) -> None:
    result.figures.append(written[0])
    result.files.append(written[1])


def _activation(record: StudyRecord, frame: pd.DataFrame) -> tuple[ActivationEffect | None, str]:
    if "activation" not in frame.columns:
        value = record.info.fixed.get("activation")
        return None, f"activation not searched{f' (fixed to {value})' if value else ''}"
    present = set(frame["activation"].dropna())
    if not {"tanh", "relu"} <= present:
        return None, f"activation took only {', '.join(sorted(map(str, present)))} in the complete trials: nothing to compare"
    effect = activation_effect(frame.loc[frame["activation"] == "tanh", "value"],
                               frame.loc[frame["activation"] == "relu", "value"])
    return effect, format_effect(effect)


def _incomplete_by_activation(record: StudyRecord) -> dict[str, dict[str, int]]:
    """Per activation, how its trials that did not complete ended (diverged ones end PRUNED in bioscale studies)."""
    complete = {t.number for t in record.complete}
    counts: dict[str, dict[str, int]] = {"tanh": {}, "relu": {}}
    for trial in record.finished:
        activation = trial.params.get("activation")
        if trial.number in complete or activation not in counts:
            continue
        reason = end_reason(trial)
        counts[activation][reason] = counts[activation].get(reason, 0) + 1
    return counts


def _display_names(records: Sequence[StudyRecord]) -> list[str]:
    seen: dict[tuple, int] = {}
    for record in records:
        seen[(record.group, record.label)] = seen.get((record.group, record.label), 0) + 1
    return [r.label if seen[(r.group, r.label)] == 1 else f"{r.label} ({r.name})" for r in records]


def _group_figures(group: tuple[str, str], analyses: list[StudyAnalysis], writer: _FigureWriter, folder: str,
                   colors: dict) -> list[tuple[FigureBlock, Path]]:
    title = group_title(group)
    done = [a for a in analyses if a.fanova is not None]
    written = []
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
    fig = plots.accuracy_distribution(f"{title}: accuracy over configurations (cf. the paper's Figure 5)", accuracy)
    written.append(writer.write(fig, folder, f"{folder}-accuracy-distribution",
                                f"{title}: validation and test accuracy at each configuration's best validation epoch, per rule"))
    fig = plots.robustness_figure(f"{title}: robustness", {a.name: a.robustness for a in done}, colors)
    written.append(writer.write(fig, folder, f"{folder}-robustness",
                                f"{title}: share of configurations within a margin of the best error, and the learning-rate "
                                f"band within {100 * MARGIN:.0f}%"))
    fig = plots.budget_figure(f"{title}: budget trust", {a.name: a.trust for a in done}, colors)
    written.append(writer.write(fig, folder, f"{folder}-budget-trust",
                                f"{title}: Spearman rank correlation between validation error at epoch e and at the last epoch"))
    effects = {a.name: a.effect for a in done if a.effect is not None}
    if effects:
        fig = plots.activation_forest(f"{title}: tanh vs ReLU", effects)
        written.append(writer.write(fig, folder, f"{folder}-activation-effects",
                                    f"{title}: tanh − ReLU differences in error with bootstrap confidence intervals"))
    return written


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=None, leave=False)


def analyze(storage: str | BaseStorage | None, patterns: list[str] | None, out: Path, formats: tuple[str, ...] = ("png",),
            progress: bool = True, *, seeds: int = FANOVA_SEEDS) -> Path:
    """Analyse the matching studies and write figures, CSV tables and report.md/report.html under `out`; returns report.md."""
    url = display_name(storage)
    formats = parse_formats(formats)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for the figures and the report")
    opened = open_storage(storage)
    records = select_studies(opened, patterns, url=url)
    out.mkdir(parents=True, exist_ok=True)
    writer = _FigureWriter(out, formats)
    names = _display_names(records)
    colors = plots.label_colors(names)
    analyses = [_analyse_study(r, n, writer, f"{slug(r.dataset)}-{slug(r.arch)}", seeds)
                for r, n in zip(_progress(records, progress, "analysing studies"), names)]
    best = best_table_from(records)
    comparison = compare(best)
    importance, activation, stability = long_tables(analyses)
    best.to_csv(out / "best.csv", index=False)
    comparison.to_csv(out / "paper_comparison.csv", index=False)
    importance.to_csv(out / "importance.csv", index=False)
    activation.to_csv(out / "activation.csv", index=False)
    stability.to_csv(out / "stability.csv", index=False)

    groups: dict[tuple[str, str], list[StudyAnalysis]] = {}
    for a in analyses:
        groups.setdefault(a.record.group, []).append(a)
    group_written = {g: _group_figures(g, [a for a in members if a.fanova is not None], writer,
                                       f"{slug(g[0])}-{slug(g[1])}", colors)
                     for g, members in groups.items()}

    artifact_note = _attach(opened, analyses, group_written, out)
    blocks = report_blocks(url, patterns, records, analyses, groups, group_written, best, comparison, artifact_note,
                           formats)
    markdown, _ = write_report(blocks, out, "bioscale analysis")
    return markdown


def _attach(storage: BaseStorage, analyses: list[StudyAnalysis],
            group_written: dict[tuple[str, str], list[tuple[FigureBlock, Path]]], out: Path) -> str:
    if not is_dashboard_readable(storage):
        return "The storage is in memory, so no figures were attached to studies as artifacts."
    store = artifact_store(out)
    attached, failures = 0, []
    for a in analyses:
        if a.fanova is None:  # skipped or no complete trial: nothing of its own to show
            continue
        files = a.files + [path for _, path in group_written.get(a.record.group, [])]
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


