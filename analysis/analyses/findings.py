"""Findings: the report's answers first: which rules are best, which are most sensitive, tanh or ReLU, what tuning buys,
and the caveats that apply at this budget. Every sentence names the evidence it rests on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import math
from dataclasses import dataclass, field

import numpy as np

from bioscale import contract
from bioscale.contract import search_trials

from ..statistics.design import design_summary, fidelity_summary
from ..statistics.evidence import LEARNED_SHARE, evidence, learned, learned_threshold
from .protocol import PAPER_BUDGET, REDUCED_MARK, by_reason, reduced_budgets
from ..statistics.stability import MARGIN, Robustness
from ..report import Block, Bullets, Paragraph
from . import _common as c

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..output import Output
    from ..results import Analysis, LoadedStudy

NAME = "findings"
TITLE = "Findings"
ORDER = 0
NEEDS = ("activation", "flags", "outcomes", "robustness", "tunability")


@dataclass
class Ranked:
    """One study in the ranking: its error (fraction), the seed range, what the error is."""

    name: str
    label: str
    activation: str | None
    error: float
    low: float
    high: float
    n_seeds: int
    basis: str  # "evaluated" or "best validation"
    within_5pp: float = math.nan  # share of finished configurations within 5 pp of the common reference (BP's best)
    n_finished: int = 0
    seeds: list[float] = field(default_factory=list)  # each evaluated seed's error (diverged at chance), or the best
    ci: tuple[float, float] = (math.nan, math.nan)  # 95% interval of the error (evaluated: seeds and test-set size)
    trial: str = ""  # the incumbent, e.g. "trial 7" or "trial 6, the default configuration"

    @property
    def share_ci(self) -> tuple[float, float]:
        """Wilson 95% interval of the share within 5 pp of the reference."""
        return wilson(self.within_5pp, self.n_finished)


@dataclass
class Findings:
    """The numbers behind the findings block."""

    ranking: dict[tuple[str, str], list[Ranked]] = field(default_factory=dict)
    chance: dict[tuple[str, str], float] = field(default_factory=dict)
    bp: dict[tuple[str, str], float] = field(default_factory=dict)
    items: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    reduced: dict[str, str] = field(default_factory=dict)  # study name (marked †) -> why its budget is reduced


def wilson(share: float, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a share observed over n configurations (scipy's binomtest)."""
    if not n or not math.isfinite(share):
        return math.nan, math.nan
    from scipy import stats

    ci = stats.binomtest(int(round(share * n)), n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def incumbent(trials) -> str:
    """The trial `contract.best_trial` picks, named: 'trial 7' or 'trial 6, the default configuration'."""
    best = contract.best_trial(trials)
    if best is None:
        return ""
    return f"trial {best.number}" + (", the default configuration" if contract.is_default_config(best) else "")


def _ranked(a, r: Robustness | None) -> Ranked | None:
    ev, name = a.evaluated, a.name
    share = r.within_reference.get(MARGIN, math.nan) if r is not None else math.nan
    n = r.n_finished if r is not None else 0
    trial = incumbent(a.record.trials)
    errors = a.judged_errors
    if ev is not None and ev.n:
        chosen = a.record.evaluation.trial if a.record.evaluation is not None else None
        best = contract.best_trial(a.record.trials)
        if chosen is not None and best is not None and chosen != best.number:  # evaluated before the default competed
            trial = f"trial {chosen} re-evaluated, while the study's best is {trial}"
        return Ranked(name, a.record.label, c.activation(a), float(np.mean(errors)), min(errors), max(errors), len(errors),
                      "evaluated", share, n, errors, ev.interval, trial)
    if errors:
        return Ranked(name, a.record.label, c.activation(a), errors[0], errors[0], errors[0], 0, "best validation", share,
                      n, errors, trial=trial)
    return None


def _ties(rows: list[Ranked]) -> list[Ranked]:
    """The studies whose seed range overlaps the best one's (ties with the best)."""
    best = rows[0]
    return [r for r in rows if r.low <= best.high]


def compute(results: Analysis) -> Findings:
    """Ranking per group, the findings sentences and the caveats."""
    out = Findings()
    reduced = reduced_budgets(results.records)
    robust = results.computed["robustness"].by_study
    out.reduced = {a.name: reduced[a.record.name] for a in c.ordered(results) if a.record.name in reduced}
    for group, members in c.groups(results).items():
        rows = [r for r in (_ranked(a, robust.get(a.record.name)) for a in members if a.analysed) if r is not None]
        if not rows:
            continue
        rows.sort(key=lambda r: (r.error, c.label_key(r.label, r.activation)))
        out.ranking[group] = rows
        out.chance[group] = next(a.chance for a in members if a.analysed)
        bps = [r.error for r in rows if r.label == "bp"]
        if bps:
            out.bp[group] = min(bps)
    for group, rows in out.ranking.items():
        chance = out.chance[group]
        ties = _ties(rows)
        basis = rows[0].basis
        spread = (f"seed range {c.pct(rows[0].low)}–{c.pct(rows[0].high)}%" if rows[0].n_seeds > 1 else
                  f"{rows[0].n_seeds or 'no'} evaluation seed{'s' if rows[0].n_seeds != 1 else ''}")
        text = (f"**{c.title(group)}, best**: {rows[0].name} at {c.pct(rows[0].error)}% ({basis} error at the full "
                f"budget, {rows[0].trial or 'trial not recorded'}; {spread}"
                + (f"; 95% CI {c.pct(rows[0].ci[0])}–{c.pct(rows[0].ci[1])}%" if math.isfinite(rows[0].ci[0]) else "")
                + ")")
        if len(ties) > 1:
            text += (f"; tied within seed spread with {len(ties) - 1} more: " +
                     c.names_line([f"{r.name} {c.pct(r.error)}%" for r in ties[1:]], 6))
        did = [r for r in rows if learned(r.seeds, chance)]
        never = [r for r in rows if not learned(r.seeds, chance)]
        text += (f". Worst: {rows[-1].name} at {c.pct(rows[-1].error)}%. {len(did)} of {len(rows)} studies learned "
                 f"(every evaluated seed at most {c.pct(learned_threshold(chance), 0)}% error, i.e. "
                 f"{100 * LEARNED_SHARE:.0f}% of chance, {c.pct(chance, 0)}%)")
        if never:
            text += ": not " + c.names_line([r.name for r in never], 6)
        out.items.append(text + ".")
        sentence = sensitivity(group, did, never)
        if sentence:
            out.items.append(sentence)
    act = results.computed.get("activation")
    if act is not None and act.pooled is not None:
        p = act.pooled
        paper = {"tanh better": " tanh, the paper's choice, did better at this budget; ReLU ran in a search space and "
                                "initialisation chosen for tanh, so this is not ReLU at its best.",
                 "ReLU better": " ReLU did better than the paper's tanh at this budget, in a search space and "
                                "initialisation chosen for tanh."}.get(p.verdict, "")
        out.items.append(f"**tanh vs ReLU** (paired): {p.line()}"
                         + evidence("paired", p.n_configs).mark() + "." + paper)
    elif act is not None and act.rows:
        verdicts = [r.verdict for r in act.rows]
        out.items.append(f"**tanh vs ReLU** (unpaired, {len(act.rows)} rule × architecture pairs, Mann-Whitney, "
                         "Holm-adjusted): " + ", ".join(
            f"{verdicts.count(v)} {v}" for v in sorted(set(verdicts))) + "; no pair sampled the same configurations, so "
            "nothing is pooled.")
    tune = results.computed.get("tunability")
    if tune is not None and tune.gains:
        within = sum(g.within_noise for g in tune.gains)
        out.items.append(f"**What tuning buys**: median {c.pp(tune.median)} pp of validation error over the default "
                         f"configuration ({len(tune.gains)} studies), against a noise scale of about "
                         f"{c.pct(tune.median_noise)} pp; {within} of {len(tune.gains)} gains are within the noise (ties).")
    out.caveats = caveats(results)
    if out.reduced:
        out.caveats.insert(0, f"Reduced budget ({REDUCED_MARK}): " + "; ".join(
            f"{c.names_line(names)} at {reason}" for reason, names in by_reason(out.reduced).items()) + ".")
    return out


def sensitivity(group: tuple[str, str], did: list[Ranked], never: list[Ranked]) -> str:
    """The sensitivity sentence of one group: among studies that learned, the shares within 5 pp of BP's best, with
    their n and Wilson interval; equal shares stay tied, and a study that never learned is not ranked."""
    ranked = [r for r in did if math.isfinite(r.within_5pp)]
    if len(ranked) < 2:
        return ""
    ev = evidence("sensitivity", min(r.n_finished for r in ranked))
    low, high = min(r.within_5pp for r in ranked), max(r.within_5pp for r in ranked)
    skipped = f"; not ranked (never learned): {c.names_line([r.name for r in never], 6)}" if never else ""
    scale = (f"share of a study's configurations within {100 * MARGIN:.0f} pp of the common reference (BP's best on "
             "the same data and architecture), among studies that learned")

    def listed(rows: list[Ranked]) -> str:
        by: dict[int, list[str]] = {}  # studies of one share and n print their interval once
        for r in sorted(rows, key=lambda r: r.name):
            by.setdefault(r.n_finished, []).append(r.name)
        share = rows[0].within_5pp
        return "; ".join(f"{c.names_line(names, 6)} ({c.pct(share, 0)}% of {n}{' each' if len(names) > 1 else ''}, "
                         f"95% CI {c.pct(wilson(share, n)[0], 0)}–{c.pct(wilson(share, n)[1], 0)}%)"
                         for n, names in sorted(by.items(), reverse=True))

    if low == high:
        return (f"**{c.title(group)}, sensitivity** ({scale}): a tie: all {len(ranked)} at {c.pct(low, 0)}%"
                + skipped + ev.mark() + ".")
    most = [r for r in ranked if r.within_5pp == low]
    least = [r for r in ranked if r.within_5pp == high]
    apart = max(r.share_ci[1] for r in most) < min(r.share_ci[0] for r in least)
    return (f"**{c.title(group)}, sensitivity** ({scale}): most sensitive {listed(most)}; least sensitive "
            f"{listed(least)}" + ("" if apart else "; their intervals overlap, so the order is not resolved at this n")
            + skipped + ev.mark() + ".")


def caveats(results: Analysis) -> list[str]:
    """What limits the findings at this budget: trials and epochs against the paper's, flags, detection, shared draws."""
    found = []
    analysed = [a for a in results.studies if a.analysed]
    if analysed:
        records = [a.record for a in analysed]
        found.append(f"Design: {design_summary(records)}. Sensitivity, importances and tanh − ReLU read "
                     f"{fidelity_summary(records)}; best errors and the ranking read the full budget.")
        fewest = min(len(search_trials(a.record.finished)) for a in analysed)
        found.append(f"Budget: {budget_span(analysed)} per study; the paper ran {PAPER_BUDGET[0]} × {PAPER_BUDGET[1]}. "
                     + ("Importances, stability shares and budget trust rest on too few configurations and are marked "
                        "exploratory." if fewest < evidence("importance", 0).needed else ""))
    flags = results.computed.get("flags")
    if flags is not None and flags.n_studies:
        from .flags import AT_EDGE, HALVED, NOT_CONVERGED, SEED_SPREAD, split_line

        n = flags.n_studies
        found.append(f"Not converged: {flags.count(NOT_CONVERGED)} of {n} studies' best configuration was still improving "
                     "at the last epoch; their errors overstate what the rule reaches.")
        found.append(f"Best at an edge: in {flags.count(AT_EDGE)} of {n} studies the best configuration took the largest "
                     "or smallest learning rate drawn, or a value at the edge of a sampled range: the optimum may lie "
                     "beyond.")
        if flags.count(HALVED):
            found.append(f"Whole-epoch alternation: {flags.count(HALVED)} studies trained their forward weights in half "
                         "of the epochs.")
        if flags.count(SEED_SPREAD):
            found.append(f"Seed spread: {flags.count(SEED_SPREAD)} studies' evaluated error varies over seeds by more "
                         "than 5 pp or more than tuning bought.")
        if flags.shared_configs:
            found.append(f"{flags.shared_configs} of {n} studies sampled the same {flags.shared_size} configurations "
                         "(one sampler seed): rules are compared on equal draws, but the space is covered thinly.")
        found.append("Noise floor: " + "; ".join(split_line(d, s) for d, s in flags.splits.items()) + ".")
    outcomes = results.computed.get("outcomes")
    if outcomes is not None and outcomes.studies:
        total = outcomes.total("n_finished")
        found.append(f"Runs near chance: {outcomes.total('near_chance')} of {total} configurations ended within 5 pp "
                     f"of chance ({outcomes.total('n_diverged')} diverged, {outcomes.total('n_stalled')} stalled; stall "
                     f"detection {outcomes.detection}).")
    return found


def budget_span(studies: Sequence[LoadedStudy]) -> str:
    """'24 configurations × 10 epochs' over the studies' finished searches, ranges where they differ."""
    trials = sorted({len(search_trials(a.record.finished)) for a in studies})
    epochs = sorted({a.record.epochs or 0 for a in studies})
    return f"{_span(trials)} configurations × {_span(epochs)} epochs"


def _span(values: list[int]) -> str:
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}–{values[-1]}"


