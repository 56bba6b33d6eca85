"""Every learning rule bioscale knows, one line each, readable without importing torch.

A rule class (bioscale.rules) finds its line by its `name` and takes its family, display order,
citation, year and schedules from it as class attributes. Every other table that lists rules reads
the same lines: the command line's check of a rule name (before torch loads), the search spaces'
families, the protocols, the figures' colours, the report's order and families, and the glossary.
Adding a rule is its module under bioscale/rules/ plus one line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleFacts:
    """What is true of one rule, whatever it is trained on."""

    name: str
    title: str  # what the paper or its authors call it
    family: str  # one of FAMILIES
    order: int  # its place in the report and the figures: the paper's rules by family first, later ones after
    citation: str  # who published it
    year: int
    schedules: tuple[str, ...] = ()  # how it may train its own state against the forward weights, its default first
    output_step: str | None = None  # the setting that plays DTP's α (the output target's step), if it has one
    colour: str | None = None  # its colour in every figure (bioscale.analysis.palette); None: one no rule holds


# The report's order of families; a rule of an unlisted family comes last.
FAMILIES = ("backprop", "feedback alignment", "target propagation", "energy-based")
_TP = ("parallel", "alternating")

RULES: dict[str, RuleFacts] = {facts.name: facts for facts in (
    RuleFacts("bp", "backpropagation", "backprop", 0, "Rumelhart, Hinton and Williams", 1986, colour="#0173B2"),
    RuleFacts("fa", "feedback alignment", "feedback alignment", 1, "Lillicrap et al.", 2016, colour="#DE8F05"),
    RuleFacts("dfa", "direct feedback alignment", "feedback alignment", 2, "Nøkland", 2016, colour="#029E73"),
    RuleFacts("kp", "Kolen-Pollack", "feedback alignment", 3, "Akrout et al.", 2019, colour="#B1400D"),
    RuleFacts("wm", "weight mirrors", "feedback alignment", 4, "Akrout et al.", 2019, colour="#8C0800"),
    RuleFacts("sign-symmetry-frsf", "sign-symmetry, fixed random magnitudes", "feedback alignment", 5,
              "Liao, Leibo and Poggio", 2016, colour="#591E71"),
    RuleFacts("sign-symmetry-brsf", "sign-symmetry, magnitudes redrawn every batch", "feedback alignment", 6,
              "Liao, Leibo and Poggio", 2016, colour="#A23582"),
    RuleFacts("sign-symmetry", "sign-symmetry", "feedback alignment", 7, "Liao, Leibo and Poggio", 2016),
    RuleFacts("tp", "target propagation", "target propagation", 8, "Bengio", 2014, _TP, colour="#D55E00"),
    RuleFacts("dtp", "difference target propagation", "target propagation", 9, "Lee et al.", 2015, _TP, "alpha",
              colour="#CC78BC"),
    RuleFacts("sdtp", "simplified difference target propagation", "target propagation", 10, "Bartunov et al.", 2018,
              _TP, colour="#CA9161"),
    RuleFacts("ao-sdtp", "auxiliary-output SDTP", "target propagation", 11, "Bartunov et al.", 2018, _TP,
              colour="#FBAFE4"),
    RuleFacts("ddtp", "direct difference target propagation, linear", "target propagation", 12, "Meulemans et al.",
              2020, _TP, "lam", colour="#001C7F"),
    RuleFacts("ldrl", "local difference reconstruction loss", "target propagation", 13, "Ernoult et al.", 2022, _TP,
              "beta", colour="#12711C"),
    RuleFacts("ep", "equilibrium propagation", "energy-based", 14, "Scellier and Bengio", 2017, (), "beta",
              colour="#3C3C3C"),
    RuleFacts("chl", "contrastive Hebbian learning", "energy-based", 15, "Movellan", 1991, (), "gamma",
              colour="#B8850A"),
)}


def facts(rule: str) -> RuleFacts | None:
    """The catalogue's line for `rule`, or None for a rule it does not list."""
    return RULES.get(rule)


def family_rules(family: str) -> tuple[str, ...]:
    """The rules of `family`, in display order."""
    return tuple(f.name for f in sorted(RULES.values(), key=lambda f: f.order) if f.family == family)


def family_of(rule: str) -> str:
    """The family a rule belongs to ('other' when the catalogue does not list it)."""
    known = RULES.get(rule)
    return known.family if known is not None else "other"


def rule_key(rule: str) -> tuple[int, int, str]:
    """Sort key of a rule: its family's place, then its own; rules the catalogue does not list come last, by name."""
    known = RULES.get(rule)
    if known is None:
        return (len(FAMILIES) + 1, 0, rule)
    family = FAMILIES.index(known.family) if known.family in FAMILIES else len(FAMILIES)
    return (family, known.order, rule)


def schedules() -> dict[str, tuple[str, ...]]:
    """Every listed rule with the schedules it offers (its default first)."""
    return {name: f.schedules for name, f in RULES.items()}
