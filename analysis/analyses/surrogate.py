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

import pandas as pd

from ..statistics import ablation, interactions, local_importance
from ..statistics.evidence import EXPLORATORY, MIN_OOB_R2, needed
from ..statistics.outcomes import chance_error
from ..report import Block, Bullets, Paragraph, Table
from ..statistics.surrogate import N_TREES, SurrogateFit, fit_surrogate, fmt_value
from . import _common as c

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
    out = SurrogateResult()
    tune = (results.computed or {}).get("tunability")
    if tune is not None:
        out.median_gain = tune.median
    for a in c.ordered(results):
        r = a.record
        if r.skipped:
            continue
        chance = a.chance if math.isfinite(a.chance) else chance_error(r.dataset)
        fit = fit_surrogate(r.trials, chance)
        out.studies.append(StudySurrogate(a.name, r.name, r.dataset, r.arch, fit,
                                          ablation.compute(r.trials, fit, r.rule, chance),
                                          local_importance.compute(r.trials, fit), interactions.compute(r.trials, fit)))
    return out


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
            blocks += out.figure(ablation.figure, (s.path, s.name), folder, f"{s.name}-ablation",
                                 f"{s.name}: ablation path from the default configuration to the best, predicted error per "
                                 "step (mean ± sd over the surrogate's trees)", level="all", studies=[s.study])
        if s.local.computed:
            blocks += out.figure(local_importance.figure, (s.local, s.name), folder, f"{s.name}-local-importance",
                                 f"{s.name}: local parameter importance around the best configuration, and the predicted "
                                 "error along the most important parameters", level="all", studies=[s.study])
        if s.pairs.computed:
            blocks += out.figure(interactions.figure, (s.pairs, s.name), folder, f"{s.name}-interaction",
                                 f"{s.name}: 2-D partial dependence of the strongest pairwise interaction", level="all",
                                 studies=[s.study])
    return blocks
