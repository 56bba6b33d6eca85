"""A population fit's state (`FitState`) and its checkpoints: everything `bioscale.train.fit` needs to continue bit for bit.

`fit` carries one `FitState` from minibatch to minibatch; a checkpoint is that state with the
rule's whole `state_dict` (the net, the rule's own state, the per-member settings, every Adam
optimizer's moments and step count, the rule's counters and every member's noise stream: `Rule`
is an `nn.Module` and carries these as its extra state): the minibatch generator's state, the
epoch and the position inside it (the epoch's minibatch order and the loss summed so far),
which members still train, and every member's curve so far. It is written
atomically (a temporary file, then `os.replace`), so a reader sees the previous checkpoint or
the new one, never half of one. A checkpoint that cannot be read, or that belongs to another
configuration, is refused with one line on stderr and the fit starts afresh. `Checkpointing`
says where and how often a fit saves (at the end of every `every` epochs).

Preemption: a signal handler calls `request_stop()`; `fit` then saves at the end of the minibatch
in progress and raises `Preempted`, which is no ordinary error (a trial that raises it is
re-queued, not failed).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

import torch

from .errors import first_line
from .history import FitResult

FORMAT = 1  # the layout of a checkpoint file; a file of another layout is refused
_STOP = threading.Event()


class Preempted(Exception):
    """The fit was asked to stop (the scheduler's pre-timeout or preemption signal) and saved where it stood."""

    def __init__(self, epoch: int, step: int, path: Path | None) -> None:
        where = f"epoch {epoch + 1}, minibatch {step}" if step else f"the end of epoch {epoch}"
        super().__init__(f"preempted at {where}" + (f"; checkpoint {path}" if path else ""))
        self.epoch, self.step, self.path = epoch, step, path


def request_stop() -> None:
    """Ask every fit in this process to save at its next minibatch and raise `Preempted` (safe in a signal handler)."""
    _STOP.set()


def stop_requested() -> bool:
    """Whether `request_stop` was called (and not cleared since)."""
    return _STOP.is_set()


def clear_stop() -> None:
    """Forget a stop request (tests; a worker that starts afresh)."""
    _STOP.clear()


@dataclass
class EpochInProgress:
    """The epoch a fit is in: its minibatch order, each member's loss summed so far, the forward steps before it began."""

    order: torch.Tensor
    loss_sum: torch.Tensor
    forward_steps: int


@dataclass
class FitState:
    """Where a population fit stands: everything `fit` carries from one minibatch to the next, and what a checkpoint holds.

    `slots[i]` is the member the rule's position i holds (members dropped from the rule leave it);
    `running` the members still training; `at_chance` each member's epochs in a row at chance;
    `bound` each member's divergence bound (set after the first epoch); `first_loss` each member's
    loss on the first minibatch; `epoch` the epoch in progress (or the next), `step` the minibatches
    done in it; `seconds` the training time spent before `clock` (this process's start).
    """

    generator: torch.Generator
    results: list[FitResult]
    slots: list[int]
    running: list[int]
    at_chance: list[int]
    bound: list[float] = field(default_factory=list)
    first_loss: torch.Tensor | None = None
    epoch: int = 0
    step: int = 0
    current: EpochInProgress | None = None
    seconds: float = 0.0
    clock: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, members: int, seed: int) -> FitState:
        """A fit of `members` members at its start, its minibatch order drawn from `seed`."""
        return cls(torch.Generator().manual_seed(seed), [FitResult() for _ in range(members)], list(range(members)),
                   list(range(members)), [0] * members)

    def elapsed(self) -> float:
        """Seconds of training so far, before and since a resume."""
        return self.seconds + time.perf_counter() - self.clock

    def open_epoch(self, forward_steps: int, examples: int, device: torch.device) -> EpochInProgress:
        """The epoch to train: the one a checkpoint was taken inside, else a fresh minibatch order."""
        if self.current is None:
            order = torch.randperm(examples, generator=self.generator).to(device)
            loss_sum = torch.zeros(len(self.slots), device=device, dtype=torch.float64)
            self.current = EpochInProgress(order, loss_sum, forward_steps)
        return self.current

    def add_loss(self, loss: torch.Tensor) -> None:
        """Count one minibatch's per-member loss."""
        if self.first_loss is None:
            self.first_loss = loss.clone()
        self.current.loss_sum += loss
        self.step += 1

    def close_epoch(self, limit: float, floor: float) -> list[float]:
        """End the epoch in progress: each position's mean loss; the first sets each member's bound, `limit` times its start (at least `floor`)."""
        if not self.bound:
            self.bound = [limit * max(start, floor) for start in self.first_loss.tolist()]
        losses = (self.current.loss_sum / self.step).tolist()
        self.epoch, self.step, self.current = self.epoch + 1, 0, None
        return losses

    def payload(self, rule: torch.nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        """This state and the rule's as a checkpoint's plain values (format `FORMAT`)."""
        current = self.current
        partial = None if current is None else {"forward_steps": current.forward_steps, "order": current.order.cpu(),
                                                "loss_sum": current.loss_sum.cpu()}
        return {"meta": meta, "epoch": self.epoch, "step": self.step, "partial": partial, "rule": cpu_state(rule),
                "generator": self.generator.get_state(), "slots": list(self.slots), "running": list(self.running),
                "at_chance": list(self.at_chance), "bound": list(self.bound),
                "first_loss": None if self.first_loss is None else self.first_loss.cpu(),
                "results": [r.to_record() for r in self.results], "seconds": self.elapsed()}

    @classmethod
    def from_payload(cls, saved: dict[str, Any], device: torch.device) -> FitState:
        """The state `payload` wrote, its tensors on `device`."""
        generator = torch.Generator()
        generator.set_state(saved["generator"])
        partial = saved["partial"]
        current = None if partial is None else EpochInProgress(partial["order"].to(device), partial["loss_sum"].to(device),
                                                               partial["forward_steps"])
        first_loss = None if saved["first_loss"] is None else saved["first_loss"].to(device)
        return cls(generator, [FitResult.from_record(r) for r in saved["results"]], list(saved["slots"]),
                   list(saved["running"]), list(saved["at_chance"]), list(saved["bound"]), first_loss, saved["epoch"],
                   saved["step"], current, saved["seconds"])


@dataclass
class Checkpointing:
    """Where and how often a fit saves, and what a checkpoint must match to be resumed from.

    `every`: save at the end of every `every` epochs (0: only when preempted). `meta`: plain
    values (the configuration, the seeds) a checkpoint must hold unchanged to be resumed.
    `on_resume(epoch, histories)` is called after a checkpoint is restored, with the epochs
    completed and each member's history so far (the callback sees only the epochs after).
    `fit` sets `resumed_from` to the epochs completed when it resumed (None: started afresh).
    """

    path: Path
    every: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    on_resume: Callable[[int, list[Any]], None] | None = None
    resumed_from: int | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def due(self, epochs_done: int) -> bool:
        """Whether the end of epoch `epochs_done` is a save point."""
        return bool(self.every) and epochs_done % self.every == 0

    def restore(self, state: FitState, rule: torch.nn.Module, device: torch.device) -> FitState:
        """The state of a readable checkpoint of this configuration, loaded into `rule`; else `state` unchanged."""
        saved = load(self.path, self.meta)
        if saved is None:
            return state
        restored = FitState.from_payload(saved, device)
        if restored.slots != state.slots:
            rule.keep(restored.slots)
        rule.load_state_dict(saved["rule"])
        self.resumed_from = restored.epoch
        if self.on_resume is not None:
            self.on_resume(restored.epoch, restored.results)
        return restored

    def preempt(self, state: FitState, rule: torch.nn.Module) -> NoReturn:
        """Save where the fit stands and raise `Preempted`."""
        save(self.path, state.payload(rule, self.meta))
        raise Preempted(state.epoch, state.step, self.path)

    def epoch_done(self, state: FitState, rule: torch.nn.Module) -> None:
        """After an epoch that is not the last: save when due or asked to stop; raise `Preempted` when asked to stop."""
        if stop_requested():
            self.preempt(state, rule)
        if self.due(state.epoch):
            save(self.path, state.payload(rule, self.meta))


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temporary file beside it, flushed, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save({"format": FORMAT, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load(path: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at `path` when it exists, reads back whole and matches `meta`; else None (a refusal is one line on stderr)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            payload = torch.load(handle, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not a bioscale checkpoint of format {FORMAT}")
    except Exception as error:  # truncated, corrupt, another format: never crash a trial over it
        reason = first_line(error)
        print(f"bioscale: checkpoint {path} is unreadable ({reason[:200]}); the trial starts afresh", file=sys.stderr, flush=True)
        return None
    if payload.get("meta") != meta:
        print(f"bioscale: checkpoint {path} belongs to another configuration; the trial starts afresh", file=sys.stderr, flush=True)
        return None
    return payload


def remove(path: Path) -> None:
    """Delete a checkpoint (and any temporary file of it left behind) if present."""
    path = Path(path)
    for candidate in (path, *path.parent.glob(f".{path.name}.*.tmp")):
        try:
            candidate.unlink()
        except FileNotFoundError:
            pass


def cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    """`module.state_dict()` with every tensor copied to the CPU (a checkpoint loads on any device)."""
    def to_cpu(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", copy=True)
        if isinstance(value, dict):
            return {k: to_cpu(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_cpu(v) for v in value)
        return value

    return {k: to_cpu(v) for k, v in module.state_dict().items()}
