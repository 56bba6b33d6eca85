"""Studies, protocols and budgets (appendix): what each study ran, beside the paper's protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

import pandas as pd

from ..protocol import fixed_text, protocol_problems
from ..report import Block, Paragraph, Table
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
    """The budget line and the per-study protocol table."""

    budget: str
    table: pd.DataFrame


def compute(results: Analysis) -> Protocols:
    """The budget line and one protocol row per study."""
    return Protocols(budget=budget_line(results.records), table=_fmt_studies(results.records))


def render(computed: Protocols, out: Output, figures: str) -> list[Block]:
    """The budget line and the protocol table."""
    return [Paragraph(computed.budget),
            Table(computed.table, "Every study covered: the protocol it ran, its sampler and budget, what it fixed and "
                                  "what it sampled. A study is the paper's protocol only if it says so and samples "
                                  "nothing the paper fixed (activation, alternation period) with random search.")]


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
    return (f"**Budget**: {ours or 'no studies'}. The paper: random search over 60 configurations per rule, "
            "best errors within 500 epochs.")


def _fmt_studies(records: list[StudyRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        info, evaluation = r.info, r.evaluation
        problems = protocol_problems(info)
        rows.append({"study": f"`{r.name}`", "protocol": info.protocol or "not recorded",
                     "sampler": info.sampler or "?", "budget": f"{info.trials if info.trials is not None else len(r.trials)}"
                     f" trials × {r.epochs or '?'} epochs", "fixed": fixed_text(info),
                     "sampled": ", ".join(sorted(info.space)) or "–",
                     "evaluation seeds": ", ".join(map(str, evaluation.seeds if evaluation else [])) or "–",
                     "paper's protocol?": "yes" if not problems else "no: " + "; ".join(problems)})
    return pd.DataFrame(rows)


