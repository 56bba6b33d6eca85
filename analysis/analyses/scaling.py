"""Scaling: each rule's test error and gap to BP per dataset and architecture, from the easiest task to the hardest,
beside the paper's Table 1, with a verdict per rule (the gap grows, holds or shrinks) and the rank agreement with the paper.

Shown only when the studies hold more than one task (dataset x architecture). Methods, as the report states them:
- A cell is a rule's evaluated test error on one task: the mean over the evaluation seeds (a diverged seed counts at
  chance level); a study that was not re-evaluated counts with its best trial's test error, marked. A rule with studies
  of several activations counts with its tanh study (the paper's), else its lowest error.
- Its standard error adds the seed spread (sample sd / sqrt(seeds)) and the test set's size (binomial, e(1-e)/n):
  se^2 = sd^2/k + e(1-e)/n. A gap to BP adds both cells' variances (conservative: both share one test set).
- Tasks are ordered by BP's error (a task without BP by its best rule's error).
- Verdict: d = gap on the hardest task - gap on the easiest, among the tasks where the rule and BP both have a cell,
  with a 95 % interval d +/- 1.96 se. "grows" when the interval lies above 0, "shrinks" when below, "holds" when it
  lies within +/- HOLD (the larger of 1 pp and a quarter of the easy task's gap), else "cannot tell".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..statistics.evaluation import standard_error
from .paper import arch_family, paper_dataset, published
from .protocol import PAPER_BUDGET, REDUCED_MARK, by_reason, reduced_budgets
from ..report import Block, Paragraph, Table
from . import _common as c
from .findings import budget_span

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..output import Output
    from ..results import Analysis, LoadedStudy

NAME = "scaling"
TITLE = "Scaling: each rule's gap to BP from the easiest task to the hardest"
ORDER = -1  # opens the findings when there is more than one task
Z = 1.96  # a 95 % normal interval
HOLD = 0.01  # the gap "holds" when its change lies within the larger of this (1 pp) and HOLD_SHARE of the easy gap
HOLD_SHARE = 0.25
VERDICTS = ("grows", "holds", "shrinks", "cannot tell")


@dataclass
class Cell:
    """One rule on one task: its test error (fraction) with a standard error, and what it rests on."""

    dataset: str
    arch: str
    label: str
    study: str
    error: float
    se: float
    n_seeds: int
    n_test: int
    basis: str  # "evaluated" or "best trial"

    @property
    def task(self) -> tuple[str, str]:
        """(dataset, arch)."""
        return (self.dataset, self.arch)


@dataclass
class Scaling:
    """The table (one row per rule and task), the verdict per rule, and the rank agreement with the paper per task."""

    tasks: list[tuple[str, str]] = field(default_factory=list)  # easiest first
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    budget: str = ""


def cell_of(a: LoadedStudy, test_error_at_best: float) -> Cell | None:
    """A study's cell: its evaluated test error over seeds (diverged seeds at chance), else its best trial's test error."""
    sizes = c.splits(a.record.dataset)
    n_test = sizes[2] if sizes else 0
    ev = a.evaluated
    if ev is not None and (ev.n or ev.diverged):
        errors = ev.with_diverged
        k, basis = len(errors), "evaluated"
    elif math.isfinite(test_error_at_best):
        errors, k, basis = [float(test_error_at_best)], 0, "best trial"
    else:
        return None
    return Cell(a.record.dataset, a.record.arch, a.record.label, a.record.name, float(np.mean(errors)),
                standard_error(errors, n_test), k, n_test, basis)


def _chosen(results: Analysis) -> dict[tuple[str, str], dict[str, Cell]]:
    """{task: {label: cell}}: per rule its tanh study where it has one, else its lowest error."""
    at_best = {row.study: row.test_error_at_best for row in results.best.itertuples()} if len(results.best) else {}
    found: dict[tuple[str, str], dict[str, tuple[bool, Cell]]] = {}
    for a in results.studies:
        if not a.analysed or not a.record.dataset:  # a study bioscale did not write is no task
            continue
        cell = cell_of(a, at_best.get(a.record.name, math.nan))
        if cell is None:
            continue
        tanh = c.activation(a) == "tanh"
        held = found.setdefault(cell.task, {}).get(cell.label)
        if held is None or (tanh, -cell.error) > (held[0], -held[1].error):
            found[cell.task][cell.label] = (tanh, cell)
    return {task: {label: cell for label, (_, cell) in cells.items()} for task, cells in found.items()}


def order_tasks(cells: dict[tuple[str, str], dict[str, Cell]]) -> list[tuple[str, str]]:
    """Tasks from the easiest to the hardest: by BP's error, a task without BP by its best rule's error (after those with BP)."""
    def key(task: tuple[str, str]) -> tuple:
        bp = cells[task].get("bp")
        return (bp is None, bp.error if bp else min(x.error for x in cells[task].values()), task)

    return sorted(cells, key=key)


def verdict(easy_gap: float, easy_se: float, hard_gap: float, hard_se: float) -> tuple[str, float, float, float]:
    """(verdict, change in gap, interval low, high) from the gaps to BP on the easiest and the hardest task."""
    change = round(hard_gap - easy_gap, 12) + 0.0  # no "-0.00" from float noise
    half = Z * math.hypot(easy_se, hard_se)
    low, high = change - half, change + half
    hold = max(HOLD, HOLD_SHARE * abs(easy_gap))
    if not (math.isfinite(low) and math.isfinite(high)):
        return "cannot tell", change, low, high
    if low > 0:
        return "grows", change, low, high
    if high < 0:
        return "shrinks", change, low, high
    if -hold <= low and high <= hold:
        return "holds", change, low, high
    return "cannot tell", change, low, high


def compute(results: Analysis) -> Scaling:
    """The scaling table, one verdict per rule and Kendall's tau with the paper per task; empty with fewer than two tasks."""
    cells = _chosen(results)
    if len(cells) < 2:
        return Scaling()
    tasks = order_tasks(cells)
    paper = published()
    paper = paper[paper.table == 1]
    reduced = reduced_budgets(results.records)
    rows = []
    for rank, task in enumerate(tasks):
        bp = cells[task].get("bp")
        theirs = paper[(paper.dataset == paper_dataset(task[0])) & (paper.family == arch_family(task[1]))]
        their = dict(zip(theirs.label, theirs.test_error))
        for label, cell in sorted(cells[task].items(), key=lambda item: c.label_key(item[0])):
            gap = cell.error - bp.error if bp else math.nan
            gap_se = math.hypot(cell.se, bp.se) if bp else math.nan
            rows.append({"task_rank": rank, "dataset": task[0], "arch": task[1], "label": label, "study": cell.study,
                         "test_error": cell.error, "test_error_se": cell.se, "n_seeds": cell.n_seeds,
                         "n_test": cell.n_test, "basis": cell.basis, "gap_to_bp": gap, "gap_se": gap_se,
                         "gap_ci_low": gap - Z * gap_se, "gap_ci_high": gap + Z * gap_se,
                         "paper_test_error": their.get(label, math.nan),
                         "paper_gap_to_bp": their.get(label, math.nan) - their.get("bp", math.nan),
                         "reduced_budget": reduced.get(cell.study, "")})
    table = pd.DataFrame(rows)
    return Scaling(tasks=tasks, table=table, verdicts=_verdicts(table), agreement=_agreement(table, tasks),
                   budget=_budget(results, tasks))


