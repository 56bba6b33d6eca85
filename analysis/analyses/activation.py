"""tanh vs ReLU: per rule, and pooled across rules.

Where a rule has one study per activation that sampled the same configurations (the pair shares
its draws), the two are compared configuration by configuration: the tanh − ReLU difference of
each configuration's error at the first rung (diverged runs at chance), decided by a sign test.
Pairs whose configurations differ are compared unpaired and decided by Mann-Whitney. Each pair's
one test is Holm-adjusted over every pair (a rule × architecture), and that test is the one
printed. The paired differences are pooled over every matched configuration, the CI from a
cluster bootstrap that resamples draws: configurations several rules shared move together, as
the design made them. A study that samples the activation itself is compared within the study.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from bioscale.contract import end_reason

from ..statistics.activation import TIE, ActivationEffect, activation_effect, format_effect
from ..statistics.design import fidelity_summary
from ..statistics.evidence import evidence
from ..statistics.outcomes import search_finished
from ..statistics.pairs import PAIRED, PairComparison, Pooled, compare_pairs, find_pairs, pooled
from .protocol import REDUCED_MARK, reduced_budgets
from ..report import Block, Bullets, Paragraph, Table
from . import _common as c

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..output import Output
    from ..results import Analysis, LoadedStudy

NAME = "activation"
TITLE = "tanh vs ReLU"
ORDER = 20


@dataclass
class Row:
    """One rule's comparison as the report prints it: difference (tanh − ReLU), CI, design and evidence."""

    dataset: str
    arch: str
    label: str
    design: str
    n: int
    diff: float
    low: float
    high: float
    verdict: str
    tanh_wins: int = 0
    relu_wins: int = 0
    test: str = ""  # the one test that decides the verdict
    p: float = math.nan  # its p-value
    p_adjusted: float = math.nan  # after Holm's correction over every pair
    exploratory: str = ""
    seed_spread: float = math.nan  # the larger evaluated test-error range over seeds of the two studies

    @property
    def below_spread(self) -> bool:
        """True when the difference is smaller than the seed spread of the evaluated best configurations."""
        return math.isfinite(self.seed_spread) and math.isfinite(self.diff) and abs(self.diff) < self.seed_spread


@dataclass
class Within:
    """tanh against ReLU within one study that samples the activation: on its complete trials and, when some did not
    complete, on every finished one (diverged at chance); how those ended per activation; the study's one line."""

    effect: ActivationEffect | None
    note: str
    incomplete: dict[str, dict[str, int]] = field(default_factory=dict)  # activation -> end reason -> count
    effect_all: ActivationEffect | None = None


def within(a: LoadedStudy) -> Within:
    """The within-study comparison of one analysed study (`effect` None when it did not sample both activations)."""
    effect, note = _effect(a)
    if effect is None:
        return Within(effect, note)
    found = Within(effect, note, incomplete=_incomplete_by_activation(a))
    if any(found.incomplete.values()):
        found.note += "; did not complete: " + "; ".join(
            f"{act} {sum(c.values())} ({', '.join(f'{k} {v}' for k, v in sorted(c.items()))})"
            for act, c in found.incomplete.items() if c)
        tanh, relu = ([t.value for t in a.everything if t.params.get("activation") == act] for act in ("tanh", "relu"))
        found.effect_all = activation_effect(tanh, relu)
        found.note += (f". On every finished trial (diverged at chance level {100 * a.chance:.0f}%): "
                       f"{format_effect(found.effect_all)}")
    return found


def _effect(a: LoadedStudy) -> tuple[ActivationEffect | None, str]:
    """tanh against ReLU within a study that samples the activation, on its complete trials (at the study's fidelity)."""
    trials = a.complete
    present = {t.params["activation"] for t in trials if "activation" in t.params}
    if not present:
        value = a.record.info.fixed.get("activation")
        return None, f"activation not searched{f' (fixed to {value})' if value else ''}"
    if not {"tanh", "relu"} <= present:
        return None, f"activation took only {', '.join(sorted(map(str, present)))} in the complete trials: nothing to compare"
    effect = activation_effect(*([t.value for t in trials if t.params.get("activation") == act] for act in ("tanh", "relu")))
    return effect, "activation sampled as a hyperparameter within this study, complete trials: " + format_effect(effect)


