"""The member axis: every weight, buffer and optimizer moment has a leading dimension of K members.

A run trains K configurations of one rule on one architecture at once; a single run is a
population of one. Members share the minibatch stream and every structural setting; each has
its own seed, from which independent streams are drawn for its initial weights, its rule's own
state (feedback matrices, inverses) and its noise, so a member trains exactly as it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

# Independent random streams of one member seed.
INIT, RULE_STATE, NOISE = 0, 1, 2


def generators(seeds: Sequence[int], stream: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per member seed, for one stream (INIT, RULE_STATE or NOISE), on `device`."""
    out = []
    for seed in seeds:
        state = int(np.random.SeedSequence([int(seed), stream]).generate_state(1, dtype=np.uint64)[0])
        out.append(torch.Generator(device=device).manual_seed(state))
    return out


def per_member(values: Tensor, like: Tensor) -> Tensor:
    """Member values (K,) shaped to broadcast against `like` (K, ...)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def uniform_(tensor: Tensor, bound: float, member_generators: Sequence[torch.Generator]) -> Tensor:
    """Fill each member's slice with U(-bound, bound) from its own generator (drawn on the CPU, so every device starts alike)."""
    if len(member_generators) != len(tensor):
        raise ValueError(f"{len(member_generators)} generators for {len(tensor)} members")
    with torch.no_grad():
        for member, generator in zip(tensor, member_generators):
            draw = torch.empty(member.shape, dtype=torch.float64).uniform_(-bound, bound, generator=generator)
            member.copy_(draw)
    return tensor
