"""What a fit records of each member: its numbers after every epoch, and how it ended."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import Diverged


@dataclass
class EpochResult:
    """Errors (fractions in [0, 1]) after one epoch; `val_error` is None without a validation split."""

    epoch: int
    loss: float
    train_error: float
    val_error: float | None
    test_error: float
    seconds: float


@dataclass
class FitResult:
    """One member's epochs, and the epoch with the lowest validation error (the last without one).

    `diverged` says why a member that diverged stopped; `pruned_at` is the epoch after which the
    callback stopped it; both are None for a member that trained every epoch.
    """

    history: list[EpochResult] = field(default_factory=list)
    diverged: Diverged | None = None
    pruned_at: int | None = None

    @property
    def best(self) -> EpochResult:
        """The epoch selected by validation error, never by test error."""
        if self.history[-1].val_error is None:
            return self.history[-1]
        return min(self.history, key=lambda r: r.val_error)

    def to_record(self) -> dict[str, Any]:
        """This result as plain values (what a checkpoint stores; `from_record` reads it back)."""
        diverged = self.diverged
        return {"history": [asdict(r) for r in self.history], "pruned_at": self.pruned_at,
                "diverged": None if diverged is None else {"reason": diverged.reason, "epoch": diverged.epoch,
                                                           "stalled": diverged.stalled}}

    @classmethod
    def from_record(cls, stored: dict[str, Any]) -> FitResult:
        """The FitResult `to_record` wrote."""
        diverged = stored["diverged"]
        return cls(history=[EpochResult(**r) for r in stored["history"]], pruned_at=stored["pruned_at"],
                   diverged=None if diverged is None else Diverged(diverged["reason"], diverged["epoch"],
                                                                   stalled=diverged["stalled"]))
