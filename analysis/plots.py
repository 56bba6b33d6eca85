"""Figures: seaborn on matplotlib, one style, no pyplot state (each figure is a plain Figure drawn by Agg)."""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .statistics.activation import ActivationEffect, best_of_n
from .statistics.importance import FanovaResult, PedAnovaResult
from .palette import SeriesStyle
from .statistics.pairs import PairComparison
from .statistics.stability import MARGIN, MARGIN_FLOOR, MARGINS, BudgetTrust, Robustness

ACTIVATION_COLORS = {"tanh": "#0072B2", "relu": "#E69F00"}
BEST_MARKER = dict(marker="*", s=260, color="#D55E00", edgecolor="black", linewidth=0.8, zorder=5)
_RC = {"figure.dpi": 100, "savefig.dpi": 150, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
       "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 12, "svg.fonttype": "none"}


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """The one bioscale figure style: seaborn whitegrid, colour-blind palette, readable sizes.

    Seaborn's strip-plot jitter draws from numpy's global generator: it is seeded here (and the
    caller's state restored after), so the same numbers always give the same figure.
    """
    state = np.random.get_state()
    np.random.seed(0)
    try:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook"), mpl.rc_context(_RC), \
                sns.color_palette("colorblind"):
            yield
    finally:
        np.random.set_state(state)


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, layout: str | None = "constrained",
               **kwargs) -> tuple[Figure, np.ndarray]:
    """A Figure on the Agg canvas (constrained layout unless `layout` says otherwise) and a 2-D array of its axes (call inside `styled()`)."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def save(fig: Figure, stem: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Write `fig` as stem.<fmt> for each format; returns {format: path}."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {}
    with styled():
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            # zlib level 1: a third of the time of the default level for a slightly larger file
            fig.savefig(path, format=fmt, **({"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}))
            paths[fmt] = path
            fig.set_layout_engine("none")  # keep the layout the first save computed; later saves skip it
    return paths


def param_label(name: str, log_params: Sequence[str]) -> str:
    """Axis label of a hyperparameter, saying when it is on a log10 scale."""
    return f"{name} (log10)" if name in log_params else name


def _empty(ax, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=10, transform=ax.transAxes)


def importance_figure(title: str, fanova: FanovaResult, ped: PedAnovaResult) -> Figure:
    """fANOVA (global variance, with branches for conditional params) beside PED-ANOVA (what the top quantile needs)."""
    with styled():
        fig, axes = new_figure(11, 0.45 * max(4, _n_params(fanova, ped)) + 1.6, 1, 2)
        left, right = axes[0]
        sets = [b for b in [fanova.overall, *fanova.branches] if b.ok]
        if sets:
            order = [p for p, _, _ in sets[0].ranked()]
            for branch in sets[1:]:
                order += [p for p, _, _ in branch.ranked() if p not in order]
            height = 0.8 / len(sets)
            palette = sns.color_palette("colorblind", len(sets))
            for k, branch in enumerate(sets):
                y = [order.index(p) - 0.4 + height * (k + 0.5) for p in branch.mean]
                left.barh(y, [100 * branch.mean[p] for p in branch.mean], height=height,
                          xerr=[100 * branch.std[p] for p in branch.mean], color=palette[k], capsize=2,
                          label=f"{branch.title} (n={branch.n_trials})")
            left.set_yticks(range(len(order)), [param_label(p, fanova.log_params) for p in order])
            left.invert_yaxis()
            left.set_xlabel("share of variance explained (%)")
            if len(sets) > 1:
                handles, names = left.get_legend_handles_labels()
                fig.legend(handles, names, loc="outside lower left", fontsize=8, title="fANOVA over")
            left.set_title(f"fANOVA: share of global variance\nlog params on log10 scale; mean ± sd over {fanova.seeds} seeds",
                           fontsize=10)
        else:
            _empty(left, f"fANOVA: {fanova.overall.status}")
        if ped.ok:
            ranked = ped.ranked()
            sns.barplot(x=[100 * v for _, v in ranked], y=[p for p, _ in ranked], ax=right, color="#56B4E9",
                        orient="h")
            right.set_xlabel("share of PED-ANOVA importance (%)")
            right.set_title(f"PED-ANOVA: what reaching the top {100 * ped.target_quantile:.0f} % needs\n"
                            f"{ped.n_top} of {ped.n_trials} trials in the top", fontsize=10)
        else:
            _empty(right, f"PED-ANOVA: {ped.status}")
        fig.suptitle(title)
    return fig


def _n_params(fanova: FanovaResult, ped: PedAnovaResult) -> int:
    names = set(ped.importance)
    for branch in [fanova.overall, *fanova.branches]:
        names |= set(branch.mean)
    return len(names)


def activation_figure(title: str, frame: pd.DataFrame, effect: ActivationEffect,
                      incomplete: Mapping[str, int] | None = None) -> Figure:
    """Validation error under tanh and ReLU (distribution, and expected best after n random trials) of complete trials."""
    incomplete = incomplete or {}
    data = frame[frame["activation"].isin(["tanh", "relu"])].assign(error=lambda d: 100 * d["value"])
    with styled():
        fig, axes = new_figure(10, 4.2, 1, 2)
        left, right = axes[0]
        order = [a for a in ("tanh", "relu") if a in set(data["activation"])]
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert` to bxp
            warnings.simplefilter("ignore", mpl.MatplotlibDeprecationWarning)
            sns.boxplot(data=data, x="activation", y="error", hue="activation", order=order, palette=ACTIVATION_COLORS,
                        ax=left, showfliers=False, legend=False, boxprops={"alpha": 0.5})
        sns.stripplot(data=data, x="activation", y="error", hue="activation", order=order, palette=ACTIVATION_COLORS,
                      ax=left, size=4, jitter=0.25, legend=False, edgecolor="black", linewidth=0.3)
        left.set_xticks(range(len(order)), [f"{a}\n(n={int((data['activation'] == a).sum())}"
                                            + (f", {incomplete[a]} not complete)" if incomplete.get(a) else ")")
                                            for a in order])
        left.set_xlabel("activation")
        left.set_ylabel("best validation error (%)")
        left.set_title("error over configurations", fontsize=10)
        _best_of_n_panel(right, {a: best_of_n(data.loc[data["activation"] == a, "error"].to_numpy()) for a in order})
        fig.suptitle(f"{title}: {effect.verdict}")
    return fig


def robustness_figure(title: str, results: Mapping[str, Robustness], styles: Mapping[str, SeriesStyle]) -> Figure:
    """Per study (rows in the given order): shares within 1 and 5 pp of its own best and of the reference, and the LR band."""
    labels = list(results)
    n = len(labels)
    with styled():
        fig, axes = new_figure(13, 0.27 * n + 2.0, 1, 3, sharey=True)
        y = np.arange(n)
        for ax, which, name in ((axes[0, 0], "within_best", "of the study's own best"),
                                (axes[0, 1], "within_reference", "of the common reference")):
            for k, (m, alpha) in enumerate(zip(MARGINS, (1.0, 0.45))):
                values = [100 * getattr(results[l], which).get(m, np.nan) for l in labels]
                ax.barh(y + (k - 0.5) * 0.38, values, height=0.38, color=[styles[l].color for l in labels],
                        alpha=alpha, label=f"within {100 * m:.0f} pp")
            ax.set_xlim(0, 100)
            ax.set_xlabel("finished configurations (%)")
            ax.set_title(f"within 1 pp (dark) and 5 pp (light) {name}", fontsize=9)
        source = next((r.reference_from for r in results.values() if r.reference_from), "")
        axes[0, 1].set_title(f"within 1 pp (dark) / 5 pp (light) of the reference\n({source or 'none'})", fontsize=9)
        right = axes[0, 2]
        names = sorted({p for r in results.values() for p in r.lr_bands})
        for k, name in enumerate(names):
            width = 0.8 / max(len(names), 1)
            values = [results[l].lr_bands.get(name, np.nan) for l in labels]
            right.barh(y - 0.4 + width * (k + 0.5), values, height=width, color=sns.color_palette("colorblind")[k],
                       label=name)
        if names:
            right.legend(fontsize=8, title="learning rate", loc="lower right")
        right.set_xlabel(f"learning-rate band within {100 * MARGIN:.0f} pp of the best (decades)")
        right.set_title("span of learning rates near the best", fontsize=9)
        axes[0, 0].set_yticks(y, labels, fontsize=8)
        axes[0, 0].set_ylim(n - 0.5, -0.5)
        fig.suptitle(title)
    return fig


def budget_figure(title: str, results: Mapping[str, BudgetTrust]) -> Figure:
    """Heat maps, studies (rows, in the given order) × epoch: Spearman ρ with the last epoch, and top-5 overlap."""
    labels = [l for l in results if results[l].ok]
    with styled():
        fig, axes = new_figure(11, 0.27 * max(len(labels), 3) + 2.2, 1, 2, sharey=True)
        if not labels:
            _empty(axes[0, 0], "no learning curves recorded")
            _empty(axes[0, 1], "no learning curves recorded")
            fig.suptitle(title)
            return fig
        last = max(int(results[l].epochs.max()) for l in labels)
        rho = pd.DataFrame([[results[l].rho[e - 1] if e <= results[l].epochs.size else np.nan for e in range(1, last + 1)]
                            for l in labels], index=labels, columns=range(1, last + 1))
        top = pd.DataFrame([[100 * results[l].top_overlap[e - 1] if e <= results[l].top_overlap.size else np.nan
                             for e in range(1, last + 1)] for l in labels], index=labels, columns=range(1, last + 1))
        k = results[labels[0]].top_k
        for ax, table, name, low, high, cmap, label in (
                (axes[0, 0], rho, "rank agreement with the last epoch (Spearman ρ)", -1, 1, "vlag_r", "ρ"),
                (axes[0, 1], top, f"top {k} at epoch e also in the final top {k}", 0, 100, "mako_r", "%")):
            sns.heatmap(table, ax=ax, vmin=low, vmax=high, cmap=cmap, cbar_kws={"label": label}, linewidths=0.3,
                        linecolor="white")
            ax.set_facecolor("#eeeeee")
            ax.grid(False)
            ax.set_xlabel("epoch e")
            ax.set_title(name, fontsize=10)
        axes[0, 0].set_yticks([i + 0.5 for i in range(len(labels))], labels, fontsize=8)
        axes[0, 0].set_ylabel("")
        fig.suptitle(title)
    return fig


def pair_figure(title: str, pair: PairComparison) -> Figure:
    """A tanh/ReLU pair of studies: error over every finished configuration (diverged at chance) and best-of-n curves."""
    with styled():
        fig, axes = new_figure(10, 4.2, 1, 2)
        left, right = axes[0]
        data = pd.DataFrame([(a, 100 * e) for a, arm in (("tanh", pair.tanh), ("relu", pair.relu)) for e in arm.errors],
                            columns=["activation", "error"])
        matched = pair.paired.values if pair.paired is not None and pair.paired.usable else None
        if matched is not None and len(matched):  # the same configuration under both: one line each
            for t, r in 100 * matched:
                left.plot([0, 1], [t, r], color=ACTIVATION_COLORS["tanh" if t < r else "relu"] if t != r else "#999999",
                          lw=1, alpha=0.7, marker="o", ms=4)
            left.set_title(f"each line: one configuration under both ({len(matched)} matched;\n"
                           "blue: tanh lower, orange: ReLU lower)", fontsize=10)
        elif len(data):
            sns.stripplot(data=data, x="activation", y="error", hue="activation", palette=ACTIVATION_COLORS, ax=left,
                          size=4, jitter=0.25, legend=False, order=["tanh", "relu"])
        left.set_xticks([0, 1], [f"{a}\n({100 * arm.divergence_rate:.0f}% of {arm.diverged.size} diverged)"
                                 for a, arm in (("tanh", pair.tanh), ("relu", pair.relu))])
        left.set_ylabel("validation error (%), diverged at chance level")
        if matched is None or not len(matched):
            left.set_title("every finished configuration", fontsize=10)
        left.set_xlim(-0.5, 1.5)
        _best_of_n_panel(right, {a: 100 * curve for a, curve in pair.curves.items()})
        fig.suptitle(f"{title}: {pair.verdict}")
    return fig


def _best_of_n_panel(ax, curves: Mapping[str, np.ndarray]) -> None:
    """Expected best validation error (%) after n random configurations, one line per activation."""
    for activation, curve in curves.items():
        ax.plot(np.arange(1, curve.size + 1), curve, color=ACTIVATION_COLORS[activation], lw=2, label=activation)
    longest = max((c.size for c in curves.values()), default=0)
    if longest > 30:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # counts, not 2×10⁰
    else:
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("random configurations tried (n)")
    ax.set_ylabel("expected best validation error (%)")
    ax.set_title("expected best after n random configurations", fontsize=10)
    ax.legend(title="activation")


def sensitivity_figure(title: str, frame: pd.DataFrame, params: Sequence[str], log_params: Sequence[str],
                       margin: float = MARGIN) -> Figure:
    """Error against each important hyperparameter (log axes for log-scaled ones), best configuration starred."""
    params = [p for p in params if p in frame.columns]
    ncols = max(1, min(3, len(params)))
    nrows = max(1, math.ceil(len(params) / ncols))
    data = frame.assign(error=100 * frame["value"])
    best = data.loc[data["error"].idxmin()] if len(data) else None
    hue = "activation" if "activation" in data.columns and data["activation"].nunique() > 1 else None
    with styled():
        fig, axes = new_figure(4.2 * ncols, 3.6 * nrows + 0.6, nrows, ncols)
        flat = list(axes.ravel())
        for ax, name in zip(flat, params):
            column = data[name]
            numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column) and column.nunique() > 4
            sub = data[column.notna()]
            palette = ACTIVATION_COLORS if hue else None
            if numeric:
                sns.scatterplot(data=sub, x=name, y="error", hue=hue, palette=palette, ax=ax, s=22, alpha=0.75,
                                edgecolor="none", legend=ax is flat[0])
                if name in log_params:
                    ax.set_xscale("log")
                    ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())  # no 2×10⁻⁵ labels colliding
                _envelope(ax, sub[name].to_numpy(float), sub["error"].to_numpy(float), name in log_params)
                if best is not None and pd.notna(best[name]):
                    ax.scatter([best[name]], [best["error"]], **BEST_MARKER, label="best")
            else:
                order = [str(v) for v in sorted(sub[name].unique(), key=_category_key)]  # 1e-08, 1e-06, 0.0001
                sub = sub.assign(**{name: sub[name].astype(str)})
                sns.stripplot(data=sub, x=name, y="error", hue=hue, palette=palette, ax=ax, size=4, jitter=0.25,
                              order=order, legend=ax is flat[0])
                if best is not None and pd.notna(best[name]):
                    categories = [t.get_text() for t in ax.get_xticklabels()]
                    if str(best[name]) in categories:
                        ax.scatter([categories.index(str(best[name]))], [best["error"]], **BEST_MARKER, label="best")
            if best is not None:
                ax.axhline(best["error"] + 100 * max(margin, MARGIN_FLOOR), color="#777777", ls="--", lw=1)
            ax.set_xlabel(name + (" (log scale)" if name in log_params and numeric else ""))
            ax.set_ylabel("best validation error (%)")
        for ax in flat[len(params):]:
            ax.set_axis_off()
        if not params:
            _empty(flat[0], "no hyperparameters to show")
        fig.suptitle(f"{title}: error against the most important hyperparameters\n"
                     f"(star: best configuration; dashed: {100 * margin:.0f} pp above the best; line: best per bin)")
    return fig


def _category_key(value: object) -> tuple:
    """Numbers in numeric order before text in alphabetical order."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _envelope(ax, x: np.ndarray, y: np.ndarray, log: bool, bins: int = 8) -> None:
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log else True)
    x, y = x[keep], y[keep]
    if x.size < 2 * bins or np.ptp(x) == 0:
        return
    scale = np.log10(x) if log else x
    edges = np.linspace(scale.min(), scale.max(), bins + 1)
    index = np.clip(np.digitize(scale, edges) - 1, 0, bins - 1)
    centres, lows = [], []
    for b in range(bins):
        if (index == b).any():
            centre = (edges[b] + edges[b + 1]) / 2
            centres.append(10 ** centre if log else centre)
            lows.append(y[index == b].min())
    ax.plot(centres, lows, color="#333333", lw=1.5, alpha=0.8)