def _incomplete_by_activation(a: LoadedStudy) -> dict[str, dict[str, int]]:
    """Per activation, how its trials that did not complete (at the study's fidelity) ended (diverged ones end PRUNED)."""
    numbers = {t.number for t in a.complete}
    left = [t for t in search_finished(a.record.trials) if t.number not in numbers]
    return {act: dict(Counter(end_reason(t) for t in left if t.params.get("activation") == act))
            for act in ("tanh", "relu")}


def within_table(studies: Sequence[LoadedStudy], by_study: dict[str, Within]) -> pd.DataFrame:
    """One row per study that sampled both activations (activation.csv)."""
    rows = []
    for a in studies:
        w = by_study.get(a.record.name)
        if w is None or w.effect is None:
            continue
        e = w.effect
        rows.append({**c.identity(a), "design": "sampled within one study", "trials": "complete", "n_tanh": e.n_tanh,
                     "n_relu": e.n_relu, "not_complete_tanh": sum(w.incomplete.get("tanh", {}).values()),
                     "not_complete_relu": sum(w.incomplete.get("relu", {}).values()), "median_tanh": e.median_tanh,
                     "median_relu": e.median_relu, "median_diff": e.median_diff, "median_ci_low": e.median_ci[0],
                     "median_ci_high": e.median_ci[1], "best_quartile_diff": e.best_quartile_diff,
                     "best_quartile_ci_low": e.best_quartile_ci[0], "best_quartile_ci_high": e.best_quartile_ci[1],
                     "p_value": e.p_value, "verdict": e.verdict})
    return pd.DataFrame(rows)


@dataclass
class ActivationResult:
    """Every pair's row, the pooled estimate, and the studies that sampled the activation themselves."""

    rows: list[Row] = field(default_factory=list)
    pairs: list[PairComparison] = field(default_factory=list)
    pooled: Pooled | None = None
    sampled: list[tuple[str, str, str, object]] = field(default_factory=list)  # (dataset, arch, name, ActivationEffect)
    by_study: dict[str, Within] = field(default_factory=dict)  # every analysed study's within-study comparison
    within: pd.DataFrame = field(default_factory=pd.DataFrame)  # the within-study comparisons, one row per study
    fidelity: str = ""  # the budget the comparisons read (`design.fidelity_summary`)
    reduced: set[tuple[str, str, str]] = field(default_factory=set)  # (dataset, arch, label) of pairs at a reduced budget


def _spread(p: PairComparison) -> float:
    ranges = [max(e.errors) - min(e.errors) for e in (p.tanh.evaluated, p.relu.evaluated) if e is not None and e.n >= 2]
    return max(ranges) if ranges else math.nan


def row(p: PairComparison) -> Row:
    """The report row of one pair: paired when the studies sampled the same configurations, else unpaired medians."""
    if p.design == PAIRED:
        e = p.paired
        verdict = e.verdict + (f" — {TIE}" if e.ties == e.n else "")
        return Row(p.dataset, p.arch, p.label, PAIRED, e.n, e.median, e.ci[0], e.ci[1], verdict, e.tanh_wins,
                   e.relu_wins, p.test, e.sign_p, e.p_adjusted, evidence("paired", e.n).reason, _spread(p))
    e = p.on_all
    return Row(p.dataset, p.arch, p.label, "unpaired", min(e.n_tanh, e.n_relu), e.median_diff, e.median_ci[0],
               e.median_ci[1], e.verdict, test=p.test, p=e.p_value, p_adjusted=e.p_adjusted,
               exploratory=evidence("unpaired", min(e.n_tanh, e.n_relu)).reason, seed_spread=_spread(p))


