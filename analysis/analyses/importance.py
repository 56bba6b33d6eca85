"""Hyperparameter importance: which parameters explain the error (fANOVA) and what the best configurations need (PED-ANOVA).

fANOVA shares of global variance over complete trials, log-scaled parameters on their log10
scale, mean over forest seeds (the ± is the forests' spread, not sampling uncertainty).
PED-ANOVA: how differently the top quantile is spread over each parameter. Below
`evidence.THRESHOLDS["importance"]` complete trials every share is marked exploratory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import pandas as pd

from bioscale import catalogue
from bioscale.values import CHOICES, LIMITS

from ..statistics.design import fidelity_summary
from ..statistics.evidence import EXPLORATORY, Evidence, evidence
from ..statistics.importance import (FanovaResult, PedAnovaResult, fanova_batch, log_scaled, most_important_first,
                                     ped_anova_importance, top_params, unify_distributions)
from ..report import Block, Paragraph, Table
from . import _common as c

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..output import Output
    from ..results import Analysis, LoadedStudy

NAME = "importance"
TITLE = "Hyperparameter importance"
ORDER = 30


@dataclass
class StudyImportance:
    """One study's shares (fractions) and the evidence they rest on."""

    study: str
    name: str
    dataset: str
    arch: str
    evidence: Evidence
    rule: str = ""
    fanova: dict[str, float] = field(default_factory=dict)  # overall shares
    ped: dict[str, float] = field(default_factory=dict)
    fanova_status: str = "ok"
    ped_status: str = "ok"
    detail: tuple = ()  # (FanovaResult, PedAnovaResult, trials frame, top params, log params) for per-study figures

    def top(self, k: int = 3, ped: bool = False) -> str:
        """'forward_lr 62%, sigma 20%, ...' of fANOVA (or PED-ANOVA), marked when they rest on too few trials."""
        shares, status = (self.ped, self.ped_status) if ped else (self.fanova, self.fanova_status)
        if not shares:
            return status
        ranked = most_important_first(shares)[:k]
        return ", ".join(f"{p} {100 * v:.0f}%" for p, v in ranked) + (f" *({EXPLORATORY})*" if not self.evidence.ok else "")


@dataclass
class Shares:
    """One study's importances: fANOVA and PED-ANOVA on its complete trials and, when some did not complete, on every
    finished one (diverged at chance); its log-scaled and most important parameters."""

    fanova: FanovaResult
    ped: PedAnovaResult
    fanova_all: FanovaResult | None
    ped_all: PedAnovaResult | None
    log_params: list[str]
    top_params: list[str]


def study_shares(a: LoadedStudy, fanova: FanovaResult, fanova_all: FanovaResult | None) -> Shares:
    """One study's `Shares`, given its fANOVA on complete and on every finished trial (`statistics.importance.fanova_batch`)."""
    merged, _ = unify_distributions(a.complete)
    ped = ped_anova_importance(a.complete)
    return Shares(fanova=fanova, ped=ped, fanova_all=fanova_all,
                  ped_all=ped_anova_importance(a.everything) if fanova_all is not None else None,
                  log_params=log_scaled(a.complete),
                  top_params=top_params(fanova, ped, [c for c in a.frame.columns if c in merged]))


@dataclass
class Importance:
    """Per (dataset, arch): each study's importances, in family order."""

    groups: dict[tuple[str, str], list[StudyImportance]] = field(default_factory=dict)
    by_study: dict[str, Shares] = field(default_factory=dict)  # every analysed study's, by study name
    long: pd.DataFrame = field(default_factory=pd.DataFrame)  # every share, one row per study, method, branch, param
    fidelity: str = ""  # the budget the shares read (`design.fidelity_summary`)
    columns: list[str] = field(default_factory=list)  # every heat map's columns, in one fixed order


