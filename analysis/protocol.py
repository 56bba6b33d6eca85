"""Which protocol a study ran (the paper's search like for like, or not), judged from what it sampled and fixed."""

from __future__ import annotations

from bioscale.contract import StudyInfo

# Settings the paper never searched: a study that samples one is not the paper's protocol, whatever it says.
NOT_SEARCHED_BY_THE_PAPER = ("activation", "alternation_period")
PAPER_ACTIVATION = "tanh"
PAPER_SAMPLER = "random"
PAPER_PROTOCOL = "random search, 60 configurations, best within 500 epochs, tanh, epoch-wise alternation"


def protocol_problems(info: StudyInfo) -> list[str]:
    """Why a study is not the paper's protocol (empty when it is): its recorded protocol, what it sampled or fixed, its sampler."""
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


def is_paper_protocol(info: StudyInfo) -> bool:
    """Whether a study ran the paper's search like for like: protocol "paper", nothing the paper fixed sampled, random search."""
    return not protocol_problems(info)


def fixed_text(info: StudyInfo) -> str:
    """The values fixed for every trial, as name=value pairs."""
    return ", ".join(f"{k}={v}" for k, v in sorted(info.fixed.items())) or "–"


def protocol_text(info: StudyInfo) -> str:
    """Protocol, sampler, fixed values and sampled parameters in one line."""
    sampled = ", ".join(sorted(info.space)) or "–"
    return (f"protocol {info.protocol or 'not recorded'}; {info.sampler or '?'} sampler; fixed {fixed_text(info)}; "
            f"sampled {sampled}")
