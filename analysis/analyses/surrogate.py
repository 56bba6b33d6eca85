"""Which changes buy the gain: ablation path, local importance and the strongest interaction, on one surrogate per study.

One random forest per study (`analysis/statistics/surrogate.py`) fitted to every finished search trial,
diverged ones at chance level; on it the ablation path from the default configuration to the best
(Fawcett and Hoos 2016, `analysis/statistics/ablation.py`), local parameter importance around the best
(Biedenkapp et al. 2018, `analysis/statistics/local_importance.py`) and the strongest pairwise interaction
(`analysis/statistics/interactions.py`). Thresholds (no forest below 8 finished trials, exploratory below 20
or 30, or when the forest's out-of-bag R² is low) are in `evidence.py`. Studies without a forest
are listed on one line per reason; figures are drawn per study at `--figures all`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..statistics import ablation, interactions, local_importance
from ..statistics.evidence import EXPLORATORY, MIN_OOB_R2, needed
from ..statistics.importance import usable_cores
from ..report import Block, Bullets, Paragraph, Table
from ..statistics.surrogate import N_TREES, SurrogateFit, fit_surrogate, fmt_value
from . import _common as c

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "surrogate"
TITLE = "Which changes buy the gain"
ORDER = 62  # right after "What tuning buys"
NEEDS = ("tunability",)

COLUMNS = ("study", "label", "dataset", "arch", "n_trials", "oob_r2", "analysis", "status", "step", "param", "from", "to",
           "value", "spread", "gain")  # ablation.csv, whatever the data: a stable schema for scripts


@dataclass
class StudySurrogate:
    """One study's surrogate and the three analyses on it."""

    name: str  # display name
    study: str  # storage name
    dataset: str
    arch: str
    fit: SurrogateFit
    path: ablation.AblationPath
    local: local_importance.LocalImportance
    pairs: interactions.Interactions

    @property
    def caveats(self) -> list[str]:
        """Why any of the three is exploratory (distinct reasons, in order)."""
        found: list[str] = []
        for result in (self.path, self.local, self.pairs):
            for reason in filter(None, result.caveat.split("; ")):
                if reason not in found:
                    found.append(reason)
        return found


@dataclass
class SurrogateResult:
    """Every study's surrogate analyses, and the median gain of tuning (from tunability) they explain."""

    studies: list[StudySurrogate] = field(default_factory=list)
    median_gain: float = math.nan

    @property
    def fitted(self) -> list[StudySurrogate]:
        """The studies with a surrogate."""
        return [s for s in self.studies if s.fit.ok]


