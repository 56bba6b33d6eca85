"""The report's content: summary tables, then one section per dataset/architecture and rule."""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING

import pandas as pd

from .importance import FanovaResult, PedAnovaResult
from .paper import _family
from .protocol import fixed_text, protocol_problems
from .report import Block, Bullets, FigureBlock, Heading, Paragraph, Table, pct
from .stability import MARGIN, MARGINS, TOP_K, Robustness
from .storage import StudyRecord, group_title
from .tables import end_reasons
from .surrogate_analyses import bullets as surrogate_bullets, methods as surrogate_methods  # issue 28 glue

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
    if a.outcomes is not None:
        items.append(f"**Diverged or stalled** (a sensitivity number: every finished search trial counts): "
                     f"{a.outcomes.line()}")
    line = (f"**Best**: validation error {pct(best.best_val_error)}% (trial {best.best_trial}), "
            f"test error at it {pct(best.test_error_at_best)}%")
    if a.evaluated is not None:
        line += f"; evaluated: test error {a.evaluated.line()}"
    items.append(line)
    if a.tunability is not None and a.tunability.default_trial is not None:
        items.append(f"**Tunability**: {a.tunability.line()}")
    items += surrogate_bullets(a.surrogate)  # issue 28 glue
    items += _importance_items(a.fanova, a.ped, "complete trials")
    if a.fanova_all is not None:
        items += _importance_items(a.fanova_all, a.ped_all,
                                   f"every finished trial, diverged ones at chance level {100 * a.chance:.0f}%")
    items.append(f"**Activation**: {a.activation_note}")
    r = a.robustness
    if r is not None and r.n_finished:
        own = ", ".join(f"{100 * r.within_best.get(m, math.nan):.0f}% within {100 * m:.0f} pp" for m in MARGINS)
        ref = ", ".join(f"{100 * r.within_reference.get(m, math.nan):.0f}% within {100 * m:.0f} pp" for m in MARGINS)
        items.append(f"**Robustness** (of {r.n_finished} finished configurations): {own} of its own best; {ref} of the "
                     f"common reference ({r.reference_from or 'none'}); learning-rate band within {100 * r.margin:.0f} pp "
                     f"of its best: {_band_line(r)}")
    if a.trust is not None:
        line = f"**Budget trust**: {a.trust.verdict()}"
        if a.trust.ok:
            line += f" (ρ at epoch 1: {a.trust.rho[0]:.2f})" if math.isfinite(a.trust.rho[0]) else ""
        items.append(line)
    return items


def _importance_items(f: FanovaResult | None, p: PedAnovaResult | None, trials: str) -> list[str]:
    items: list[str] = []
    if f is not None:
        text = (f"**fANOVA** on {trials} (global variance; {f.evaluator}, {f.seeds} seeds × {f.n_trees} trees; "
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
    if p is not None and p.ok:
        items.append(f"**PED-ANOVA** on {trials} (what reaching the top {100 * p.target_quantile:.0f}% needs; {p.n_top} of "
                     f"{p.n_trials} trials): " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in p.ranked()))
    elif p is not None:
        items.append(f"**PED-ANOVA** on {trials}: {p.status}")
    return items


def budget_line(records: list[StudyRecord]) -> str:
    """The search budget the studies used (trials, epochs, sampler, evaluation seeds) beside the paper's."""
    budgets: dict[str, int] = {}
    for record in records:
        info, evaluation = record.info, record.evaluation
        text = (f"{info.trials if info.trials is not None else len(record.trials)} trials × {record.epochs or '?'} epochs per study, "
                f"{info.sampler or '?'} sampler")
        if evaluation is not None and evaluation.seeds:
            text += (f"; best configuration re-evaluated over seeds {', '.join(map(str, evaluation.seeds))}"
                     f" for {evaluation.epochs if evaluation.epochs is not None else '?'} epochs")
        budgets[text] = budgets.get(text, 0) + 1
    ours = "; ".join(f"{text} ({n} {'study' if n == 1 else 'studies'})" for text, n in budgets.items())
    return (f"**Budget**: {ours or 'no studies'}. The paper: random search over 60 configurations per rule, "
            "best errors within 500 epochs.")


