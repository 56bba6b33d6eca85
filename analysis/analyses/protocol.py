"""Studies, protocols and budgets (appendix): which protocol each study ran (the paper's search like for like, at the
paper's budget and data, or not) and its budget, beside the paper's protocol."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import pandas as pd

from bioscale import datasets, defaults
from bioscale.contract import StudyInfo, search_trials

from ..report import Block, Bullets, Paragraph, Table
from ..storage import StudyRecord

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

# Settings the paper never searched: a study that samples one is not the paper's protocol, whatever it says.
NOT_SEARCHED_BY_THE_PAPER = ("activation", "alternation_period")
PAPER_ACTIVATION = "tanh"
PAPER_SAMPLER = "random"
PAPER_BUDGET = (60, 500)  # configurations per rule, epochs per run
PAPER_PROTOCOL = "random search, 60 configurations, best within 500 epochs, tanh, epoch-wise alternation"
# Our datasets that carry the paper's name but not its data.
NOT_THE_PAPERS_DATA = {"imagenet32": "downsampled 32x32 ImageNet (the paper: full-size images)"}
# Why the demo gives some rules a smaller budget (bioscale.defaults.DEMO_REDUCED holds which, and how small).
REDUCED_MARK = "†"  # beside a study's name wherever numbers of a reduced budget appear
SETTLING_COST = "EP and CHL settle the network at every step, a step costing about 4–15× BP's"  # defaults.DEMO_REDUCED
REDUCED_REASON = f"{SETTLING_COST}, so the demo and the published campaigns run them at a reduced budget"


def search_space_problems(info: StudyInfo) -> list[str]:
    """Why a study did not search the paper's space like for like (empty when it did): protocol, values, sampler."""
    problems = []
    if info.protocol != "paper":
        problems.append(f"protocol {info.protocol or 'not recorded'}")
    sampled = [name for name in NOT_SEARCHED_BY_THE_PAPER if name in info.space]
    if sampled:
        problems.append(f"samples {', '.join(sampled)} (the paper fixed it)")
    activation = info.fixed.get("activation")
    if activation is not None and activation != PAPER_ACTIVATION and "activation" not in info.space:
        problems.append(f"activation fixed to {activation} (the paper: {PAPER_ACTIVATION})")
    if info.sampler and info.sampler != PAPER_SAMPLER:
        problems.append(f"{info.sampler} sampler (the paper: random search)")
    return problems


def budget(record: StudyRecord) -> tuple[int, int | None]:
    """(configurations searched, epochs per configuration) a study actually used; the default trial is not counted."""
    return len(search_trials(record.trials)), record.epochs


def budget_text(record: StudyRecord) -> str:
    """'6 × 10': configurations × epochs actually used."""
    trials, epochs = budget(record)
    return f"{trials} × {epochs if epochs is not None else '?'}"


def data_problem(dataset: str) -> str | None:
    """Why a dataset is not the paper's data (None when the paper ran it)."""
    entry = datasets.REGISTRY.get(dataset)
    if entry is None or entry.paper_name is None:
        return f"{dataset or 'data not recorded'}, not the paper's data (MNIST, CIFAR-10, ImageNet)"
    return NOT_THE_PAPERS_DATA.get(dataset)


def below_paper_budget(record: StudyRecord) -> bool:
    """Whether a study used fewer configurations or epochs than the paper's search."""
    trials, epochs = budget(record)
    return trials < PAPER_BUDGET[0] or epochs is None or epochs < PAPER_BUDGET[1]


def setup_problems(record: StudyRecord) -> list[str]:
    """Where a study's budget or data fall short of the paper's (empty when both match)."""
    data = data_problem(record.dataset)
    return ([f"budget {budget_text(record)} (the paper: {PAPER_BUDGET[0]} × {PAPER_BUDGET[1]})"]
            if below_paper_budget(record) else []) + ([data] if data else [])


def protocol_problems(record: StudyRecord) -> list[str]:
    """Why a study is not the paper's protocol (empty when it is): its search space, then its budget and data."""
    return search_space_problems(record.info) + setup_problems(record)


def is_paper_protocol(record: StudyRecord) -> bool:
    """Whether a study ran the paper's protocol: its search space, at the paper's budget, on the paper's data."""
    return not protocol_problems(record)


def protocol_verdict(record: StudyRecord) -> str:
    """'yes'; "the paper's search space at 6 × 10 ..." when only budget or data differ; else 'no: ...' with every reason."""
    space, setup = search_space_problems(record.info), setup_problems(record)
    if not space and not setup:
        return "yes"
    if space:
        return "no: " + "; ".join(space + setup)
    data = data_problem(record.dataset)
    return (f"the paper's search space at {budget_text(record)} (the paper: {PAPER_BUDGET[0]} × {PAPER_BUDGET[1]})"
            + (f"; {data}" if data else ""))


def reduced_budgets(records: Sequence[StudyRecord]) -> dict[str, str]:
    """{study name: why} for each study of a rule the demo reduces (`defaults.DEMO_REDUCED`) run at fewer configurations
    or epochs than the largest budget on its dataset."""
    def asked(r: StudyRecord) -> tuple[int, int]:  # the budget asked for: a study cut short is not a reduced one
        return (r.info.trials if r.info.trials is not None else budget(r)[0]), r.epochs or 0

    largest: dict[str, tuple[int, int]] = {}
    for r in records:
        top, (trials, epochs) = largest.get(r.dataset, (0, 0)), asked(r)
        largest[r.dataset] = (max(top[0], trials), max(top[1], epochs))
    reduced = {}
    for r in records:
        (trials, epochs), top = asked(r), largest[r.dataset]
        if r.rule in defaults.DEMO_REDUCED["rules"] and (trials < top[0] or epochs < top[1]):
            reduced[r.name] = f"{budget_text(r)} against {top[0]} × {top[1]}: {REDUCED_REASON}"
    return reduced