def compute(results) -> SurrogateResult:
    """Fit each study's surrogate once; its ablation path, local importance and strongest interaction."""
    out = SurrogateResult(median_gain=results.computed["tunability"].median)
    from joblib import Parallel, delayed

    studies = [a for a in c.ordered(results) if not a.record.skipped]
    # One process per core, the studies in a few large batches: each study's forest is small, its fits many.
    jobs = max(1, min(usable_cores(), len(studies)))
    out.studies = Parallel(n_jobs=jobs, batch_size=max(1, len(studies) // (2 * jobs)))(delayed(_study)(a) for a in studies)
    return out


def _study(a) -> StudySurrogate:
    """One study's surrogate, its ablation path, local importance and strongest interaction."""
    r = a.record
    fit = fit_surrogate(r.trials, a.chance)  # a study not skipped knows its chance level
    return StudySurrogate(a.name, r.name, r.dataset, r.arch, fit, ablation.compute(r.trials, fit, r.rule, a.chance),
                          local_importance.compute(r.trials, fit), interactions.compute(r.trials, fit))


def _within_spread(path: ablation.AblationPath) -> bool:
    """True when the predicted improvement is within one sd over trees of each tree's own improvement (paired)."""
    return path.improvement <= path.improvement_spread


def _buys(path: ablation.AblationPath) -> str:
    if path.status == "empty":
        return "none: the default is the best"
    if not path.computed:
        return "–"
    names, share = path.most()
    if not names or not math.isfinite(share):
        return "no predicted gain"
    return (f"{' + '.join(names)} ({100 * share:.0f}% of {c.pct(path.improvement)} ± "
            f"{c.pct(path.improvement_spread)} pp)"
            + (" within the trees' spread" if _within_spread(path) else ""))


def _local(local: local_importance.LocalImportance, k: int = 2) -> str:
    if not local.computed:
        return "–"
    return ", ".join(f"{p} {100 * m:.0f}±{100 * s:.0f}%" for p, m, s in local.ranked()[:k])


def _pair(pairs: interactions.Interactions) -> str:
    top = pairs.strongest if pairs.computed else None
    if top is None:
        return "–"
    text = f"{top.first} × {top.second} {100 * top.share:.0f}±{100 * top.spread:.0f}%"
    return text + (" (negligible)" if top.share < interactions.NEGLIGIBLE else "")


def _tie_in(computed: SurrogateResult) -> str:
    """The sentence tying the ablation paths to what tuning buys."""
    text = (f"Tuning buys a median {c.pp(computed.median_gain)} pp over the default configuration (*What tuning buys*); "
            if math.isfinite(computed.median_gain) else "")
    named = [(s, *s.path.most()) for s in computed.fitted if s.path.computed and s.path.steps]
    named = [(s, names, share) for s, names, share in named if names and math.isfinite(share)]
    if named:
        text += "the ablation paths say which one or two changes buy most of it: " + "; ".join(
            f"{s.name}: {' and '.join(names)} ({100 * share:.0f}%)"
            + (f" *({EXPLORATORY})*" if s.caveats else "") + (" *(within the trees' spread)*" if _within_spread(s.path) else "")
            for s, names, share in named[:8])
        text += "." if len(named) <= 8 else f"; ... ({len(named)} studies in the table)."
    else:
        text += ("no study has the finished trials a surrogate needs to say which changes buy it "
                 f"(at least {needed('surrogate')}).")
    return text[0].upper() + text[1:]


def _methods() -> str:
    return ("*How*: one random forest per study (scikit-learn, "
            f"{N_TREES} trees) on every finished search trial on the importances' scale (log10 for log-scaled "
            "parameters), diverged runs at chance level; ± is the spread over its trees. The **ablation path** "
            "(Fawcett and Hoos 2016) goes from the default configuration (the study's default trial, else the rule's "
            "defaults) to the best trial's, changing at each step the one parameter that lowers the predicted error most; the ± of its improvement pairs "
            "each tree's prediction at the default with its own at the lowest step, and an improvement within it is "
            "said so. "
            "**Local importance** (Biedenkapp et al. 2018): each parameter varied alone around the best; its share of "
            "the predicted error's variance. **Interaction**: the variance of a pair's 2-D partial dependence beyond its "
            "two 1-D ones, as a share of the total. No forest below "
            f"{needed('surrogate')} finished trials; exploratory below {needed('ablation')} (path, local importance) "
            f"or {needed('interactions')} (interactions) trials, or when the forest's out-of-bag R² is below {MIN_OOB_R2}.")


def _not_fitted(studies: list[StudySurrogate]) -> list[Block]:
    """One line per reason, naming the studies (not one line per study)."""
    by: dict[str, list[str]] = {}
    for s in studies:
        reason = s.fit.status.removeprefix("not computed: ")
        if reason.split(" ")[0].isdigit() and "finished trials" in reason:
            reason = f"fewer than {needed('surrogate')} finished trials"
        by.setdefault(reason, []).append(f"{s.name} ({s.fit.n_trials})" if "finished trials" in reason else s.name)
    return [Paragraph(f"**Not computed** for {len(names)} "
                      f"{'study' if len(names) == 1 else 'studies'} ({reason}"
                      + ("; finished trials in brackets" if "finished trials" in reason else "")
                      + f"): {c.names_line(names)}.") for reason, names in by.items()]


def long_table(studies: list[StudySurrogate]) -> pd.DataFrame:
    """One row per ablation step, local share and pair of every study with a surrogate (fractions)."""
    rows = []
    for s in studies:
        if not s.fit.ok:
            continue
        base = {"study": s.study, "label": s.name, "dataset": s.dataset, "arch": s.arch, "n_trials": s.fit.n_trials,
                "oob_r2": s.fit.surrogate.oob_r2}
        p = s.path
        if p.computed:
            rows.append({**base, "analysis": "ablation", "status": p.status, "step": 0, "param": "(default)",
                         "value": p.start[0], "spread": p.start[1]})
            rows += [{**base, "analysis": "ablation", "status": p.status, "step": k, "param": step.param,
                      "from": fmt_value(step.default), "to": fmt_value(step.best), "value": step.error,
                      "spread": step.spread, "gain": step.gain} for k, step in enumerate(p.steps, start=1)]
        if s.local.computed:
            rows += [{**base, "analysis": "local importance", "status": s.local.status, "param": name, "value": m,
                      "spread": sd} for name, m, sd in s.local.ranked()]
        if s.pairs.computed:
            rows += [{**base, "analysis": "interaction", "status": s.pairs.status, "param": f"{q.first} x {q.second}",
                      "value": q.share, "spread": q.spread} for q in s.pairs.pairs]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def render(computed: SurrogateResult, out, figures: str) -> list[Block]:
    """The tie to tunability, one line per reason a study has no surrogate, a table, the paths, figures per study."""
    blocks: list[Block] = [Paragraph(_tie_in(computed))]
    out.table(long_table(computed.studies), "ablation")
    missing = [s for s in computed.studies if not s.fit.ok]
    if missing:
        blocks += _not_fitted(missing)
    fitted = computed.fitted
    if not fitted:
        return blocks
    frame = pd.DataFrame([{
        "dataset": s.dataset, "arch": s.arch, "study": s.name, "trials": s.fit.n_trials,
        "OOB R²": f"{s.fit.surrogate.oob_r2:.2f}", "most of the gain": _buys(s.path),
        "local importance (top 2)": _local(s.local), "strongest pair": _pair(s.pairs),
        "evidence": (f"{EXPLORATORY}: " + "; ".join(s.caveats)) if s.caveats else "firm"} for s in fitted])
    blocks.append(Table(c.drop_constant(frame), "On each study's surrogate: the changes of the ablation path that buy "
                                                "most of the predicted improvement, the local variance shares around the "
                                                "best, the strongest pairwise interaction (ablation.csv holds every step, "
                                                "share and pair, as fractions)."))
    lines = [f"**{s.name}**: {s.path.line()}" for s in fitted if s.path.computed]
    lines += [f"**{s.name}**: not inputs of the surrogate: " + ", ".join(f"{p} ({why})" for p, why in s.fit.dropped.items())
              for s in fitted if s.fit.dropped]
    if lines:
        blocks.append(Bullets(lines))
    blocks.append(Paragraph(_methods()))
    for s in fitted:
        folder = c.folder((s.dataset, s.arch))
        if s.path.computed and s.path.steps:
            blocks += out.figure(ablation_figure, (s.path, s.name), folder, f"{s.name}-ablation",
                                 f"{s.name}: ablation path from the default configuration to the best, predicted error per "
                                 "step (mean ± sd over the surrogate's trees)", level="all", studies=[s.study])
        if s.local.computed:
            blocks += out.figure(local_importance_figure, (s.local, s.name), folder, f"{s.name}-local-importance",
                                 f"{s.name}: local parameter importance around the best configuration, and the predicted "
                                 "error along the most important parameters", level="all", studies=[s.study])
        if s.pairs.computed:
            blocks += out.figure(interaction_figure, (s.pairs, s.name), folder, f"{s.name}-interaction",
                                 f"{s.name}: 2-D partial dependence of the strongest pairwise interaction", level="all",
                                 studies=[s.study])
    return blocks


def ablation_figure(path: ablation.AblationPath, title: str) -> Figure:
    """The path as predicted error per step with its spread over trees, and the observed default and best errors."""
    from ..plots import new_figure, styled

    labels = ["default"] + [f"+ {s.param}\n{fmt_value(s.default)}→{fmt_value(s.best)}" for s in path.steps]
    means = [path.start[0]] + [s.error for s in path.steps]
    spreads = [path.start[1]] + [s.spread for s in path.steps]
    with styled():
        fig, axes = new_figure(max(5.5, 1.3 * len(labels) + 2), 4.2)
        ax = axes[0, 0]
        x = np.arange(len(labels))
        ax.errorbar(x, 100 * np.array(means), yerr=100 * np.array(spreads), marker="o", capsize=4, color="#0072B2",
                    label="predicted (mean ± sd over trees)")
        if math.isfinite(path.default_error):
            ax.axhline(100 * path.default_error, color="#D55E00", ls="--", lw=1, label="observed: default trial")
        if math.isfinite(path.best_error):
            ax.axhline(100 * path.best_error, color="#009E73", ls=":", lw=1.2, label="observed: best trial")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("validation error (%)")
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        tag = " (exploratory)" if path.status == "exploratory" else ""
        gain = (f"; predicted improvement {100 * path.improvement:.2f} ± {100 * path.improvement_spread:.2f} pp (paired over trees)"
                if math.isfinite(path.improvement_spread) else "")
        ax.set_title(f"{title}: ablation path, default → best{tag}\n{path.n_trials} trials; greedy, one parameter per step{gain}",
                     fontsize=10)
    return fig


def local_importance_figure(result: local_importance.LocalImportance, title: str, k: int = 3) -> Figure:
    """Shares around the best (mean ± sd over trees), and the predicted error along the top `k` parameters' lines."""
    from ..plots import new_figure, param_label, styled

    ranked = result.ranked()
    top = [p for p, _, _ in ranked[:k]]
    with styled():
        fig, axes = new_figure(4.0 + 3.2 * len(top), 0.35 * max(4, len(ranked)) + 2.2, 1, 1 + len(top))
        ax = axes[0, 0]
        ax.barh(range(len(ranked)), [100 * m for _, m, _ in ranked], xerr=[[100 * min(m, s) for _, m, s in ranked], [100 * s for _, _, s in ranked]],
                color="#56B4E9", capsize=2)
        ax.set_yticks(range(len(ranked)), [param_label(p, result.log_params) for p, _, _ in ranked], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("share of local variance (%)")
        ax.set_title("around the best: share per parameter\nmean ± sd over trees", fontsize=10)
        for ax, name in zip(axes[0, 1:], top):
            curve = result.curves[name]
            categorical = curve.categorical
            x = np.arange(len(curve.values)) if categorical else curve.x
            ax.plot(x, 100 * curve.mean, marker="o" if categorical else None, color="#0072B2")
            ax.fill_between(x, 100 * (curve.mean - curve.spread), 100 * (curve.mean + curve.spread), alpha=0.25,
                            color="#0072B2")
            here = result.best[name]
            if categorical:
                ax.set_xticks(x, [str(v) for v in curve.values], fontsize=8)
                ax.axvline(curve.values.index(here), color="#D55E00", ls="--", lw=1)
            else:
                ax.axvline(math.log10(here) if name in result.log_params else here, color="#D55E00", ls="--", lw=1)
            ax.set_xlabel(param_label(name, result.log_params))
            ax.set_ylabel("predicted validation error (%)")
            ax.set_title(f"{name}: {100 * result.share[name]:.0f}% (others at the best)", fontsize=10)
        tag = " (exploratory)" if result.status == "exploratory" else ""
        fig.suptitle(f"{title}: local parameter importance{tag}, {result.n_trials} trials")
    return fig


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around grid points (pcolormesh's flat shading)."""
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def interaction_figure(result: interactions.Interactions, title: str) -> Figure:
    """Heat map of the strongest pair's 2-D partial dependence, the trials and the best configuration marked."""
    from ..plots import BEST_MARKER, new_figure, param_label, styled

    top = result.strongest
    with styled():
        fig, axes = new_figure(6.4, 5.0)
        ax = axes[0, 0]
        gx, gy = result.grid_first, result.grid_second
        mesh = ax.pcolormesh(_edges(gx), _edges(gy), 100 * result.dependence.T, cmap="viridis_r", shading="flat")
        fig.colorbar(mesh, ax=ax, label="partial dependence: predicted validation error (%)")
        ax.scatter(result.observed[:, 0], result.observed[:, 1], s=10, color="white", edgecolor="black", linewidth=0.4,
                   label="trials", zorder=3)
        if top.first in result.best and top.second in result.best:
            bx, by = (_search_value(result, k, result.best[name], labels) for k, (name, labels) in
                      enumerate(((top.first, result.labels_first), (top.second, result.labels_second))))
            ax.scatter([bx], [by], label="best trial", **BEST_MARKER)
        for axis, grid, labels, categorical in ((ax.xaxis, gx, result.labels_first, result.categorical[0]),
                                                (ax.yaxis, gy, result.labels_second, result.categorical[1])):
            if categorical:  # name the choices
                axis.set_ticks(grid, labels)
        ax.set_xlabel(param_label(top.first, result.log_params))
        ax.set_ylabel(param_label(top.second, result.log_params))
        ax.legend(fontsize=8, loc="upper right", framealpha=0.8)
        tag = " (exploratory)" if result.status == "exploratory" else ""
        nxt = f"\nnext: {result.pairs[1].first} × {result.pairs[1].second} {100 * result.pairs[1].share:.1f}%" \
            if len(result.pairs) > 1 else ""
        ax.set_title(f"{title}: strongest interaction{tag}\n{top.first} × {top.second}: {100 * top.share:.1f} ± "
                     f"{100 * top.spread:.1f}% of the variance{nxt}", fontsize=10)
    return fig


def _search_value(result: interactions.Interactions, k: int, value: object, labels: list[str]) -> float:
    name = (result.strongest.first, result.strongest.second)[k]
    if result.categorical[k]:
        return float(labels.index(fmt_value(value))) if fmt_value(value) in labels else math.nan
    return math.log10(float(value)) if name in result.log_params else float(value)