def _verdicts(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for label, group in table[(table.label != "bp") & table.gap_to_bp.notna()].groupby("label", sort=False):
        group = group.sort_values("task_rank")
        easy, hard = group.iloc[0], group.iloc[-1]
        said, change, low, high = (verdict(easy.gap_to_bp, easy.gap_se, hard.gap_to_bp, hard.gap_se) if len(group) > 1
                                   else ("cannot tell", math.nan, math.nan, math.nan))  # one task: nothing to compare
        rows.append({"label": label, "verdict": said, "easy": c.title((easy.dataset, easy.arch)),
                     "hard": c.title((hard.dataset, hard.arch)) if len(group) > 1 else "", "change": change,
                     "change_ci_low": low, "change_ci_high": high, "n_tasks": len(group)})
    frame = pd.DataFrame(rows, columns=["label", "verdict", "easy", "hard", "change", "change_ci_low", "change_ci_high",
                                        "n_tasks"])
    return frame.iloc[sorted(range(len(frame)), key=lambda i: c.label_key(frame.label.iloc[i]))].reset_index(drop=True)


def _agreement(table: pd.DataFrame, tasks: list[tuple[str, str]]) -> pd.DataFrame:
    """Kendall's tau between our errors and the paper's over the rules both hold, per task with a paper column."""
    from scipy.stats import kendalltau

    rows = []
    for task in tasks:
        both = table[(table.dataset == task[0]) & (table.arch == task[1]) & table.paper_test_error.notna()]
        if both.empty:
            continue
        tau, p = kendalltau(both.test_error, both.paper_test_error) if len(both) >= 3 else (math.nan, math.nan)
        rows.append({"dataset": task[0], "arch": task[1], "n_rules": len(both), "kendall_tau": float(tau),
                     "p_value": float(p), "rules": ", ".join(both.label)})
    return pd.DataFrame(rows, columns=["dataset", "arch", "n_rules", "kendall_tau", "p_value", "rules"])


def _budget(results: Analysis, tasks: list[tuple[str, str]]) -> str:
    """'digits / fc 24 × 10 on 1,150 training examples; ...; the paper's 60 × 500': each task's own budget."""
    parts = []
    for task in tasks:
        studies = [a for a in results.studies if a.analysed and (a.record.dataset, a.record.arch) == task]
        sizes = c.splits(task[0])
        examples = f" on {sizes[0]:,} training examples" if sizes else ""
        parts.append(f"{c.title(task)} {budget_span(studies)}{examples}")
    return "; ".join(parts) + f"; the paper's {PAPER_BUDGET[0]} × {PAPER_BUDGET[1]}"


def draw(table: pd.DataFrame, tasks: list[tuple[str, str]]) -> Figure:
    """Two panels over the tasks, easiest first: each rule's test error, and its gap to BP (95 % interval); the paper's hollow."""
    from ..palette import series_style
    from ..plots import new_figure, styled

    with styled():
        fig, axes = new_figure(11.5, 4.6, 1, 2)
        left, right = axes[0]
        width = 0.6 / max(1, table.label.nunique())
        for i, (label, rows) in enumerate(sorted(table.groupby("label"), key=lambda item: c.label_key(item[0]))):
            style = series_style(label)
            x = rows.task_rank.to_numpy() + (i - (table.label.nunique() - 1) / 2) * width
            left.errorbar(x, 100 * rows.test_error, yerr=100 * Z * rows.test_error_se, fmt="o-", color=style.color,
                          ms=4, lw=1, capsize=2, label=label)
            left.plot(x, 100 * rows.paper_test_error, "o", mfc="none", color=style.color, ms=7)
            if label == "bp":
                continue
            right.errorbar(x, 100 * rows.gap_to_bp, yerr=100 * Z * rows.gap_se, fmt="o-", color=style.color, ms=4, lw=1,
                           capsize=2, label=label)
            right.plot(x, 100 * rows.paper_gap_to_bp, "o", mfc="none", color=style.color, ms=7)
        names = [c.title(t) for t in tasks]
        for ax, what in ((left, "test error (%)"), (right, "gap to BP (pp)")):
            ax.set_xticks(range(len(tasks)), names)
            ax.set_xlabel("task, easiest (by BP's error) to hardest")
            ax.set_ylabel(what)
        right.axhline(0, color="#0173B2", ls="--", lw=1)
        left.legend(fontsize=7, ncol=2, framealpha=0.9)
        fig.suptitle("Scaling: filled ours (95 % interval: seeds and test-set size), hollow the paper's Table 1")
    return fig


def render(computed: Scaling, out: Output, figures: str) -> list[Block]:
    """scaling.csv, scaling_verdicts.csv, scaling_agreement.csv; the figure, the table, one line per rule, the agreement."""
    if not computed.tasks:
        return []
    out.table(computed.table, "scaling")
    out.table(computed.verdicts, "scaling_verdicts")
    out.table(computed.agreement, "scaling_agreement")
    blocks: list[Block] = out.figure(draw, (computed.table, computed.tasks), "summary", "scaling",
                                     "Each rule's test error (left) and gap to BP (right) per task, easiest first; "
                                     "bars: 95 % intervals from the seed spread and the test set's size; hollow: the "
                                     "paper's Table 1")
    blocks.append(Table(_wide(computed), "Test error in percent (± 1.96 se) and gap to BP in pp per task, easiest first; "
                                         "[paper] beside ours where Table 1 has the cell; * not re-evaluated (best trial)"
                                         f"{f'; {REDUCED_MARK} a reduced budget' if computed.table.reduced_budget.any() else ''}."))
    for why, names in by_reason(dict(zip(computed.table.study, computed.table.reduced_budget))).items():
        if why:
            blocks.append(Paragraph(f"{REDUCED_MARK} {', '.join(names)}: {why}."))
    blocks.append(Paragraph("**Per rule**, the gap to BP from the easiest task to the hardest: " + "; ".join(
        _line(v) for v in computed.verdicts.itertuples()) + "."))
    for row in computed.agreement.itertuples():
        tau = f"τ = {row.kendall_tau:+.2f} (p = {row.p_value:.2g})" if math.isfinite(row.kendall_tau) else "τ: too few rules"
        blocks.append(Paragraph(f"**Rank agreement with the paper on {c.title((row.dataset, row.arch))}**: Kendall's "
                                f"{tau} over the n = {row.n_rules} rules both tables hold, at the budgets below (the paper's {PAPER_BUDGET[0]} × {PAPER_BUDGET[1]})."))
    blocks.append(Paragraph(f"**Budgets per task** (configurations × epochs per study): {computed.budget}."))
    blocks.append(Paragraph(
        f"Method: a cell's standard error adds the seed spread (sd²/seeds) and the test set's size (binomial e(1−e)/n); "
        f"a gap's adds BP's. A rule's gap *grows* (or *shrinks*) when the 95 % interval of its change from the easiest "
        f"task to the hardest lies above (below) zero, *holds* when it lies within ±max({100 * HOLD:.0f} pp, "
        f"{100 * HOLD_SHARE:.0f} % of the easy task's gap), else the evidence *cannot tell*. Tasks are ordered by BP's "
        f"error, so a task's place reflects its budget (below) as much as its data. Columns in scaling.csv (fractions)."))
    return blocks


def _line(v) -> str:
    if not v.hard:
        return f"{v.label}: cannot tell (one task with BP: {v.easy})"
    return (f"{v.label} {v.verdict} ({v.easy} → {v.hard}: {c.pp(v.change)} pp, 95 % {c.ci(v.change_ci_low, v.change_ci_high)})")


def _wide(computed: Scaling) -> pd.DataFrame:
    """One row per rule, two columns per task (error, gap), the paper's cell in brackets."""
    table = computed.table
    labels = sorted(table.label.unique(), key=c.label_key)
    wide = pd.DataFrame({"rule": labels})
    for task in computed.tasks:
        rows = table[(table.dataset == task[0]) & (table.arch == task[1])].set_index("label")
        name = c.title(task)
        wide[f"{name}: error (%)"] = [_cell(rows.loc[label], "test_error", "test_error_se") if label in rows.index
                                      else "–" for label in labels]
        wide[f"{name}: gap (pp)"] = [_cell(rows.loc[label], "gap_to_bp", "gap_se", gap=True)
                                     if label in rows.index and label != "bp" else "–" for label in labels]
    wide["gap"] = [computed.verdicts.set_index("label").verdict.get(label, "") for label in labels]
    return wide


def _cell(row, value: str, se: str, gap: bool = False) -> str:
    if not math.isfinite(row[value]):
        return "–"
    text = (c.pp(row[value]) if gap else c.pct(row[value])) + f" ± {c.pp(Z * row[se], sign=False)}"
    paper = row["paper_gap_to_bp" if gap else "paper_test_error"]
    if math.isfinite(paper):
        text += f" [{c.pp(paper) if gap else c.pct(paper)}]"
    return text + ("*" if row["basis"] != "evaluated" else "") + (f" {REDUCED_MARK}" if row["reduced_budget"] else "")