def _fmt_best(best: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": best.dataset, "arch": best.arch, "rule": _rule_names(best),
        "complete trials": [f"{c} of {t}" for c, t in zip(best.trials_complete, best.trials_total)],
        "best val error (%)": best.best_val_error.map(pct),
        "test error at best (%)": best.test_error_at_best.map(pct),
        "evaluated test error (%)": [f"{pct(m)} ± {pct(s)} ({n} seeds)" if n else "–"
                                     for m, s, n in zip(best.evaluated_test_mean, best.evaluated_test_std, best.evaluated_seeds)],
    })


def _rule_names(best: pd.DataFrame) -> list[str]:
    """Labels, with the fixed activation added where a label repeats within a dataset and architecture."""
    repeats = best.groupby(["dataset", "arch", "label"])["label"].transform("size")
    return [f"{label} [{act}]" if n > 1 and act not in ("", "sampled") else label
            for label, n, act in zip(best.label, repeats, best.activation)]


def _fmt_compare(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": table.dataset, "family": table.family, "rule": table.label,
        "ours: test error (%)": table.ours_test_error.map(pct),
        "ours: which test error": [f"{b}: {t}" if t and t != b else b for b, t in zip(table.ours_basis, table.test_at)],
        "ours: protocol, sampler, fixed": [f"{p or 'not recorded'}, {s or '?'}, {f}" for p, s, f
                                           in zip(table.protocol, table.sampler, table.fixed)],
        "paper: test error (%)": table.paper_test_error.map(pct),
        "paper: protocol": table.paper_setup,
        "difference (pp)": [f"{100 * d:+.2f}" if not math.isnan(d) else "–" for d in table["diff"]],
        "paper: train error (%)": table.paper_train_error.map(pct), "note": table.paper_note,
    })