def long_table(studies: Sequence[LoadedStudy], by_study: Mapping[str, Shares]) -> pd.DataFrame:
    """Every share as one row per study, trials (complete, all finished), method, branch and parameter (importance.csv)."""
    rows = []
    for a in studies:
        s = by_study.get(a.record.name)
        if s is None:
            continue
        base = c.identity(a)
        for trials, fanova, ped in (("complete", s.fanova, s.ped), ("all finished", s.fanova_all, s.ped_all)):
            if fanova is not None:
                for branch in [fanova.overall, *fanova.branches]:
                    for p in branch.params:
                        rows.append({**base, "trials": trials, "method": "fanova", "branch": branch.title,
                                     "n_trials": branch.n_trials, "param": p, "log10_scale": p in fanova.log_params,
                                     "importance": branch.mean.get(p, math.nan), "std": branch.std.get(p, math.nan),
                                     "status": branch.status})
            if ped is not None:
                for p, v in ped.importance.items():
                    rows.append({**base, "trials": trials, "method": "ped-anova",
                                 "branch": f"top {ped.target_quantile:.3g}", "n_trials": ped.n_trials, "param": p,
                                 "log10_scale": p in s.log_params, "importance": v, "std": math.nan,
                                 "status": ped.status})
    return pd.DataFrame(rows)


def column_order(names: Iterable[str]) -> list[str]:
    """Parameters in the order of bioscale's table of values (learning rates, Adam, rule settings, training), others after.

    One order for every heat map, whatever the shares: fc and lc, tanh and ReLU read column by column.
    """
    known = list(LIMITS) + list(CHOICES)
    return sorted(set(names), key=lambda p: (known.index(p), "") if p in known else (len(known), p))


def compute(results: Analysis) -> Importance:
    """Shares per analysed study with their evidence, and the heat maps' one column order."""
    analysed = [a for a in results.studies if a.analysed]
    forests = fanova_batch([(a.complete, a.everything) for a in analysed], results.seeds)
    out = Importance(by_study={a.record.name: study_shares(a, *f) for a, f in zip(analysed, forests)},
                     fidelity=fidelity_summary(results.records))
    out.long = long_table(results.studies, out.by_study)
    for group, members in c.groups(results).items():
        rows = []
        for a in members:
            if not a.analysed:
                continue
            shares = out.by_study[a.record.name]
            f, p = shares.fanova, shares.ped
            rows.append(StudyImportance(
                study=a.record.name, name=a.name, dataset=a.record.dataset, arch=a.record.arch, rule=a.record.rule,
                evidence=evidence("importance", f.overall.n_trials),
                fanova=dict(f.overall.mean) if f.overall.ok else {},
                ped=dict(p.importance) if p.ok else {}, fanova_status=f.overall.status, ped_status=p.status,
                detail=(f, p, a.frame, shares.top_params, shares.log_params)))
        if rows:
            out.groups[group] = rows
    out.columns = column_order(p for rows in out.groups.values() for r in rows for p in [*r.fanova, *r.ped])
    return out


