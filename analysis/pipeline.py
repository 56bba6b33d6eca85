"""`analyze()`: every study -> importances, activation effect, stability -> figures, tables, report, artifacts."""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from optuna.storages import BaseStorage

from bioscale.errors import UsageError

from . import plots
from .activation import ActivationEffect, activation_effect, format_effect
from .artifacts import ARTIFACT_DIR_NAME, artifact_store, attach_figures
from .importance import (MIN_TRIALS, FanovaResult, PedAnovaResult, fanova_importance, is_log, ped_anova_importance,
                         top_params, unify_distributions)
from .paper import compare
from .report import Block, Bullets, FigureBlock, Heading, Paragraph, Table, pct, write_report
from .stability import MARGIN, BudgetTrust, Robustness, budget_trust, learning_curves, robustness
from .storage import StudyRecord, is_dashboard_readable, open_storage, select_studies
from .tables import best_table_from, end_reasons, trials_frame

FORMATS = ("png", "pdf", "svg")
FIGURE_DIR_NAME = "figures"


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
        raise UsageError(f"unknown figure format {', '.join(unknown) or '(none)'}; pass --format with some of: {', '.join(FORMATS)}")
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
        fig = plots.activation_figure(name, result.frame, result.effect)
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
    fixed = record.attrs.get("fixed") if isinstance(record.attrs.get("fixed"), dict) else {}
    if "activation" not in frame.columns:
        value = fixed.get("activation") or record.attrs.get("activation")
        return None, f"activation not searched{f' (fixed to {value})' if value else ''}"
    present = frame["activation"].dropna()
    if not set(present) & {"tanh", "relu"}:
        return None, f"activation values {sorted(set(map(str, present)))} include neither tanh nor ReLU"
    effect = activation_effect(frame.loc[frame["activation"] == "tanh", "value"],
                               frame.loc[frame["activation"] == "relu", "value"])
    return effect, format_effect(effect)


def _display_names(records: Sequence[StudyRecord]) -> list[str]:
    seen: dict[tuple, int] = {}
    for record in records:
        seen[(record.group, record.label)] = seen.get((record.group, record.label), 0) + 1
    return [r.label if seen[(r.group, r.label)] == 1 else f"{r.label} ({r.name})" for r in records]


def _group_figures(group: tuple[str, str], analyses: list[StudyAnalysis], writer: _FigureWriter, folder: str,
                   colors: dict) -> list[tuple[FigureBlock, Path]]:
    title = f"{group[0]} / {group[1]}"
    done = [a for a in analyses if a.fanova is not None]
    written = []
    if not done:
        return written
    fanova_rows, ped_rows, conditional = {}, {}, set()
    for a in done:
        fanova_rows[a.name] = a.fanova.overall.mean if a.fanova.overall.ok else {}
        ped_rows[a.name] = a.ped.importance if a.ped.ok else {}
        conditional |= set(a.fanova.conditional)
    fanova_table = pd.DataFrame.from_dict(fanova_rows, orient="index")
    ped_table = pd.DataFrame.from_dict(ped_rows, orient="index")
    order = (fanova_table.mean().add(ped_table.mean(), fill_value=0).sort_values(ascending=False).index
             if len(fanova_table.columns) or len(ped_table.columns) else [])
    note = f"conditional parameters ({', '.join(sorted(conditional))}): fANOVA per branch in the report" if conditional else ""
    fig = plots.importance_heatmap(f"{title}: hyperparameter importance per rule",
                                   fanova_table.reindex(columns=order), ped_table.reindex(columns=order), note)
    written.append(writer.write(fig, folder, f"{slug(group[0])}-{slug(group[1])}-importance-heatmap",
                                f"{title}: rules × hyperparameters; left fANOVA share of global variance "
                                "(log params on log10 scale), right PED-ANOVA importance for reaching the top quantile"))
    accuracy = {}
    for a in done:
        frame = a.frame
        n_not = a.robustness.n_finished - a.robustness.n_complete if a.robustness else 0
        accuracy[a.name] = (1 - frame["value"].to_numpy(float), 1 - frame["test_error"].to_numpy(float), n_not)
    fig = plots.accuracy_distribution(f"{title}: accuracy over configurations (cf. the paper's Figure 5)", accuracy)
    written.append(writer.write(fig, folder, f"{slug(group[0])}-{slug(group[1])}-accuracy-distribution",
                                f"{title}: validation and test accuracy at each configuration's best validation epoch, per rule"))
    fig = plots.robustness_figure(f"{title}: robustness", {a.name: a.robustness for a in done}, colors)
    written.append(writer.write(fig, folder, f"{slug(group[0])}-{slug(group[1])}-robustness",
                                f"{title}: share of configurations within a margin of the best error, and the learning-rate "
                                f"band within {100 * MARGIN:.0f}%"))
    fig = plots.budget_figure(f"{title}: budget trust", {a.name: a.trust for a in done}, colors)
    written.append(writer.write(fig, folder, f"{slug(group[0])}-{slug(group[1])}-budget-trust",
                                f"{title}: Spearman rank correlation between validation error at epoch e and at the last epoch"))
    effects = {a.name: a.effect for a in done if a.effect is not None}
    if effects:
        fig = plots.activation_forest(f"{title}: tanh vs ReLU", effects)
        written.append(writer.write(fig, folder, f"{slug(group[0])}-{slug(group[1])}-activation-effects",
                                    f"{title}: tanh − ReLU differences in error with bootstrap confidence intervals"))
    return written