def _fmt_studies(records: list[StudyRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        info, evaluation = r.info, r.evaluation
        problems = protocol_problems(info)
        rows.append({"study": f"`{r.name}`", "protocol": info.protocol or "not recorded",
                     "sampler": info.sampler or "?", "budget": f"{info.trials if info.trials is not None else len(r.trials)}"
                     f" trials × {r.epochs or '?'} epochs", "fixed": fixed_text(info),
                     "sampled": ", ".join(sorted(info.space)) or "–",
                     "evaluation seeds": ", ".join(map(str, evaluation.seeds if evaluation else [])) or "–",
                     "paper's protocol?": "yes" if not problems else "no: " + "; ".join(problems)})
    return pd.DataFrame(rows)


def _fmt_pairs(analysis: Analysis) -> pd.DataFrame:
    rows = []
    for p in analysis.pairs:
        rows.append({"dataset": p.dataset, "arch": p.arch, "rule": p.label,
                     "diverged tanh / ReLU": f"{100 * p.tanh.divergence_rate:.0f}% / {100 * p.relu.divergence_rate:.0f}%",
                     "Δ median, all finished (pp, CI)": _diff_ci(p.on_all.median_diff, p.on_all.median_ci),
                     "Δ median, complete (pp, CI)": _diff_ci(p.on_complete.median_diff, p.on_complete.median_ci),
                     "Δ expected best of n (pp, CI)": (f"n={p.budget}: " + _diff_ci(p.best_diff, p.best_ci)) if p.budget else "–",
                     "Δ evaluated best (pp)": f"{100 * p.evaluated_diff:+.2f}" if math.isfinite(p.evaluated_diff) else "–",
                     "verdict": p.verdict})
    return pd.DataFrame(rows)


def _diff_ci(diff: float, ci: tuple[float, float]) -> str:
    if not math.isfinite(diff):
        return "–"
    return f"{100 * diff:+.2f} ({100 * ci[0]:+.2f}, {100 * ci[1]:+.2f})" if all(map(math.isfinite, ci)) else f"{100 * diff:+.2f}"


def _fmt_tunability(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "rule": table.name, "default config val error (%)": table.default_error.map(pct) + [
            "" if o == "complete" else f" ({o})" for o in table.default_outcome],
        "tuned best val error (%)": table.tuned_error.map(pct), "configurations": table.n_search,
        "tuning buys (pp)": [f"{100 * g:+.2f}" if math.isfinite(g) else "–" for g in table.gain],
    })


def _verdict_table(analyses: list[StudyAnalysis], best: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for a in analyses:
        b = best.loc[best.study == a.record.name].iloc[0]
        rows.append({
            "rule": a.name, "complete": b.trials_complete, "best val (%)": pct(b.best_val_error),
            "fANOVA top (global variance)": _importance_line(a.fanova),
            "PED-ANOVA top (reaching the top)": _ped_line(a.ped),
            "diverged or stalled": (f"{100 * a.outcomes.share_diverged:.0f}%"
                                    if a.outcomes and a.outcomes.n_finished else "–"),
            "tanh vs ReLU (sampled in the study)": a.effect.verdict if a.effect else "not searched",
            "Δ median tanh−ReLU (pp, CI)": (f"{100 * a.effect.median_diff:+.2f} ({100 * a.effect.median_ci[0]:+.2f}, "
                                            f"{100 * a.effect.median_ci[1]:+.2f})"
                                            if a.effect and math.isfinite(a.effect.median_diff) else "–"),
            "within 1 / 5 pp of own best": (" / ".join(f"{100 * a.robustness.within_best.get(m, math.nan):.0f}%"
                                                       for m in MARGINS) if a.robustness and a.robustness.n_finished else "–"),
            "within 1 / 5 pp of reference": (" / ".join(f"{100 * a.robustness.within_reference.get(m, math.nan):.0f}%"
                                                        for m in MARGINS)
                                             if a.robustness and a.robustness.within_reference else "–"),
            "tuning buys (pp)": (f"{100 * a.tunability.gain:+.2f}" if a.tunability and a.tunability.default_trial is not None
                                 and math.isfinite(a.tunability.gain) else "–"),
            "LR band (decades)": _band_line(a.robustness),
            "budget trust": a.trust.verdict() if a.trust else "–",
        })
    return pd.DataFrame(rows)


def report_blocks(analysis: Analysis, study_figures: dict[str, list[FigureBlock]],
                  group_figures: dict[tuple[str, str], list[FigureBlock]], artifact_note: str,
                  formats: tuple[str, ...], pair_figures: list[FigureBlock] | None = None) -> list[Block]:
    """The whole report: header, the studies' protocols and budgets, how to read it, best results, the paper,
    tanh vs ReLU pairs, then one section per group and rule."""
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
        Heading("Studies, protocols and budgets"),
        Paragraph(budget_line(records)),
        Table(_fmt_studies(records), "Every study covered: the protocol it ran, its sampler and budget, what it fixed and "
                                     "what it sampled. A study is the paper's protocol only if it says so and samples "
                                     "nothing the paper fixed (activation, alternation period) with random search."),
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
            "**Every finished trial counts.** A run that diverged (NaN loss) or stalled (error stayed at chance) is "
            "counted at its dataset's chance-level error, 1 − 1/classes; a run a pruner stopped is not a divergence and "
            "counts with the lowest validation error it reached before it was stopped (an upper bound of what it would "
            "have reached); a run that failed with an error or ran out of memory has no error and counts only in the "
            "shares. The default-configuration trial is never part of the search statistics. Importances and the "
            "activation tests are given on the complete trials and, when some did not complete, again on every "
            "finished trial; each line says which.",
            "**tanh vs ReLU**, two designs. *Paired studies* (one study per activation, same budget and sampler, each "
            "tuned on its own) are compared in their own section: divergence rates (bootstrap CI of the difference, "
            "Fisher's exact test), medians over every finished configuration and over complete ones, the expected best "
            "of n random configurations at the studies' budget, and the evaluated best over seeds. The verdict is the "
            "one over every finished configuration. *Activation sampled within one study* (a mixed categorical "
            "parameter) is labelled as such in the rule's section. Differences are tanh − ReLU, with percentile "
            "bootstrap 95% CIs and a two-sided Mann-Whitney test. Verdict: *ReLU better* when the CI of the difference "
            "in medians lies above zero, *tanh better* when below, else *no clear difference*.",
            f"**Robustness**: the share of finished configurations within "
            f"{' and '.join(f'{100 * m:.0f}' for m in MARGINS)} percentage points (absolute) of the rule's own best, "
            "and within the same margins of a common reference: BP's best on the same dataset and family (or the best "
            "rule's when no BP study is there). Diverged runs count at chance level, so they fall outside. The paper's "
            f"stability claims are judged on the share within {100 * MARGIN:.0f} pp of the reference (a worse rule "
            "with a tight spread does not come out steadier). The learning-rate band is the span in decades of each "
            f"learning rate among configurations within {100 * MARGIN:.0f} pp of the rule's own best.",
            f"**Budget trust**: Spearman ρ across configurations between validation error at epoch e and at their last "
            f"epoch, and the overlap of the top {TOP_K} at epoch e with the top {TOP_K} at the last epoch (ρ is high "
            "whenever chance-level runs separate from learning ones, even when the best few are ranked wrongly). Short "
            "runs and pruning are trusted from the epoch where both agree. The paper ran 500 epochs; these studies "
            "run far fewer.",
            "**Tunability** (Probst, Boulesteix and Bischl, JMLR 2019): the validation error of the rule's default "
            "configuration (one extra trial per study) against the tuned best at the study's budget; the difference is "
            "what tuning buys.",
            surrogate_methods(),  # issue 28 glue
            "**Compared with the published results**: our test error is the evaluated mean over seeds where the best "
            "configuration was re-evaluated, taken at each seed's best-validation epoch when the evaluation recorded "
            "it (the table says which), else the best trial's test error at its best-validation epoch. A row whose "
            "study did not run the paper's protocol says so on that row.",
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
    if analysis.pairs:
        blocks.append(Heading("tanh vs ReLU: one study per activation"))
        blocks.append(Paragraph(f"**Across rules**: {analysis.pairs_verdict}"))
        blocks.append(Table(_fmt_pairs(analysis), "tanh − ReLU per rule (percentage points, 95% bootstrap CIs); "
                                                  "negative favours tanh."))
        blocks.append(Bullets([f"**{p.label}** ({p.dataset} / {p.arch}): {p.summary()}" for p in analysis.pairs]))
        blocks += pair_figures or []
    if len(analysis.tunability):
        blocks.append(Heading("Tunability: how much tuning buys"))
        blocks.append(Table(_fmt_tunability(analysis.tunability), "Default configuration against the tuned best at the "
                                                                  "study's budget (validation error)."))

    for group, members in analysis.groups.items():
        done = [a for a in members if a.analysed]
        if not done:
            continue
        blocks.append(Heading(group_title(group)))
        blocks.append(Table(_verdict_table(done, best), "One row per rule: key numbers and verdicts."))
        claims = analysis.claims.get((group[0], _family(group[1])))
        if claims:
            blocks.append(Paragraph(f"**The paper's stability findings** (BP most stable, TP rules most sensitive, "
                                    f"alternating steadier than parallel), judged on the share of finished configurations "
                                    f"within {100 * MARGIN:.0f} pp of the common reference, over every study of "
                                    f"{group[0]} / {_family(group[1])}:"))
            blocks.append(Bullets(claims))
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