def draw(title: str, rows: list[StudyImportance], columns: list[str]) -> Figure:
    """Heat map, rules (by family) × parameters (in the given order), shares in %, one colour bar; PED-ANOVA beside it."""
    import seaborn as sns

    from ..plots import new_figure, styled

    fanova = pd.DataFrame({r.name: r.fanova for r in rows}).T.reindex([r.name for r in rows])
    ped = pd.DataFrame({r.name: r.ped for r in rows}).T.reindex([r.name for r in rows])
    tables = [("fANOVA: share of variance (%)", fanova)] + ([("PED-ANOVA: what the top needs (%)", ped)]
                                                            if ped.notna().to_numpy().any() else [])
    labels = [r.name + (" *" if not r.evidence.ok else "") for r in rows]
    with styled():
        fig, axes = new_figure(1.0 * len(columns) * len(tables) + 4.5, 0.34 * len(rows) + 2.6, 1, len(tables),
                               sharey=True)
        for k, (ax, (name, table)) in enumerate(zip(axes[0], tables)):
            last = k == len(tables) - 1
            sns.heatmap(100 * table.reindex(columns=columns).astype(float), ax=ax, vmin=0, vmax=100, cmap="mako_r",
                        annot=True, fmt=".0f", annot_kws={"fontsize": 7}, cbar=last, linewidths=0.4, linecolor="white",
                        cbar_kws={"label": "share (%)"} if last else None)
            ax.set_facecolor("#eeeeee")
            ax.grid(False)
            families = [catalogue.family_of(r.rule) for r in rows]
            for i in range(1, len(rows)):
                if families[i] != families[i - 1]:
                    ax.axhline(i, color="black", lw=1.5)
            for i, r in enumerate(rows):  # a blank row says why: its status, e.g. too few complete trials
                status = r.fanova_status if table is fanova else r.ped_status
                if table.loc[r.name].isna().all() and status != "ok":
                    ax.text(len(columns) / 2, i + 0.5, status, ha="center", va="center", fontsize=7, color="#555555")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("hyperparameter")
            ax.set_yticks([i + 0.5 for i in range(len(labels))], labels, fontsize=8)
            ax.tick_params(axis="x", rotation=40, labelsize=8)
            for text in ax.get_xticklabels():
                text.set_horizontalalignment("right")
        axes[0, 0].set_ylabel("study (ordered by family)")
        note = "* exploratory: fewer complete trials than the shares need" if any(not r.evidence.ok for r in rows) else ""
        fig.suptitle(title + (f"\n{note}" if note else ""))
    return fig


def render(computed: Importance, out: Output, figures: str) -> list[Block]:
    """A heat map per group (key), a table of the top shares with their evidence, importance.csv; per study on all."""
    from .. import plots
    from ..statistics.stability import MARGIN

    blocks: list[Block] = [Paragraph(f"Importances read each configuration's error at {computed.fidelity}.")]
    if len(computed.long):
        out.table(computed.long, "importance")  # every column, whatever the data: a stable schema for scripts
    records = []
    for group, rows in computed.groups.items():
        folder = c.folder(group)
        n = sorted({r.evidence.n for r in rows})
        weak = [r for r in rows if not r.evidence.ok]
        if weak:
            blocks.append(Paragraph(f"**{c.title(group)}**: {len(weak)} of {len(rows)} studies have fewer than "
                                    f"{weak[0].evidence.needed} complete trials ({', '.join(map(str, n))}): their shares "
                                    f"are {EXPLORATORY}, a forest over this few points ranks parameters unreliably."))
        if not any(r.fanova or r.ped for r in rows):
            blocks.append(Paragraph(f"**{c.title(group)}**: no study has enough complete trials for importances."))
        else:
            blocks += out.figure(draw, (f"{c.title(group)}: hyperparameter importance per study", rows, computed.columns),
                                 folder,
                                 f"{folder}-importance-heatmap", f"{c.title(group)}: studies (by family) × hyperparameters; "
                                 "fANOVA share of variance (log parameters on log10 scale)"
                                 + (" and PED-ANOVA importance" if any(r.ped for r in rows) else "") + ", in %")
        for r in rows:
            f, p, frame, top, logs = r.detail
            if f.overall.ok or p.ok or f.branches:
                blocks += out.figure(plots.importance_figure, (r.name, f, p), folder, f"{r.name}-importance",
                                     f"{r.name}: fANOVA (global variance) and PED-ANOVA (top quantile) importances"
                                     + r.evidence.mark(), level="all", studies=[r.study])
            if len(frame) >= 2:
                blocks += out.figure(plots.sensitivity_figure, (r.name, frame, top, logs, MARGIN), folder,
                                     f"{r.name}-sensitivity", f"{r.name}: validation error against the most important "
                                     "hyperparameters", level="all", studies=[r.study])
            records.append({"dataset": r.dataset, "arch": r.arch, "study": r.name, "complete trials": r.evidence.n,
                            "fANOVA top 3": r.top(), "PED-ANOVA top 3": r.top(ped=True)})
    if records:
        blocks.append(Table(c.drop_constant(pd.DataFrame(records)), "The three largest shares per study (percent of the "
                                                                    "explained variance; importance.csv holds every share "
                                                                    "as a fraction)."))
    return blocks