def _importance_line(fanova: FanovaResult | None, k: int = 3) -> str:
    if fanova is None:
        return "–"
    if not fanova.overall.ok:
        return fanova.overall.status
    return ", ".join(f"{p} {100 * m:.0f}±{100 * s:.0f}%" for p, m, s in fanova.overall.ranked()[:k])


def _ped_line(ped: PedAnovaResult | None, k: int = 3) -> str:
    if ped is None:
        return "–"
    if not ped.ok:
        return ped.status
    return ", ".join(f"{p} {100 * v:.0f}%" for p, v in ped.ranked()[:k])


def _band_line(rob: Robustness | None) -> str:
    if rob is None or not rob.lr_bands:
        return "–"
    return ", ".join(f"{n} {w:.2f} dec" for n, w in sorted(rob.lr_bands.items()))


def _study_bullets(a: StudyAnalysis, best: pd.Series) -> list[str]:
    record = a.record
    items = []
    reasons = end_reasons(record)
    items.append(f"**Trials**: {len(record.complete)} complete of {len(record.trials)}"
                 + (f"; ended early or failed: {', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))}" if reasons else "")
                 + (f"; {record.epochs} epochs each" if record.epochs else ""))
    line = f"**Best**: validation error {pct(best.best_val_error)}% (trial {best.best_trial}), test error at it {pct(best.test_error_at_best)}%"
    if best.evaluated_seeds:
        line += (f"; evaluated over {best.evaluated_seeds} seeds: test error {pct(best.evaluated_test_mean)} ± "
                 f"{pct(best.evaluated_test_std)}%")
    items.append(line)
    f = a.fanova
    if f is not None:
        text = (f"**fANOVA** (global variance; {f.evaluator}, {f.seeds} seeds × {f.n_trees} trees; "
                f"{f.overall.n_trials} trials; log10 scale for {', '.join(f.log_params) or 'no parameter'}): ")
        if f.overall.ok:
            text += ", ".join(f"{p} {100 * m:.1f} ± {100 * s:.1f}%" for p, m, s in f.overall.ranked())
        else:
            text += f.overall.status
        if f.overall.constant:
            text += f"; fixed (one possible value, importance 0): {', '.join(f.overall.constant)}"
        if f.dropped:
            text += "; dropped: " + ", ".join(f"{p} ({why})" for p, why in f.dropped.items())
        items.append(text)
        if f.conditional:
            cond = ", ".join(f"{p} (in {c} of {f.overall.n_trials} trials)" for p, c in f.conditional.items())
            items.append(f"**Conditional parameters** {cond}: left out of the line above, evaluated per branch:")
            for branch in f.branches:
                body = (", ".join(f"{p} {100 * m:.1f} ± {100 * s:.1f}%" for p, m, s in branch.ranked())
                        if branch.ok else branch.status)
                items.append(f"  {branch.title} ({branch.n_trials} trials): {body}")
    p = a.ped
    if p is not None:
        items.append(f"**PED-ANOVA** (what reaching the top {100 * p.target_quantile:.0f}% needs; {p.n_top} of "
                     f"{p.n_trials} trials): " + (", ".join(f"{n} {100 * v:.1f}%" for n, v in p.ranked()) if p.ok else p.status))
    items.append(f"**Activation**: {a.activation_note}")
    r = a.robustness
    if r is not None and r.n_finished:
        items.append(f"**Robustness**: {r.n_within} of {r.n_finished} finished configurations ({100 * r.fraction_within:.0f}%) "
                     f"within {100 * r.margin:.0f}% of the best error; learning-rate band within it: {_band_line(r)}")
    if a.trust is not None:
        line = f"**Budget trust**: {a.trust.verdict()}"
        if a.trust.ok:
            line += f" (ρ at epoch 1: {a.trust.rho[0]:.2f})" if math.isfinite(a.trust.rho[0]) else ""
        items.append(line)
    return items


