"""The report's content: summary tables, then one section per dataset/architecture and rule."""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING

import pandas as pd

from .importance import FanovaResult, PedAnovaResult
from .report import Block, Bullets, FigureBlock, Heading, Paragraph, Table, pct
from .stability import MARGIN, MARGIN_FLOOR, Robustness
from .storage import StudyRecord, group_title
from .tables import end_reasons

if TYPE_CHECKING:
    from .results import Analysis, StudyAnalysis

FIGURE_DIR_NAME = "figures"


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
    line = (f"**Best**: validation error {pct(best.best_val_error)}% (trial {best.best_trial}), "
            f"test error at it {pct(best.test_error_at_best)}%")
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
                items.append(f"  {branch.title} ({branch.n_trials} trials): {body}")  # a sub-item
    p = a.ped
    if p is not None and p.ok:
        items.append(f"**PED-ANOVA** (what reaching the top {100 * p.target_quantile:.0f}% needs; {p.n_top} of "
                     f"{p.n_trials} trials): " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in p.ranked()))
    elif p is not None:
        items.append(f"**PED-ANOVA**: {p.status}")
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


def budget_line(records: list[StudyRecord]) -> str:
    """The search budget the studies used (trials, epochs, sampler, evaluation seeds) beside the paper's."""
    budgets: dict[str, int] = {}
    for record in records:
        info, evaluation = record.info, record.evaluation or {}
        text = (f"{info.trials if info.trials is not None else len(record.trials)} trials × {record.epochs or '?'} epochs per study, "
                f"{info.sampler or '?'} sampler")
        if evaluation.get("seeds"):
            text += (f"; best configuration re-evaluated over seeds {', '.join(map(str, evaluation['seeds']))}"
                     f" for {evaluation.get('epochs', '?')} epochs")
        budgets[text] = budgets.get(text, 0) + 1
    ours = "; ".join(f"{text} ({n} {'study' if n == 1 else 'studies'})" for text, n in budgets.items())
    return (f"**Budget**: {ours or 'no studies'}. The paper: random search over 60 configurations per rule, "
            "best errors within 500 epochs.")


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


def report_blocks(analysis: Analysis, study_figures: dict[str, list[FigureBlock]],
                  group_figures: dict[tuple[str, str], list[FigureBlock]], artifact_note: str,
                  formats: tuple[str, ...]) -> list[Block]:
    """The whole report: header, how to read it, best results, the paper, then one section per group and rule."""
    from bioscale import __version__

    records, best, comparison, patterns = analysis.records, analysis.best, analysis.comparison, analysis.patterns
    analysed = [a for a in analysis.studies if a.analysed]
    fanova_of = next((a.fanova for a in analysed), None)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    chosen = "matching " + " ".join(f"`{p}`" for p in patterns) if patterns else "every study with stage `tune`"
    blocks: list[Block] = [
        Heading("bioscale analysis", 1),
        Paragraph(f"Storage `{analysis.url}`; studies: {chosen}"
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
            "**tanh vs ReLU**: differences are tanh − ReLU in validation error over the complete trials, with percentile "
            "bootstrap 95% CIs and a two-sided Mann-Whitney test; trials that diverged (recorded as pruned) are left out "
            "and counted per activation beside the verdict. Verdict: *ReLU better* when the CI of the difference in medians lies above zero, "
            "*tanh better* when below, else *no clear difference*.",
            f"**Robustness**: the share of finished configurations (failed and pruned count as outside) within "
            f"{100 * MARGIN:.0f}% relative of the best error (at least {100 * MARGIN_FLOOR:.1f} percentage point, so that a "
            "best error of 0 still leaves a margin), and the span in decades of each learning rate among them.",
            "**Budget trust**: Spearman ρ across configurations between validation error at epoch e and at their last "
            "epoch. High ρ early means short runs rank configurations as full runs do, so pruning is safe. The paper ran "
            "500 epochs; these studies run far fewer.",
        ]),
        Heading("Best results"),
        Paragraph(budget_line(records)),
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

    for group, members in analysis.groups.items():
        done = [a for a in members if a.analysed]
        if not done:
            continue
        blocks.append(Heading(group_title(group)))
        blocks.append(Table(_verdict_table(done, best), "One row per rule: key numbers and verdicts."))
        blocks += group_figures.get(group, [])
        for a in done:
            row = best.loc[best.study == a.record.name].iloc[0]
            blocks.append(Heading(f"{a.name} — `{a.record.name}`", 3))
            if a.status != "ok":
                blocks.append(Paragraph(f"**{a.status}**"))
            blocks.append(Bullets(_study_bullets(a, row)))
            blocks += study_figures.get(a.record.name, [])
    skipped = [a for a in analysis.studies if not a.analysed]
    if skipped:
        blocks.append(Heading("Studies not analysed"))
        blocks.append(Bullets([f"`{a.record.name}`: {a.status}" for a in skipped]))
    return blocks
