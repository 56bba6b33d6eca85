"""Studies, protocols and budgets (appendix): what each study ran, beside the paper's protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

import pandas as pd

from ..protocol import (PAPER_BUDGET, budget_text, by_reason, fixed_text, missing_rules, missing_text, protocol_verdict,
                        reduced_budgets)
from ..report import Block, Bullets, Paragraph, Table
from ..storage import StudyRecord

if TYPE_CHECKING:
    from ..output import Output
    from ..results import Analysis

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
    budgets: dict[str, int] = {}
    for record in records:
        info, evaluation = record.info, record.evaluation
        text = (f"{info.trials if info.trials is not None else len(record.trials)} trials × {record.epochs or '?'} epochs per study, "
                f"{info.sampler or '?'} sampler")
        if evaluation is not None and evaluation.seeds:
            text += (f"; best configuration re-evaluated over seeds {', '.join(map(str, evaluation.seeds))}"
                     f" for {evaluation.epochs if evaluation.epochs is not None else '?'} epochs")
        budgets[text] = budgets.get(text, 0) + 1
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
