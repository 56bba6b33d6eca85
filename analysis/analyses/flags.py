"""Flags per study: the confounds a reader must know before trusting a number.

- not converged: the best configuration's validation error still fell over the last epochs by
  more than one validation example (training was cut short by the budget);
- best at the edge: the best configuration took the largest or smallest learning rate drawn (the
  optimum may lie beyond), or any numeric parameter sits at the edge of its sampled range;
- alternation halves the forward epochs: an alternating schedule with whole-epoch alternation
  (alternation_period 0) trains the forward weights in only half of the epochs;
- seed spread: the best configuration's test error over evaluation seeds spans more than what
  tuning bought, or more than 5 pp.
The split sizes (and so what one validation example is worth) are printed once per dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bioscale import contract
from bioscale.contract import complete_trials, search_trials

from ..statistics.design import design
from ..statistics.importance import is_log
from ..statistics.pairs import config_key
from ..report import Block, Bullets, Paragraph, Table
from ..statistics import tunability as study_tunability
from ..statistics.stability import learning_curves
from . import _common as c

if TYPE_CHECKING:
    from typing import Sequence

    from optuna.trial import FrozenTrial

    from ..output import Output
    from ..results import Analysis, LoadedStudy

NAME = "flags"
TITLE = "Flags per study"
ORDER = 40
NEEDS = ("tunability",)

LAST_EPOCHS = 2  # "still improving" compares the last epochs with every epoch before them
EDGE_SHARE = 0.05  # within 5 % of the sampled range (on the search scale) counts as at its edge
MIN_DRAWN = 5  # a learning rate's largest or smallest drawn value is flagged only among at least this many
SPREAD_LIMIT = 0.05  # a seed spread above 5 pp is flagged on its own
NOT_CONVERGED, AT_EDGE, HALVED, SEED_SPREAD = "not converged", "best at an edge", "alternation halves forward epochs", "seed spread"
KINDS = (NOT_CONVERGED, AT_EDGE, HALVED, SEED_SPREAD)


def still_improving(curve: Sequence[float], tolerance: float, last: int = LAST_EPOCHS) -> bool:
    """True when the lowest error of the last `last` epochs beats every earlier epoch by more than `tolerance`."""
    values = [v for v in curve if v is not None and math.isfinite(v)]
    if len(values) <= last:
        return False
    return min(values[-last:]) < min(values[:-last]) - tolerance


def edge_notes(best: FrozenTrial, trials: Sequence[FrozenTrial]) -> list[str]:
    """For each numeric parameter: is the best value the largest or smallest drawn, or at the edge of its range?"""
    notes = []
    for name, dist in sorted(best.distributions.items()):
        value = best.params.get(name)
        if not hasattr(dist, "low") or dist.single() or not isinstance(value, (int, float)):
            continue
        drawn = sorted({t.params[name] for t in trials if isinstance(t.params.get(name), (int, float))})
        scale = (lambda x: math.log10(x)) if is_log(dist) else (lambda x: x)
        span = scale(dist.high) - scale(dist.low)
        where = (scale(value) - scale(dist.low)) / span if span > 0 else 0.5
        if where >= 1 - EDGE_SHARE or where <= EDGE_SHARE:
            notes.append(f"{name} {value:.3g} at the {'upper' if where > 0.5 else 'lower'} edge of its range "
                         f"{dist.low:g} to {dist.high:g}")
        elif name.endswith("_lr") and len(drawn) >= MIN_DRAWN and value in (drawn[0], drawn[-1]):
            notes.append(f"{name} {value:.3g} is the {'largest' if value == drawn[-1] else 'smallest'} of the "
                         f"{len(drawn)} drawn (range {dist.low:g} to {dist.high:g})")
    return notes


@dataclass
class StudyFlags:
    """The flags of one study, each (kind, explanation)."""

    study: str
    name: str
    dataset: str
    arch: str
    flags: list[tuple[str, str]] = field(default_factory=list)
    improving_share: float = math.nan  # complete configurations still improving at the end
    seed_spread: float = math.nan  # max − min evaluated test error over seeds

    def has(self, kind: str) -> bool:
        """True when the study carries a flag of `kind`."""
        return any(k == kind for k, _ in self.flags)


@dataclass
class Flags:
    """Every study's flags, the split sizes per dataset, and whether studies sampled the same configurations."""

    studies: list[StudyFlags] = field(default_factory=list)
    splits: dict[str, tuple[int, int, int] | None] = field(default_factory=dict)
    shared_configs: int = 0  # studies that sampled exactly the most common set of configurations
    shared_size: int = 0  # configurations in that set
    n_studies: int = 0

    def count(self, kind: str) -> int:
        """Studies flagged `kind`."""
        return sum(s.has(kind) for s in self.studies)


def _alternation_period(trial) -> object:
    config = trial.user_attrs.get(contract.CONFIG)
    if isinstance(config, dict) and "alternation_period" in config:
        return config["alternation_period"]
    return trial.params.get("alternation_period", 0)


