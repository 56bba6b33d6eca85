"""Search protocols: which hyperparameters a tuning study samples, and which it holds fixed.

- `paper`: the paper's random search like for like (Appendix 5.3, Table 4). Sampled: forward and
  inverse Adam (learning rate, β2, ε), α and σ, over the widened ranges of `_common` (which
  contain Table 4's). Held: tanh, whole-epoch alternation, 512 auxiliary units (the paper's CIFAR
  value) and a batch size of 128 (the paper does not print its batch size). The rules the paper
  did not run (DDTP-linear, L-DRL) get the same treatment, their target step (λ, β) sampled as α
  is and L-DRL's feedback steps held at one; the paper has no published row to set them beside.
- `extended`: everything bioscale can search for the rule: also the activation, the batch size,
  the auxiliary output's size and the alternation period.

Rules published after the paper (kp, wm, sign-symmetry-frsf, sign-symmetry-brsf) have no row in
it: under `paper` they sample what the paper sampled for every rule (the forward Adam settings)
and hold their own (KP's `decay`, WM's `mirror_*`) at their defaults; `extended` searches them.

The energy-based rules (ep, chl) have no row either: under `paper` they sample the forward Adam
settings and their output's step (EP's nudge β, CHL's feedback strength γ) as DDTP's λ is, and hold
the settling (T_free, T_nudge, tolerance, initial scale, hidden activation, EP's symmetric nudging
and cost) at their defaults; `extended` searches all but the tolerance.

A study records its protocol, what it sampled (`space`) and what it held (`fixed`), so a report
never sets an extended search beside the paper's numbers as if it were the paper's.

A protocol says what is searched; the study's design (its `design` attribute) says how it is
drawn. `campaign --protocol paper` keeps the paper's full-budget random search (`--sampler
random`: independent uniform draws, log-uniform for the learning rates and ε; every trial trains
every epoch). The demo searches the paper's space with scrambled Sobol points (`--sampler sobol`,
Optuna's QMCSampler: random search with better coverage of the space) under successive halving
inside each study's population (`--pruner halving`); a campaign can choose the same.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution

from bioscale import catalogue, defaults
from bioscale.errors import UsageError

PROTOCOLS = defaults.PROTOCOLS
# The paper's Table 4 (Adam, σ) and each rule's output step (bioscale.catalogue): DTP's α, and DDTP's λ, L-DRL's and
# EP's β, CHL's γ, which play α's part in rules the paper has no row for.
PAPER_SAMPLED = ("forward_lr", "forward_beta2", "forward_eps", "inverse_lr", "inverse_beta2", "inverse_eps", "sigma",
                 *dict.fromkeys(f.output_step for f in catalogue.RULES.values() if f.output_step))
PAPER_FIXED = {**defaults.TRAINING, "alternation_period": 0, "aux_size": 512}


def check_protocol(protocol: str) -> str:
    """`protocol` when it is known; else a UsageError listing the protocols."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    return protocol


def protocol_space(protocol: str, space: dict[str, BaseDistribution],
                   defaults: dict[str, Any]) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
    """(what to sample, what to hold) of a rule's full tuning `space` under `protocol`.

    A held name takes the paper's value, else its default in `defaults`.
    """
    if check_protocol(protocol) == "extended":
        return dict(space), {}
    sampled = {name: dist for name, dist in space.items() if name in PAPER_SAMPLED}
    held = {name: PAPER_FIXED.get(name, defaults.get(name)) for name in space if name not in sampled}
    return sampled, held