def _fmt_best(best: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": best.dataset, "arch": best.arch, "rule": best.label,
        "complete trials": [f"{c} of {t}" for c, t in zip(best.trials_complete, best.trials_total)],
        "best val error (%)": best.best_val_error.map(pct),
        "test error at best (%)": best.test_error_at_best.map(pct),
        "evaluated test error (%)": [f"{pct(m)} ± {pct(s)} ({n} seeds)" if n else "–"
                                     for m, s, n in zip(best.evaluated_test_mean, best.evaluated_test_std, best.evaluated_seeds)],
    })


def _fmt_compare(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": table.dataset, "family": table.family, "rule": table.label,
        "ours: test error (%)": table.ours_test_error.map(pct), "basis": table.ours_basis,
        "paper: test error (%)": table.paper_test_error.map(pct),
        "difference (pp)": [f"{100 * d:+.2f}" if not math.isnan(d) else "–" for d in table["diff"]],
        "paper: train error (%)": table.paper_train_error.map(pct), "note": table.paper_note,
    })


def _verdict_table(analyses: list[StudyAnalysis], best: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for a in analyses:
        b = best.loc[best.study == a.record.name].iloc[0]
        rows.append({
            "rule": a.name, "complete": b.trials_complete, "best val (%)": pct(b.best_val_error),
            "fANOVA top (global variance)": _importance_line(a.fanova),
            "PED-ANOVA top (reaching the top)": _ped_line(a.ped),
            "tanh vs ReLU": a.effect.verdict if a.effect else "not searched",
            "Δ median tanh−ReLU (pp, CI)": (f"{100 * a.effect.median_diff:+.2f} ({100 * a.effect.median_ci[0]:+.2f}, "
                                            f"{100 * a.effect.median_ci[1]:+.2f})"
                                            if a.effect and math.isfinite(a.effect.median_diff) else "–"),
            f"within {100 * MARGIN:.0f}% of best": (f"{100 * a.robustness.fraction_within:.0f}%"
                                                    if a.robustness and a.robustness.n_finished else "–"),
            "LR band (decades)": _band_line(a.robustness),
            "budget trust": a.trust.verdict() if a.trust else "–",
        })
    return pd.DataFrame(rows)


def _long_tables(analyses: list[StudyAnalysis]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    importance, activation, stability = [], [], []
    for a in analyses:
        base = {"study": a.record.name, "dataset": a.record.dataset, "arch": a.record.arch, "label": a.record.label}
        if a.fanova is not None:
            for branch in [a.fanova.overall, *a.fanova.branches]:
                for p in branch.params:
                    importance.append({**base, "method": "fanova", "branch": branch.title, "n_trials": branch.n_trials,
                                       "param": p, "log10_scale": p in a.fanova.log_params,
                                       "importance": branch.mean.get(p, math.nan), "std": branch.std.get(p, math.nan),
                                       "status": branch.status})
        if a.ped is not None:
            for p, v in a.ped.importance.items():
                importance.append({**base, "method": "ped-anova", "branch": f"top {a.ped.target_quantile:.3g}",
                                   "n_trials": a.ped.n_trials, "param": p, "log10_scale": p in a.log_params,
                                   "importance": v, "std": math.nan, "status": a.ped.status})
        if a.effect is not None:
            e = a.effect
            activation.append({**base, "n_tanh": e.n_tanh, "n_relu": e.n_relu, "median_tanh": e.median_tanh,
                               "median_relu": e.median_relu, "median_diff": e.median_diff, "median_ci_low": e.median_ci[0],
                               "median_ci_high": e.median_ci[1], "best_quartile_diff": e.best_quartile_diff,
                               "best_quartile_ci_low": e.best_quartile_ci[0], "best_quartile_ci_high": e.best_quartile_ci[1],
                               "p_value": e.p_value, "verdict": e.verdict})
        if a.robustness is not None:
            r, t = a.robustness, a.trust
            row = {**base, "n_finished": r.n_finished, "n_complete": r.n_complete, "best_error": r.best_error,
                   "margin": r.margin, "fraction_within": r.fraction_within,
                   **{f"band_decades_{n}": w for n, w in r.lr_bands.items()},
                   "settle_epoch": t.settle_epoch if t else None, "last_epoch": t.last_epoch if t else None,
                   "budget_trust": t.verdict() if t else ""}
            stability.append(row)
    return pd.DataFrame(importance), pd.DataFrame(activation), pd.DataFrame(stability)


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=None, leave=False)


def analyze(storage: str | BaseStorage, patterns: list[str] | None, out: Path, formats: tuple[str, ...] = ("png",),
            progress: bool = True, *, seeds: int = 5) -> Path:
    """Analyse the matching studies and write figures, CSV tables and report.md/report.html under `out`; returns report.md."""
    url = storage if isinstance(storage, str) else type(storage).__name__
    formats = parse_formats(formats)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for the figures and the report")
    opened = open_storage(storage)
    records = select_studies(opened, patterns, url=str(url))
    out.mkdir(parents=True, exist_ok=True)
    writer = _FigureWriter(out, formats)
    names = _display_names(records)
    colors = plots.label_colors(names)
    analyses = [_analyse_study(r, n, writer, f"{slug(r.dataset)}-{slug(r.arch)}", seeds)
                for r, n in zip(_progress(records, progress, "analysing studies"), names)]
    best = best_table_from(records)
    comparison = compare(best)
    importance, activation, stability = _long_tables(analyses)
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
    blocks = _report_blocks(str(url), patterns, records, analyses, groups, group_written, best, comparison, out,
                            artifact_note, formats)
    markdown, _ = write_report(blocks, out, "bioscale analysis")
    return markdown


def _attach(storage: BaseStorage, analyses: list[StudyAnalysis],
            group_written: dict[tuple[str, str], list[tuple[FigureBlock, Path]]], out: Path) -> str:
    if not is_dashboard_readable(storage):
        return "The storage is in memory, so no figures were attached to studies as artifacts."
    store = artifact_store(out)
    attached, failures = 0, []
    for a in analyses:
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


def _report_blocks(url: str, patterns: list[str] | None, records: list[StudyRecord], analyses: list[StudyAnalysis],
                   groups: dict, group_written: dict, best: pd.DataFrame, comparison: pd.DataFrame, out: Path,
                   artifact_note: str, formats: tuple[str, ...]) -> list[Block]:
    from bioscale import __version__

    analysed = [a for a in analyses if a.fanova is not None]
    fanova_of = next((a.fanova for a in analysed), None)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [
        Heading("bioscale analysis", 1),
        Paragraph(f"Storage `{url}`; studies: {'matching ' + ' '.join(f'`{p}`' for p in patterns) if patterns else 'every study with stage `tune`'}"
                  f" ({len(records)}; {len(analysed)} with complete trials). Generated {when} by bioscale {__version__}. "
                  f"Figures in `{FIGURE_DIR_NAME}/` ({', '.join(formats)}); tables as CSV beside this report."),
        Paragraph(artifact_note),
        Heading("How to read this report"),
        Bullets([
            "Errors are percentages of misclassified examples. A trial's value is its lowest validation error over its "
            "epochs; its test error is taken at that epoch.",
            "**fANOVA** answers *which hyperparameters explain the variance of the error over the whole search space*. "
            "It runs over the COMPLETE trials, with log-scaled parameters re-expressed as log10 uniform parameters "
            "(Optuna's evaluator integrates them on a linear scale, which understates learning rates)"
            + (f"; {fanova_of.evaluator} evaluator, mean ± sd over {fanova_of.seeds} seeds of {fanova_of.n_trees}-tree forests"
               if fanova_of else "")
            + ". Parameters present in some trials only (conditional) are evaluated per branch and listed as such.",
            "**PED-ANOVA** (Optuna's default, what optuna-dashboard shows) answers *what reaching the top quantile "
            "needs*: how differently the best trials (top 10%, at least 5 trials) are spread over each parameter than all "
            "trials. Shares are normalised to 100%.",
            "**tanh vs ReLU**: differences are tanh − ReLU in validation error, with percentile bootstrap 95% CIs and a "
            "two-sided Mann-Whitney test. Verdict: *ReLU better* when the CI of the difference in medians lies above zero, "
            "*tanh better* when below, else *no clear difference*.",
            f"**Robustness**: the share of finished configurations (failed and pruned count as outside) within "
            f"{100 * MARGIN:.0f}% relative of the best error, and the span in decades of each learning rate among them.",
            "**Budget trust**: Spearman ρ across configurations between validation error at epoch e and at their last "
            "epoch. High ρ early means short runs rank configurations as full runs do, so pruning is safe. The paper ran "
            "500 epochs; these studies run far fewer.",
        ]),
        Heading("Best results"),
        Table(_fmt_best(best)),
        Heading("Compared with the published results"),
    ]
    matched = comparison[comparison.paper_test_error.notna()]
    if len(matched):
        blocks.append(Table(_fmt_compare(matched), "Ours minus published (Bartunov et al. 2018, Tables 1 and 2)."))
    unmatched = comparison[comparison.paper_test_error.isna()]
    if len(unmatched):
        blocks.append(Paragraph("No published counterpart for: " + ", ".join(
            f"{r.dataset}/{r.family}/{r.label}" for r in unmatched.itertuples()) +
            " (the paper ran MNIST, CIFAR-10 and ImageNet with FC, LC and conv nets)."))

    for group, members in groups.items():
        done = [a for a in members if a.fanova is not None]
        if not done:
            continue
        blocks.append(Heading(f"{group[0]} / {group[1]}"))
        blocks.append(Table(_verdict_table(done, best), "One row per rule: key numbers and verdicts."))
        blocks += [block for block, _ in group_written.get(group, [])]
        for a in done:
            row = best.loc[best.study == a.record.name].iloc[0]
            blocks.append(Heading(f"{a.name} — `{a.record.name}`", 3))
            if a.status != "ok":
                blocks.append(Paragraph(f"**{a.status}**"))
            blocks.append(Bullets(_study_bullets(a, row)))
            blocks += a.figures
    skipped = [a for a in analyses if a.fanova is None]
    if skipped:
        blocks.append(Heading("Studies not analysed"))
        blocks.append(Bullets([f"`{a.record.name}`: {a.status}" for a in skipped]))
    return blocks