def study_flags(a: LoadedStudy, tuned: study_tunability.Tunability | None = None) -> StudyFlags:
    """The flags of one analysed study (`tuned`: its tunability, which the seed spread is set against)."""
    record = a.record
    found = StudyFlags(study=record.name, name=a.name, dataset=record.dataset, arch=record.arch)
    complete = sorted(complete_trials(search_trials(record.trials)), key=lambda t: (t.value, t.number))
    if not complete:
        return found
    best = complete[0]
    tolerance = max(c.one_example(record.dataset) if math.isfinite(c.one_example(record.dataset)) else 0.0, 1e-3)
    curves = learning_curves(complete)
    if curves:
        found.improving_share = float(np.mean([still_improving(curve, tolerance) for curve in curves]))
    best_curve = learning_curves([best])
    if best_curve and still_improving(best_curve[0], tolerance):
        v = best_curve[0]
        found.flags.append((NOT_CONVERGED, f"best configuration's validation error still fell in its last {LAST_EPOCHS} "
                                           f"epochs ({100 * min(v[:-LAST_EPOCHS]):.2f}% → {100 * min(v[-LAST_EPOCHS:]):.2f}%); "
                                           f"{100 * found.improving_share:.0f}% of complete configurations still improving"))
    notes = edge_notes(best, complete)
    if notes:
        found.flags.append((AT_EDGE, "; ".join(notes)))
    if record.schedule == "alternating":
        period = _alternation_period(best)
        if period in (0, "0", None):
            epochs = record.epochs or len(best_curve[0] if best_curve else [])
            found.flags.append((HALVED, f"whole-epoch alternation: the forward weights trained in {math.ceil(epochs / 2)} "
                                        f"of {epochs} epochs"))
    if a.evaluated is not None and a.evaluated.n >= 2:
        found.seed_spread = spread = max(a.evaluated.errors) - min(a.evaluated.errors)
        gain = tuned.gain if tuned is not None and tuned.default_trial is not None else math.nan
        if spread > SPREAD_LIMIT or (math.isfinite(gain) and abs(gain) < spread):
            why = [f"evaluated test error spans {100 * spread:.2f} pp over {a.evaluated.n} seeds"]
            if math.isfinite(gain) and abs(gain) < spread:
                why.append(f"more than what tuning bought ({100 * gain:+.2f} pp)")
            found.flags.append((SEED_SPREAD, ", ".join(why)))
    return found


def compute(results: Analysis) -> Flags:
    """Flags of every analysed study, split sizes, and shared configuration sets."""
    out = Flags()
    analysed = [a for a in c.ordered(results) if a.analysed]
    tuned = results.computed["tunability"].by_study
    out.studies = [study_flags(a, tuned.get(a.record.name)) for a in analysed]
    out.n_studies = len(analysed)
    for a in analysed:
        out.splits.setdefault(a.record.dataset, c.splits(a.record.dataset))
    # Studies that drew the same configurations without their design saying so (a tanh/ReLU pair, or rules under
    # --shared-draws, declare one draw key and share by design).
    keys: dict[frozenset, set] = {}
    sets: Counter = Counter()
    for a in analysed:
        configs = frozenset(config_key(t.params) for t in search_trials(a.record.finished))
        sets[configs] += 1
        keys.setdefault(configs, set()).add(design(a.record).draws or a.record.name)
    undeclared = [(count, configs) for configs, count in sets.most_common() if count > 1 and len(keys[configs]) > 1]
    if undeclared:
        out.shared_configs, out.shared_size = undeclared[0][0], len(undeclared[0][1])
    return out


def split_line(dataset: str, sizes: tuple[int, int, int] | None) -> str:
    """'digits: 1150 train / 288 validation / 359 test examples; one validation example = 0.35 pp'."""
    if sizes is None:
        return f"{dataset or '?'}: split sizes unknown"
    train, val, test = sizes
    return (f"{dataset}: {train:,} train / {val:,} validation / {test:,} test examples; one validation example = "
            f"{100 / val:.2f} pp, one test example = {100 / test:.2f} pp")


def render(computed: Flags, out: Output, figures: str) -> list[Block]:
    """Split sizes, then a table of every flagged study."""
    blocks: list[Block] = [Paragraph("**Split sizes** (the noise floor of every error below): " +
                                     "; ".join(split_line(d, s) for d, s in computed.splits.items()) + ".")]
    counts = [f"{computed.count(k)} of {computed.n_studies} studies {k}" for k in KINDS]
    blocks.append(Bullets(counts + ([f"{computed.shared_configs} of {computed.n_studies} studies sampled the same "
                                     f"{computed.shared_size} configurations (one sampler seed): good for comparing rules "
                                     "configuration by configuration, poor for covering the space"]
                                    if computed.shared_configs else [])))
    rows = [{"dataset": s.dataset, "arch": s.arch, "study": s.name, "flag": kind, "detail": detail}
            for s in computed.studies for kind, detail in s.flags]
    frame = pd.DataFrame(rows, columns=["dataset", "arch", "study", "flag", "detail"])
    out.table(frame, "flags")
    if len(frame):
        shown = pd.DataFrame([{"dataset": s.dataset, "arch": s.arch, "study": s.name,
                               **{k: "yes" if s.has(k) else "" for k in KINDS}} for s in computed.studies if s.flags])
        blocks.append(Table(c.drop_constant(shown), "Flagged studies (flags.csv gives each flag's detail: the values, "
                                                    "epochs and spreads behind it)."))
    else:
        blocks.append(Paragraph("No study is flagged."))
    return blocks
