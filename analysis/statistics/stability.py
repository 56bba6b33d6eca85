"""How fragile is a rule: shares of configurations within absolute margins of its best and of a common reference,
the learning-rate band, the paper's stability claims, and whether short runs rank (and pick the top) right."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from optuna.trial import FrozenTrial
from scipy import stats

from bioscale import contract

MARGINS = (0.01, 0.05)  # absolute: 1 and 5 percentage points of error
MARGIN = 0.05  # the margin the learning-rate band and the stability verdicts use
MARGIN_FLOOR = 0.001  # kept for the sensitivity plots' dashed line: never below 0.1 percentage point
TRUST_RHO = 0.8
TOP_K = 5
TOP_AGREE = 0.8  # top-k overlap that counts as agreeing (4 of 5)
MIN_CURVES = 5


@dataclass
class Robustness:
    """Share of finished configurations within absolute margins of the study's best error and of a common reference.

    Every finished configuration counts in the denominator; one that diverged counts at the
    chance-level error, a failed one (no error) counts as outside every margin.
    """

    n_finished: int
    n_complete: int
    best_error: float
    margin: float
    n_within: int
    fraction_within: float  # within `margin` (absolute) of the study's own best
    lr_bands: dict[str, float] = field(default_factory=dict)
    within_best: dict[float, float] = field(default_factory=dict)
    errors: np.ndarray = field(default_factory=lambda: np.array([]))
    reference_error: float = math.nan
    reference_from: str = ""  # e.g. "bp's best on digits / fc"
    within_reference: dict[float, float] = field(default_factory=dict)

    def share_within(self, threshold: float, margin: float) -> float:
        """Share of finished configurations with error ≤ threshold + margin."""
        if not self.n_finished or not math.isfinite(threshold):
            return math.nan
        finite = self.errors[np.isfinite(self.errors)]
        return float((finite <= threshold + margin + 1e-12).sum() / self.n_finished)

    def set_reference(self, error: float, source: str) -> None:
        """Measure the shares against a common reference error (e.g. BP's best on the same dataset and family)."""
        self.reference_error, self.reference_from = error, source
        self.within_reference = {m: self.share_within(error, m) for m in MARGINS}


def robustness(errors: Sequence[float], n_finished: int | None = None, lrs: Mapping[str, Sequence[float]] | None = None,
               margin: float = MARGIN, n_complete: int | None = None) -> Robustness:
    """Shares of configurations with error ≤ best + m for m in MARGINS (absolute), and each learning rate's span (decades) within `margin`.

    `errors` hold NaN for configurations without an error, which count as outside every margin;
    `n_complete` (default: those with a finite error) is only reported.
    """
    values = np.asarray(errors, dtype=float)
    finite = np.isfinite(values)
    n_finished = int(values.size if n_finished is None else n_finished)
    if not finite.any() or n_finished == 0:
        return Robustness(n_finished, 0, math.nan, margin, 0, math.nan, errors=values)
    best = float(values[finite].min())
    within = finite & (values <= best + margin + 1e-12)
    result = Robustness(n_finished=n_finished, n_complete=int(finite.sum() if n_complete is None else n_complete),
                        best_error=best, margin=margin,
                        n_within=int(within.sum()), fraction_within=float(within.sum() / n_finished), errors=values)
    result.within_best = {m: result.share_within(best, m) for m in MARGINS}
    for name, rates in (lrs or {}).items():
        rates = np.asarray(rates, dtype=float)
        chosen = rates[within & np.isfinite(rates) & (rates > 0)]
        if chosen.size:
            result.lr_bands[name] = float(np.log10(chosen.max()) - np.log10(chosen.min()))
    return result


TP_RULES = ("tp", "dtp", "sdtp", "ao-sdtp")


def paper_claims(shares: Mapping[tuple[str, str | None], float], margin: float = MARGIN) -> list[str]:
    """Whether 'BP most stable, TP rules most sensitive, alternating steadier than parallel' holds for one dataset and family.

    `shares` maps (rule, schedule) to the share of configurations within `margin` of the common
    reference (a larger share is steadier).
    """
    shares = {k: v for k, v in shares.items() if math.isfinite(v)}
    pp = f"{100 * margin:.0f} pp"
    lines = []
    bp = [v for (rule, _), v in shares.items() if rule == "bp"]
    others = {k: v for k, v in shares.items() if k[0] != "bp"}
    if not bp or not others:
        lines.append("BP most stable: cannot tell (needs BP and another rule)")
    else:
        beaten = [_name(k) for k, v in others.items() if v > max(bp)]
        lines.append("BP most stable: " + ("holds" if not beaten else f"does not hold ({', '.join(sorted(beaten))} "
                                            f"steadier)") + f" (BP {100 * max(bp):.0f}% within {pp})")
    tp = {k: v for k, v in shares.items() if k[0] in TP_RULES}
    rest = {k: v for k, v in shares.items() if k[0] not in TP_RULES}
    if not tp or not rest:
        lines.append("TP rules most sensitive: cannot tell (needs a target-propagation rule and another rule)")
    else:
        holds = max(tp.values()) < min(rest.values())
        lines.append("TP rules most sensitive: " + ("holds" if holds else "does not hold") +
                     f" (TP rules at most {100 * max(tp.values()):.0f}%, other rules at least {100 * min(rest.values()):.0f}%"
                     f" within {pp}; medians {100 * float(np.median(list(tp.values()))):.0f}% against "
                     f"{100 * float(np.median(list(rest.values()))):.0f}%)")
    pairs = [(rule, shares[(rule, "alternating")], shares[(rule, "parallel")])
             for rule in sorted({k[0] for k in shares}) if (rule, "alternating") in shares and (rule, "parallel") in shares]
    if not pairs:
        lines.append("alternating steadier than parallel: cannot tell (no rule with both schedules)")
    else:
        steadier = [rule for rule, a, p in pairs if a > p]
        verdict = "holds" if len(steadier) == len(pairs) else ("does not hold" if not steadier else "holds in part")
        lines.append(f"alternating steadier than parallel: {verdict} ({len(steadier)} of {len(pairs)} rules: " +
                     ", ".join(f"{rule} {100 * a:.0f}% vs {100 * p:.0f}%" for rule, a, p in pairs) + ")")
    return lines


def _name(key: tuple[str, str | None]) -> str:
    return key[0] + (f"-{key[1]}" if key[1] else "")


@dataclass
class BudgetTrust:
    """Spearman rank correlation between validation error at epoch e and at each configuration's last epoch."""

    epochs: np.ndarray
    rho: np.ndarray
    n_curves: np.ndarray
    last_epoch: int
    settle_epoch: int | None
    threshold: float = TRUST_RHO
    problem: str = ""
    top_overlap: np.ndarray = field(default_factory=lambda: np.array([]))  # |top k at e ∩ top k at last| / k
    top_k: int = TOP_K
    overlap_epoch: int | None = None  # from this epoch on the top k agree (≥ TOP_AGREE) with the final top k

    @property
    def trust_epoch(self) -> int | None:
        """The epoch from which both the ranks (ρ) and the top k agree with the last epoch; None if never."""
        if self.settle_epoch is None or self.overlap_epoch is None:
            return None
        return max(self.settle_epoch, self.overlap_epoch)

    @property
    def ok(self) -> bool:
        """True when enough curves were recorded to compute correlations."""
        return self.epochs.size > 0 and bool(np.isfinite(self.rho).any())

    @property
    def curves(self) -> int:
        """The most learning curves any epoch's statistics rest on."""
        return int(self.n_curves.max()) if self.n_curves.size else 0

    def verdict(self) -> str:
        """One line on whether short runs and pruning can be trusted for this rule (ranks and the top k)."""
        if not self.ok:
            return self.problem or (f"not enough learning curves (need {MIN_CURVES} complete trials with "
                                    "per-epoch validation errors)")
        if self.last_epoch <= 1:
            return "one epoch per run: nothing to compare"
        top = (f"top-{self.top_k} overlap ≥ {round(TOP_AGREE * self.top_k)} of {self.top_k} from epoch "
               f"{self.overlap_epoch}" if self.overlap_epoch is not None else f"top {self.top_k} never agree")
        epoch = self.trust_epoch
        if epoch is None or epoch >= self.last_epoch:
            return (f"ranks or the top {self.top_k} do not settle before the last epoch (ρ ≥ {self.threshold:g} from "
                    f"epoch {self.settle_epoch or '–'}, {top} of {self.last_epoch}): do not trust short runs or pruning")
        share = epoch / self.last_epoch
        where = f"ρ ≥ {self.threshold:g} from epoch {self.settle_epoch}, {top} of {self.last_epoch}"
        if share <= 0.25:
            return f"ranks settle early ({where}): short runs and pruning look safe"
        if share <= 0.5:
            return f"ranks settle by mid-run ({where}): prune only after about half the budget"
        return f"ranks keep changing late ({where}): short runs and pruning are risky"


def learning_curves(trials: Sequence[FrozenTrial]) -> list[list[float]]:
    """Per-epoch validation errors of each trial, from intermediate values or the `curve` user attribute."""
    curves = []
    for trial in trials:
        if trial.intermediate_values:
            curve = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
        else:
            recorded = trial.user_attrs.get(contract.CURVE)
            curve = list(recorded.get("val") or []) if isinstance(recorded, dict) else []
        curve = [float(v) if v is not None else math.nan for v in curve]
        if curve:
            curves.append(curve)
    return curves


def budget_trust(curves: Sequence[Sequence[float]], threshold: float = TRUST_RHO, k: int = TOP_K) -> BudgetTrust:
    """Spearman ρ and the top-k overlap across configurations between the error at epoch e and at their last epoch."""
    curves = [list(c) for c in curves if len(c) > 0]
    if len(curves) < MIN_CURVES:
        return BudgetTrust(np.array([]), np.array([]), np.array([]), 0, None, threshold)
    last_epoch = max(len(c) for c in curves)
    final = np.array([c[-1] for c in curves], dtype=float)
    epochs = np.arange(1, last_epoch + 1)
    at = np.array([c + [np.nan] * (last_epoch - len(c)) for c in curves], dtype=float).T  # (epochs, curves)
    counts = np.array([int((np.isfinite(row) & np.isfinite(final)).sum()) for row in at])
    rho = np.array([spearman(row, final) for row in at])
    overlap = np.array([top_overlap(row, final, k) for row in at])
    finite_final = final[np.isfinite(final)]
    problem = "" if finite_final.size and np.ptp(finite_final) > 0 else \
        "every configuration ends with the same error: nothing to rank"
    return BudgetTrust(epochs=epochs, rho=rho, n_curves=counts, last_epoch=last_epoch,
                       settle_epoch=_holds_from(epochs, rho, threshold), threshold=threshold, problem=problem,
                       top_overlap=overlap, top_k=k, overlap_epoch=_holds_from(epochs, overlap, TOP_AGREE - 1e-12))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman ρ over the pairs finite in both; NaN below MIN_CURVES pairs or when either side is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < MIN_CURVES or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a[keep], b[keep]).statistic)