def draw(title: str, ranking: dict, chance: dict, bp: dict) -> Figure:
    """One panel per (dataset, arch): studies ranked by error with their seed range on a log axis; chance dotted, BP dashed.

    A log axis spreads the best rules (a few percent) that a linear 0–100 % axis crushes together;
    BP's reference line is drawn beneath the seed bars, and its value is written above the panel.
    """
    import matplotlib as mpl

    from ..palette import series_style
    from ..plots import new_figure, styled

    groups = list(ranking)
    height = max(len(rows) for rows in ranking.values())
    positive = [100 * v for rows in ranking.values() for r in rows for v in (r.low, r.error) if v > 0]
    floor = 10 ** math.floor(math.log10(0.8 * min(positive))) if positive else 0.1
    with styled():
        fig, axes = new_figure(5.2 * len(groups) + 0.6, 0.26 * height + 2.0, 1, len(groups), sharex=True)
        for ax, group in zip(axes[0], groups):
            rows = ranking[group]
            for y, r in enumerate(rows):
                colour = series_style(r.label, r.activation if r.activation in ("tanh", "relu") else None).color
                low, high, error = (max(floor, 100 * v) for v in (r.low, r.high, r.error))  # 0 % sits at the floor
                ax.plot([low, high], [y, y], color=colour, lw=4, alpha=0.7, solid_capstyle="butt", zorder=3)
                ax.plot(error, y, "o", color=colour, mec="black", mew=0.5, ms=6, zorder=4)
            ax.axvline(100 * chance[group], color="#555555", ls=":", lw=1.2, label="chance", zorder=1)
            if group in bp:
                ax.axvline(100 * bp[group], color="#0173B2", ls="--", lw=1, alpha=0.6, label="BP (best)", zorder=1)
                ax.annotate(f"BP {100 * bp[group]:.1f}%", (100 * bp[group], 1), xycoords=("data", "axes fraction"),
                            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8,
                            color="#0173B2")
            ax.set_yticks(range(len(rows)), [r.name + ("" if r.basis == "evaluated" else " (val.)") for r in rows],
                          fontsize=8)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_xscale("log")
            ax.set_xlim(floor, 100)
            ax.xaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
            ax.set_xlabel("test error (%, log scale), mean and range over seeds")
            ax.set_title(c.title(group), fontsize=10, pad=14)
            ax.legend(loc="lower left", fontsize=8, framealpha=0.9)  # the empty corner: best top left, worst bottom right
        fig.suptitle(title)
    return fig


def render(computed: Findings, out: Output, figures: str) -> list[Block]:
    """The findings as bullets, the ranking figure, and the caveats."""
    if not computed.ranking:
        return [Paragraph("No study has a complete configuration: nothing to report yet.")]
    blocks: list[Block] = [Bullets(computed.items)]
    blocks += out.figure(draw, ("Rules ranked by error (evaluated over seeds where re-evaluated)", computed.ranking,
                                computed.chance, computed.bp), "summary", "ranking",
                         "Rules ranked by test error of their best configuration, evaluated over seeds (log axis; bar: "
                         "seed range; '(val.)': not re-evaluated, its best validation error); dotted: chance level; "
                         "dashed: BP's best" + (f"; {REDUCED_MARK}: reduced budget (see the caveats)"
                                                if computed.reduced else ""))
    blocks.append(Paragraph("**Caveats at this budget**:"))
    blocks.append(Bullets(computed.caveats))
    return blocks