def by_reason(reduced: Mapping[str, str]) -> dict[str, list[str]]:
    """{why: study names} from reduced_budgets()-like {name: why}, in the names' order."""
    found: dict[str, list[str]] = {}
    for name, why in reduced.items():
        found.setdefault(why, []).append(name)
    return found


def missing_rules(records: Sequence[StudyRecord]) -> dict[tuple[str, str], list[str]]:
    """{(dataset, arch): rules run on another architecture of that dataset but not on this one}."""
    rules: dict[tuple[str, str], set[str]] = {}
    for r in records:
        rules.setdefault(r.group, set()).add(r.rule)
    missing = {}
    for (dataset, arch), here in rules.items():
        elsewhere = set().union(*(found for (d, a), found in rules.items() if d == dataset and a != arch))
        if elsewhere - here:
            missing[(dataset, arch)] = sorted(elsewhere - here)
    return missing


def missing_text(group: tuple[str, str], rules: Sequence[str]) -> str:
    """Why rules run elsewhere are absent from a (dataset, arch) group: the demo's reduction when it explains it."""
    demo = defaults.DEMO_REDUCED
    by_demo = [r for r in rules if r in demo["rules"] and group[1] not in demo["archs"]]
    others = [r for r in rules if r not in by_demo]
    parts = []
    if by_demo:
        parts.append(f"{', '.join(by_demo)} not run on {group[1]}: the demo runs them on {', '.join(demo['archs'])} "
                     f"only ({SETTLING_COST})")
    if others:
        parts.append(f"{', '.join(others)} not run on {group[1]} (no study in the storage)")
    return f"{group[0]} / {group[1]}: " + "; ".join(parts)


def fixed_text(info: StudyInfo) -> str:
    """The values fixed for every trial, as name=value pairs."""
    return ", ".join(f"{k}={v}" for k, v in sorted(info.fixed.items())) or "–"


NAME = "protocol"
TITLE = "Studies, protocols and budgets"
ORDER = 90
APPENDIX = True


@dataclass
class Protocols:
    """The budget line, reduced budgets, rules absent from a group, and the per-study table."""

    budget: str
    table: pd.DataFrame
    reduced: dict[str, str]  # study -> why its budget is reduced
    missing: list[str]  # rules absent from a (dataset, arch) group, with why


def compute(results: Analysis) -> Protocols:
    """The budget line, the reduced budgets, the missing rules and one protocol row per study."""
    records = results.records
    return Protocols(budget=budget_line(records), table=_fmt_studies(records),
                     reduced=reduced_budgets(records),
                     missing=[missing_text(group, rules) for group, rules in missing_rules(records).items()])


def render(computed: Protocols, out: Output, figures: str) -> list[Block]:
    """The budget line, reduced budgets, absent rules, and the protocol table."""
    blocks: list[Block] = [Paragraph(computed.budget)]  # the design is named once, in the findings' caveats
    if computed.reduced:
        blocks.append(Paragraph("**Reduced budgets** (marked † wherever their numbers appear):"))
        blocks.append(Bullets([", ".join(f"`{name}`" for name in names) + f": {why}"
                               for why, names in by_reason(computed.reduced).items()]))
    if computed.missing:
        blocks.append(Paragraph("**Rules absent from an architecture**: " + "; ".join(computed.missing) + "."))
    blocks.append(Table(computed.table, "Every study covered: the protocol it ran, its sampler and budget "
                                        "(configurations × epochs), what it fixed and what it sampled. \"paper's "
                                        "protocol?\" is yes only for the paper's search (protocol paper, random search, "
                                        "nothing sampled that the paper fixed) at its budget "
                                        f"({PAPER_BUDGET[0]} × {PAPER_BUDGET[1]}) on its data; the paper's search at a "
                                        "smaller budget or on other data says so."))
    return blocks


def budget_line(records: list[StudyRecord]) -> str:
    """The search budget the studies used (trials, epochs, sampler, evaluation seeds) beside the paper's."""
    budgets: Counter = Counter()
    for record in records:
        info, evaluation = record.info, record.evaluation
        text = (f"{info.trials if info.trials is not None else len(record.trials)} trials × {record.epochs or '?'} epochs per study, "
                f"{info.sampler or '?'} sampler")
        if evaluation is not None and evaluation.seeds:
            text += (f"; best configuration re-evaluated over seeds {', '.join(map(str, evaluation.seeds))}"
                     f" for {evaluation.epochs if evaluation.epochs is not None else '?'} epochs")
        budgets[text] += 1
    ours = "; ".join(f"{text} ({n} {'study' if n == 1 else 'studies'})" for text, n in budgets.items())
    return (f"**Budget**: {ours or 'no studies'}. The paper: random search over {PAPER_BUDGET[0]} configurations per "
            f"rule, best errors within {PAPER_BUDGET[1]} epochs.")


def _fmt_studies(records: list[StudyRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        info, evaluation = r.info, r.evaluation
        rows.append({"study": f"`{r.name}`", "protocol": info.protocol or "not recorded",
                     "sampler": info.sampler or "?", "budget": budget_text(r), "fixed": fixed_text(info),
                     "sampled": ", ".join(sorted(info.space)) or "–",
                     "evaluation seeds": ", ".join(map(str, evaluation.seeds if evaluation else [])) or "–",
                     "paper's protocol?": protocol_verdict(r)})
    return pd.DataFrame(rows)
