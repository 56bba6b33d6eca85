"""Glossary (appendix): the words, abbreviations and statistics the report uses, and the thresholds behind 'exploratory'."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

from bioscale import catalogue

from ..statistics.evidence import MIN_OOB_R2, THRESHOLDS
from ..report import Block, Bullets, Paragraph
from ..statistics.stability import TOP_K

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

PAPER_YEAR = 2018  # Bartunov et al.
NAME = "glossary"
TITLE = "Glossary"
ORDER = 99
APPENDIX = True

TERMS = (
    ("the paper", "Bartunov, Santoro, Richards, Marris, Hinton and Lillicrap (2018), *Assessing the scalability of "
                  "biologically-motivated deep learning algorithms and architectures*, NeurIPS: the study bioscale "
                  "follows (random search over 60 configurations per rule, best within 500 epochs, tanh). The report "
                  "says it reproduces the paper only when every study ran that search at that budget on the paper's "
                  "data; otherwise it is *after* the paper."),
    ("reduced budget (†)", "an EP or CHL study run at fewer configurations or epochs than the others on its dataset, "
                           "as the demo runs them; the appendix's protocol section gives each one's budget and reason."),
    ("-alternating / -parallel", "how a target-propagation rule trains its inverses: in turn with the forward weights "
                                 "(whole epochs when alternation_period is 0, as the paper) or at the same time."),
    ("fc / lc / conv", "fully connected, locally connected (convolution without weight sharing), convolutional nets."),
    ("error", "the share of misclassified examples, printed in percent; CSV files hold fractions (0.05 = 5 %). A "
              "difference in percentage points (pp) is a difference of percents."),
    ("counted error", "a configuration's lowest validation error; one that diverged or stalled counts at the chance "
                      "level, 1 − 1/classes."),
    ("evaluated error", "the best configuration re-trained over several seeds, test error at each seed's "
                        "best-validation epoch; the seed range is min to max over those seeds."),
    ("fANOVA", "functional ANOVA (Hutter, Hoos and Leyton-Brown 2014): the share of the error's variance over the search "
               "space each hyperparameter explains, from a random forest; ± is the spread over forest seeds."),
    ("PED-ANOVA", "Optuna's default importance (Watanabe et al. 2023): how differently the top quantile of "
                  "configurations is spread over each parameter."),
    ("expected best of n", "the expected lowest error of n configurations drawn at random (with replacement) from "
                           "those the study ran."),
    ("paired comparison", "tanh and ReLU studies that sampled the same configurations, compared configuration by "
                          "configuration: a t-interval of the mean difference and a sign test of who wins."),
    ("robustness", "the share of finished configurations within 1 or 5 pp of the rule's own best, or of a common "
                   "reference (BP's best on the same data and net family)."),
    ("learning-rate band", "the span, in decades (factors of ten), of learning rates within 5 pp of the best."),
    ("budget trust", f"whether short runs rank configurations as the full run does: Spearman ρ between the error at "
                     f"epoch e and at the last epoch, and the overlap of the top {TOP_K}."),
    ("tunability", "the default configuration's error minus the tuned best (Probst, Boulesteix and Bischl 2019)."),
    ("ablation path", "on a study's surrogate random forest, the greedy path from the default configuration to the "
                      "best, changing the one parameter per step that lowers the predicted error most (Fawcett and "
                      "Hoos 2016); ± is the spread over the forest's trees."),
    ("local importance", "each parameter's share of the predicted error's variance when varied alone around the best "
                         "configuration (Biedenkapp et al. 2018)."),
    ("interaction share", "the variance of a pair's 2-D partial dependence beyond its two 1-D ones, as a share of the "
                          "predicted error's variance over the space."),
    ("out-of-bag R²", "how much of the error's variance the surrogate predicts for trials left out of each tree; below "
                      f"{MIN_OOB_R2} its paths and shares are exploratory."),
    ("stalled / diverged", "stalled: the error stayed at chance for `chance_patience` epochs (only detected when "
                           "that is above 0); diverged: the loss became NaN or exploded."),
    ("not converged", "the best configuration's validation error still fell over the last epochs."),
    ("exploratory", "a statistic resting on fewer observations than it needs (below): printed as a direction, not "
                    "a finding."),
)


@dataclass
class Glossary:
    """The terms and the evidence thresholds."""

    terms: tuple
    thresholds: dict


def rule_terms() -> tuple[tuple[str, str], ...]:
    """One term per rule of the catalogue, in the report's order: what it is, who published it and when."""
    listed = sorted(catalogue.RULES.values(), key=lambda f: catalogue.rule_key(f.name))
    return tuple((f.name, f"{f.title} ({f.family}; {f.citation} {f.year}"
                          f"{', after the paper' if f.year > PAPER_YEAR else ''}).") for f in listed)


def compute(results: Analysis) -> Glossary:
    """The glossary (the paper, every rule of the catalogue, the other terms) and the thresholds in force."""
    return Glossary(terms=(TERMS[0], *rule_terms(), *TERMS[1:]), thresholds=dict(THRESHOLDS))


def render(computed: Glossary, out: Output, figures: str) -> list[Block]:
    """The terms as a list, then the thresholds."""
    return [Bullets([f"**{term}**: {text}" for term, text in computed.terms]),
            Paragraph("**Minimum observations** before a statistic is stated firmly (else it is marked exploratory): " +
                      "; ".join(f"{statistic}: {n} {unit}" for n, unit, statistic in computed.thresholds.values()) + ".")]