def compute(results: Analysis) -> ActivationResult:
    """Rows for every pair (by group and family), the pooled paired estimate, within-study comparisons."""
    pairs = sorted(compare_pairs(find_pairs(results.records)), key=lambda p: ((p.dataset, p.arch), c.label_key(p.label)))
    by_study = {a.record.name: within(a) for a in results.studies if a.analysed}
    out = ActivationResult(rows=[row(p) for p in pairs], pairs=pairs, within=within_table(results.studies, by_study),
                           fidelity=fidelity_summary(results.records), by_study=by_study)
    paired = [p for p in pairs if p.design == PAIRED]
    out.pooled = pooled([p.paired for p in paired], [p.label for p in paired])
    out.sampled = [(a.record.dataset, a.record.arch, a.name, by_study[a.record.name].effect) for a in c.ordered(results)
                   if a.analysed and by_study[a.record.name].effect is not None]
    reduced = reduced_budgets(results.records)
    out.reduced = {(p.dataset, p.arch, p.label) for p in pairs if p.tanh.study in reduced or p.relu.study in reduced}
    return out


def draw(title: str, rows: list[Row], pool: Pooled | None, reduced: set[tuple[str, str, str]] = frozenset()) -> Figure:
    """Forest plot: one row per rule (paired: filled, unpaired: open), the pooled estimate as a diamond spanning its 95 %
    interval with the interval's whiskers and numbers, a neutral zero line; the key in a legend inside the figure."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon

    from ..plots import new_figure, styled

    colours = {"tanh better": "#0072B2", "ReLU better": "#E69F00", "no clear difference": "#555555"}
    with styled():
        n = len(rows) + (2 if pool else 0)
        fig, axes = new_figure(8.5, 0.32 * n + 2.6)
        ax = axes[0, 0]
        ax.axvline(0, color="#333333", lw=1, zorder=1)
        names = []
        for y, r in enumerate(rows):
            names.append(f"{_rule(r, reduced)} ({r.dataset}/{r.arch})")
            if not math.isfinite(r.diff):
                continue
            colour = colours.get(r.verdict, "#555555")
            ax.errorbar(100 * r.diff, y, xerr=[[100 * (r.diff - r.low)], [100 * (r.high - r.diff)]]
                        if math.isfinite(r.low) else None, fmt="o" if r.design == PAIRED else "s",
                        mfc=colour if r.design == PAIRED else "white", color=colour, ecolor=colour, capsize=3, ms=5,
                        zorder=3)
        if pool:
            y = len(rows) + 0.8
            names += ["", f"pooled ({pool.n_configs} configurations)"]
            m, lo, hi = 100 * pool.mean, 100 * pool.ci[0], 100 * pool.ci[1]
            ax.errorbar(m, y, xerr=[[m - lo], [hi - m]], fmt="none", ecolor="black", capsize=5, lw=1.2, zorder=3)
            ax.add_patch(Polygon([(lo, y), (m, y - 0.35), (hi, y), (m, y + 0.35)], closed=True, color="black", zorder=4))
            ax.annotate(f"{m:+.2f} pp ({lo:+.2f} to {hi:+.2f})", (hi, y), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize=8, zorder=5, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            low, high = ax.get_xlim()
            ax.set_xlim(low, high + 0.25 * (high - low))  # room for the pooled numbers inside the axes
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.7)
        ax.set_xlabel("tanh − ReLU validation error (percentage points)\n← tanh better      ReLU better →")
        key = [Line2D([], [], color=colour, marker="o", ls="", label=verdict) for verdict, colour in colours.items()]
        key += [Line2D([], [], color="#555555", marker="o", ls="",
                       label="paired over the same configurations (sign-test CI of the median)"),
                Line2D([], [], color="#555555", marker="s", mfc="white", ls="", label="unpaired medians (bootstrap CI)")]
        if pool:
            key.append(Line2D([], [], color="black", marker="D", ls="", label="pooled, 95% CI (diamond and whiskers)"))
        fig.legend(handles=key, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
        fig.suptitle(title)
    return fig


def _rule(r: Row, reduced: set[tuple[str, str, str]]) -> str:
    """The row's rule label, marked † when its pair ran at a reduced budget."""
    return r.label + (f" {REDUCED_MARK}" if (r.dataset, r.arch, r.label) in reduced else "")


