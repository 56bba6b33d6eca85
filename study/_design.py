"""A study's search design: whose draws it shares (its sampler seed) and the fidelity each trial trains at.

Draws. Each study's sampler seed is a stable hash of its draw key: the study's default name
without its activation (whatever name it is stored under), plus the study's seed. A tanh/ReLU pair of one rule therefore samples identical
configurations (the paired experiment), two rules do not; with `shared_draws` the key leaves the
rule out too, so every rule of a campaign samples the same configurations (common random numbers).

Fidelity. `--pruner halving[:ETA]` runs successive halving inside each population (its members
train at once): every search member trains to the first rung, the best 1/ETA of them (by
validation error so far) go on to the next, and so on to the study's epochs. The rungs are
`epochs / ETA**k` rounded, e.g. 1, 3 and 10 epochs for 10 epochs and ETA 3. `hyperband[:ETA]`
gives population k of the study the bracket that starts its cuts at rung k mod (number of rungs).
The default-settings trial always trains the full budget and takes no member's place.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from bioscale.spec import StudySpec, fidelity_of, study_name


def draw_key(spec: StudySpec) -> str:
    """The key hashed into a checked study's sampler seed: equal keys sample identical configurations.

    The study's default name without its activation (whatever --study-name it is stored under), and its seed.
    """
    label = "every-rule" if spec.shared_draws else spec.label
    return f"{study_name(spec.stage, spec.dataset, spec.arch, label)}|seed={spec.seed}"


def draw_seed(key: str) -> int:
    """A sampler seed from `key` (a stable hash, the same in every process; Python's hash() is not)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def rungs(epochs: int, eta: int) -> list[int]:
    """The epochs at each rung, ascending, the last `epochs`: epochs / eta**k rounded, k from the most that stays >= 1."""
    depth = int(math.floor(math.log(epochs, eta) + 1e-9)) if epochs > 1 else 0
    return sorted({max(1, round(epochs / eta ** k)) for k in range(depth + 1)})


@dataclass(frozen=True)
class Design:
    """The `design` study attribute, typed (bioscale.contract documents each field)."""

    sampler: str
    seed: int
    draws: str
    shared: str  # "pair", "rules" or "none"
    scheme: str | None = None  # "halving", "hyperband", or None (every trial trains the full budget)
    eta: int | None = None
    rungs: tuple[int, ...] = ()

    @classmethod
    def of(cls, spec: StudySpec) -> Design:
        """The design of the checked study `spec`."""
        key = draw_key(spec)
        shared = "rules" if spec.shared_draws else "pair" if spec.activation else "none"
        fidelity = fidelity_of(spec.pruner)
        if fidelity is None:
            return cls(spec.sampler, draw_seed(key), key, shared)
        scheme, eta = fidelity
        return cls(spec.sampler, draw_seed(key), key, shared, scheme, eta, tuple(rungs(spec.epochs, eta)))

    def to_attr(self) -> dict[str, Any]:
        """The stored value."""
        fidelity = None if self.scheme is None else {"scheme": self.scheme, "eta": self.eta, "rungs": list(self.rungs)}
        return {"sampler": self.sampler, "seed": self.seed, "draws": self.draws, "shared": self.shared, "fidelity": fidelity}

    def words(self) -> str:
        """The design in a few words, e.g. 'sobol draws, a tanh/ReLU pair shared; successive halving (eta 3) at epochs 1, 3, 10'."""
        shared = {"pair": ", a tanh/ReLU pair shared", "rules": ", shared by every rule", "none": ""}[self.shared]
        if self.scheme is None:
            return f"{self.sampler} draws{shared}; every trial the full budget"
        scheme = "successive halving" if self.scheme == "halving" else "Hyperband brackets"
        return f"{self.sampler} draws{shared}; {scheme} (eta {self.eta}) at epochs {', '.join(map(str, self.rungs))}"

    def halving(self, bracket: int, default_members: Iterable[int] = ()) -> SuccessiveHalving | None:
        """The halving of population number `bracket` (its default-settings members exempt); None without one."""
        if self.scheme is None or len(self.rungs) < 2:
            return None
        first = bracket % len(self.rungs) if self.scheme == "hyperband" else 0
        return SuccessiveHalving(self.rungs[first:], self.eta, frozenset(default_members))


class SuccessiveHalving:
    """Which members of a population to stop at each rung: all but the best 1/eta of the search members still running.

    Called after each epoch with every running member's best validation error so far; ties go to
    the lower member index. A population whose search is down to one member stops no more.
    """

    def __init__(self, rungs: Iterable[int], eta: int, exempt: frozenset[int] = frozenset()) -> None:
        self.rungs, self.eta, self.exempt = list(rungs), eta, exempt
        self.stopped: dict[int, int] = {}  # member -> the epoch at which it was stopped

    def __call__(self, epoch: int, best_so_far: Mapping[int, float]) -> list[int]:
        """The members to stop after `epoch`, given each running member's best validation error so far."""
        if epoch not in self.rungs[:-1]:
            return []
        ranked = sorted((m for m in best_so_far if m not in self.exempt), key=lambda m: (best_so_far[m], m))
        keep = max(1, len(ranked) // self.eta)
        out = ranked[keep:]
        self.stopped.update({m: epoch for m in out})
        return out


def population_halving(spec: StudySpec, roots: list[int], defaults: list[bool]) -> SuccessiveHalving | None:
    """The halving of one population: its members' root trial numbers and which train the default settings.

    Population k of the study (counted by its first search member's number) takes Hyperband's bracket k.
    """
    searched = [r for r, default in zip(roots, defaults) if not default]
    bracket = min(searched) // spec.population if searched else 0
    return Design.of(spec).halving(bracket, [i for i, default in enumerate(defaults) if default])