def _holds_from(epochs: np.ndarray, values: np.ndarray, floor: float) -> int | None:
    """The first epoch from which every value to the last is at least `floor` (None when the last one is not)."""
    start = None
    for epoch, value in zip(epochs[::-1], values[::-1]):
        if not value >= floor:  # NaN fails too
            break
        start = int(epoch)
    return start


def top_overlap(at: np.ndarray, final: np.ndarray, k: int = TOP_K) -> float:
    """Share of the k lowest errors at an epoch that are among the k lowest at the last epoch (configurations finite at both)."""
    at, final = np.asarray(at, dtype=float), np.asarray(final, dtype=float)
    keep = np.flatnonzero(np.isfinite(at) & np.isfinite(final))
    if keep.size < max(k, MIN_CURVES):
        return math.nan
    first = set(keep[np.argsort(at[keep], kind="stable")[:k]])
    last = set(keep[np.argsort(final[keep], kind="stable")[:k]])
    return len(first & last) / k


@dataclass(frozen=True)
class RungTrust:
    """How well a halving study's first rung ranks the full budget: Spearman ρ among configurations that reached both."""

    rung: int  # epochs of the first rung
    epochs: int  # the full budget
    n: int  # configurations that trained the full budget
    rho: float

    @property
    def high(self) -> bool:
        """True when the first rung ranks the full budget as well as TRUST_RHO asks."""
        return math.isfinite(self.rho) and self.rho >= TRUST_RHO

    @property
    def low(self) -> bool:
        """True when it was measured and falls short of TRUST_RHO (unmeasurable is neither high nor low)."""
        return math.isfinite(self.rho) and self.rho < TRUST_RHO

    def line(self) -> str:
        """One line: ρ with its n, and whether halving on the first rung can be trusted."""
        where = (f"first rung ({self.rung} epoch{'s' if self.rung != 1 else ''}) against the full budget ({self.epochs}): "
                 f"Spearman ρ = {self.rho:+.2f} over the n = {self.n} configurations that reached it")
        if not math.isfinite(self.rho):
            return f"first rung against the full budget: not measurable ({self.n} configurations reached it)"
        if self.high:
            return f"budget trust high: {where}"
        return (f"budget trust LOW: {where} (below {TRUST_RHO:g}); the first rung does not rank the full budget, so "
                "halving may have stopped the configurations that would have been best")


def rung_trust(first: Sequence[float], full: Sequence[float], rung: int, epochs: int) -> RungTrust:
    """Spearman ρ between first-rung and full-budget errors of the same configurations (NaN below MIN_CURVES)."""
    n = int((np.isfinite(np.asarray(first, dtype=float)) & np.isfinite(np.asarray(full, dtype=float))).sum())
    return RungTrust(rung=rung, epochs=epochs, n=n, rho=spearman(first, full))