def _fmt(rows: list[Row], reduced: set[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "dataset": r.dataset, "arch": r.arch, "rule": _rule(r, reduced), "design": r.design, "configurations": r.n,
        "tanh − ReLU (pp)": c.pp(r.diff), "95% CI (pp, unadjusted)": c.ci(r.low, r.high),
        "tanh / ReLU better in": f"{r.tanh_wins} / {r.relu_wins}" if r.design == PAIRED else "–",
        "test": r.test, "p": f"{r.p:.3g}" if math.isfinite(r.p) else "–",
        "Holm-adjusted p": f"{r.p_adjusted:.3g}" if math.isfinite(r.p_adjusted) else "–",
        "seed spread (pp)": c.pct(r.seed_spread),
        "verdict": r.verdict + (" *(exploratory)*" if r.exploratory else "")
        + (" *(smaller than the seed spread)*" if r.below_spread else "")} for r in rows])


def render(computed: ActivationResult, out: Output, figures: str) -> list[Block]:
    """The pooled answer, the forest plot, the per-rule table; per-pair figures on --figures all."""
    rows = computed.rows
    blocks: list[Block] = []
    if not rows and not computed.sampled:
        return [Paragraph("No study compares tanh with ReLU (run with `--activations tanh,relu`, or sample `activation`).")]
    blocks.append(Paragraph(f"Configurations are compared at {computed.fidelity}."))
    if computed.pooled:
        blocks.append(Paragraph(f"**Across rules (paired)**: {computed.pooled.line()}."))
    unpaired = [r for r in rows if r.design != PAIRED]
    if unpaired:
        blocks.append(Paragraph(f"{len(unpaired)} pair(s) sampled different configurations and are compared unpaired "
                                f"(differences in medians): {c.names_line([r.label for r in unpaired])}."))
    frame = pd.DataFrame([{"dataset": r.dataset, "arch": r.arch, "label": r.label, "design": r.design, "n": r.n,
                           "diff_tanh_minus_relu": r.diff, "ci_low": r.low, "ci_high": r.high, "tanh_better_in": r.tanh_wins,
                           "relu_better_in": r.relu_wins, "test": r.test, "p": r.p, "p_holm": r.p_adjusted, "verdict": r.verdict,
                           "exploratory": r.exploratory, "seed_spread": r.seed_spread,
                           "smaller_than_seed_spread": r.below_spread} for r in rows])
    if len(frame):
        out.table(frame, "activation_pairs")
        blocks += out.figure(draw, ("tanh − ReLU per rule and pooled", rows, computed.pooled, computed.reduced), "summary",
                             "tanh-vs-relu-forest", "tanh − ReLU validation error per rule (95% CI) and pooled over "
                             "every matched configuration; left of zero favours tanh")
        blocks.append(Table(_fmt(rows, computed.reduced), "tanh − ReLU per rule × architecture, errors as fractions "
                                        "shown in percentage points; negative favours tanh. Paired: median over the "
                                        "configurations both studies ran (diverged at chance), the sign test's CI; "
                                        "unpaired: median difference, bootstrap CI. The verdict is the named test's, "
                                        f"Holm-adjusted over the {len(rows)} pairs at 5% (activation_pairs.csv holds the "
                                        "fractions)."))
        if any(r.exploratory for r in rows):
            blocks.append(Paragraph("*Exploratory* rows rest on fewer configurations than their test needs (see the "
                                    "glossary): read their verdict as a direction, not a finding."))
    for p in computed.pairs:
        from .. import plots
        blocks += out.figure(plots.pair_figure, (f"{p.dataset} / {p.arch} / {p.label}", p), c.folder((p.dataset, p.arch)),
                             f"{p.label}-tanh-vs-relu", f"{p.label} on {p.dataset} / {p.arch}: every finished "
                             "configuration of the tanh and the ReLU study, and the expected best after n",
                             level="all", studies=[p.tanh.study, p.relu.study])
    if computed.sampled:
        if len(computed.within):
            out.table(computed.within, "activation")
        blocks.append(Bullets([f"**{name}** ({d} / {a}), activation sampled within the study: {e.verdict}, median tanh − "
                               f"ReLU {c.pp(e.median_diff)} pp (95% CI {c.ci(*e.median_ci)}), n = {e.n_tanh} tanh, "
                               f"{e.n_relu} ReLU" + evidence("unpaired", min(e.n_tanh, e.n_relu)).mark()
                               for d, a, name, e in computed.sampled]))
    return blocks
